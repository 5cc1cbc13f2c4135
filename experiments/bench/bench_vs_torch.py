"""The stage-1 train step against PyTorch eager, same math, side by side.

  pip install -e '.[bench]'   # PyTorch, a benchmark-only extra (CPU build)
  .venv/bin/python experiments/bench/bench_vs_torch.py [--repeats 7] [--seconds 2]

Prints one line per shape, exactly

  vs_torch S=<px> B=<batch> bn=<0|1>: jax <img/s> torch <img/s> ratio <jax/torch>

for (32 px, batch 128, BatchNorm), (64 px, 64, no BatchNorm) and (128 px, 64, BatchNorm)
(`--shapes` picks others), then the machine, versions and load.

What is timed, in each framework: one training step of SqueezeNet 1.1 (the same layers:
3x3/2 stem, ceil-mode max pools, 8 Fire modules, BatchNorm after every convolution when
bn=1, global average pool, dropout 0.5, a linear classifier over 10 classes), softmax
cross-entropy, SGD with Nesterov momentum 0.9 and weight decay, on one random batch
already in memory. JAX runs the project's own step as `devise-jax train` does
(`train.make_train_step`, `--steps_per_call` steps unrolled in one compiled call by
`train.multi_step`, jitted by `train.jit_step`, with the XLA options the project sets
by default). PyTorch runs eager mode, as written by a user (NCHW, float32,
`torch.optim.SGD`), with its default threads.

How: each framework runs in its own long-lived worker process (so neither one's idle
threads spin during the other's turn), compiled and warmed up before timing. Per shape
the driver asks the two workers in turn, alternating which goes first, for `--repeats`
timed runs of about `--seconds` each (whole calls, ended by a device sync);
the line gives the median images/s of each and the ratio of the medians.
"""

import argparse
import datetime
import importlib.metadata
import math
import os
import pathlib
import platform
import statistics
import subprocess
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parents[2]
DEFAULT_STEPS_PER_CALL = 4  # experiments/configs/*.py: config.steps_per_call.
SHAPES = ((32, 128, 1), (64, 64, 0), (128, 64, 1))
NUM_CLASSES = 10
LEARNING_RATE, WEIGHT_DECAY = 0.01, 5e-4


def parse_args(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--shapes', default=','.join(f'{s}x{b}x{n}' for s, b, n in SHAPES),
                      help='comma-separated SIZExBATCHxBN (default: the three above)')
  parser.add_argument('--repeats', type=int, default=7, help='timed runs per framework')
  parser.add_argument('--seconds', type=float, default=2.0,
                      help='target length of one timed run')
  parser.add_argument('--steps_per_call', type=int, default=DEFAULT_STEPS_PER_CALL,
                      help='JAX train steps per compiled call (default: the configs\' '
                           f'config.steps_per_call, {DEFAULT_STEPS_PER_CALL}); PyTorch is '
                           'timed over the same number of steps')
  parser.add_argument('--frameworks', default='jax,torch', help=argparse.SUPPRESS)
  parser.add_argument('--worker', default=None, help=argparse.SUPPRESS)  # jax | torch
  parser.add_argument('--shape', default=None, help=argparse.SUPPRESS)  # SIZExBATCHxBN
  return parser.parse_args(argv)


def parse_shape(text):
  size, batch, bn = (int(v) for v in text.split('x'))
  if bn not in (0, 1) or size < 32 or batch < 1:
    raise ValueError(f'bad shape {text!r}: expected SIZExBATCHxBN, SIZE >= 32, BN 0 or 1')
  return size, batch, bn


# ----------------------------------------------------------------------------- workers


def jax_stepper(size, batch, bn, steps_per_call):
  """A function running n calls of the project's jitted stage-1 step (steps_per_call
  steps a call, as `devise-jax train` runs it), synced."""
  import jax  # pylint: disable=g-import-not-at-top
  import ml_collections  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  from devise_jax import train  # pylint: disable=g-import-not-at-top
  from devise_jax.models import devise  # pylint: disable=g-import-not-at-top

  config = ml_collections.ConfigDict(dict(
      data=dict(image_size=size),
      model=dict(name='squeezenet1_1', use_bn=bool(bn), dropout=0.5, dtype='float32'),
      stage1=dict(optimizer='sgd', learning_rate=LEARNING_RATE, warmup_steps=0,
                  num_steps=10**6, weight_decay=WEIGHT_DECAY, batch_size=batch)))
  model = devise.create_model(config.model, NUM_CLASSES, embed_dim=50)
  state = train.create_train_state(config, model, 'stage1', jax.random.key(0))
  rng = np.random.default_rng(0)
  label_vectors = np.zeros((NUM_CLASSES, 50), np.float32)  # Unused by the softmax loss.
  step = train.jit_step(train.multi_step(train.make_train_step(
      model, 'softmax', config.stage1, label_vectors, np.arange(NUM_CLASSES)),
      steps_per_call), train.data_mesh(), stacked=True)
  batch = {'image': rng.normal(size=(batch, size, size, 3)).astype(np.float32),
           'label': rng.integers(0, NUM_CLASSES, batch).astype(np.int32)}
  batch = jax.device_put({k: np.stack([v] * steps_per_call) for k, v in batch.items()})
  key = jax.random.key(1)
  holder = [state]

  def run(n):  # n calls of steps_per_call steps.
    state = holder[0]
    for _ in range(n):
      state, metrics = step(state, batch, key)
    jax.block_until_ready((state, metrics))
    holder[0] = state
    return float(metrics['loss'])

  return run


def torch_stepper(size, batch, bn, steps_per_call):
  """A function running n x steps_per_call eager PyTorch steps of the same network and
  optimizer."""
  import torch  # pylint: disable=g-import-not-at-top
  from torch import nn  # pylint: disable=g-import-not-at-top

  def conv(cin, cout, kernel, **kwargs):
    layers = [nn.Conv2d(cin, cout, kernel, **kwargs)]
    # Flax's BatchNorm momentum 0.9 is PyTorch's 0.1; same epsilon.
    layers += [nn.BatchNorm2d(cout, eps=1e-5, momentum=0.1)] if bn else []
    return nn.Sequential(*layers, nn.ReLU(inplace=True))

  class Fire(nn.Module):

    def __init__(self, cin, squeeze, expand):
      super().__init__()
      self.squeeze = conv(cin, squeeze, 1)
      self.expand1x1 = conv(squeeze, expand, 1)
      self.expand3x3 = conv(squeeze, expand, 3, padding=1)

    def forward(self, x):
      x = self.squeeze(x)
      return torch.cat([self.expand1x1(x), self.expand3x3(x)], 1)

  pool = lambda: nn.MaxPool2d(3, 2, ceil_mode=True)
  net = nn.Sequential(
      conv(3, 64, 3, stride=2), pool(), Fire(64, 16, 64), Fire(128, 16, 64), pool(),
      Fire(128, 32, 128), Fire(256, 32, 128), pool(), Fire(256, 48, 192),
      Fire(384, 48, 192), Fire(384, 64, 256), Fire(512, 64, 256),
      nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(0.5), nn.Linear(512, NUM_CLASSES))
  net.train()
  optimizer = torch.optim.SGD(net.parameters(), lr=LEARNING_RATE, momentum=0.9,
                              nesterov=True, weight_decay=WEIGHT_DECAY)
  generator = torch.Generator().manual_seed(0)
  images = torch.randn(batch, 3, size, size, generator=generator)
  labels = torch.randint(0, NUM_CLASSES, (batch,), generator=generator)

  def run(n):
    for _ in range(n * steps_per_call):
      optimizer.zero_grad(set_to_none=True)
      loss = nn.functional.cross_entropy(net(images), labels)
      loss.backward()
      optimizer.step()
    return float(loss.detach())

  return run


def run_worker(args):
  """Serves 'run N' requests on stdin; answers 'done <seconds> <loss>' on stdout."""
  size, batch, bn = parse_shape(args.shape)
  make = {'jax': jax_stepper, 'torch': torch_stepper}[args.worker]
  run = make(size, batch, bn, args.steps_per_call)
  run(2)  # Compile (JAX) and warm up.
  start = time.perf_counter()
  run(1)
  print(f'ready {time.perf_counter() - start:.6f}', flush=True)
  for line in sys.stdin:
    calls = int(line.split()[1])
    start = time.perf_counter()
    loss = run(calls)
    print(f'done {time.perf_counter() - start:.6f} {loss:.6g}', flush=True)


# ----------------------------------------------------------------------------- driver


class Worker:
  """A worker process for one framework and shape."""

  def __init__(self, framework, shape, steps_per_call):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='2')
    env['PYTHONPATH'] = os.pathsep.join(p for p in (str(ROOT), env.get('PYTHONPATH')) if p)
    self.name = framework
    self.proc = subprocess.Popen(
        [sys.executable, os.path.abspath(__file__), '--worker', framework, '--shape', shape,
         '--steps_per_call', str(steps_per_call)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=ROOT, env=env)
    self.call_s = float(self._answer('ready')[0])

  def _answer(self, word):
    line = self.proc.stdout.readline().split()
    if not line or line[0] != word:
      self.proc.kill()
      raise RuntimeError(f'{self.name} worker failed (see its stderr above)')
    return line[1:]

  def time(self, calls):
    self.proc.stdin.write(f'run {calls}\n')
    self.proc.stdin.flush()
    seconds, loss = self._answer('done')
    if not math.isfinite(float(loss)):
      raise RuntimeError(f'{self.name}: non-finite loss {loss}')
    return float(seconds)

  def close(self):
    self.proc.stdin.close()
    self.proc.wait()


def versions():
  names = ('jax', 'jaxlib', 'flax', 'optax', 'torch', 'numpy')
  found = []
  for name in names:
    try:
      found.append(f'{name} {importlib.metadata.version(name)}')
    except importlib.metadata.PackageNotFoundError:
      pass
  return ', '.join([f'python {platform.python_version()}'] + found)


def machine():
  cpu = next((line.split(':', 1)[1].strip() for line in open('/proc/cpuinfo')
              if line.startswith('model name')), platform.processor())
  ram = os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30
  return f'nproc {os.cpu_count()}, {cpu}, {ram:.0f} GiB RAM'


def loadavg():
  return ' '.join(open('/proc/loadavg').read().split()[:3])


def compare(shape, args):
  """Median images/s of each framework at `shape`, timed alternately."""
  size, batch, bn = parse_shape(shape)
  frameworks = args.frameworks.split(',')
  workers = [Worker(f, shape, args.steps_per_call) for f in frameworks]  # One at a time: compiles don't overlap.
  try:
    calls = {w.name: max(1, round(args.seconds / w.call_s)) for w in workers}
    rates = {w.name: [] for w in workers}
    per_call = batch * args.steps_per_call
    for repeat in range(args.repeats):
      for w in (workers if repeat % 2 == 0 else workers[::-1]):
        rates[w.name].append(per_call * calls[w.name] / w.time(calls[w.name]))
  finally:
    for w in workers:
      w.close()
  medians = {name: statistics.median(r) for name, r in rates.items()}
  spread = ', '.join(f'{n} {min(r):.0f}-{max(r):.0f}' for n, r in rates.items())
  return size, batch, bn, medians, spread


def main(argv=None):
  args = parse_args(argv)
  if args.worker:
    run_worker(args)
    return
  shapes = [s for s in args.shapes.split(',') if s]
  for shape in shapes:
    parse_shape(shape)
  print(f'# {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC; '
        f'{machine()}; {versions()}', flush=True)
  for shape in shapes:
    before = loadavg()
    size, batch, bn, medians, spread = compare(shape, args)
    jax_rate, torch_rate = medians.get('jax', math.nan), medians.get('torch', math.nan)
    print(f'vs_torch S={size} B={batch} bn={bn}: jax {jax_rate:.0f} torch '
          f'{torch_rate:.0f} ratio {jax_rate / torch_rate:.2f}', flush=True)
    print(f'#   steps per JAX call {args.steps_per_call}; min-max img/s over '
          f'{args.repeats} runs: {spread}; load {before} -> '
          f'{loadavg()}', flush=True)


if __name__ == '__main__':
  main()
