"""A trained run, restored once: config, classes, label space and every stage's variables.

`Run.load(workdir)` reads the workdir once (through `checkpoint` and `artefacts`, the
only modules that know its layout); evaluation, galleries, search, the CLI and the demo
then ask the run for what they need. Every space has one jitted function, compiled once
per input shape:

  encode(images)      encoder features [N, 512] (stage 2's encoder)
  devise(features)    unit DeViSE-space vectors [N, D] (stage 2's projection)
  siamese(features)   unit Siamese embeddings [N, d] (stage 3's head)
  logits(features)    stage 1's softmax logits over the seen classes [N, S]

`outputs(split)` gives all of them for every image of a split (the encoder features are
cached in the workdir, keyed by the stage-2 step).
"""

import collections
import collections.abc
import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import tqdm

from devise_jax import artefacts
from devise_jax import calibration
from devise_jax import checkpoint
from devise_jax import stages as stages_lib
from devise_jax.models import devise
from devise_jax.models import siamese as siamese_model
from devise_jax.models import squeezenet

_CLASSIFIER = stages_lib.CLASSIFIER_STAGE  # Whose classifier gives the logits.
_DEVISE = stages_lib.DEVISE_STAGE  # Whose projection gives the DeViSE vectors.
_SIAMESE = stages_lib.SIAMESE_STAGE


@dataclasses.dataclass(frozen=True)
class Outputs:
  """Everything the run computes for the images of one split, in file order."""
  labels: np.ndarray  # [N] dataset label ids.
  features: np.ndarray  # [N, 512] stage-2 encoder features.
  logits: np.ndarray  # [N, S] stage-1 logits over the seen classes.
  devise: np.ndarray  # [N, D] unit DeViSE vectors.
  siamese: np.ndarray | None  # [N, d] unit Siamese embeddings (None without stage 3).


def _encoder_variables(variables):
  out = {'params': variables['params']['encoder']}
  if variables.get('batch_stats'):
    out['batch_stats'] = variables['batch_stats']['encoder']
  return out


def _same_tree(a, b):
  la, lb = jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)
  return len(la) == len(lb) and all(np.array_equal(x, y) for x, y in zip(la, lb))


class Run:
  """A workdir's trained stages. Build it with `Run.load`."""

  def __init__(self, workdir, config, classes, variables, steps):
    """`variables`: stage -> variables, a dict or a mapping that restores a stage on
    first use (`Run.load`); `steps`: stage -> its checkpoint step."""
    self.workdir, self.config = workdir, config
    self.names, self.seen, self.unseen, self.label_space = classes
    self.variables, self.steps = variables, steps
    # Calibrated stacking's gamma for DeViSE scores over all classes (None: not yet
    # calibrated, or calibrated for other checkpoints or folds): `devise-jax eval` saves it.
    saved = artefacts.load_calibration(workdir)
    key = calibration.saved_key(steps, classes[1], config.seed)
    self.gamma = (calibration.scaled(saved['gammas'], config.eval)['gamma_devise']
                  if calibration.matches(saved, key) else None)
    self.traces = collections.Counter()  # Compilations per function (tests read it).
    model = config.model
    dtype = {'float32': jnp.float32, 'bfloat16': jnp.bfloat16}[model.dtype]
    self._encoder = squeezenet.SqueezeNet(model.name, model.use_bn, dtype)
    self._head = siamese_model.create(config.stage3)
    self._jit_encode = jax.jit(self._traced('encode', lambda v, x: self._encoder.apply(
        v, x, train=False)))
    self._jit_devise = jax.jit(self._traced('devise', _project_unit))
    self._jit_logits = jax.jit(self._traced('logits', _dense))
    self._jit_siamese = jax.jit(self._traced('siamese', self._head.apply))

  def _encoder_vars(self, stage):
    return _encoder_variables(self.variables[stage])

  @functools.cached_property
  def _features_of(self):
    """Stage -> the stage whose cached features are its own (stage 1's for stage 2 when
    stage 2 kept stage 1's encoder)."""
    return {_DEVISE: stages_lib.STAGE_TABLE[_DEVISE].init_from} if self.shared_encoder else {}

  @classmethod
  def load(cls, workdir, stages=None):
    """The run of `workdir` with `stages` (default: stages 1 and 2, and 3 when trained)
    at their latest checkpoints; each stage's variables are restored once, on first use."""
    config = checkpoint.load_config(workdir)
    classes = checkpoint.load_classes(workdir)
    if stages is None:
      present = checkpoint.trained_stages(workdir)
      stages = stages_lib.REQUIRED_STAGES + tuple(
          s for s in stages_lib.OPTIONAL_STAGES if s in present)
    steps = {stage: checkpoint.latest_step(workdir, stage) for stage in stages}
    return cls(workdir, config, classes, _Restored(workdir, steps), steps)

  def _traced(self, name, fn):
    def counted(*args):
      self.traces[name] += 1  # Runs at trace time only.
      return fn(*args)
    return counted

  def has(self, stage):
    return stage in self.variables

  # The jitted embedders.

  def encode(self, images, stage=_DEVISE):
    """Encoder features [N, 512] of preprocessed float32 images [N, S, S, 3]."""
    return np.asarray(self._jit_encode(self._encoder_vars(stage), images))

  def devise(self, features):
    """Unit DeViSE vectors [N, D] of encoder features [N, 512]."""
    return np.asarray(self._jit_devise(self.variables[_DEVISE]['params']['projection'],
                                       np.asarray(features, np.float32)))

  def logits(self, features):
    """Stage-1 logits [N, S] over the seen classes, from stage-1 encoder features."""
    return np.asarray(self._jit_logits(self.variables[_CLASSIFIER]['params']['classifier'],
                                       np.asarray(features, np.float32)))

  def siamese(self, features):
    """Unit Siamese embeddings [N, d] of encoder features [N, 512] (needs stage 3)."""
    if not self.has(_SIAMESE):
      raise checkpoint.CheckpointError(
          f'no {_SIAMESE} checkpoint in {self.workdir}: train it first (--stages {_SIAMESE})')
    return np.asarray(self._jit_siamese(self.variables[_SIAMESE],
                                        np.asarray(features, np.float32)))

  @functools.cached_property
  def shared_encoder(self):
    """Whether stage 2 kept stage 1's encoder (frozen): then their features are equal."""
    source = stages_lib.STAGE_TABLE[_DEVISE].init_from
    if not {_DEVISE, source} <= set(self.variables):
      return False
    return _same_tree(self._encoder_vars(source), self._encoder_vars(_DEVISE))

  def encode_images(self, images, batch_size=256, stage=_DEVISE):
    """`stage`'s encoder features [N, 512] of a list of uint8 [H, W, C] arrays.

    Chunks are padded to a power of two (at most `batch_size`), so a stream of queries
    of any size compiles the encoder a handful of times, not once per size.
    """
    from devise_jax import input_pipeline  # pylint: disable=import-outside-toplevel
    out = []
    for i in tqdm.trange(0, len(images), batch_size, desc='embed', leave=False,
                         disable=len(images) <= batch_size):
      chunk = np.stack([input_pipeline.preprocess(img, self.config.data, train=False)
                        for img in images[i:i + batch_size]])
      size = min(batch_size, 1 << (len(chunk) - 1).bit_length())
      padded = np.concatenate([chunk, np.zeros((size - len(chunk),) + chunk.shape[1:],
                                               chunk.dtype)])
      out.append(self.encode(padded, stage)[:len(chunk)])
    return np.concatenate(out)

  # Whole splits.

  def split_features(self, split, stage=_DEVISE):
    """(features [N, 512], labels [N]) of every image of `split`, cached in the workdir."""
    stage = self._features_of.get(stage, stage)  # Stage 1's features when shared.
    step = self.steps[stage]
    cached = artefacts.load_features(self.workdir, stage, step, split)
    if cached is not None:
      return cached
    from devise_jax import input_pipeline  # pylint: disable=import-outside-toplevel
    apply_vars = self._encoder_vars(stage)
    labels, features = [], []
    dcfg, batch_size = self.config.data, self.config.eval.batch_size
    total = input_pipeline.num_examples(dcfg, split)
    for batch in tqdm.tqdm(input_pipeline.eval_iterator(dcfg, split=split,
                                                        batch_size=batch_size),
                           total=-(-total // batch_size), desc=f'features {split}',
                           dynamic_ncols=True, leave=False):
      mask = batch['mask']
      features.append(np.asarray(self._jit_encode(apply_vars, batch['image']))[mask])
      labels.append(batch['label'][mask])
    features, labels = np.concatenate(features), np.concatenate(labels)
    artefacts.save_features(self.workdir, stage, step, split, features, labels)
    return features, labels

  def outputs(self, split=None):
    """`Outputs` of every image of `split` (default: the config's eval split)."""
    split = split or self.config.data.eval_split
    features, labels = self.split_features(split, _DEVISE)
    features1 = self.split_features(split, _CLASSIFIER)[0]  # The same when shared.
    return Outputs(labels=labels, features=features, logits=self.logits(features1),
                   devise=self.devise(features),
                   siamese=self.siamese(features) if self.has(_SIAMESE) else None)

  def fingerprint(self, stage):
    return artefacts.fingerprint(self.variables[stage]['params'])


class _Restored(collections.abc.Mapping):
  """Stage -> variables of the checkpoint at `steps[stage]`, each restored on first use
  (a search of words restores none)."""

  def __init__(self, workdir, steps):
    self._workdir, self._steps, self._restored = workdir, dict(steps), {}

  def __getitem__(self, stage):
    if stage not in self._restored:
      if stage not in self._steps:
        raise KeyError(stage)
      self._restored[stage] = checkpoint.load_variables(
          self._workdir, stage, self._steps[stage])[0]
    return self._restored[stage]

  def __contains__(self, stage):  # Mapping's would restore the stage to answer.
    return stage in self._steps

  def __iter__(self):
    return iter(self._steps)

  def __len__(self):
    return len(self._steps)


def _dense(params, x):
  return x @ params['kernel'] + params['bias']


def _project_unit(params, features):
  v = devise.project({'projection': params}, features)
  return v / jnp.sqrt(jnp.sum(v * v, axis=-1, keepdims=True) + 1e-12)
