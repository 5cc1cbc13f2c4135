"""Embedding throughput: images/s of the gallery path (preprocess + encoder + heads).

  .venv/bin/python experiments/bench/bench_embed.py --workdir workdirs/default_seed2

Times `Searcher.embed_images` (numpy images in, DeViSE + Siamese vectors out) and the
split path `evaluate.predict` (tf.data decode + preprocess + encoder, as `devise-jax
embed` runs it) on the workdir's eval split; medians over repeats, after one warm-up.
"""

import argparse
import statistics
import time

import tensorflow_datasets as tfds

from devise_jax import evaluate
from devise_jax import gallery


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
  searcher = gallery.Searcher(args.workdir)
  config = searcher.config
  split = f'{config.data.eval_split.split("[")[0]}[:{args.images}]'
  raw = [x['image'] for x in tfds.as_numpy(
      tfds.load(config.data.name, split=split, data_dir=config.data.data_dir or None))]
  rows = ['| path | images | median images/s | repeats |', '|---|---|---|---|']
  rate = _median_rate(lambda: searcher.embed_images(raw), len(raw), args.repeats)
  rows.append(f'| Searcher.embed_images (numpy in) | {len(raw)} | {rate:.0f} | {args.repeats} |')
  rate = _median_rate(lambda: evaluate.predict(config, searcher.model, searcher.variables,
                                               split), len(raw), args.repeats)
  rows.append(f'| evaluate.predict (tf.data split) | {len(raw)} | {rate:.0f} | {args.repeats} |')
  print('\n'.join(rows))


if __name__ == '__main__':
  main()
