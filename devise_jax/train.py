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
import json
import os
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax.training import train_state
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
import tqdm

from devise_jax import checkpoint
from devise_jax import input_pipeline
from devise_jax import losses
from devise_jax import siamese
from devise_jax import wordvec
from devise_jax.models import devise

STAGES = ('stage1', 'stage2', 'stage3')


class TrainState(train_state.TrainState):
  batch_stats: Any = None


class TrainingError(RuntimeError):
  """Training cannot go on (e.g. a NaN loss)."""


def prepare_workdir(config, workdir):
  """Fixes the run's classes, split and label space in the workdir (once)."""
  os.makedirs(workdir, exist_ok=True)
  checkpoint.save_config(workdir, config)
  if os.path.exists(os.path.join(workdir, 'classes.json')):
    return checkpoint.load_classes(workdir)
  names = input_pipeline.class_names(config.data)
  seen, unseen = input_pipeline.split_classes(config.data, config.seed)
  kv = wordvec.load_keyedvectors(config.word_vectors.source, config.word_vectors.format)
  label_space = wordvec.build_label_space(kv, names, dict(config.word_vectors.overrides))
  checkpoint.save_classes(workdir, names, seen, unseen, label_space)
  return names, seen, unseen, label_space


def param_labels(stage, stage_config):
  """Which optimiser each top-level subtree of the params gets in this stage."""
  if stage == 'stage3':  # The Siamese head has its own params: all trained.
    return collections.defaultdict(lambda: 'train')
  if stage == 'stage1':
    return {'encoder': 'train', 'classifier': 'train', 'projection': 'freeze'}
  encoder = 'finetune' if stage_config.encoder_lr_scale > 0 else 'freeze'
  return {'encoder': encoder, 'classifier': 'freeze', 'projection': 'train'}


def make_optimizer(stage, stage_config, params):
  schedule = optax.warmup_cosine_decay_schedule(
      0.0, stage_config.learning_rate, stage_config.warmup_steps,
      max(stage_config.num_steps, stage_config.warmup_steps + 1))
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
  labels = param_labels(stage, stage_config)
  return optax.multi_transform(transforms, {k: labels[k] for k in params})


def create_train_state(config, model, stage, rng):
  size = config.data.image_size
  dummy = (jnp.zeros((1, siamese.FEATURE_DIM)) if stage == 'stage3' else
           jnp.zeros((1, size, size, 3), jnp.float32))
  variables = jax.jit(model.init, static_argnames='train')({'params': rng}, dummy,
                                                           train=False)
  params = variables['params']
  tx = make_optimizer(stage, config[stage], params)
  return TrainState.create(apply_fn=model.apply, params=params, tx=tx,
                           batch_stats=variables.get('batch_stats'))


def make_train_step(model, stage, stage_config, label_vectors, seen_lookup):
  """Returns the pure step `(state, batch, rng) -> (state, metrics)`.

  `label_vectors` [S, D] are the seen classes' unit word vectors and `seen_lookup`
  maps a dataset label id to its index among the seen classes (-1 for unseen).
  """
  label_vectors = jnp.asarray(label_vectors)
  seen_lookup = jnp.asarray(seen_lookup)
  bn_train = stage == 'stage1' or stage_config.encoder_lr_scale > 0

  def loss_fn(params, state, batch, rng):
    variables = {'params': params}
    if state.batch_stats is not None:
      variables['batch_stats'] = state.batch_stats
    out, updates = model.apply(
        variables, batch['image'], train=bn_train, rngs={'dropout': rng},
        mutable=['batch_stats'] if (bn_train and state.batch_stats is not None) else [])
    labels = seen_lookup[batch['label']]
    if stage == 'stage1':
      per_example = losses.softmax_cross_entropy(out['logits'], labels)
      accuracy = jnp.mean(jnp.argmax(out['logits'], -1) == labels)
    else:
      loss = losses.DEVISE_LOSSES[stage_config.loss]
      kwargs = {'margin': stage_config.margin} if stage_config.loss == 'hinge_rank' else {}
      per_example = loss(out['embedding'], label_vectors, labels, **kwargs)
      scores = out['embedding'] @ label_vectors.T
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


def shard_batch(batch, sharding):
  return {k: jax.make_array_from_process_local_data(sharding, v) for k, v in batch.items()}


def _initial_state(config, workdir, stage, model, mngr, log):
  """Resume order: this stage's own checkpoint, then the previous stage, then scratch."""
  state = create_train_state(config, model, stage, jax.random.key(config.seed))
  restored = checkpoint.restore_latest(mngr, state, log)
  if restored is not None:
    log(f'{stage}: resuming from step {int(restored.step)}')
    return restored
  previous = {'stage2': 'stage1'}.get(stage)  # Stage 3 has params of its own.
  if previous:
    variables, step = checkpoint.load_variables(workdir, previous)
    log(f'{stage}: starting from {previous} step {step}')
    state = state.replace(params=variables['params'],
                          batch_stats=variables.get('batch_stats'))
  return state


def train_stage(config, workdir, stage, log=print, after_step=None):
  """Trains one stage to `config[stage].num_steps`, resuming where the workdir left off.

  `after_step(step)` is called after each step (tests use it to interrupt a run).
  """
  names, seen, _, label_space = prepare_workdir(config, workdir)
  stage_config = config[stage]
  batch_size = stage_config.batch_size
  if batch_size % jax.device_count():
    raise ValueError(f'config.{stage}.batch_size={batch_size} does not divide over '
                     f'{jax.device_count()} devices')
  if stage == 'stage3':
    model = siamese.create_head(config)
  else:
    model = devise.create_model(config.model, len(seen), label_space.dim,
                                freeze_encoder=stage == 'stage2'
                                and stage_config.encoder_lr_scale == 0)
  mngr = checkpoint.manager(workdir, stage, config.keep_checkpoints)
  state = _initial_state(config, workdir, stage, model, mngr, log)
  start = int(state.step)
  if start >= stage_config.num_steps:
    log(f'{stage}: already trained ({start} steps)')
    mngr.close()
    return state

  mesh = data_mesh()
  replicated, sharded = NamedSharding(mesh, P()), NamedSharding(mesh, P('data'))
  seed = config.seed + STAGES.index(stage)
  if stage == 'stage3':
    step = siamese.make_train_step(model, stage_config)
    features, labels = siamese.cached_features(config, workdir, config.data.train_split)
    batches = siamese.pk_batches(
        features, labels, seen, batch_size=batch_size,
        classes_per_batch=stage_config.classes_per_batch, seed=seed, start_step=start)
  else:
    seen_lookup = np.full(len(names), -1, np.int32)
    seen_lookup[seen] = np.arange(len(seen))
    step = make_train_step(model, stage, stage_config, label_space.vectors[seen],
                           seen_lookup)
    batches = input_pipeline.train_iterator(config.data, batch_size=batch_size, seed=seed,
                                            class_ids=seen, start_step=start)
  step_fn = jax.jit(step, in_shardings=(replicated, sharded, replicated),
                    out_shardings=(replicated, replicated), donate_argnums=0)
  state = jax.device_put(state, replicated)
  rng = jax.random.fold_in(jax.random.key(config.seed), STAGES.index(stage) + 1)

  try:
    state = _loop(config, workdir, stage, state, step_fn, batches, rng, sharded, mngr,
                  after_step)
  finally:  # Even on an exception, let an in-flight save finish: it is a good step.
    mngr.wait_until_finished()
    mngr.close()
  return state


def _loop(config, workdir, stage, state, step_fn, batches, rng, sharded, mngr, after_step):
  """Steps from `state.step` to the stage's num_steps, logging and checkpointing."""
  num_steps, batch_size = config[stage].num_steps, config[stage].batch_size
  start = int(state.step)
  bar = tqdm.tqdm(range(start, num_steps), initial=start,
                  total=num_steps, desc=stage, dynamic_ncols=True)
  tick, images = time.perf_counter(), 0
  for step in bar:
    state, metrics = step_fn(state, shard_batch(next(batches), sharded), rng)
    images += batch_size
    done = step + 1
    if done % config.log_every == 0 or done == num_steps:
      metrics = {k: float(v) for k, v in jax.device_get(metrics).items()}
      if not all(np.isfinite(v) for v in metrics.values()):
        mngr.wait_until_finished()
        raise TrainingError(f'{stage}: non-finite metrics at step {done} ({metrics}); '
                            f'the last good checkpoint is step {mngr.latest_step()}')
      metrics['images_per_sec'] = images / (time.perf_counter() - tick)
      tick, images = time.perf_counter(), 0
      bar.set_postfix(loss=f"{metrics['loss']:.4f}", img_s=f"{metrics['images_per_sec']:.0f}")
      _append_metrics(workdir, dict(stage=stage, step=done, **metrics))
    if done % config.checkpoint_every == 0 or done == num_steps:
      if not np.isfinite(float(metrics['l2_params'])):
        raise TrainingError(f'{stage}: non-finite params at step {done}; not saved')
      mngr.save(done, args=checkpoint.ocp.args.StandardSave(state))
      checkpoint.record_fingerprint(workdir, stage, done, state.params)
    if after_step:
      after_step(done)
  return state


def _append_metrics(workdir, record):
  if jax.process_index() == 0:
    with open(os.path.join(workdir, 'metrics.jsonl'), 'a', encoding='utf-8') as f:
      f.write(json.dumps(record) + '\n')


def train(config, workdir, stages=STAGES, log=print):
  """Trains `stages` in order; returns and logs the final params' fingerprint."""
  for stage in stages:
    state = train_stage(config, workdir, stage, log)
  value = checkpoint.fingerprint(state.params)
  log(f'params fingerprint: {value}')
  return value
