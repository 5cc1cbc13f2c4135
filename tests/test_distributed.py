"""Data parallelism and resume: 1 device vs 8, a SIGKILL mid-run, and two processes
through jax.distributed. The device count is fixed when jax starts: runs on one or two
devices, and the run to kill, are subprocesses; eight-device runs use this process's
devices (tests/conftest.py)."""

import json
import os
import pathlib
import shutil
import signal
import socket
import subprocess
import sys
import time

import conftest
import jax
import numpy as np

from devise_jax import checkpoint
from devise_jax import train

CONFIG = str(pathlib.Path(__file__).resolve().parent.parent /
             'experiments/configs/fashion_mnist_zsl.py')


def _command(workdir, data_dir, *extra):
  return [sys.executable, '-c', 'from devise_jax import cli; cli.run()', 'train',
          '--config', f'{CONFIG}:tiny', '--workdir', str(workdir),
          f'--config.data.data_dir={data_dir}', *extra]


def _env(devices):
  return dict(os.environ, XLA_FLAGS=f'--xla_force_host_platform_device_count={devices} '
                                  f'{conftest.TEST_XLA_FLAGS}',
              TF_CPP_MIN_LOG_LEVEL='3')


def _fingerprint_line(output):
  lines = [l for l in output.splitlines() if l.startswith('params fingerprint: ')]
  assert lines, output[-2000:]
  return lines[-1].split(': ')[1]


def test_one_device_ends_where_eight_devices_do(tiny_config, fmnist_data_dir, tmp_path):
  params = {}
  # One step a call: the smallest program to compile (what one call holds is checked
  # in tests/test_train.py).
  proc = subprocess.run(
      _command(tmp_path / '1', fmnist_data_dir, '--stages=stage1',
               '--config.stage1.optimizer=sgd', '--config.stage1.num_steps=2',
               '--config.checkpoint_every=2', '--config.steps_per_call=1'),
      env=_env(1), capture_output=True, text=True, timeout=600)
  assert proc.returncode == 0, proc.stderr[-3000:]
  params[1], _ = checkpoint.load_variables(str(tmp_path / '1'), 'stage1')
  assert jax.device_count() == 8
  tiny_config.stage1.optimizer = 'sgd'
  tiny_config.stage1.num_steps = tiny_config.checkpoint_every = 2
  tiny_config.steps_per_call = 1
  train.train_stage(tiny_config, str(tmp_path / '8'), 'stage1', log=lambda m: None)
  params[8], _ = checkpoint.load_variables(str(tmp_path / '8'), 'stage1')
  # Same init, data, dropout and updates; BatchNorm statistics are over the global
  # batch in both. Only the order of float32 reductions differs (per-device partial
  # sums, then an all-reduce), which leaves differences of ~1e-6. The check uses SGD
  # and two steps: Adam divides near-zero gradients by their own magnitude, and
  # BatchNorm over 16 images of 1x1 maps is ill-conditioned at init; both amplify that
  # rounding noise over more steps, so longer runs agree only to ~lr.
  for a, b in zip(jax.tree_util.tree_leaves(params[1]), jax.tree_util.tree_leaves(params[8])):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def test_sigkill_then_rerun_ends_bitwise_where_an_uninterrupted_run_does(
    reference_run, fmnist_data_dir, tmp_path):
  config, _, reference_fingerprint = reference_run
  workdir = tmp_path / 'killed'
  proc = subprocess.Popen(_command(workdir, fmnist_data_dir), env=_env(8),
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  first = workdir / 'checkpoints' / 'stage1' / '3'
  deadline = time.time() + 300
  while not first.exists() and proc.poll() is None and time.time() < deadline:
    time.sleep(0.05)
  proc.send_signal(signal.SIGKILL)
  assert proc.wait() == -signal.SIGKILL  # Killed mid-run, not finished.
  # The rerun, in this process (eight devices, as the killed run had).
  messages = []
  assert train.train(config, str(workdir), log=messages.append) == reference_fingerprint
  assert any('resuming from step' in m for m in messages), messages
  assert messages[-1] == f'params fingerprint: {reference_fingerprint}'
  saved = [json.loads(l) for l in open(workdir / 'fingerprints.jsonl')]
  assert saved[-1] == dict(stage='stage3', step=6, params_sha256=reference_fingerprint)


def _free_port():
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]


def test_two_processes_train_and_checkpoint_once(fmnist_data_dir, tmp_path):
  workdir = tmp_path / 'two'
  port = _free_port()
  procs = [subprocess.Popen(
      _command(workdir, fmnist_data_dir, '--stages=stage1', '--config.steps_per_call=1',
               f'--coordinator_address=127.0.0.1:{port}', '--num_processes=2',
               f'--process_id={i}'),
      env=_env(2), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
      for i in range(2)]
  outputs = [p.communicate(timeout=600) for p in procs]
  for p, (out, err) in zip(procs, outputs):
    assert p.returncode == 0, err[-3000:]
  fingerprints = {_fingerprint_line(out) for out, _ in outputs}
  assert len(fingerprints) == 1  # Both processes hold the same replicated params.
  assert checkpoint.manager(str(workdir), 'stage1').all_steps() == [3, 6]
  restored, step = checkpoint.load_variables(str(workdir), 'stage1')
  assert step == 6 and checkpoint.fingerprint(restored['params']) in fingerprints


def test_a_checkpoint_from_eight_devices_resumes_on_one(reference_run, fmnist_data_dir,
                                                        tmp_path):
  _, reference, _ = reference_run
  workdir = tmp_path / 'moved'
  shutil.copytree(reference, workdir)
  for stage in ('stage2', 'stage3'):
    shutil.rmtree(workdir / 'checkpoints' / stage)
  shutil.rmtree(workdir / 'checkpoints' / 'stage1' / '6')
  proc = subprocess.run(_command(workdir, fmnist_data_dir, '--stages=stage1'), env=_env(1),
                        capture_output=True, text=True, timeout=600)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert 'stage1: resuming from step 3' in proc.stdout
  assert checkpoint.manager(str(workdir), 'stage1').all_steps() == [3, 6]
