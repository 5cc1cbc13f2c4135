"""The stage table: what each training stage is, said once.

  stage1: encoder + softmax classifier on the seen classes;
  stage2: DeViSE projection onto the seen classes' word vectors, started from stage1;
  stage3: Siamese head on the frozen encoder's features (devise_jax/siamese.py).

Training, the restored run, the protocol and the config checks read what a stage does
from here (its fields, or the names below derived from them); no other module compares
stage names.
"""

import collections
import dataclasses
from typing import Any, Callable


@dataclasses.dataclass(frozen=True)
class Stage:
  """What a stage is, said once; `train.train_stage` reads nothing else about it."""
  init_from: str | None  # The stage whose params this one starts from (None: fresh).
  model: str  # 'devise' (encoder + classifier + projection) or 'siamese' (the head).
  loss: str  # 'softmax' (stage 1), 'devise' (config.stage2.loss) or 'siamese'.
  # Top-level param subtree -> 'train', 'finetune' (at encoder_lr_scale) or 'freeze'.
  trainable: Callable[[Any], dict]
  # The stage whose frozen encoder's cached features this stage trains on; None: it
  # trains on augmented images (whenever the encoder itself trains).
  features_from: Callable[[Any], str | None] | None = None
  # Whether a run is complete only with it (evaluation, galleries and search read it).
  required: bool = True


def _frozen_encoder_features(stage):
  return lambda c: stage if c.get('encoder_lr_scale', 0) == 0 else None


STAGE_TABLE = {
    'stage1': Stage(None, 'devise', 'softmax', lambda c: {
        'encoder': 'train', 'classifier': 'train', 'projection': 'freeze'}),
    # With a frozen encoder the projection is a linear map of stage 1's features,
    # computed once (seconds) instead of an encoder pass per step.
    'stage2': Stage('stage1', 'devise', 'devise', lambda c: {
        'encoder': 'finetune' if c.encoder_lr_scale > 0 else 'freeze',
        'classifier': 'freeze', 'projection': 'train'}, _frozen_encoder_features('stage1')),
    # The Siamese head has params of its own, all trained, on stage 2's features.
    'stage3': Stage(None, 'siamese', 'siamese',
                    lambda c: collections.defaultdict(lambda: 'train'),
                    lambda c: 'stage2', required=False),
}
STAGES = tuple(STAGE_TABLE)
REQUIRED_STAGES = tuple(s for s in STAGES if STAGE_TABLE[s].required)
OPTIONAL_STAGES = tuple(s for s in STAGES if not STAGE_TABLE[s].required)


def _only(test):
  found = [s for s in STAGES if test(STAGE_TABLE[s])]
  assert len(found) == 1, found
  return found[0]


# The stage that trains each of the run's heads.
CLASSIFIER_STAGE = _only(lambda s: s.loss == 'softmax')  # Softmax logits (ConSE).
DEVISE_STAGE = _only(lambda s: s.loss == 'devise')  # The DeViSE projection.
SIAMESE_STAGE = _only(lambda s: s.model == 'siamese')  # The Siamese head.


def lineage(stage):
  """`stage` and the stages it starts from, first first (what restoring it needs)."""
  chain = [stage]
  while STAGE_TABLE[chain[0]].init_from:
    chain.insert(0, STAGE_TABLE[chain[0]].init_from)
  return tuple(chain)


def centered(config, stage):
  """Whether `stage` projects features centred on the seen classes' mean."""
  return STAGE_TABLE[stage].loss == 'devise' and config[stage].get('center_features', False)


def encoder_frozen(config, stage):
  """Whether `stage` keeps the encoder it starts from (no encoder update)."""
  return STAGE_TABLE[stage].trainable(config[stage])['encoder'] == 'freeze'
