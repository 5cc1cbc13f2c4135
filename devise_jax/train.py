"""Training: one loop for every stage, a pure jitted step sharded over a data mesh.

Stages (each with its own config block and Orbax checkpoints in the workdir):
  stage1: encoder + softmax classifier on the seen classes;
  stage2: DeViSE projection onto the seen classes' word vectors, started from stage1;
  stage3: Siamese head on the frozen encoder's features (devise_jax/siamese.py).

Data parallelism uses `jax.jit` with shardings: the batch is split over a 1-D mesh of
every device (axis 'data'), params and optimiser state are replicated, and XLA inserts
the gradient all-reduce (BatchNorm statistics are computed over the global batch, since
the step is written for the global batch).
"""

import collections
import dataclasses
import os
import time
from typing import Any, Callable

import jax
import flax.linen as nn
import jax.numpy as jnp
import numpy as np
import optax
from flax.training import train_state
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
import tqdm

from devise_jax import checkpoint
from devise_jax import config_checks
from devise_jax import input_pipeline
from devise_jax import losses
from devise_jax import metric_writer
from devise_jax import rollback
from devise_jax import run as run_lib
from devise_jax import siamese
from devise_jax import vocabulary
from devise_jax import wordvec
from devise_jax.models import devise


@dataclasses.dataclass(frozen=True)
class Stage:
  """What a stage is, said once; `train_stage` reads nothing else about it."""
  init_from: str | None  # The stage whose params this one starts from (None: fresh).
  model: str  # 'devise' (encoder + classifier + projection) or 'siamese' (the head).
  loss: str  # 'softmax' (stage 1), 'devise' (config.stage2.loss) or 'siamese'.
  # Top-level param subtree -> 'train', 'finetune' (at encoder_lr_scale) or 'freeze'.
  trainable: Callable[[Any], dict]
  # The stage whose frozen encoder's cached features this stage trains on; None: it
  # trains on augmented images (whenever the encoder itself trains).
  features_from: str | None = None


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
                    lambda c: 'stage2'),
}
STAGES = tuple(STAGE_TABLE)


class TrainState(train_state.TrainState):
  batch_stats: Any = None


class TrainingError(RuntimeError):
  """Training cannot go on (e.g. a NaN loss)."""


# The config keys the label space is built from.
LABEL_SPACE_KEYS = ('word_vectors', 'data.synsets')


def prepare_workdir(config, workdir):
  """Fixes the run's classes, split and label space in the workdir (once).

  A new workdir is claimed only once everything is known to work: the config's values,
  the classes and split, the word vectors of every class and the readable train split;
  an existing one must hold a run (`checkpoint.workdir_state`) with a compatible config.
  """
  config_checks.check(config)
  state = checkpoint.workdir_state(workdir)
  if jax.process_count() > 1:  # Every process looks before any writes (same answer).
    multihost_utils.sync_global_devices('devise_jax.prepare_workdir')
  if state == 'run':
    # Until a stage has trained against the label space (stage 1 and its features
    # never see it), the word vectors may change: a label-space variant can start
    # from a finished stage 1 (`devise-jax protocol --reuse_from`).
    label_free = not any(STAGE_TABLE[s].loss == 'devise'
                         for s in checkpoint.trained_stages(workdir))
    checkpoint.save_config(workdir, config, LABEL_SPACE_KEYS if label_free else ())
    names, seen, unseen, label_space = checkpoint.load_classes(workdir)
    if label_free:
      new = vocabulary.label_space(config, names)
      if not np.array_equal(new.vectors, label_space.vectors):
        checkpoint.save_classes(workdir, names, seen, unseen, new)
        label_space = new
    return names, seen, unseen, label_space
  names = input_pipeline.class_names(config.data)
  seen, unseen = input_pipeline.split_classes(config.data, config.seed)
  label_space = vocabulary.label_space(config, names)
  input_pipeline.num_examples(config.data, config.data.train_split)
  checkpoint.claim(workdir, config, names, seen, unseen, label_space)
  return names, seen, unseen, label_space


def learning_rate_schedule(stage_config):
  """step -> learning rate: linear warm-up, then cosine decay to 0 at num_steps."""
  return optax.warmup_cosine_decay_schedule(
      0.0, stage_config.learning_rate, stage_config.warmup_steps,
      max(stage_config.num_steps, stage_config.warmup_steps + 1))


def make_optimizer(stage, stage_config, params):
  schedule = learning_rate_schedule(stage_config)
  decay_mask = lambda tree: jax.tree_util.tree_map(lambda p: p.ndim > 1, tree)
  optimizers = {
      'adamw': lambda lr: optax.adamw(lr, weight_decay=stage_config.weight_decay,
                                      mask=decay_mask),
      # Plain SGD does not amplify float noise in near-zero gradients as Adam's
      # normalisation does, so runs on different device counts stay within ~1e-6.
      'sgd': lambda lr: optax.chain(
          optax.add_decayed_weights(stage_config.weight_decay, decay_mask),
          optax.sgd(lr, momentum=0.9, nesterov=True)),
  }
  if stage_config.optimizer not in optimizers:
    raise ValueError(f'config.{stage}.optimizer must be one of {sorted(optimizers)}, '
                     f'got {stage_config.optimizer!r}')
  make = optimizers[stage_config.optimizer]
  scale = getattr(stage_config, 'encoder_lr_scale', 0.0)
  transforms = {'train': make(schedule), 'freeze': optax.set_to_zero(),
                'finetune': make(lambda step: scale * schedule(step))}
  labels = STAGE_TABLE[stage].trainable(stage_config)
  return optax.multi_transform(transforms, {k: labels[k] for k in params})


def create_train_state(config, model, stage, rng):
  size = config.data.image_size
  dummy = (jnp.zeros((1, siamese.FEATURE_DIM)) if STAGE_TABLE[stage].model == 'siamese'
           else jnp.zeros((1, size, size, 3), jnp.float32))
  variables = jax.jit(model.init, static_argnames='train')({'params': rng}, dummy,
                                                           train=False)
  params = variables['params']
  tx = make_optimizer(stage, config[stage], params)
  return TrainState.create(apply_fn=model.apply, params=params, tx=tx,
                           batch_stats=variables.get('batch_stats'))


def make_train_step(model, loss_kind, stage_config, label_vectors, seen_lookup,
                    bn_train=True, on_features=False):
  """Returns the pure step `(state, batch, rng) -> (state, metrics)`.

  `loss_kind` is 'softmax' (the classifier's logits) or 'devise' (the projection's
  embedding, with `stage_config.loss`). `label_vectors` [S, D] are the seen classes'
  unit word vectors and `seen_lookup` maps a dataset label id to its index among the
  seen classes (-1 for unseen); rows of `label_vectors` past the seen classes are
  extra negatives of the DeViSE loss. `bn_train` updates BatchNorm statistics (a
  trained encoder) or keeps them (a frozen one). `on_features`: batches hold a frozen
  encoder's `features` instead of images, and only the projection is applied.
  """
  if loss_kind == 'devise' and stage_config.loss not in losses.DEVISE_LOSSES:
    raise ValueError(f'--config.stage2.loss={stage_config.loss!r}: must be one of '
                     f'{sorted(losses.DEVISE_LOSSES)}')
  label_vectors = jnp.asarray(label_vectors)
  seen_lookup = jnp.asarray(seen_lookup)

  num_seen = int(np.sum(np.asarray(seen_lookup) >= 0))

  def apply(params, state, batch, rng):
    if on_features:  # A frozen encoder: only the heads (no dropout) see its features.
      f, out = batch['features'], {}
      if 'projection' in params:
        out['embedding'] = devise.project(params, f)
      if 'classifier' in params:
        out['logits'] = f @ params['classifier']['kernel'] + params['classifier']['bias']
      return out, {}
    variables = {'params': params}
    if state.batch_stats is not None:
      variables['batch_stats'] = state.batch_stats
    return model.apply(
        variables, batch['image'], train=bn_train, rngs={'dropout': rng},
        mutable=['batch_stats'] if (bn_train and state.batch_stats is not None) else [])

  def loss_fn(params, state, batch, rng):
    out, updates = apply(params, state, batch, rng)
    labels = seen_lookup[batch['label']]
    if loss_kind == 'softmax':
      per_example = losses.softmax_cross_entropy(out['logits'], labels)
      accuracy = jnp.mean(jnp.argmax(out['logits'], -1) == labels)
    else:
      loss = losses.DEVISE_LOSSES[stage_config.loss]
      kwargs = {'margin': stage_config.margin} if stage_config.loss == 'hinge_rank' else {}
      per_example = loss(out['embedding'], label_vectors, labels, **kwargs)
      weight = stage_config.get('image_ranking_weight', 0.0)
      if weight:  # Images ranked for each label word too (words -> images).
        per_example += weight * losses.label_to_image_hinge(
            out['embedding'], label_vectors[:num_seen], labels, stage_config.margin)
      scores = out['embedding'] @ label_vectors[:num_seen].T
      accuracy = jnp.mean(jnp.argmax(scores, -1) == labels)
    return jnp.mean(per_example), (updates.get('batch_stats'), accuracy)

  def train_step(state, batch, rng):
    rng = jax.random.fold_in(rng, state.step)
    grad_fn = jax.value_and_grad(loss_fn, has_aux=True)
    (loss, (batch_stats, accuracy)), grads = grad_fn(state.params, state, batch, rng)
    new_state = state.apply_gradients(grads=grads)
    if batch_stats is not None:
      new_state = new_state.replace(batch_stats=batch_stats)
    metrics = dict(loss=loss, accuracy=accuracy, l2_grads=optax.global_norm(grads),
                   l2_params=optax.global_norm(new_state.params))
    return new_state, metrics

  return train_step


def data_mesh():
  # Mesh() gives 'auto' axes: XLA's partitioner places every intermediate.
  return Mesh(np.asarray(jax.devices()), ('data',))


def multi_step(step, n):
  """`n` steps of `step` as one function `(state, batches, rng) -> (state, metrics)` of
  batches stacked [n, ...]; the metrics are the last step's.

  The steps are written out one after the other (unrolled): XLA:CPU then overlaps the
  end of one step (the optimiser's many small updates) with the start of the next, and
  the call is dispatched once: 1.13-1.22x the throughput of single calls for stage 1 on
  a 2-core CPU (experiments/bench/README.md). A `lax.scan` loop (XLA while loop) was
  6x slower there.
  """
  def run(state, batches, rng):
    for i in range(n):
      state, metrics = step(state, jax.tree_util.tree_map(lambda b: b[i], batches), rng)
    return state, metrics
  return run


def jit_step(step, mesh, stacked=False):
  """`step` jitted as training runs it: state and rng replicated over `mesh`, the batch
  (`stacked`: each of the batches [n, ...]) split over its 'data' axis, the state
  donated (updated in place)."""
  replicated = NamedSharding(mesh, P())
  sharded = NamedSharding(mesh, P(None, 'data') if stacked else P('data'))
  return jax.jit(step, in_shardings=(replicated, sharded, replicated),
                 out_shardings=(replicated, replicated), donate_argnums=0)


def shard_batch(batch, sharding):
  return {k: jax.make_array_from_process_local_data(sharding, v) for k, v in batch.items()}


def calls(start, stop, size, boundaries=()):
  """(first step, steps) of each compiled call from step `start` to `stop`: `size`
  steps, aligned to multiples of `size`, and cut so that every multiple of each of
  `boundaries` (where the loop logs and saves) ends a call. A function of the step
  numbers alone, so a resumed run makes the same calls as an uninterrupted one."""
  step = start
  while step < stop:
    end = min([stop, (step // size + 1) * size] + [(step // b + 1) * b for b in boundaries])
    yield step, end - step
    step = end


def on_device(batches, sharding, sizes, ahead=2):
  """Yields (host batches, device batches) stacked [n, ...] for each n in `sizes`, each
  copy to the devices started `ahead` calls before the call that takes it."""
  queue = collections.deque()
  for n in sizes:
    group = [next(batches) for _ in range(n)]
    host = {k: np.stack([b[k] for b in group]) for k in group[0]}
    queue.append((host, shard_batch(host, sharding)))
    if len(queue) > ahead:
      yield queue.popleft()
  yield from queue


def _initial_state(config, workdir, stage, model, mngr, log):
  """Resume order: this stage's own checkpoint, then the stage it starts from, then
  scratch."""
  state = create_train_state(config, model, stage, jax.random.key(config.seed))
  restored = checkpoint.restore_latest(mngr, state, log)
  if restored is not None:
    log(f'{stage}: resuming from step {int(restored.step)}')
    return restored
  previous = STAGE_TABLE[stage].init_from
  if previous:
    variables, step = checkpoint.load_variables(workdir, previous)
    log(f'{stage}: starting from {previous} step {step}')
    params = dict(variables['params'])
    if _centered(config, stage):  # From the features the stage starts from.
      features, labels = run_lib.Run.load(workdir, stages=(previous,)).split_features(
          config.data.train_split, previous)
      _, seen, _, _ = checkpoint.load_classes(workdir)
      params['projection'] = dict(params['projection'],
                                  center=feature_center(features, labels, seen))
    state = state.replace(params=params, batch_stats=variables.get('batch_stats'))
  return state


def _model(config, stage, num_seen, embed_dim):
  spec = STAGE_TABLE[stage]
  if spec.model == 'siamese':
    return siamese.create_head(config)
  frozen = spec.trainable(config[stage])['encoder'] == 'freeze'
  return devise.create_model(config.model, num_seen, embed_dim, freeze_encoder=frozen,
                             center_features=_centered(config, stage))


def _centered(config, stage):
  return STAGE_TABLE[stage].loss == 'devise' and config[stage].get('center_features', False)


def feature_center(features, labels, class_ids):
  """The projection's fixed `center`: the mean feature of the images of `class_ids`."""
  return np.asarray(features[np.isin(labels, class_ids)].mean(0), np.float32)


def _step_and_batches(config, workdir, stage, model, classes, start):
  """The stage's pure train step and its batch iterator from step `start`."""
  spec, stage_config = STAGE_TABLE[stage], config[stage]
  names, seen, _, label_space = classes
  seed = config.seed + STAGES.index(stage)
  source = spec.features_from(stage_config) if spec.features_from else None
  if source:
    stages = run_lib.REQUIRED_STAGES if source == 'stage2' else (source,)
    features, labels = run_lib.Run.load(workdir, stages=stages).split_features(
        config.data.train_split, source)
  if spec.model == 'siamese':
    batches = siamese.pk_batches(
        features, labels, seen, batch_size=stage_config.batch_size,
        classes_per_batch=stage_config.classes_per_batch, seed=seed, start_step=start)
    return siamese.make_train_step(model, stage_config), batches
  bn_train = spec.trainable(stage_config)['encoder'] != 'freeze'
  step = make_train_step(model, spec.loss, stage_config,
                         *_targets(config, stage, names, seen, label_space.vectors),
                         bn_train, on_features=source is not None)
  if source:
    batches = input_pipeline.feature_batches(features, labels, seen,
                                             batch_size=stage_config.batch_size,
                                             seed=seed, start_step=start)
  else:
    batches = input_pipeline.train_iterator(
        config.data, batch_size=stage_config.batch_size, seed=seed, class_ids=seen,
        start_step=start)
  return step, batches


def fit_on_features(config, stage, features, labels, class_ids, label_vectors, names):
  """The params of a fresh head trained on cached features of `class_ids` only, with
  the stage's own recipe (optimizer, steps, batch, loss): stage1 gives
  {'classifier'}, stage2 {'projection'}. Calibration folds use it."""
  spec, stage_config = STAGE_TABLE[stage], config[stage]
  head, width = (('classifier', len(class_ids)) if spec.loss == 'softmax' else
                 ('projection', label_vectors.shape[1]))
  rng = jax.random.fold_in(jax.random.key(config.seed), STAGES.index(stage))
  params = {head: nn.Dense(width).init(rng, jnp.zeros((1, features.shape[1])))['params']}
  if _centered(config, stage):
    params[head] = dict(params[head], center=feature_center(features, labels, class_ids))
  state = TrainState.create(apply_fn=None, params=params,
                            tx=make_optimizer(stage, stage_config, params))
  step = jax.jit(make_train_step(
      None, spec.loss, stage_config,
      *_targets(config, stage, names, class_ids, label_vectors), bn_train=False,
      on_features=True), donate_argnums=0)
  batches = input_pipeline.feature_batches(features, labels, class_ids,
                                           batch_size=stage_config.batch_size,
                                           seed=config.seed + STAGES.index(stage))
  for _ in range(stage_config.num_steps):
    state, _ = step(state, next(batches), rng)
  return jax.device_get(state.params)


def _targets(config, stage, names, class_ids, label_vectors):
  """(target vectors, label id -> target row lookup) of a stage trained on `class_ids`:
  their unit vectors, then any vocabulary negatives of the DeViSE loss."""
  lookup = np.full(len(names), -1, np.int32)
  lookup[class_ids] = np.arange(len(class_ids))
  targets = label_vectors[class_ids]
  stage_config = config[stage]
  if STAGE_TABLE[stage].loss == 'devise' and stage_config.get('vocab_negatives', 0):
    targets = np.concatenate([targets, vocabulary_negatives(
        config, [names[i] for i in class_ids], stage_config.vocab_negatives)])
  return targets, lookup


def vocabulary_negatives(config, seen_names, count):
  """Unit vectors of the `count` most frequent alphabetic words of the word vectors
  (3+ letters), leaving out the words of the seen class names (they are targets)."""
  wv = config.word_vectors
  kv = wordvec.load_keyedvectors(wv.source, wv.format)
  own = {w for n in seen_names for w in wordvec.name_words(n)}
  words = [w for w in kv.index_to_key if len(w) >= 3 and w.isalpha() and w not in own]
  vectors = np.asarray(kv.get_normed_vectors())[[kv.key_to_index[w] for w in words[:count]]]
  return vectors.astype(np.float32)


def train_stage(config, workdir, stage, log=print, after_step=None):
  """Trains one stage to `config[stage].num_steps`, resuming where the workdir left off.

  `after_step(step)` is called after each step (tests use it to interrupt a run).
  """
  classes = prepare_workdir(config, workdir)
  stage_config = config[stage]
  if stage_config.batch_size % jax.device_count():
    raise ValueError(f'config.{stage}.batch_size={stage_config.batch_size} does not '
                     f'divide over {jax.device_count()} devices')
  model = _model(config, stage, len(classes[1]), classes[3].dim)
  mngr = checkpoint.manager(workdir, stage, config.keep_checkpoints)
  state = _initial_state(config, workdir, stage, model, mngr, log)
  start = int(state.step)
  if start >= stage_config.num_steps:
    log(f'{stage}: already trained ({start} steps)')
    mngr.close()
    return state

  step, batches = _step_and_batches(config, workdir, stage, model, classes, start)
  mesh = data_mesh()
  loop = Loop(stage=stage, num_steps=stage_config.num_steps,
              batch_size=stage_config.batch_size, log_every=config.log_every,
              checkpoint_every=config.checkpoint_every, workdir=workdir, mngr=mngr,
              mesh=mesh, steps_per_call=config.get('steps_per_call', 1),
              after_step=after_step,
              learning_rate=learning_rate_schedule(stage_config), class_names=classes[0],
              writer=metric_writer.MetricWriter(workdir, stage))
  rng = jax.random.fold_in(jax.random.key(config.seed), STAGES.index(stage) + 1)
  try:
    return loop.run(jax.device_put(state, NamedSharding(mesh, P())), step, batches, rng)
  finally:  # Even on an exception, let an in-flight save finish: it is a good step.
    mngr.wait_until_finished()
    mngr.close()
    loop.writer.close()


@dataclasses.dataclass
class Loop:
  """How one stage steps, logs and checkpoints."""
  stage: str
  num_steps: int
  batch_size: int
  log_every: int
  checkpoint_every: int
  workdir: str
  mngr: Any  # The stage's Orbax CheckpointManager.
  mesh: Any  # Batches are split over its 'data' axis.
  steps_per_call: int = 1  # Steps per compiled call (`multi_step`).
  after_step: Callable[[int], None] | None = None
  learning_rate: Callable[[int], Any] | None = None  # The schedule, logged at log points.
  class_names: tuple = ()  # Label id -> name (TensorBoard's input images).
  writer: Any = None  # metric_writer.MetricWriter: metrics.jsonl and event files.

  def run(self, state, step, batches, rng):
    """Steps from `state.step` to `num_steps` with the pure `step`; returns the final
    state."""
    start = int(state.step)
    schedule = list(calls(start, self.num_steps, self.steps_per_call,
                          (self.log_every, self.checkpoint_every)))
    compiled = {}  # Steps per call -> the jitted `multi_step`.
    sharding = NamedSharding(self.mesh, P(None, 'data'))
    bar = tqdm.tqdm(total=self.num_steps, initial=start, desc=self.stage,
                    dynamic_ncols=True)
    tick, images = time.perf_counter(), 0
    for (first, n), (host, batch) in zip(
        schedule, on_device(batches, sharding, [n for _, n in schedule])):
      if first == start and 'image' in host:  # Host data: no device sync.
        self.writer.write_inputs(first, host['image'][0], host['label'][0],
                                 self.class_names)
      if n not in compiled:
        compiled[n] = jit_step(multi_step(step, n), self.mesh, stacked=True)
      state, metrics = compiled[n](state, batch, rng)
      bar.update(n)
      images += n * self.batch_size
      done = first + n
      if done % self.log_every == 0 or done == self.num_steps:
        metrics = self._log(done, metrics, images / (time.perf_counter() - tick))
        bar.set_postfix(loss=f"{metrics['loss']:.4f}",
                        img_s=f"{metrics['images_per_sec']:.0f}")
        tick, images = time.perf_counter(), 0
      if done % self.checkpoint_every == 0 or done == self.num_steps:
        self._save(done, state, metrics)
      if self.after_step:
        for step_done in range(first + 1, done + 1):
          self.after_step(step_done)
    bar.close()
    return state

  def _log(self, done, metrics, images_per_sec):
    metrics = {k: float(v) for k, v in jax.device_get(metrics).items()}
    if not all(np.isfinite(v) for v in metrics.values()):
      self.mngr.wait_until_finished()
      raise TrainingError(f'{self.stage}: non-finite metrics at step {done} ({metrics}); '
                          f'the last good checkpoint is step {self.mngr.latest_step()}')
    metrics['images_per_sec'] = images_per_sec
    if self.learning_rate is not None:  # The rate of the step just taken (done - 1).
      metrics['learning_rate'] = float(self.learning_rate(done - 1))
    self.writer.write_scalars(done, metrics)
    return metrics

  def _save(self, done, state, metrics):
    if not np.isfinite(float(metrics['l2_params'])):
      raise TrainingError(f'{self.stage}: non-finite params at step {done}; not saved')
    self.mngr.save(done, args=checkpoint.ocp.args.StandardSave(state))
    checkpoint.record_fingerprint(self.workdir, self.stage, done, state.params)


def train(config, workdir, stages=STAGES, log=print):
  """Trains `stages` in order; returns and logs the final params' fingerprint."""
  stages = list(stages)
  if not stages:
    raise ValueError(f'no stages to train; expected some of {list(STAGES)}')
  unknown = [s for s in stages if s not in STAGE_TABLE]
  if unknown:
    raise ValueError(f'unknown stages {unknown}; expected some of {list(STAGES)}')
  config_checks.check(config, stages, jax.device_count())
  for stage in stages:  # A stage's failed start leaves the workdir as it was.
    with rollback.StartGuard(workdir) as guard:
      state = train_stage(config, workdir, stage, log, after_step=guard.commit)
  value = checkpoint.fingerprint(state.params)
  log(f'params fingerprint: {value}')
  return value
