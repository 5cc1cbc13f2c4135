"""Resume cost of the training input pipeline, and its throughput.

  .venv/bin/python experiments/bench/bench_resume.py [--data_dir DIR] [--steps 0,1000,...]

The default config (experiments/configs/fashion_mnist_zsl.py, default variant):
Fashion-MNIST `train[:90%]`, the 7 seen classes, stage 1's batch of 128 and seed
(`config.seed`), `data.cache` on. For each k of --steps, a fresh process (this script
with --child) imports everything, prepares nothing (the dataset is prepared first,
untimed), then times `input_pipeline.train_iterator(start_step=k)` from the call to
its first batch, and prints `resume to step <k>: <seconds> s`.

Checks, in this process: for every k <= --check_below, the fresh process's batch equals
batch k of one uninterrupted iterator started at 0. For every k, it equals the batch
rebuilt here from the iterator's definition: the kept examples in file order, global
position i = e * n + j holding kept example `index_shuffle(j, n - 1, seed0 + e)`
(grain's function; seed0 hashed from the seed by numpy's SeedSequence), images decoded
by TFDS, resized by PIL and cropped, flipped and normalised by hand with the offsets
and flips `default_rng((seed, k))` draws. Any mismatch stops the script.

Throughput: the uninterrupted iterator's rate over its first epoch (decoding each image
into the cache) and over the next 300 batches (cached), in images/s and CPU
microseconds per image (process time, all threads). A bare iterator: no training step
competes for the 2 cores.
"""

import argparse
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)

CONFIG = os.path.join(ROOT, 'experiments', 'configs', 'fashion_mnist_zsl.py')
STAGE = 'stage1'


def _config(data_dir):
  from devise_jax import config_checks  # pylint: disable=import-outside-toplevel
  config = config_checks.load_config_file(CONFIG)
  if data_dir:
    config.data.data_dir = data_dir
  return config


def _iterator(config, start_step):
  from devise_jax import input_pipeline  # pylint: disable=import-outside-toplevel
  seen, _ = input_pipeline.split_classes(config.data, config.seed)
  return input_pipeline.train_iterator(
      config.data, batch_size=config[STAGE].batch_size, seed=config.seed, class_ids=seen,
      start_step=start_step)


def child(data_dir, step, out):
  """In a fresh process: time train_iterator(start_step=step) to its first batch."""
  config = _config(data_dir)
  from devise_jax import input_pipeline  # pylint: disable=import-outside-toplevel,unused-import
  start = time.perf_counter()
  batch = next(_iterator(config, step))
  seconds = time.perf_counter() - start
  np.savez(out, image=batch['image'], label=batch['label'], seconds=seconds)


def kept_examples(config):
  """(TFDS source of the train split, its labels, the seen classes' record indices)."""
  import tensorflow_datasets as tfds  # pylint: disable=import-outside-toplevel
  from devise_jax import input_pipeline  # pylint: disable=import-outside-toplevel
  seen, _ = input_pipeline.split_classes(config.data, config.seed)
  builder = tfds.builder(config.data.name, data_dir=config.data.data_dir or None)
  source = builder.as_data_source(config.data.train_split)  # TFDS decodes images.
  undecoded = builder.as_data_source(config.data.train_split,
                                     decoders={'image': tfds.decode.SkipDecoding()})
  labels = np.array([r['label'] for r in undecoded.__getitems__(list(range(len(source))))])
  return source, labels, np.flatnonzero(np.isin(labels, seen))


def defined_batch(config, step, source, labels, kept):
  """Batch `step` of one process, rebuilt from the definition (see the docstring)."""
  import grain  # pylint: disable=import-outside-toplevel
  from PIL import Image  # pylint: disable=import-outside-toplevel
  dcfg, batch_size = config.data, config[STAGE].batch_size
  n = len(kept)
  seed0 = int(np.random.SeedSequence(config.seed).generate_state(1)[0])
  records = []
  for position in range(step * batch_size, (step + 1) * batch_size):
    epoch, j = divmod(position, n)
    records.append(int(kept[grain.experimental.index_shuffle(
        j, max_index=n - 1, seed=(seed0 + epoch) % 2**32, rounds=4)]))
  rng = np.random.default_rng((config.seed, step))
  offsets = rng.integers(0, dcfg.crop_padding + 1, (batch_size, 2))
  flips = rng.integers(0, 2, batch_size)
  side, size = dcfg.image_size + dcfg.crop_padding, dcfg.image_size
  images = []
  for record, (dy, dx), flip in zip(records, offsets, flips):
    rgb = np.repeat(source[record]['image'], 3, axis=-1)  # [28, 28, 1] gray.
    resized = np.asarray(Image.fromarray(rgb).resize((side, side), Image.BILINEAR))
    crop = resized[dy:dy + size, dx:dx + size]
    crop = crop[:, ::-1] if flip else crop
    images.append((crop / 255 - np.array(dcfg.mean)) / np.array(dcfg.std))
  return np.stack(images), labels[records]


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument('--data_dir', default='', help="TFDS data_dir; '' = the config's")
  parser.add_argument('--steps', default='0,1000,1000000,1000000000')
  parser.add_argument('--check_below', type=int, default=1000,
                      help='steps up to this are also checked against an uninterrupted run')
  parser.add_argument('--child', type=int, default=None)
  parser.add_argument('--out', default='')
  args = parser.parse_args()
  if args.child is not None:
    child(args.data_dir, args.child, args.out)
    return
  steps = [int(s) for s in args.steps.split(',')]
  config = _config(args.data_dir)
  from devise_jax import input_pipeline  # pylint: disable=import-outside-toplevel
  input_pipeline.get_builder(config.data)  # Prepares the dataset once, untimed.

  resumed = {}
  with tempfile.TemporaryDirectory() as tmp:
    for step in steps:
      out = os.path.join(tmp, f'{step}.npz')
      subprocess.run([sys.executable, __file__, '--child', str(step), '--out', out,
                      '--data_dir', args.data_dir], check=True,
                     env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL='3'))
      resumed[step] = dict(np.load(out))
      print(f'resume to step {step}: {float(resumed[step]["seconds"]):.2f} s', flush=True)

  source, all_labels, kept = kept_examples(config)
  for step in steps:
    images, labels = defined_batch(config, step, source, all_labels, kept)
    np.testing.assert_array_equal(resumed[step]['label'], labels)
    np.testing.assert_allclose(resumed[step]['image'], images, atol=1e-5)
  print(f'checked: each batch equals the batch built from the definition ({steps})')

  batch_size = config[STAGE].batch_size
  epoch = -(-len(kept) // batch_size)  # Batches until every kept image was used.
  small = [s for s in steps if s <= args.check_below]
  it = _iterator(config, 0)
  timings, step = [], 0
  for phase, count in (('first epoch, decoding into the cache', epoch),
                       ('cached', max(300, max(small, default=0) + 1 - epoch))):
    cpu, wall = time.process_time(), time.perf_counter()
    for _ in range(count):
      batch = next(it)
      if step in small:
        np.testing.assert_array_equal(batch['image'], resumed[step]['image'])
        np.testing.assert_array_equal(batch['label'], resumed[step]['label'])
      step += 1
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    timings.append(f'pipeline, {phase}: {count * batch_size / wall:.0f} images/s, '
                   f'{cpu / count / batch_size * 1e6:.0f} us CPU per image, '
                   f'{wall / count * 1e3:.1f} ms per batch of {batch_size}')
  print(f'checked: steps {small} equal an uninterrupted iterator\'s')
  print('\n'.join(timings))


if __name__ == '__main__':
  main()
