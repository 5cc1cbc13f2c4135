"""Atomic runs: a workdir is claimed only by a start that works, and is recognised by its
marker (run.json); a failed start leaves every file as it was."""

import hashlib
import json
import os
import pathlib
import shutil

import pytest

from devise_jax import checkpoint
from devise_jax import train


def _files(path):
  """{relative path: sha256} of every file under `path` (None if it does not exist)."""
  if not os.path.exists(path):
    return None
  return {str(p.relative_to(path)): hashlib.sha256(p.read_bytes()).hexdigest()
          for p in sorted(pathlib.Path(path).rglob('*')) if p.is_file()}


def test_a_refused_start_claims_nothing_and_the_corrected_one_works(tiny_config, tmp_path):
  workdir = str(tmp_path / 'run')
  bad = tiny_config.copy_and_resolve_references()
  bad.stage1.batch_size = -1
  with pytest.raises(ValueError, match=r'--config.stage1.batch_size=-1: must be a positive'):
    train.prepare_workdir(bad, workdir)
  bad = tiny_config.copy_and_resolve_references()
  bad.data.unseen_classes = ('Sandal', 'Gumboot')
  with pytest.raises(ValueError, match='Gumboot'):
    train.prepare_workdir(bad, workdir)
  assert not os.path.exists(workdir)
  names, seen, unseen, _ = train.prepare_workdir(tiny_config, workdir)
  assert [names[i] for i in unseen] == list(tiny_config.data.unseen_classes)
  marker = json.loads((tmp_path / 'run' / 'run.json').read_text())
  config_bytes = (tmp_path / 'run' / 'config.json').read_bytes()
  assert marker == dict(format=1, config_sha256=hashlib.sha256(config_bytes).hexdigest())


@pytest.mark.parametrize('existed', [False, True])
def test_a_start_that_fails_after_the_claim_is_undone(tiny_config, tmp_path, existed):
  workdir = tmp_path / 'run'
  if existed:
    workdir.mkdir()
  tiny_config.stage1.optimizer = 'nope'  # Refused when the optimizer is built.
  with pytest.raises(ValueError, match='optimizer'):
    train.train(tiny_config, str(workdir), ['stage1'])
  assert _files(workdir) == ({} if existed else None)


def test_a_failed_stage_start_in_a_run_changes_no_file(reference_run, tmp_path):
  config, reference, _ = reference_run
  workdir = tmp_path / 'run'
  shutil.copytree(reference, workdir)
  for stage in ('stage2', 'stage3'):
    shutil.rmtree(workdir / 'checkpoints' / stage)
  before = _files(workdir)
  variant = config.copy_and_resolve_references()
  variant.stage2.weight_decay = 0.5  # A stage not trained yet may change, and so may
  variant.word_vectors.overrides = {'Sandal': 'shoe'}  # the label space (no stage used it)
  variant.stage2.optimizer = 'nope'  # ... but this start fails: all is restored.
  with pytest.raises(ValueError, match='optimizer'):
    train.train(variant, str(workdir), ['stage2'])
  after = _files(workdir)
  assert {k: v for k, v in after.items() if not k.startswith('features/')} == {
      k: v for k, v in before.items() if not k.startswith('features/')}


def test_a_workdir_made_before_markers_is_adopted(reference_run, tmp_path):
  config, reference, _ = reference_run
  workdir = tmp_path / 'run'
  shutil.copytree(reference, workdir)
  (workdir / 'run.json').unlink()
  messages = []
  train.train(config, str(workdir), ['stage1'], log=messages.append)
  assert 'stage1: already trained (6 steps)' in messages
  digest = hashlib.sha256((workdir / 'config.json').read_bytes()).hexdigest()
  assert json.loads((workdir / 'run.json').read_text())['config_sha256'] == digest


@pytest.mark.parametrize('layout,message', [
    ({'file': 'x'}, 'is a regular file, not a directory'),
    ({'classes.json': '{}'}, 'holds no devise-jax run (no run.json); remove it'),
    ({'notes.txt': 'mine'}, 'is not empty (notes.txt)'),
    ({'checkpoints/stage1/x': '', 'classes.json': '{}'}, 'holds checkpoints but no config.json'),
    ({'run.json': '{"format": 1}', 'classes.json': '{}'}, 'damaged (config.json, label_space'),
    ({'run.json': '{"format": 99}', 'config.json': '{}', 'classes.json': '{}',
      'label_space.npz': ''}, 'not a devise-jax run marker of format 1'),
])
def test_half_claimed_and_foreign_workdirs_are_refused(tmp_path, layout, message):
  workdir = tmp_path / 'run'
  if 'file' in layout:
    workdir.write_text(layout['file'])
  for name, text in layout.items():
    if name != 'file':
      (workdir / name).parent.mkdir(parents=True, exist_ok=True)
      (workdir / name).write_text(text)
  before = _files(workdir) if workdir.is_dir() else workdir.read_text()
  with pytest.raises(checkpoint.CheckpointError) as error:
    checkpoint.workdir_state(str(workdir))
  assert message in str(error.value) and '\n' not in str(error.value)
  assert str(error.value).startswith(f'--workdir {workdir}: ')
  assert (_files(workdir) if workdir.is_dir() else workdir.read_text()) == before


def test_missing_and_empty_workdirs_are_new(tmp_path):
  assert checkpoint.workdir_state(str(tmp_path / 'nothing')) == 'new'
  assert checkpoint.workdir_state(str(tmp_path)) == 'new'
