"""The training input pipeline at ImageNet's shapes, side by side with tf.data.

  .venv/bin/python experiments/bench/bench_input.py [--dir DIR] [--num_images 2000] \
      [--batch 128] [--size 224] [--rounds 3] [--startup_records 1281167]

Data: the synthetic ImageNet-shaped set (`devise_jax/datasets/synthetic_imagenet.py`:
JPEGs of about 400 x 350 with photo-like content, ImageNet-2012's 1,000 class ids),
made once under --dir through the project's own data path (`input_pipeline.get_builder`:
TFDS, array_record files) and, for tf.data, prepared a second time from the same spec
as TFDS's TFRecord files: the same JPEG bytes, read the way flax's ImageNet example
reads `imagenet2012` (`builder.as_dataset` with the image left encoded).

Both sides train-augment alike, at --size px: the Inception-style random-resized crop
(`devise_jax/augment.py`: area 8-100 %, aspect ratio 3/4-4/3 drawn log-uniformly, 10
attempts, centre fallback), a random flip, normalisation to float32 with ImageNet's
mean and std, batches of --batch.
- project: `input_pipeline.train_iterator` (grain; PIL decodes the JPEG at the
  smallest DCT scale that covers the box, then resizes the box, antialiased);
- tfdata: the anchors' pipeline (flax's ImageNet example, big_vision's
  `decode_jpeg_and_inception_crop`): `extract_jpeg_shape`, the same box rule in TF
  ops, `decode_and_crop_jpeg` (only the box's window is decoded), bilinear resize
  (no antialiasing, as theirs), parallel map with AUTOTUNE, batch, prefetch.
Each measurement is a fresh process pinned to the cores (`sched_setaffinity` before
any import, so both libraries size their thread pools to them): all cores, then one.
The two sides alternate, --rounds times; each prints images/s over --batches batches
after --warmup batches; the line gives the medians and their ratio.

Start-up (--startup_records N): a split of N records of tiny images is made once
(minutes for 1.28M), then `train_iterator` is called in a fresh process twice; the
first builds the split's label index, the second is what every later run pays:
`startup records=N: <seconds> s` is the time from the call to the first batch.
"""

import argparse
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def _data_config(spec_dir, data_dir, size):
  """The ImageNet recipe's data config on the synthetic set."""
  sys.path.insert(0, ROOT)
  from devise_jax import config_checks  # pylint: disable=import-outside-toplevel
  config = config_checks.load_config_file(
      os.path.join(ROOT, 'experiments', 'configs', 'imagenet_devise.py'))
  dcfg = config.data
  dcfg.name, dcfg.manual_dir, dcfg.data_dir = 'synthetic_imagenet', spec_dir, data_dir
  dcfg.train_split, dcfg.image_size = 'train', size
  dcfg.augment = 'random_resized_crop'
  return dcfg


def _paths(args, records=None):
  name = f'n{records or args.num_images}'
  base = os.path.join(args.dir, name)
  return os.path.join(base, 'spec'), os.path.join(base, 'array_record'), os.path.join(
      base, 'tfrecord')


def prepare(args, records=None, tiny=False):
  """Writes the spec and prepares the project's copy (and tf.data's unless tiny)."""
  sys.path.insert(0, ROOT)
  import tensorflow_datasets as tfds  # pylint: disable=import-outside-toplevel
  from devise_jax import input_pipeline  # pylint: disable=import-outside-toplevel
  from devise_jax.datasets import synthetic_imagenet  # pylint: disable=import-outside-toplevel
  spec_dir, array_dir, tf_dir = _paths(args, records)
  sides = {'height': (16, 16), 'width': (16, 16)} if tiny else {}
  if not os.path.exists(os.path.join(spec_dir, synthetic_imagenet.SPEC_FILE)):
    synthetic_imagenet.write_spec(spec_dir, train=records or args.num_images,
                                  validation=0, **sides)
  input_pipeline.get_builder(_data_config(spec_dir, array_dir, args.size))
  if not tiny:
    tfds.builder('synthetic_imagenet', data_dir=tf_dir, file_format='tfrecord'
                 ).download_and_prepare(
                     download_config=tfds.download.DownloadConfig(manual_dir=spec_dir))


def project_batches(args):
  """The project's training iterator over the whole synthetic set."""
  import numpy as np  # pylint: disable=import-outside-toplevel
  from devise_jax import input_pipeline  # pylint: disable=import-outside-toplevel
  spec_dir, array_dir, _ = _paths(args)
  dcfg = _data_config(spec_dir, array_dir, args.size)
  return input_pipeline.train_iterator(dcfg, batch_size=args.batch, seed=0,
                                       class_ids=np.arange(1000))


def tfdata_batches(args):
  """The anchors' tf.data pipeline, with the project's box rule in TF ops."""
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  import tensorflow_datasets as tfds  # pylint: disable=import-outside-toplevel
  from devise_jax import augment  # pylint: disable=import-outside-toplevel
  _, _, tf_dir = _paths(args)
  builder = tfds.builder('synthetic_imagenet', data_dir=tf_dir, file_format='tfrecord')
  size = args.size

  def box(shape, seed):
    height, width = tf.cast(shape[0], tf.float64), tf.cast(shape[1], tf.float64)
    u = tf.random.stateless_uniform([4, augment.ATTEMPTS], seed, dtype=tf.float64)
    (a0, a1), (r0, r1) = (0.08, 1.0), (3 / 4, 4 / 3)
    area = (a0 + u[0] * (a1 - a0)) * height * width
    ratio = tf.exp(math.log(r0) + u[1] * (math.log(r1) - math.log(r0)))
    w, h = tf.round(tf.sqrt(area * ratio)), tf.round(tf.sqrt(area / ratio))
    fits = (w >= 1) & (w <= width) & (h >= 1) & (h <= height)
    first = tf.argmax(tf.cast(fits, tf.int32))
    w, h = w[first], h[first]
    x = tf.floor(u[2][first] * (width - w + 1))
    y = tf.floor(u[3][first] * (height - h + 1))
    cw = tf.where(width / height > r1, tf.round(height * r1), width)
    ch = tf.where(width / height < r0, tf.round(width / r0), height)
    fallback = tf.stack([tf.floor((height - ch) / 2), tf.floor((width - cw) / 2), ch, cw])
    window = tf.where(tf.reduce_any(fits), tf.stack([y, x, h, w]), fallback)
    return tf.cast(window, tf.int32)

  def prepare_one(index, example):
    seed = tf.stack([tf.constant(0, tf.int64), index])
    data = example['image']
    window = box(tf.image.extract_jpeg_shape(data), seed)
    image = tf.image.decode_and_crop_jpeg(data, window, channels=3)
    image = tf.image.resize(image, [size, size], 'bilinear')
    flip = tf.random.stateless_uniform([], seed + 1) < 0.5
    image = tf.cond(flip, lambda: tf.image.flip_left_right(image), lambda: image)
    image = (image / 255.0 - tf.constant(MEAN)) / tf.constant(STD)
    return {'image': image, 'label': example['label']}

  # Record order is fixed (the set is generated in order); the buffer shuffles.
  ds = builder.as_dataset('train', decoders={'image': tfds.decode.SkipDecoding()})
  ds = ds.repeat().shuffle(16 * args.batch, seed=0).enumerate()
  ds = ds.map(prepare_one, num_parallel_calls=tf.data.AUTOTUNE)
  ds = ds.batch(args.batch, drop_remainder=True).prefetch(tf.data.AUTOTUNE)
  return iter(tfds.as_numpy(ds))


def worker(args):
  """One measurement in this (pinned) process: prints {'rate': images/s}."""
  make = project_batches if args.worker == 'project' else tfdata_batches
  batches = make(args)
  for _ in range(args.warmup):
    next(batches)
  start, cpu = time.perf_counter(), time.process_time()
  for _ in range(args.batches):
    batch = next(batches)
  elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
  assert batch['image'].shape == (args.batch, args.size, args.size, 3), batch['image'].shape
  images = args.batches * args.batch
  print(json.dumps({'rate': images / elapsed, 'cpu_ms': 1e3 * cpu / images}))


def startup_worker(args):
  """Seconds from calling train_iterator to its first batch, in this process."""
  import numpy as np  # pylint: disable=import-outside-toplevel
  from devise_jax import input_pipeline  # pylint: disable=import-outside-toplevel
  spec_dir, array_dir, _ = _paths(args, args.startup_records)
  dcfg = _data_config(spec_dir, array_dir, args.size)
  dcfg.image_size, dcfg.augment = 32, 'pad_crop'  # Tiny images: start-up only.
  start = time.perf_counter()
  next(input_pipeline.train_iterator(dcfg, batch_size=args.batch, seed=0,
                                     class_ids=np.arange(1000)))
  print(json.dumps({'seconds': time.perf_counter() - start}))


def _run(args, extra, cores):
  """Runs this script with `extra` flags in a fresh process pinned to `cores`."""
  command = [sys.executable, os.path.abspath(__file__), '--dir', args.dir,
             '--num_images', str(args.num_images), '--batch', str(args.batch),
             '--size', str(args.size), '--batches', str(args.batches),
             '--warmup', str(args.warmup), '--startup_records', str(args.startup_records),
             '--cores', ','.join(map(str, sorted(cores)))] + extra
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='2')
  out = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
  if out.returncode:
    raise SystemExit(f'{" ".join(extra)} failed:\n{out.stderr[-3000:]}')
  return json.loads(out.stdout.strip().splitlines()[-1])


def _versions():
  import numpy  # pylint: disable=import-outside-toplevel
  import PIL  # pylint: disable=import-outside-toplevel
  from importlib import metadata  # pylint: disable=import-outside-toplevel
  names = ('tensorflow-cpu', 'tensorflow-datasets', 'grain', 'array-record', 'jax')
  found = []
  for name in names:
    try:
      found.append(f'{name} {metadata.version(name)}')
    except metadata.PackageNotFoundError:
      pass
  return ', '.join([f'python {platform.python_version()}', f'numpy {numpy.__version__}',
                    f'pillow {PIL.__version__}'] + found)


def main(args):
  cores = sorted(os.sched_getaffinity(0))
  if args.num_images:
    prepare(args)
    for pinned in (cores, cores[:1]):
      rates, cpu = {'project': [], 'tfdata': []}, {'project': [], 'tfdata': []}
      for _ in range(args.rounds):
        for side in ('project', 'tfdata'):
          found = _run(args, ['--worker', side], pinned)
          rates[side].append(found['rate'])
          cpu[side].append(found['cpu_ms'])
      project, tfdata = (statistics.median(rates[s]) for s in ('project', 'tfdata'))
      print(f'input S={args.size} B={args.batch} cores={len(pinned)}: project '
            f'{project:.0f} tfdata {tfdata:.0f} ratio {project / tfdata:.2f}', flush=True)
      print(f'  rounds: project {[round(r) for r in rates["project"]]} '
            f'tfdata {[round(r) for r in rates["tfdata"]]} images/s; CPU ms an image '
            f'(all threads): project {statistics.median(cpu["project"]):.2f} '
            f'tfdata {statistics.median(cpu["tfdata"]):.2f}', flush=True)
  if args.startup_records:
    prepare(args, args.startup_records, tiny=True)
    first = _run(args, ['--startup_worker'], cores)['seconds']
    again = _run(args, ['--startup_worker'], cores)['seconds']
    print(f'startup records={args.startup_records}: {again:.2f} s')
    print(f'  (the first call, which built the label index: {first:.1f} s)')
  print(f'machine: {platform.processor() or platform.machine()}, {len(cores)} cores; '
        f'load average {", ".join(f"{x:.1f}" for x in os.getloadavg())}; '
        f'{time.strftime("%Y-%m-%d")}')
  print(f'versions: {_versions()}')


def parse(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--dir', default='/tmp/devise_jax_bench_input')
  parser.add_argument('--num_images', type=int, default=2000,
                      help='synthetic training images (0: skip the throughput lines)')
  parser.add_argument('--batch', type=int, default=128)
  parser.add_argument('--size', type=int, default=224)
  parser.add_argument('--batches', type=int, default=10, help='timed batches')
  parser.add_argument('--warmup', type=int, default=2, help='untimed batches first')
  parser.add_argument('--rounds', type=int, default=3)
  parser.add_argument('--startup_records', type=int, default=0)
  parser.add_argument('--worker', choices=('project', 'tfdata'))
  parser.add_argument('--startup_worker', action='store_true')
  parser.add_argument('--cores', default='')
  return parser.parse_args(argv)


if __name__ == '__main__':
  ARGS = parse()
  if ARGS.cores:  # Before any import that sizes a thread pool.
    os.sched_setaffinity(0, [int(c) for c in ARGS.cores.split(',')])
  sys.path.insert(0, ROOT)
  if ARGS.worker:
    worker(ARGS)
  elif ARGS.startup_worker:
    startup_worker(ARGS)
  else:
    main(ARGS)
