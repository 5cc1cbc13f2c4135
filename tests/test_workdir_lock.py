"""One writer per workdir (devise_jax/workdir_lock.py).

A holder that costs nothing (a small process that takes the lock through the library
and sleeps) stands in for a running writer: every writing entry point of the library
is refused at once in one line naming its pid and host while readers go on, and a
holder killed with SIGKILL leaves a lock that the next writer takes over, saying so.
One real case: two `devise-jax train` commands on one new workdir, the second started
once the first holds the lock; the first ends where an uninterrupted run does (the
session's reference run, trained in-process from the same config).
"""

import json
import os
import pathlib
import shutil
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

from devise_jax import evaluate
from devise_jax import gallery
from devise_jax import protocol
from devise_jax import queries
from devise_jax import run as run_lib
from devise_jax import train
from devise_jax import workdir_lock

CONFIG = str(pathlib.Path(__file__).resolve().parent.parent /
             'experiments/configs/fashion_mnist_zsl.py') + ':tiny'
HOLDER = '''
import sys, time
from devise_jax import workdir_lock
with workdir_lock.hold(sys.argv[1], 'test holder'):
  print('held', flush=True)
  time.sleep(600)
'''


def _holder(workdir):
  """A process holding `workdir`'s lock until killed."""
  proc = subprocess.Popen([sys.executable, '-c', HOLDER, str(workdir)],
                          stdout=subprocess.PIPE, text=True)
  assert proc.stdout.readline() == 'held\n'
  return proc


def _names(proc):
  return f'pid {proc.pid} on host {socket.gethostname()} (test holder, started '


def test_writers_are_refused_naming_the_holder_while_readers_go_on(reference_run,
                                                                   tmp_path):
  config, reference, _ = reference_run
  workdir = tmp_path / 'run'
  shutil.copytree(reference, workdir)
  run = run_lib.Run.load(str(workdir))
  holder = _holder(workdir)
  try:
    record = json.loads((workdir / workdir_lock.LOCK_FILE).read_text())
    assert (record['pid'], record['host'], record['command']) == (
        holder.pid, socket.gethostname(), 'test holder')
    writers = {
        'train': lambda: train.train(config, str(workdir), log=lambda m: None),
        'train_stage': lambda: train.train_stage(config, str(workdir), 'stage1'),
        'evaluate': lambda: evaluate.evaluate(str(workdir)),
        'embed': lambda: gallery.embed(run),
        'protocol': lambda: protocol.run_protocol(config, str(workdir), num_splits=1,
                                                  seeds=[0], num_unseen=3),
    }
    for name, write in writers.items():
      with pytest.raises(workdir_lock.WorkdirBusy) as error:
        write()
      message = str(error.value)
      assert message.startswith(f'{workdir} is being written by {_names(holder)}'), name
      assert '\n' not in message and queries.is_expected(error.value), name
    # Readers take no lock: a run loads, and a query is answered, while it is held.
    searcher = gallery.Searcher(run_lib.Run.load(str(workdir)))
    answer = queries.answer(searcher, queries.Labels(
        queries.QueryImage(file=np.full((28, 28, 3), 128, np.uint8)), k=3))
    assert len(answer.rows) == 3
    assert json.loads((workdir / workdir_lock.LOCK_FILE).read_text()) == record
  finally:
    holder.kill()
    holder.wait()
  # Nothing was written; the killed holder's file is left (taken over by the next).
  assert sorted(os.listdir(workdir)) == sorted(os.listdir(reference) + [
      workdir_lock.LOCK_FILE])


def test_a_killed_holders_lock_is_taken_over_saying_so(tmp_path, capfd):
  workdir = tmp_path / 'new' / 'run'
  holder = _holder(workdir)
  holder.send_signal(signal.SIGKILL)
  holder.wait()
  assert json.loads((workdir / workdir_lock.LOCK_FILE).read_text())['pid'] == holder.pid
  capfd.readouterr()
  with workdir_lock.hold(str(workdir)):
    err = capfd.readouterr().err
    assert err.startswith(f'warning: taking over the lock of {workdir}: {_names(holder)}')
    assert err.endswith(') ended without releasing it\n') and err.count('\n') == 1
    with workdir_lock.hold(str(workdir) + '/'):  # Re-entrant in one process.
      assert workdir_lock.holder(str(workdir))['pid'] == os.getpid()
    assert workdir_lock.holder(str(workdir))['pid'] == os.getpid()  # Still held.
    other = subprocess.run([sys.executable, '-c', HOLDER, str(workdir)],
                           capture_output=True, text=True, timeout=60)
    assert other.returncode == 1 and 'WorkdirBusy' in other.stderr
    assert f'pid {os.getpid()} on host {socket.gethostname()}' in other.stderr
  assert capfd.readouterr().err == ''
  assert os.listdir(workdir) == []  # A clean release clears the record, file and all.
  with workdir_lock.hold(str(tmp_path / 'other' / 'run')):
    assert (tmp_path / 'other' / 'run' / workdir_lock.LOCK_FILE).exists()
  assert not (tmp_path / 'other').exists()  # Directories it made, left empty, go too.


def test_a_second_train_is_refused_at_once_and_the_first_ends_as_usual(
    reference_run, fmnist_data_dir, tmp_path):
  _, _, fingerprint = reference_run
  workdir = tmp_path / 'new' / 'run'
  command = [sys.executable, '-c', 'from devise_jax import cli; cli.run()', 'train',
             '--config', CONFIG, '--workdir', str(workdir),
             f'--config.data.data_dir={fmnist_data_dir}']
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='3')
  env.pop('DEVISE_JAX_DEBUG', None)
  first = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           text=True, env=env)
  try:
    deadline = time.time() + 120
    while (workdir_lock.holder(str(workdir)) or {}).get('pid') != first.pid:
      assert first.poll() is None and time.time() < deadline, first.communicate()
      time.sleep(0.05)
    started = time.monotonic()
    second = subprocess.run(command, capture_output=True, text=True, env=env, timeout=120)
    seconds = time.monotonic() - started
    assert first.poll() is None  # Refused while the first runs, not after it.
  except BaseException:
    first.kill()
    raise
  out, err = first.communicate(timeout=600)
  assert second.returncode == 1, second.stderr
  assert second.stderr.startswith(f'devise-jax: error: {workdir} is being written by pid '
                                  f'{first.pid} on host {socket.gethostname()} (')
  assert second.stderr.count('\n') == 1 and f'(devise-jax train --config {CONFIG}' in (
      second.stderr)
  print(f'refused in {seconds:.1f} s')
  assert first.returncode == 0, err[-2000:]
  assert f'params fingerprint: {fingerprint}' in out.splitlines()
  assert not (workdir / workdir_lock.LOCK_FILE).exists()
