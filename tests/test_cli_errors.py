"""Every expected failure of `devise-jax` is one line, a non-zero exit, and no change.

A table of bad commands (missing, regular-file, half-claimed and foreign workdirs, bad
config values, unknown classes and words, bad files and ids, URLs) runs through the
real entry point (`cli.run`, absl's parser included) with the process's stderr file
descriptor redirected per case, so output written below Python is seen too. To stay
fast the cases share one process (the flags, and the `--config.KEY` override flags
ml_collections defines while parsing, are reset between them) and one tiny trained
workdir. Each case checks the exit code, that stderr is exactly one line naming
the flag, key or file at fault, and that every file of every workdir involved is byte
for byte the same afterwards (a workdir that did not exist still does not).

TensorFlow prints two notices from C++ the first time it is imported ("All log
messages before absl::InitializeLog()..." and oneDNN's), whatever TF_CPP_MIN_LOG_LEVEL
says; the driver imports it before the first case, so they are outside every case.
"""

import hashlib
import json
import os
import pathlib
import shutil
import subprocess
import sys

import pytest
import test_images

from devise_jax import gallery
from devise_jax import run as run_lib

ROOT = pathlib.Path(__file__).resolve().parent.parent
CONFIG = str(ROOT / 'experiments' / 'configs' / 'fashion_mnist_zsl.py') + ':tiny'

DRIVER = r'''
import json, os, sys, tempfile
import tensorflow, jax  # Their import notices come before the cases.
from absl import flags
from devise_jax import cli
cases_path, results_path = sys.argv[1:3]
cases = json.load(open(cases_path))
results = []
for argv in cases:
  sys.stdout.flush(); sys.stderr.flush()
  saved_out, saved_err = os.dup(1), os.dup(2)
  with tempfile.TemporaryFile() as err, open(os.devnull, 'w') as null:
    os.dup2(null.fileno(), 1)
    os.dup2(err.fileno(), 2)
    code = 0
    try:
      flags.FLAGS.unparse_flags()
      for name in [n for n in flags.FLAGS if n.startswith('config.')]:
        delattr(flags.FLAGS, name)  # The overrides ml_collections defined last time.
      sys.argv = ['devise-jax'] + argv
      cli.run()
    except SystemExit as e:
      code = e.code if isinstance(e.code, int) else 1
    finally:
      sys.stdout.flush(); sys.stderr.flush()
      os.dup2(saved_out, 1); os.dup2(saved_err, 2)
      os.close(saved_out); os.close(saved_err)
    err.seek(0)
    results.append(dict(code=code, stderr=err.read().decode('utf-8', 'replace')))
json.dump(results, open(results_path, 'w'))
'''


def _hashes(path):
  """{relative path: sha256} of every file under `path`; None if it does not exist."""
  if not os.path.lexists(path):
    return None
  if not os.path.isdir(path):
    return {'': hashlib.sha256(pathlib.Path(path).read_bytes()).hexdigest()}
  out = {}
  for root, dirs, files in os.walk(path):
    for name in dirs:
      out[os.path.relpath(os.path.join(root, name), path) + '/'] = 'dir'
    for name in files:
      full = os.path.join(root, name)
      out[os.path.relpath(full, path)] = hashlib.sha256(
          pathlib.Path(full).read_bytes()).hexdigest()
  return out


@pytest.fixture(scope='module')
def places(reference_run, tmp_path_factory):
  """A trained workdir with a gallery, and the bad places and files of the cases."""
  config, reference, _ = reference_run
  root = tmp_path_factory.mktemp('cli_errors')
  run = root / 'run'
  shutil.copytree(reference, run)
  gallery.embed(run_lib.Run.load(str(run)))
  no_config = root / 'no_config'
  shutil.copytree(reference, no_config)
  (no_config / 'config.json').unlink()
  unmarked = root / 'unmarked_no_config'  # Made before run.json existed, then damaged.
  shutil.copytree(no_config, unmarked)
  (unmarked / 'run.json').unlink()
  half = root / 'half'
  half.mkdir()
  shutil.copy(run / 'classes.json', half / 'classes.json')
  foreign = root / 'foreign'
  foreign.mkdir()
  (foreign / 'notes.txt').write_text('mine\n')
  regular = root / 'regular_file'
  regular.write_text('not a directory\n')
  text = root / 'text.png'
  text.write_text('this is not an image\n')
  bomb = root / 'bomb.png'
  bomb.write_bytes(test_images.bomb(10000))  # 100 MP in a few KB.
  bad_vectors = root / 'vectors.txt'
  bad_vectors.write_text('3 2\nshirt 0.1 0.2\ncoat 0.')
  return dict(run=str(run), no_config=str(no_config), unmarked=str(unmarked), half=str(half),
              foreign=str(foreign), regular=str(regular), new=str(root / 'new' / 'run'),
              text=str(text), bomb=str(bomb), bad_vectors=str(bad_vectors),
              data_dir=config.data.data_dir)


def cases(p):
  """(argv, the workdirs that must stay unchanged, what the one line must contain)."""
  train = ['train', '--config', CONFIG, f'--config.data.data_dir={p["data_dir"]}']
  run, new = p['run'], p['new']
  search = ['search', '--workdir', run]
  return [
      (['train', '--workdir', new], [new], 'train needs --config'),
      (train + ['--workdir', new, '--config.stage1.batch_size=-1'], [new],
       '--config.stage1.batch_size=-1: must be a positive integer'),
      (train + ['--workdir', run, '--config.stage2.num_steps=0'], [run],
       '--config.stage2.num_steps=0: must be a positive integer'),
      (train + ['--workdir', new, "--config.data.unseen_classes=('Sandal','Gumboot')"],
       [new], "config.data.unseen_classes: unknown unseen classes ['Gumboot']"),
      (train + ['--workdir', new, '--config.word_vectors.source=/nonexistent/v.txt'], [new],
       '/nonexistent/v.txt'),
      (train + ['--workdir', new, f'--config.word_vectors.source={p["bad_vectors"]}'],
       [new], p['bad_vectors']),
      (train + ['--workdir', new, '--config.stage1.optimizer=nope', '--stages', 'stage1'],
       [new], "config.stage1.optimizer must be one of ['adamw', 'sgd']"),
      (train + ['--workdir', new, '--config.stage1.no_such_key=3'], [new],
       "unknown config key 'stage1.no_such_key'"),
      (train + ['--workdir', run, '--config.stage1.learning_rate=0.5'], [run],
       'holds a run with a different config (changed: stage1.learning_rate)'),
      (train + ['--workdir', p['regular']], [p['regular']],
       f'--workdir {p["regular"]}: is a regular file, not a directory'),
      (train + ['--workdir', p['half']], [p['half']],
       f'--workdir {p["half"]}: is not empty (classes.json) and holds no devise-jax run'),
      (train + ['--workdir', p['foreign']], [p['foreign']], 'remove it or pick another'),
      (train + ['--workdir', p['no_config']], [p['no_config']],
       'the run is damaged (config.json missing)'),
      (train + ['--workdir', p['unmarked']], [p['unmarked']],
       'holds checkpoints but no config.json'),
      (['eval', '--workdir', p['regular']], [p['regular']], 'is a regular file'),
      (['eval', '--workdir', new], [new], f'--workdir {new}: holds no devise-jax run'),
      (['eval', '--workdir', p['unmarked']], [p['unmarked']], 'holds checkpoints'),
      (['eval', '--workdir', run, '--split', 'nosplit'], [run], "bad split 'nosplit'"),
      (['embed', '--workdir', run, '--images', '/nonexistent/folder'], [run],
       '--images /nonexistent/folder: not a folder'),
      (search + ['--words', 'blahblahx'], [run], "no word vector for 'blahblahx'"),
      (search + ['--labels', 'qwxzzy,blahblahx', '--gallery_ids', '1'], [run],
       "none of the labels has a word vector: 'qwxzzy', 'blahblahx'"),
      (search + ['--gallery_ids', '9999'], [run],
       'gallery id 9999 is not in the gallery (ids 0 to 255)'),
      (search + ['--gallery', 'nope', '--gallery_ids', '1'], [run], "no gallery 'nope'"),
      (search + ['--images', 'http://127.0.0.1:9/cat.png'], [run],
       'the image is a URL'),
      (search + ['--images', p['text']], [run], 'the image is not an image'),
      (search + ['--images', p['bomb']], [run], 'the limit is 40 megapixels'),
      (search + ['--images', '/nonexistent.png'], [run], 'does not exist'),
      (search + ['--words', 'boot', '--k', '0'], [run],
       'k must be a whole number from 1 to 50, got 0'),
      (search + ['--words', 'boot,boot', '--word_weights', '1,-1'], [run],
       'the weights cancel'),
      (search + ['--words', 'boot', '--word_weights', '1,2'], [run],
       '1 word(s) but 2 weight(s)'),
      (search + ['--space', 'nowhere', '--gallery_ids', '1'], [run],
       "space must be one of devise, siamese, got 'nowhere'"),
      (['protocol', '--config', CONFIG, '--out', p['regular']], [p['regular']],
       f'--out {p["regular"]}: is a regular file'),
      ([], [], 'usage: devise-jax {train,'),
  ]


def test_every_expected_failure_is_one_line_and_changes_nothing(places, tmp_path):
  table = cases(places)
  before = [{w: _hashes(w) for w in watched} for _, watched, _ in table]
  (tmp_path / 'cases.json').write_text(json.dumps([argv for argv, _, _ in table]))
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='3')
  env.pop('DEVISE_JAX_DEBUG', None)
  subprocess.run([sys.executable, '-c', DRIVER, str(tmp_path / 'cases.json'),
                  str(tmp_path / 'results.json')], check=True, env=env, timeout=900,
                 cwd=tmp_path)
  results = json.loads((tmp_path / 'results.json').read_text())
  failures = []
  for (argv, watched, phrase), result, hashes in zip(table, results, before):
    lines = result['stderr'].splitlines()
    if (result['code'] == 0 or len(lines) != 1 or phrase not in lines[0]
        or not lines[0].startswith('devise-jax: error: ')):
      failures.append((argv[:1] + argv[-2:], result, phrase))
    changed = [w for w in watched if _hashes(w) != hashes[w]]
    if changed:
      failures.append((argv[:1] + argv[-2:], 'changed', changed))
  assert not failures, '\n'.join(map(str, failures))
  assert len(results) == len(table)


def test_help_lists_every_command_with_an_example():
  from devise_jax import cli  # pylint: disable=import-outside-toplevel
  proc = subprocess.run([sys.executable, '-c', 'from devise_jax import cli; cli.run()',
                         '--help'], capture_output=True, text=True, timeout=120)
  assert proc.returncode == 0
  lines = proc.stdout.splitlines()
  for command in cli.COMMANDS:
    row = [l for l in lines if l.split()[:1] == [command]]
    assert len(row) == 1 and len(row[0].split()) > 3, command  # Named, with a summary.
  assert any(l.strip().startswith('devise-jax train --config') for l in lines)
  assert sum(l.strip().startswith('devise-jax ') for l in lines) >= 3


def test_command_help_shows_that_commands_flags():
  proc = subprocess.run([sys.executable, '-c', 'from devise_jax import cli; cli.run()',
                         'label-sets', '--help'], capture_output=True, text=True, timeout=120)
  assert proc.returncode == 0 and proc.stderr == ''
  assert proc.stdout.startswith('devise-jax label-sets [flags]: WordNet nouns')
  flags = [l.split(':')[0].strip() for l in proc.stdout.splitlines() if l.startswith('  --')]
  assert flags == ['--hops', '--restrict', '--out']
