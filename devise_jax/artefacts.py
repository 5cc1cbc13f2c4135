"""The files a run writes beside its checkpoints: caches, galleries, reports, logs.

Layout in a workdir (the run files and checkpoints are devise_jax/checkpoint.py's):
  metrics.jsonl        one JSON object per logged step
  tensorboard/<stage or eval>/   TensorBoard event files (devise_jax/metric_writer.py)
  plots/*.png          evaluation's plots (devise_jax/plots.py)
  fingerprints.jsonl   SHA-256 of the params' bytes at every saved step
  eval.json            the last evaluation
  calibration.json     calibrated-stacking gammas chosen on the training data
  features/<stage>-<step>/<split>.npz   cached encoder features of a split (`file_name`)
  gallery/<name>.npz + <name>.json      a gallery's vectors, logits and image references
Arrays are pickle-free .npz files; every file but the appended .jsonl logs is written
atomically (`files.write_atomic`).
"""

import hashlib
import json
import os
import re

import jax
import numpy as np

from devise_jax import files


def file_name(name):
  """A file-name-safe form of `name` (a split, a gallery), one per name: characters
  other than letters, digits and `_.-` become `_`, and when any did, 8 hex digits of
  the name's SHA-256 follow, so 'train[:90%]' and 'train[90%:]' stay apart."""
  safe = re.sub(r'[^A-Za-z0-9_.-]+', '_', name)
  return safe if safe == name else f'{safe}-{hashlib.sha256(name.encode()).hexdigest()[:8]}'


def _save_npz(path, arrays):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  files.write_atomic(path, lambda f: np.savez(f, **arrays))


def _features_path(workdir, stage, step, split):
  return os.path.join(workdir, 'features', f'{stage}-{step}', file_name(split) + '.npz')


def load_features(workdir, stage, step, split):
  """(features, labels) cached for a split at a stage's step, or None."""
  path = _features_path(workdir, stage, step, split)
  if not os.path.exists(path):
    return None
  with np.load(path, allow_pickle=False) as cached:
    return cached['features'], cached['labels']


def save_features(workdir, stage, step, split, features, labels):
  if jax.process_index() == 0:
    _save_npz(_features_path(workdir, stage, step, split),
              dict(features=features, labels=labels))


def gallery_exists(workdir, name):
  return os.path.exists(os.path.join(workdir, 'gallery', f'{name}.npz'))


def save_gallery(workdir, name, arrays, meta):
  """Writes a gallery's arrays (pickle-free .npz) and its JSON metadata."""
  _save_npz(os.path.join(workdir, 'gallery', f'{name}.npz'), arrays)
  files.write_json(os.path.join(workdir, 'gallery', f'{name}.json'), meta)


def load_gallery(workdir, name):
  """(arrays, meta) of a saved gallery; a clear error when it is missing."""
  if not gallery_exists(workdir, name):
    raise FileNotFoundError(f'no gallery {name!r} in {workdir}: run `devise-jax embed '
                            f'--workdir {workdir}` first')
  with np.load(os.path.join(workdir, 'gallery', f'{name}.npz'), allow_pickle=False) as data:
    arrays = {k: data[k] for k in data.files}
  return arrays, files.read_json(os.path.join(workdir, 'gallery', f'{name}.json'))


def save_eval(workdir, result):
  files.write_json(os.path.join(workdir, 'eval.json'), result)


def load_eval(workdir):
  """The last evaluation (eval.json), or None when the run was never evaluated."""
  path = os.path.join(workdir, 'eval.json')
  return files.read_json(path) if os.path.exists(path) else None


CALIBRATION = 'calibration.json'


def save_calibration(workdir, record):
  files.write_json(os.path.join(workdir, CALIBRATION), record)


def load_calibration(workdir):
  """The calibrated-stacking gammas saved by evaluation, or None."""
  path = os.path.join(workdir, CALIBRATION)
  return files.read_json(path) if os.path.exists(path) else None


def append_metrics(workdir, record):
  """Appends one logged step to metrics.jsonl (process 0 only)."""
  if jax.process_index() == 0:
    with open(os.path.join(workdir, 'metrics.jsonl'), 'a', encoding='utf-8') as f:
      f.write(json.dumps(record) + '\n')


def read_metrics(workdir):
  """The records of metrics.jsonl, in order ([] when there is none)."""
  path = os.path.join(workdir, 'metrics.jsonl')
  if not os.path.exists(path):
    return []
  with open(path, encoding='utf-8') as f:
    return [json.loads(line) for line in f if line.strip()]


def tensorboard_dir(workdir, name):
  """Where the event files of `name` (a stage, or 'eval') go."""
  return os.path.join(workdir, 'tensorboard', name)


def plots_dir(workdir):
  return os.path.join(workdir, 'plots')


def fingerprint(params):
  """SHA-256 (hex) of every param's path, dtype, shape and bytes, in tree order."""
  digest = hashlib.sha256()
  for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]:
    if isinstance(leaf, jax.Array):  # Replicated: any local copy is the whole value.
      leaf = leaf.addressable_data(0)
    array = np.ascontiguousarray(np.asarray(leaf))
    digest.update(f'{jax.tree_util.keystr(path)}|{array.dtype}|{array.shape}|'.encode())
    digest.update(array.tobytes())
  return digest.hexdigest()


def record_fingerprint(workdir, stage, step, params):
  """Appends the params' fingerprint at a saved step to fingerprints.jsonl."""
  value = fingerprint(params)
  if jax.process_index() == 0:
    with open(os.path.join(workdir, 'fingerprints.jsonl'), 'a', encoding='utf-8') as f:
      f.write(json.dumps(dict(stage=stage, step=step, params_sha256=value)) + '\n')
  return value


def read_fingerprints(workdir):
  """{stage: {step: sha256}} from fingerprints.jsonl ({} when there is none)."""
  path = os.path.join(workdir, 'fingerprints.jsonl')
  out = {}
  if os.path.exists(path):
    with open(path, encoding='utf-8') as f:
      for line in f:
        if line.strip():
          record = json.loads(line)
          out.setdefault(record['stage'], {})[record['step']] = record['params_sha256']
  return out
