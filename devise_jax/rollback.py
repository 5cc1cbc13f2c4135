"""A failed start leaves the workdir as it was: `StartGuard`.

`train.train` runs each stage's start (the workdir claimed or its config updated, the
data read, the model built and compiled) under a guard that is committed once the
stage's first step is done. Until then an exception undoes what the start wrote: the
files it created are removed and the ones it rewrote (the marker, config.json, the
classes and label space, the .jsonl logs) get their old bytes back; a workdir that was
new is emptied but for the lock file (`train.train` holds the workdir's lock, whose
release removes the file, and the directory if the lock made it). Two folders are
kept: quarantine/ (checkpoints moved aside on resume, never deleted) and features/ (a
correct cache). A step done, the run exists: a later failure (a NaN loss, Ctrl-C)
keeps what was written, and the run resumes. In a multi-process run only process 0
(the one that writes the run files) undoes.
"""

import contextlib
import os
import shutil

import jax

from devise_jax import checkpoint
from devise_jax import files
from devise_jax import workdir_lock


class StartGuard:
  """Context manager: undoes a failed start of a stage in `workdir` until `commit`."""

  _KEPT = ('quarantine', 'features')
  _RESTORED = (checkpoint.MARKER, 'config.json', 'classes.json', 'label_space.npz',
               'metrics.jsonl', 'fingerprints.jsonl')

  def __init__(self, workdir):
    self.workdir, self.committed = workdir, False
    self.existed, self.paths, self.saved = False, set(), {}

  def __enter__(self):
    if jax.process_index() != 0:
      self.committed = True  # Process 0 alone undoes: no two processes delete at once.
      return self
    self.existed = os.path.isdir(self.workdir)
    self.paths = set(self._walk()) if self.existed else set()
    for name in self._RESTORED:
      path = os.path.join(self.workdir, name)
      if os.path.isfile(path):
        with open(path, 'rb') as f:
          self.saved[name] = f.read()
    return self

  def commit(self, *unused_args):
    """Called after the first step (as `after_step`): the start succeeded."""
    self.committed = True

  def __exit__(self, kind, value, traceback):
    if kind is None or self.committed or not os.path.isdir(self.workdir):
      return False
    if not self.paths:  # The workdir was new: nothing of the user's is in it.
      for name in set(os.listdir(self.workdir)) - {workdir_lock.LOCK_FILE}:
        path = os.path.join(self.workdir, name)
        if os.path.isdir(path) and not os.path.islink(path):
          shutil.rmtree(path, ignore_errors=True)
        else:
          os.remove(path)
      return False
    for path in sorted(set(self._walk()) - self.paths, reverse=True):
      if path.split(os.sep)[0] not in self._KEPT:
        full = os.path.join(self.workdir, path)
        if os.path.isdir(full) and not os.path.islink(full):
          shutil.rmtree(full, ignore_errors=True)
        else:
          with contextlib.suppress(FileNotFoundError):
            os.remove(full)
    for name, data in self.saved.items():
      path = os.path.join(self.workdir, name)
      with open(path, 'rb') as f:
        changed = f.read() != data
      if changed:
        files.write_bytes(path, data)
    return False

  def _walk(self):
    """Every path under the workdir but the lock file (the lock's own: it removes it)."""
    for root, dirs, names in os.walk(self.workdir):
      for name in dirs + names:
        path = os.path.relpath(os.path.join(root, name), self.workdir)
        if path != workdir_lock.LOCK_FILE:
          yield path
