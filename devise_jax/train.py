"""Training: the stages of the stage table (devise_jax/stages.py), each run by one loop.

Each stage has its own config block and Orbax checkpoints in the workdir; what it
starts from, trains, freezes and reads is said once, in the stage table.

  train_step.py  the pure step `(state, batch, rng) -> (state, metrics)` and optimiser;
  train_loop.py  the loop: a data mesh, compiled calls, logs and checkpoints;
  refit.py       heads refitted on cached features, and a stage's target vectors;
  this module    the workdir's start, each stage's state and batches, `train`.
"""

import contextlib

import jax
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import NamedSharding, PartitionSpec as P

from devise_jax import artefacts
from devise_jax import checkpoint
from devise_jax import config_checks
from devise_jax import input_pipeline
from devise_jax import metric_writer
from devise_jax import refit
from devise_jax import rollback
from devise_jax import run as run_lib
from devise_jax import siamese
from devise_jax import stages as stages_lib
from devise_jax import train_loop
from devise_jax import train_step
from devise_jax import vocabulary
from devise_jax import workdir_lock
from devise_jax.models import devise

# Re-exported: the CLI, the benchmarks, scripts and tests find these here.
# pylint: disable=unused-import
from devise_jax.refit import fit_on_features, vocabulary_negatives
from devise_jax.stages import STAGE_TABLE, STAGES
from devise_jax.train_loop import (TrainingError, calls, data_mesh, jit_step, multi_step,
                                   shard_batch)
from devise_jax.train_step import create_train_state, make_train_step
# pylint: enable=unused-import

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
    label_free = not any(stages_lib.STAGE_TABLE[s].loss == 'devise'
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


def _initial_state(config, workdir, stage, model, mngr, log):
  """Resume order: this stage's own checkpoint, then the stage it starts from, then
  scratch."""
  state = train_step.create_train_state(config, model, stage, jax.random.key(config.seed))
  restored = checkpoint.restore_latest(mngr, state, log)
  if restored is not None:
    log(f'{stage}: resuming from step {int(restored.step)}')
    return restored
  previous = stages_lib.STAGE_TABLE[stage].init_from
  if previous:
    variables, step = checkpoint.load_variables(workdir, previous)
    log(f'{stage}: starting from {previous} step {step}')
    params = dict(variables['params'])
    if stages_lib.centered(config, stage):  # From the features the stage starts from.
      features, labels = run_lib.Run.load(workdir, stages=(previous,)).split_features(
          config.data.train_split, previous)
      _, seen, _, _ = checkpoint.load_classes(workdir)
      params['projection'] = dict(params['projection'],
                                  center=refit.feature_center(features, labels, seen))
    state = state.replace(params=params, batch_stats=variables.get('batch_stats'))
  return state


def _model(config, stage, num_seen, embed_dim):
  if stages_lib.STAGE_TABLE[stage].model == 'siamese':
    return siamese.create_head(config)
  return devise.create_model(config.model, num_seen, embed_dim,
                             freeze_encoder=stages_lib.encoder_frozen(config, stage),
                             center_features=stages_lib.centered(config, stage))


def _step_and_batches(config, workdir, stage, model, classes, start):
  """The stage's pure train step and its batch iterator from step `start`."""
  spec, stage_config = stages_lib.STAGE_TABLE[stage], config[stage]
  names, seen, _, label_space = classes
  seed = config.seed + stages_lib.STAGES.index(stage)
  source = spec.features_from(stage_config) if spec.features_from else None
  if source:
    features, labels = run_lib.Run.load(
        workdir, stages=stages_lib.lineage(source)).split_features(
            config.data.train_split, source)
  if spec.model == 'siamese':
    batches = siamese.pk_batches(
        features, labels, seen, batch_size=stage_config.batch_size,
        classes_per_batch=stage_config.classes_per_batch, seed=seed, start_step=start)
    return siamese.make_train_step(model, stage_config), batches
  step = train_step.make_train_step(
      model, spec.loss, stage_config,
      *refit.targets(config, stage, names, seen, label_space.vectors),
      not stages_lib.encoder_frozen(config, stage), on_features=source is not None)
  if source:
    batches = input_pipeline.feature_batches(features, labels, seen,
                                             batch_size=stage_config.batch_size,
                                             seed=seed, start_step=start)
  else:
    batches = input_pipeline.train_iterator(
        config.data, batch_size=stage_config.batch_size, seed=seed, class_ids=seen,
        start_step=start)
  return step, batches


def writing(workdir):
  """The workdir's lock (`workdir_lock.hold`), taken by process 0 of a run alone."""
  return workdir_lock.hold(workdir) if jax.process_index() == 0 else contextlib.nullcontext()


def train_stage(config, workdir, stage, log=print, after_step=None):
  """Trains one stage to `config[stage].num_steps`, resuming where the workdir left off
  (holding the workdir's lock: `writing`).

  `after_step(step)` is called after each step (tests use it to interrupt a run).
  """
  with writing(workdir):
    return _train_stage(config, workdir, stage, log, after_step)


def _train_stage(config, workdir, stage, log, after_step):
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
  mesh = train_loop.data_mesh()
  loop = train_loop.Loop(
      stage=stage, num_steps=stage_config.num_steps, batch_size=stage_config.batch_size,
      log_every=config.log_every, checkpoint_every=config.checkpoint_every,
      workdir=workdir, mngr=mngr, mesh=mesh, steps_per_call=config.get('steps_per_call', 1),
      after_step=after_step,
      learning_rate=train_step.learning_rate_schedule(stage_config),
      class_names=classes[0], writer=metric_writer.MetricWriter(workdir, stage))
  rng = jax.random.fold_in(jax.random.key(config.seed), stages_lib.STAGES.index(stage) + 1)
  try:
    return loop.run(jax.device_put(state, NamedSharding(mesh, P())), step, batches, rng)
  finally:  # Even on an exception, let an in-flight save finish: it is a good step.
    mngr.wait_until_finished()
    mngr.close()
    loop.writer.close()


def train(config, workdir, stages=stages_lib.STAGES, log=print):
  """Trains `stages` in order, holding the workdir's lock (`writing`); returns and logs
  the final params' fingerprint."""
  stages = list(stages)
  if not stages:
    raise ValueError(f'no stages to train; expected some of {list(stages_lib.STAGES)}')
  unknown = [s for s in stages if s not in stages_lib.STAGE_TABLE]
  if unknown:
    raise ValueError(f'unknown stages {unknown}; expected some of {list(stages_lib.STAGES)}')
  config_checks.check(config, stages, jax.device_count())
  with writing(workdir):
    for stage in stages:  # A stage's failed start leaves the workdir as it was.
      with rollback.StartGuard(workdir) as guard:
        state = train_stage(config, workdir, stage, log, after_step=guard.commit)
  value = artefacts.fingerprint(state.params)
  log(f'params fingerprint: {value}')
  return value
