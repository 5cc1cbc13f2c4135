"""Training throughput of the stage-1 step; prints markdown for experiments/bench/README.md.

  .venv/bin/python experiments/bench/bench_train.py [--devices 1,2,4,8]
      [--batch_sizes 32,128,256] [--steps 5] [--repeats 5] [--dtype float32|bfloat16]
      [--peak_tflops X]

What is measured: the jitted stage-1 train step of `devise_jax.train` (SqueezeNet 1.1 +
BatchNorm, 32 px images, 8 seen classes, AdamW), built with `train.create_train_state`
and `train.make_train_step` and jitted exactly as `train.train_stage` does
(in_shardings=(replicated, sharded, replicated), donate_argnums=0) over the 1-D 'data'
mesh. The batch is one synthetic random batch put on the devices once, so the input
pipeline (decoding, augmentation, host-to-device copies) is NOT included: the figures
are an upper bound for what `devise-jax train` reaches.

For each device count and global batch size: compile once (the compile time is
reported; the persistent compilation cache is off, so it is a cold compile), run
--warmup untimed steps, then time --repeats runs of --steps steps each, each run ending
in `jax.block_until_ready`. The table gives the MEDIAN images/s over those runs.

Device counts: on the CPU each count runs in its own subprocess (the script calls itself
with --worker) with XLA_FLAGS=--xla_force_host_platform_device_count=N, since the
number of CPU devices is fixed when jax starts. The N virtual devices share the
machine's cores, so on a small machine more devices are not faster; the rows show the
mechanism (sharded batch, replicated state, gradient all-reduce) and its overhead. On a
GPU/TPU host the worker uses the first N real devices, and counts larger than what is
there are skipped.

FLOPs: XLA's cost analysis of the compiled step (forward + backward + optimiser, as XLA
counts them; the multiply-add of a convolution or matmul counts 2). For a sharded
program XLA reports the FLOPs of one device's partition; the script multiplies by the
device count to report the whole step. So with N devices the figure is a little above
the 1-device one: every device also runs the replicated optimiser update.

MFU = achieved FLOP/s (FLOPs/step x steps/s) / peak FLOP/s. The peak is --peak_tflops:
on a GPU/TPU the figure for one device, times the devices in the row; on the CPU the
figure for the whole machine, whatever the device count (the virtual devices share the
cores). Without --peak_tflops: on the CPU, a rough estimate of the
machine's fp32 peak = cores x clock (from /proc/cpuinfo) x FLOPs/cycle/core from the
vector flags (AVX-512: 64, i.e. two 512-bit FMA pipes; AVX2 + FMA: 32; AVX: 16; else 8);
on an H100, 989 TFLOP/s (dense bf16 tensor cores) for --dtype bfloat16 and 67 TFLOP/s
(fp32, non-tensor-core) for float32, per GPU (JAX's default matmul precision on GPU may
use TF32 tensor cores for float32, so MFU against 67 can exceed what the fp32 units
alone could do); otherwise MFU is left out. Pass --peak_tflops to use another figure
(e.g. 494.7 for H100 TF32 tensor cores). On the CPU the fp32 peak is also used for
bfloat16: XLA:CPU computes the bfloat16 convolutions in f32 (the script prints the
dtypes of the compiled convolutions).

On a GPU run it the same way, e.g.
  .venv/bin/python experiments/bench/bench_train.py --devices 1 --batch_sizes 128,256,1024 \\
      --dtype bfloat16 --peak_tflops 989
"""

import argparse
import datetime
import importlib.metadata
import importlib.util
import json
import os
import pathlib
import platform
import re
import shlex
import statistics
import subprocess
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parents[2]
DEFAULT_CONFIG = ROOT / 'experiments' / 'configs' / 'fashion_mnist_zsl.py'
RESULT_PREFIX = 'BENCH_RESULT '
H100_PEAK_TFLOPS = {'bfloat16': 989.0, 'float32': 67.0}


def parse_args(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  ints = lambda s: [int(x) for x in s.split(',') if x]
  parser.add_argument('--devices', type=ints, default=[1, 2, 4, 8],
                      help='comma-separated device counts (default 1,2,4,8)')
  parser.add_argument('--batch_sizes', type=ints, default=[32, 128, 256],
                      help='comma-separated global batch sizes (default 32,128,256)')
  parser.add_argument('--steps', type=int, default=5, help='steps per timed run (K)')
  parser.add_argument('--repeats', type=int, default=5, help='timed runs per row')
  parser.add_argument('--warmup', type=int, default=2, help='untimed steps after compiling')
  parser.add_argument('--dtype', default='float32', choices=('float32', 'bfloat16'),
                      help='config.model.dtype (compute dtype; params stay float32)')
  parser.add_argument('--peak_tflops', type=float, default=None,
                      help='peak TFLOP/s for MFU: of ONE device on a GPU/TPU (times the '
                           'devices in each row), of the whole machine on the CPU (virtual '
                           'devices share the cores). Default: CPU estimate from '
                           '/proc/cpuinfo, or the H100 figures')
  parser.add_argument('--config', default=str(DEFAULT_CONFIG),
                      help='config file whose get_config() gives model/stage1 settings')
  parser.add_argument('--loop', action='store_true',
                      help='instead: the real training loop (stage 1 of --config, input '
                           'pipeline, logging, checkpoints) against its bare step')
  parser.add_argument('--loop_steps', type=int, default=None,
                      help='with --loop: stage-1 steps (default: the config\'s)')
  parser.add_argument('--worker', type=int, default=None, metavar='N',
                      help=argparse.SUPPRESS)  # internal: run the rows for N devices
  return parser.parse_args(argv)


# ----------------------------------------------------------------------------- worker


def load_config(path, variant=None):
  if variant is None and ':' in os.path.basename(path):  # FILE:VARIANT, as the CLI.
    path, variant = path.rsplit(':', 1)
  spec = importlib.util.spec_from_file_location('bench_config', path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(variant)


def flops_of(compiled):
  """'flops' from XLA's cost analysis (a dict, or a list of dicts); None if missing."""
  try:
    cost = compiled.cost_analysis()
  except Exception:  # pylint: disable=broad-except
    return None
  if isinstance(cost, (list, tuple)):
    cost = cost[0] if cost else None
  if not cost or 'flops' not in cost:
    return None
  value = float(cost['flops'])
  return value if value > 0 else None


def loadavg():
  try:
    return open('/proc/loadavg').read().split()[0]
  except OSError:
    return '?'


def run_worker(args):
  """Runs every batch size on `args.worker` devices; prints one JSON line per row."""
  import jax  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  from jax.sharding import Mesh, NamedSharding, PartitionSpec as P  # pylint: disable=g-import-not-at-top
  from devise_jax import train  # pylint: disable=g-import-not-at-top
  from devise_jax.models import devise  # pylint: disable=g-import-not-at-top

  n = args.worker
  devices = jax.devices()
  info = dict(backend=jax.default_backend(), device_kind=devices[0].device_kind,
              available=len(devices))
  if n > len(devices):
    print(RESULT_PREFIX + json.dumps(dict(info, devices=n, skipped=f'only {len(devices)} '
                                          f'{jax.default_backend()} devices')), flush=True)
    return
  mesh = (train.data_mesh() if n == len(devices)
          else Mesh(np.asarray(devices[:n]), ('data',)))
  replicated, sharded = NamedSharding(mesh, P()), NamedSharding(mesh, P('data'))

  config = load_config(args.config)
  config.model.dtype = args.dtype
  # The dataset's classes (Fashion-MNIST's 10; ImageNet's 1,000, which its configs name
  # in data.synsets) less the unseen ones (which ids are seen does not matter for the
  # cost of stage 1); GloVe 6B 50d word vectors (unused by stage 1).
  num_classes = max(10, len(config.data.get('synsets', ())))
  num_seen, embed_dim = num_classes - len(config.data.unseen_classes), 50
  seen = list(range(num_seen))
  rng = np.random.default_rng(0)
  label_vectors = rng.normal(size=(num_seen, embed_dim)).astype(np.float32)
  label_vectors /= np.linalg.norm(label_vectors, axis=1, keepdims=True)
  seen_lookup = np.full(num_classes, -1, np.int32)
  seen_lookup[seen] = np.arange(num_seen)
  model = devise.create_model(config.model, num_seen, embed_dim)
  size = config.data.image_size
  step_fn = jax.jit(
      train.make_train_step(model, 'softmax', config.stage1, label_vectors, seen_lookup),
      in_shardings=(replicated, sharded, replicated), out_shardings=(replicated, replicated),
      donate_argnums=0)

  for batch_size in args.batch_sizes:
    row = dict(info, devices=n, batch=batch_size, dtype=args.dtype)
    if batch_size % n:
      print(RESULT_PREFIX + json.dumps(dict(row, skipped='batch not divisible')), flush=True)
      continue
    config.stage1.batch_size = batch_size
    state = train.create_train_state(config, model, 'stage1', jax.random.key(0))
    state = jax.device_put(state, replicated)
    batch = train.shard_batch(
        {'image': rng.normal(size=(batch_size, size, size, 3)).astype(np.float32),
         'label': rng.choice(seen, size=batch_size).astype(np.int32)}, sharded)
    step_rng = jax.device_put(jax.random.key(1), replicated)
    jax.block_until_ready((state, batch))
    row['load_start'] = loadavg()

    start = time.perf_counter()
    compiled = step_fn.lower(state, batch, step_rng).compile()
    row['compile_s'] = time.perf_counter() - start
    per_partition = flops_of(compiled)
    row['flops_per_step'] = None if per_partition is None else per_partition * n
    # Which dtypes the compiled convolutions compute in (XLA:CPU upcasts bfloat16).
    row['conv_dtypes'] = sorted(set(re.findall(
        r'= (\w+)\[[^\]]*\](?:\{[^}]*\})? convolution\(', compiled.as_text())))

    for _ in range(args.warmup):
      state, metrics = compiled(state, batch, step_rng)
    jax.block_until_ready((state, metrics))
    if not np.isfinite(float(metrics['loss'])):
      raise RuntimeError(f'non-finite loss in the warm-up ({row})')
    times = []
    for _ in range(args.repeats):
      start = time.perf_counter()
      for _ in range(args.steps):
        state, metrics = compiled(state, batch, step_rng)
      jax.block_until_ready((state, metrics))
      times.append(time.perf_counter() - start)
    rates = [batch_size * args.steps / t for t in times]
    row.update(images_per_s=statistics.median(rates), min_images_per_s=min(rates),
               max_images_per_s=max(rates), repeats=args.repeats, steps=args.steps,
               step_s=statistics.median(times) / args.steps, load_end=loadavg())
    print(RESULT_PREFIX + json.dumps(row), flush=True)
    del state, batch, compiled, metrics


# ----------------------------------------------------------------------------- loop


def run_loop(args):
  """The real stage-1 loop of --config against its bare step, in one process.

  Bare step: the same compiled call (`config.steps_per_call` steps by `train.multi_step`,
  jitted by `train.jit_step`) on one real batch kept on the devices, timed before and
  after the loop. Loop: `train.train_stage` in a fresh
  workdir (input pipeline with its first-epoch image cache fill, progress bar, metrics,
  checkpoints), timed from the first logged step after 100 (compile and warm-up
  excluded) to the last; at logged steps the loop has synced with the devices.
  """
  import tempfile  # pylint: disable=g-import-not-at-top
  import jax  # pylint: disable=g-import-not-at-top
  from jax.sharding import PartitionSpec as P  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  from devise_jax import train  # pylint: disable=g-import-not-at-top

  config = load_config(args.config)
  if args.loop_steps:
    config.stage1.num_steps = args.loop_steps
  steps, batch_size = config.stage1.num_steps, config.stage1.batch_size
  first = next(s for s in range(101, steps + 1) if s % config.log_every == 0)
  workdir = tempfile.mkdtemp(prefix='bench_loop_')
  classes = train.prepare_workdir(config, workdir)
  model = train._model(config, 'stage1', len(classes[1]), classes[3].dim)  # pylint: disable=protected-access
  step, batches = train._step_and_batches(config, workdir, 'stage1', model, classes, 0)  # pylint: disable=protected-access
  mesh = train.data_mesh()
  per_call = config.get('steps_per_call', 1)
  step_fn = train.jit_step(train.multi_step(step, per_call), mesh, stacked=True)
  batch = next(batches)
  batch = train.shard_batch({k: np.stack([v] * per_call) for k, v in batch.items()},
                            jax.sharding.NamedSharding(mesh, P(None, 'data')))
  state = train.create_train_state(config, model, 'stage1', jax.random.key(0))
  key = jax.random.key(1)

  def bare(seconds=10.0):
    nonlocal state
    for _ in range(3):
      state, metrics = step_fn(state, batch, key)
    jax.block_until_ready(metrics)
    start, count = time.perf_counter(), 0
    while time.perf_counter() - start < seconds:
      for _ in range(10):
        state, metrics = step_fn(state, batch, key)
      jax.block_until_ready(metrics)
      count += 10 * per_call
    return count * batch_size / (time.perf_counter() - start)

  before = bare()
  marks = {}
  train.train_stage(config, workdir, 'stage1', log=lambda *a: None,
                    after_step=lambda done: marks.setdefault(done, time.perf_counter())
                    if done in (first, steps) else None)
  loop = (steps - first) * batch_size / (marks[steps] - marks[first])
  after = bare()
  mean = (before + after) / 2
  print(f'loop vs bare step ({steps} steps of {batch_size}, {per_call} a call, '
        f'{jax.device_count()} '
        f'{jax.default_backend()} device(s)): loop {loop:.0f} img/s, bare step '
        f'{mean:.0f} img/s (before {before:.0f}, after {after:.0f}), ratio {loop / mean:.2f}')
  print(f'load average: {" ".join(open("/proc/loadavg").read().split()[:3])}')


# ----------------------------------------------------------------------------- driver


def cpu_peak_tflops():
  """(TFLOP/s, how) for this machine's fp32 vector units; a rough upper bound."""
  text = open('/proc/cpuinfo').read()
  flags = set(re.search(r'^flags\s*:(.*)$', text, re.M).group(1).split())
  mhz = [float(m) for m in re.findall(r'^cpu MHz\s*:\s*([\d.]+)', text, re.M)]
  ghz, clock_from = (max(mhz) / 1e3 if mhz else 0.0), 'cpu MHz in /proc/cpuinfo'
  try:
    ghz = int(open('/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq').read()) / 1e6
    clock_from = 'cpuinfo_max_freq'
  except (OSError, ValueError):
    pass
  cores = len(os.sched_getaffinity(0))
  if 'avx512f' in flags:
    per_cycle, why = 64, 'AVX-512 (assumes two 512-bit FMA pipes: 2 x 16 lanes x 2)'
  elif 'avx2' in flags and 'fma' in flags:
    per_cycle, why = 32, 'AVX2 + FMA (two 256-bit FMA pipes: 2 x 8 lanes x 2)'
  elif 'avx' in flags:
    per_cycle, why = 16, 'AVX without FMA (8-lane add + 8-lane mul)'
  else:
    per_cycle, why = 8, 'SSE'
  peak = cores * ghz * per_cycle / 1e3
  return peak, (f'{cores} cores x {ghz:.2f} GHz ({clock_from}) x {per_cycle} fp32 '
                f'FLOPs/cycle/core [{why}] = {peak * 1e3:.0f} GFLOP/s')


def machine():
  cpu = next((line.split(':', 1)[1].strip() for line in open('/proc/cpuinfo')
              if line.startswith('model name')), platform.processor())
  ram = os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30
  versions = [f'python {platform.python_version()}']
  for name in ('jax', 'jaxlib', 'flax', 'optax', 'numpy'):
    try:
      versions.append(f'{name} {importlib.metadata.version(name)}')
    except importlib.metadata.PackageNotFoundError:
      pass
  return f'nproc {os.cpu_count()}, {cpu}, {ram:.0f} GiB RAM; ' + ', '.join(versions)


def worker_env(n):
  env = dict(os.environ)
  flags = re.sub(r'--xla_force_host_platform_device_count=\S+', '',
                 env.get('XLA_FLAGS', '')).split()
  env['XLA_FLAGS'] = ' '.join(flags + [f'--xla_force_host_platform_device_count={n}'])
  env.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
  env.pop('JAX_COMPILATION_CACHE_DIR', None)  # cold compiles, whatever the shell has
  env['PYTHONPATH'] = os.pathsep.join(p for p in (str(ROOT), env.get('PYTHONPATH')) if p)
  return env


def fmt_flops(row):
  return 'n/a' if row.get('flops_per_step') is None else f"{row['flops_per_step'] / 1e9:.2f}"


def main(argv=None):
  args = parse_args(argv)
  if args.worker is not None:
    run_worker(args)
    return
  if args.loop:
    run_loop(args)
    return
  command = ' '.join(['.venv/bin/python', os.path.relpath(__file__, ROOT)]
                     + [shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:])])
  print(f'date: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M UTC}')
  print(f'command: {command}')
  print(f'machine: {machine()}')
  print(f'load average at start: {" ".join(open("/proc/loadavg").read().split()[:3])}',
        flush=True)
  rows = []
  start = time.perf_counter()
  for n in args.devices:
    sizes = [b for b in args.batch_sizes if b % n == 0]
    rows += [dict(devices=n, batch=b, skipped=f'batch does not divide over {n} devices')
             for b in args.batch_sizes if b % n]
    if not sizes:
      continue
    argv_worker = [sys.executable, os.path.abspath(__file__), '--worker', str(n),
                   '--batch_sizes', ','.join(map(str, sizes)),
                   '--steps', str(args.steps), '--repeats', str(args.repeats),
                   '--warmup', str(args.warmup), '--dtype', args.dtype,
                   '--config', args.config]
    proc = subprocess.run(argv_worker, env=worker_env(n), cwd=ROOT, text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, check=False)
    for line in proc.stdout.splitlines():
      if line.startswith(RESULT_PREFIX):
        row = json.loads(line[len(RESULT_PREFIX):])
        rows.append(row)
        if 'skipped' not in row:
          print(f"  {n} device(s), batch {row['batch']}: compile {row['compile_s']:.1f} s, "
                f"{row['images_per_s']:.0f} img/s (min {row['min_images_per_s']:.0f}, "
                f"max {row['max_images_per_s']:.0f}), load {row['load_start']} -> "
                f"{row['load_end']}", file=sys.stderr, flush=True)
    if proc.returncode:
      print(proc.stderr, file=sys.stderr)
      print(f'worker for {n} device(s) failed (exit {proc.returncode})', file=sys.stderr)
      rows.append(dict(devices=n, batch=','.join(map(str, sizes)),
                       skipped=f'worker failed (exit {proc.returncode})'))
  print(f'total wall time: {time.perf_counter() - start:.0f} s')

  done = [r for r in rows if 'skipped' not in r]
  backend = done[0]['backend'] if done else '?'
  kind = done[0]['device_kind'] if done else '?'
  peak, peak_note = args.peak_tflops, 'from --peak_tflops'
  if peak is not None:
    peak_note = f'{peak} TFLOP/s, from --peak_tflops'
  elif backend == 'cpu':
    peak, peak_note = cpu_peak_tflops()
    if args.dtype == 'bfloat16':
      peak_note += ' (fp32 peak also used for bfloat16: XLA:CPU computes in f32)'
  elif 'H100' in kind:
    peak = H100_PEAK_TFLOPS[args.dtype]
    peak_note = (f'{peak} TFLOP/s per H100 ('
                 f"{'dense bf16 tensor cores' if args.dtype == 'bfloat16' else 'fp32 non-tensor'})"
                 ' x devices')
  if args.peak_tflops is not None and backend != 'cpu':
    peak_note += ' per device, x devices'
  print(f'backend: {backend} ({kind}); dtype {args.dtype}; steps per timed run '
        f'{args.steps}, warm-up {args.warmup}')
  print(f"MFU peak: {peak_note if peak is not None else 'unknown, MFU not computed'}")
  conv = sorted({d for r in done for d in r.get('conv_dtypes', [])})
  print(f"compiled convolutions compute in: {', '.join(conv) or 'n/a'}")
  loads = [float(r[k]) for r in done for k in ('load_start', 'load_end')
           if r.get(k, '?') != '?']
  if loads:
    print(f'1-min load average during the rows: {min(loads):.2f} to {max(loads):.2f}')
  print()
  print('| devices | global batch | compile s | median img/s | repeats | GFLOPs/step | MFU |')
  print('|---|---|---|---|---|---|---|')
  for row in rows:
    if 'skipped' in row:
      print(f"| {row['devices']} | {row.get('batch', '')} | {row['skipped']} | | | | |")
      continue
    mfu = 'n/a'
    if peak is not None and row['flops_per_step'] is not None:
      row_peak = peak
      if backend != 'cpu':
        row_peak = peak * row['devices']  # per-device figure x devices used
      achieved = row['flops_per_step'] / row['step_s']
      mfu = f'{100 * achieved / (row_peak * 1e12):.2f}%'
    print(f"| {row['devices']} | {row['batch']} | {row['compile_s']:.1f} | "
          f"{row['images_per_s']:.0f} | {row['repeats']} | {fmt_flops(row)} | {mfu} |")
  if done:
    print('\nPer row: spread of the timed runs and the 1-minute load average before -> after.')
    for row in done:
      print(f"- {row['devices']} device(s), batch {row['batch']}: img/s min "
            f"{row['min_images_per_s']:.0f}, median {row['images_per_s']:.0f}, max "
            f"{row['max_images_per_s']:.0f}; {1e3 * row['step_s']:.1f} ms/step; load "
            f"{row['load_start']} -> {row['load_end']}")
  if any(r.get('flops_per_step') is None for r in done):
    print('\nXLA cost analysis gave no FLOP count for some rows (n/a).')


if __name__ == '__main__':
  main()
