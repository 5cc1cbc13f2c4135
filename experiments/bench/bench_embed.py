"""Embedding throughput: images/s of the gallery path (preprocess + encoder + heads).

  .venv/bin/python experiments/bench/bench_embed.py --workdir workdirs/default_seed2

Times `Searcher.embed_images` (numpy images in, DeViSE + Siamese vectors out) and the
split path `Run.split_features` (tf.data decode + preprocess + encoder, as `devise-jax
embed` runs it) on the workdir's eval split; medians over repeats, after one warm-up.
"""

import argparse
import statistics
import time

import tensorflow_datasets as tfds

from devise_jax import gallery
from devise_jax import input_pipeline
from devise_jax import run as run_lib


def _median_rate(fn, count, repeats):
  fn()  # Warm-up: compiles.
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    fn()
    times.append(time.perf_counter() - start)
  return count / statistics.median(times)


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument('--workdir', required=True)
  parser.add_argument('--images', type=int, default=2000)
  parser.add_argument('--repeats', type=int, default=5)
  args = parser.parse_args()
  run = run_lib.Run.load(args.workdir)
  searcher = gallery.Searcher(run)
  config = run.config
  split = f'{config.data.eval_split.split("[")[0]}[:{args.images}]'
  raw = [x['image'] for x in tfds.data_source(
      config.data.name, split=split, data_dir=config.data.data_dir or None)]
  rows = ['| path | images | median images/s | repeats |', '|---|---|---|---|']
  rate = _median_rate(lambda: searcher.embed_images(raw), len(raw), args.repeats)
  rows.append(f'| Searcher.embed_images (numpy in) | {len(raw)} | {rate:.0f} | {args.repeats} |')
  # Not the cached path: features are recomputed from the files every repeat.
  def split_pass():
    for batch in input_pipeline.eval_iterator(config.data, split=split,
                                              batch_size=config.eval.batch_size):
      run.encode(batch['image'])
  rate = _median_rate(split_pass, len(raw), args.repeats)
  rows.append(f'| eval split: tf.data + Run.encode | {len(raw)} | {rate:.0f} | {args.repeats} |')
  print('\n'.join(rows))


if __name__ == '__main__':
  main()
