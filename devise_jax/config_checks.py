"""Checks of a config's values before a run starts: one line naming the key at fault.

`check(config)` refuses counts, sizes and rates that cannot work (a batch of -1, 0
steps, a negative learning rate, a batch that does not divide over the devices) as
`--config.KEY=VALUE: what it must be`, the way it is typed on the command line, before
anything is written to a workdir. Choices (optimizers, losses, models) are checked by
the modules that own them (the stage-3 loss and head also here, against their
modules' tables); the start of a run is guarded (`devise_jax/rollback.py`), so a value
that fails there leaves no trace either.

`load_config_file` is how scripts and recipes read a config file outside the CLI (a
recipe builds on the embedded default's config this way).
"""

import importlib.util
import math
import numbers

from devise_jax import losses
from devise_jax.models import siamese as siamese_model
from devise_jax.stages import STAGES


def load_config_file(path, variant=None):
  """`get_config(variant)` of the config file `path`, as `devise-jax --config` reads it."""
  spec = importlib.util.spec_from_file_location('devise_jax_config_file', path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(variant)
# key -> (test, what it must be). Keys a config lacks are skipped.
_POSITIVE_INT = (lambda v: _is_int(v) and v > 0, 'must be a positive integer')
_NON_NEGATIVE_INT = (lambda v: _is_int(v) and v >= 0, 'must be an integer >= 0')
_NON_NEGATIVE = (lambda v: _is_number(v) and v >= 0, 'must be a finite number >= 0')
_POSITIVE = (lambda v: _is_number(v) and v > 0, 'must be a finite number > 0')
_PROBABILITY = (lambda v: _is_number(v) and 0 <= v < 1, 'must be a number in [0, 1)')


def _one_of(choices):
  return (lambda v: v in choices, f'must be one of {sorted(choices)}')


RULES = {
    'seed': _NON_NEGATIVE_INT,
    'log_every': _POSITIVE_INT,
    'checkpoint_every': _POSITIVE_INT,
    'steps_per_call': _POSITIVE_INT,
    'keep_checkpoints': _POSITIVE_INT,
    'data.image_size': (lambda v: _is_int(v) and v >= 32,
                        'must be an integer >= 32 (SqueezeNet needs 32)'),
    'data.crop_padding': _NON_NEGATIVE_INT,
    'data.mean': (lambda v: _triple(v, 0), 'must be 3 finite numbers (one per channel)'),
    'data.std': (lambda v: _triple(v, 1e-12), 'must be 3 positive numbers (one per channel)'),
    'data.unseen_fraction': _PROBABILITY,
    'data.augment': (lambda v: v in ('pad_crop', 'random_resized_crop'),
                     "must be 'pad_crop' or 'random_resized_crop'"),
    'data.crop_area': (lambda v: _pair(v) and 0 < v[0] <= v[1] <= 1,
                       'must be (low, high) with 0 < low <= high <= 1'),
    'data.crop_ratio': (lambda v: _pair(v) and 0 < v[0] <= v[1],
                        'must be (low, high) with 0 < low <= high'),
    'model.dropout': _PROBABILITY,
    'eval.batch_size': _POSITIVE_INT,
    'eval.gamma_scale': _NON_NEGATIVE,
    'eval.conse_gamma_scale': _NON_NEGATIVE,
    'stage2.margin': _NON_NEGATIVE,
    'stage2.vocab_negatives': _NON_NEGATIVE_INT,
    'stage2.image_ranking_weight': _NON_NEGATIVE,
    'stage2.encoder_lr_scale': _NON_NEGATIVE,
    'stage3.classes_per_batch': (lambda v: _is_int(v) and v >= 2,
                                 'must be an integer >= 2'),
    'stage3.margin': _NON_NEGATIVE,
    'stage3.loss': _one_of(losses.SIAMESE_LOSSES),
    'stage3.head': _one_of(siamese_model.HEADS),
    'stage3.widths': (lambda v: isinstance(v, (tuple, list)) and all(
        _is_int(w) and w > 0 for w in v), 'must be a tuple of positive integers'),
    'stage3.ms_alpha': _POSITIVE,
    'stage3.ms_beta': _POSITIVE,
    'stage3.ms_base': (lambda v: _is_number(v), 'must be a finite number'),
    'stage3.ms_epsilon': _NON_NEGATIVE,
}
for _stage in STAGES:
  RULES.update({f'{_stage}.num_steps': _POSITIVE_INT, f'{_stage}.batch_size': _POSITIVE_INT,
                f'{_stage}.learning_rate': _NON_NEGATIVE,
                f'{_stage}.warmup_steps': _NON_NEGATIVE_INT,
                f'{_stage}.weight_decay': _NON_NEGATIVE})


def _is_int(value):
  return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_number(value):
  return (isinstance(value, numbers.Real) and not isinstance(value, bool)
          and math.isfinite(value))


def _pair(value):
  return (isinstance(value, (tuple, list)) and len(value) == 2
          and all(_is_number(v) for v in value))


def _triple(value, low):
  return (isinstance(value, (tuple, list)) and len(value) == 3
          and all(_is_number(v) and (v >= low if low else True) for v in value))


def _get(config, key):
  node = config
  for part in key.split('.'):
    if not hasattr(node, 'get') or part not in node:
      return _MISSING
    node = node[part]
  return node


_MISSING = object()


def check(config, stages=STAGES, device_count=None):
  """Raises ValueError naming the first bad value among `stages` and the common keys."""
  for key, (test, must) in RULES.items():
    stage = key.split('.')[0]
    if stage in STAGES and stage not in stages:
      continue
    value = _get(config, key)
    if value is not _MISSING and not test(value):
      raise ValueError(f'--config.{key}={value!r}: {must}')
  for stage in stages:
    batch = _get(config, f'{stage}.batch_size')
    if device_count and batch is not _MISSING and batch % device_count:
      raise ValueError(f'--config.{stage}.batch_size={batch}: does not divide over '
                       f'{device_count} devices; use a multiple of {device_count}')
