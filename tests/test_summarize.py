"""experiments/summarize.py averages only runs that differ in their seed (or in keys it is
told may differ), and its numbers are numpy's."""

import json
import pathlib
import subprocess
import sys

import numpy as np
import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
SCRIPT = ROOT / 'experiments' / 'summarize.py'


def _run(workdir, seed, metrics, split='test', **changes):
  config = dict(seed=seed, data=dict(name='fashion_mnist_local', unseen_classes=['Sandal']),
                stage2=dict(weight_decay=3.0, num_steps=3000))
  for key, value in changes.items():
    section, leaf = key.split('__')
    config[section][leaf] = value
  workdir.mkdir()
  (workdir / 'config.json').write_text(json.dumps(config))
  (workdir / 'eval.json').write_text(json.dumps(dict(split=split, metrics=metrics)))
  return str(workdir)


def _summarize(*args):
  return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True,
                        text=True, timeout=120)


def test_runs_differing_only_in_the_seed_are_averaged(tmp_path):
  values = [0.5, 0.625, 0.75]
  dirs = [_run(tmp_path / f's{i}', i, dict(zsl_top1=v)) for i, v in enumerate(values)]
  proc = _summarize(*dirs)
  assert proc.returncode == 0, proc.stderr
  row = next(l for l in proc.stdout.splitlines() if l.startswith('| zsl_top1 |'))
  want = f'{np.mean(values):.4f} +- {np.std(values, ddof=1):.4f}'
  assert want in row and '0.5000, 0.6250, 0.7500' in row


@pytest.mark.parametrize('changes,split,keys', [
    (dict(stage2__weight_decay=0.5), 'test', 'stage2.weight_decay'),
    (dict(data__unseen_classes=['Shirt']), 'test', 'data.unseen_classes'),
    ({}, 'test[:256]', 'split'),
])
def test_runs_of_different_configs_are_refused_unless_allowed(tmp_path, changes, split,
                                                               keys):
  a = _run(tmp_path / 'a', 0, dict(zsl_top1=0.5))
  b = _run(tmp_path / 'b', 1, dict(zsl_top1=0.7), split=split, **changes)
  proc = _summarize(a, b)
  lines = proc.stderr.strip().splitlines()
  assert proc.returncode != 0 and proc.stdout == ''
  assert len(lines) == 1 and keys in lines[0] and f'--allow_differ {keys}' in lines[0]
  section = keys.split('.')[0]
  for allowed in (keys, section):  # A key, or its whole section.
    proc = _summarize(f'--allow_differ={allowed}', a, b)
    assert proc.returncode == 0, proc.stderr
    assert '0.6000 +- ' in proc.stdout


def test_a_workdir_without_eval_is_one_line(tmp_path):
  a = _run(tmp_path / 'a', 0, dict(zsl_top1=0.5))
  (tmp_path / 'b').mkdir()
  proc = _summarize(a, str(tmp_path / 'b'))
  lines = proc.stderr.strip().splitlines()
  assert proc.returncode != 0 and len(lines) == 1 and 'config.json is missing' in lines[0]
