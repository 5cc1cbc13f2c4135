"""Top-k cosine search and embedding algebra over unit-norm float32 vectors.

Scores are cosine similarities: keys and queries are L2-normalised. Ties come back
in an unspecified order (the exact path happens to put the lower index first).

Exact search (`topk`) is one jitted `fori_loop` over fixed-size windows of the keys,
merging each window's top-k into a running top-k, so memory stays at [queries,
window] scores for any gallery size. It compiles once per (gallery size, query
count rounded up to a power of two, k), not per call.

Approximate search uses a faiss-cpu HNSW graph (`IndexHNSWFlat`, inner product).
Against usearch's HNSW with the same graph settings (experiments/bench/README.md)
faiss answered batches of 256 queries about 2x faster with equal or higher recall@10
at each search effort (build times were mixed), and it has a stable non-pickle file
format (`faiss.write_index`). faiss is imported only when an approximate index is
built or loaded, so exact search works without it. Saving writes the graph (it holds
its own copy of the keys) because rebuilding takes ~30 s per 100k keys on 2 cores;
`Index.load` still takes the keys, to check they match.
"""

import functools
import json
import os

import jax
import jax.numpy as jnp
import numpy as np

# `Index.build` uses the HNSW graph above this many keys. Exact search of 100k x 64
# keys takes ~2 ms a query (~70 ms for 256) on 2 CPU cores while building the graph
# takes ~30 s, so the graph only pays for itself on galleries of millions.
APPROX_THRESHOLD = 1_000_000
HNSW_M = 32  # Graph degree; 16 loses ~0.2 recall@10 on 64-d random data.
HNSW_EF_CONSTRUCTION = 128  # 64 builds ~10% faster but loses ~0.07 recall@10.
HNSW_EF_SEARCH = 128  # Raised to the number of items fetched when that is larger.
_MAX_SCORES = 2**21  # Scores held per window (8 MB): bounds memory for any gallery.
_MIN_WINDOW, _MAX_WINDOW = 4096, 65536
_CANCEL_TOL = 1e-6  # `combine` result norm, relative to the largest possible norm.
_FORMAT = 'devise_jax.search.Index/1'


def normalize(x, axis=-1):
  """`x` as float32 scaled to unit L2 norm along `axis`."""
  x = np.asarray(x, np.float32)
  if not np.isfinite(x).all():
    raise ValueError('normalize: input contains NaN or inf')
  norm = np.linalg.norm(x, axis=axis, keepdims=True)
  zero = np.flatnonzero(norm == 0)
  if zero.size:
    raise ValueError(f'normalize: vector {zero[0]} has zero norm')
  return x / norm


def _pow2(x):
  """The smallest power of two >= x (x >= 1)."""
  return 1 << (int(x) - 1).bit_length()


def _check_keys(keys):
  if keys.ndim != 2 or keys.shape[0] == 0:
    raise ValueError(f'keys must be a non-empty [N, D] array, got shape {keys.shape}')


def _excluded_ids(exclude, n):
  """The sorted ids one query's `exclude` row (a bool mask [N] or ids) removes."""
  row = np.asarray(exclude)
  if row.dtype == bool:
    if row.shape != (n,):
      raise ValueError(f'an exclude mask row must have shape ({n},), got {row.shape}')
    row = np.flatnonzero(row)
  elif row.size and not np.issubdtype(row.dtype, np.integer):
    raise ValueError(f'exclude ids must be integers, got dtype {row.dtype}')
  row = np.unique(row.astype(np.int64).ravel())
  if row.size and (row[0] < 0 or row[-1] >= n):
    bad = row[0] if row[0] < 0 else row[-1]
    raise ValueError(f'exclude ids must be in [0, {n}), got {bad}')
  return row


def _prepare(queries, k, exclude, n, dim):
  """Checked inputs: unit queries [Q, D], whether one [D] query was given, k clamped
  to n, and the excluded ids per query."""
  q = np.asarray(queries, np.float32)
  if q.ndim not in (1, 2) or q.size == 0:
    raise ValueError(f'queries must be a non-empty [Q, D] or [D] array, got shape {q.shape}')
  if q.shape[-1] != dim:
    raise ValueError(f'queries have dimension {q.shape[-1]} but the keys have {dim}')
  if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
    raise ValueError(f'k must be a positive integer, got {k!r}')
  single, q = q.ndim == 1, normalize(np.atleast_2d(q))
  if exclude is None:
    exclude = [()] * len(q)
  elif single:
    exclude = [exclude]
  if len(exclude) != len(q):
    raise ValueError(f'exclude has {len(exclude)} rows for {len(q)} queries')
  return q, single, min(int(k), n), [_excluded_ids(row, n) for row in exclude]


def _finish(scores, ids, excluded, k, single):
  """The best `k` per row once `excluded` ids are dropped; -inf / -1 fill slots left empty."""
  out_s = np.full((len(ids), k), -np.inf, np.float32)
  out_i = np.full((len(ids), k), -1, np.int64)
  for r, (s, i, ex) in enumerate(zip(scores, ids, excluded)):
    keep = (i >= 0) & ~np.isin(i, ex)
    s, i = s[keep][:k], i[keep][:k]
    out_s[r, :len(s)], out_i[r, :len(i)] = s, i
  return (out_s[0], out_i[0]) if single else (out_s, out_i)


@functools.partial(jax.jit, static_argnames=('k', 'window'))
def _exact_topk(queries, keys, *, k, window):
  """Top-k of `queries @ keys.T`, one window of `window` keys at a time."""
  n = keys.shape[0]
  offsets = jnp.arange(window, dtype=jnp.int32)

  def merge(step, best):
    start = step * window
    # The last window slides back to end at n, so every window has one shape and no
    # keys are copied into padding; ids it shares with the previous window are masked.
    lo = jnp.minimum(start, n - window)
    scores = queries @ jax.lax.dynamic_slice_in_dim(keys, lo, window).T
    scores = jnp.where(lo + offsets >= start, scores, -jnp.inf)
    all_scores = jnp.concatenate([best[0], scores], axis=1)
    all_ids = jnp.concatenate([best[1], jnp.broadcast_to(lo + offsets, scores.shape)], axis=1)
    top, pos = jax.lax.top_k(all_scores, k)
    return top, jnp.take_along_axis(all_ids, pos, axis=1)

  init = (jnp.full((queries.shape[0], k), -jnp.inf, jnp.float32),
          jnp.full((queries.shape[0], k), -1, jnp.int32))
  return jax.lax.fori_loop(0, -(-n // window), merge, init)


def topk(queries, keys, k, exclude=None):
  """Exact top-`k` keys by cosine for each query.

  Args:
    queries: [Q, D] or [D]; normalised here.
    keys: [N, D] unit vectors (not checked). A jax.Array avoids a host-to-device
      copy of the whole gallery on every call.
    k: number of results; clamped to N.
    exclude: ids never returned: a bool mask [Q, N] or Q lists of ids ([N] or one
      list for a [D] query). Applied by fetching k + (most exclusions in a row) and
      dropping them, so keep them few.

  Returns:
    (scores [Q, k], indices [Q, k]), best first ([k] each for a [D] query). Slots
    exclusions leave empty hold score -inf and index -1.
  """
  keys = keys if isinstance(keys, jax.Array) else np.asarray(keys, np.float32)
  _check_keys(keys)
  n, dim = keys.shape
  q, single, k, excluded = _prepare(queries, k, exclude, n, dim)
  fetch = min(n, _pow2(k + max(map(len, excluded))))  # Power of two: fewer compiles.
  bucket = _pow2(len(q))
  window = min(n, int(np.clip(_MAX_SCORES // bucket, _MIN_WINDOW, _MAX_WINDOW)))
  padded = jnp.asarray(np.pad(q, ((0, bucket - len(q)), (0, 0))))
  scores, ids = _exact_topk(padded, jnp.asarray(keys, jnp.float32), k=fetch, window=window)
  return _finish(np.asarray(scores)[:len(q)], np.asarray(ids)[:len(q)], excluded, k, single)


def _faiss():
  try:
    import faiss  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    raise ImportError('the approximate index needs faiss-cpu: pip install faiss-cpu') from e
  return faiss


class Index:
  """A gallery of unit keys, searched exactly on device or through an HNSW graph."""

  def __init__(self, keys=None, hnsw=None):
    """Use `Index.build` or `Index.load`: exactly one of `keys` (exact) or `hnsw`."""
    self._keys, self._hnsw = keys, hnsw

  @classmethod
  def build(cls, keys, approximate=None):
    """Indexes `keys` [N, D] (normalised here): exactly, through the HNSW graph
    (approximate=True), or through the graph when N > APPROX_THRESHOLD (None)."""
    keys = np.asarray(keys, np.float32)
    _check_keys(keys)
    keys = np.ascontiguousarray(normalize(keys))
    if approximate is None:
      approximate = len(keys) > APPROX_THRESHOLD
    if not approximate:
      return cls(keys=jnp.asarray(keys))
    faiss = _faiss()
    hnsw = faiss.IndexHNSWFlat(keys.shape[1], HNSW_M, faiss.METRIC_INNER_PRODUCT)
    hnsw.hnsw.efConstruction = HNSW_EF_CONSTRUCTION
    hnsw.add(keys)
    return cls(hnsw=hnsw)

  @property
  def approximate(self):
    return self._hnsw is not None

  @property
  def dim(self):
    return self._hnsw.d if self.approximate else self._keys.shape[1]

  def __len__(self):
    return self._hnsw.ntotal if self.approximate else self._keys.shape[0]

  def search(self, queries, k, exclude=None):
    """Same arguments and results as `topk`."""
    if not self.approximate:
      return topk(queries, self._keys, k, exclude)
    q, single, k, excluded = _prepare(queries, k, exclude, len(self), self.dim)
    fetch = min(len(self), k + max(map(len, excluded)))
    params = _faiss().SearchParametersHNSW(efSearch=max(HNSW_EF_SEARCH, fetch))
    scores, ids = self._hnsw.search(q, fetch, params=params)
    scores = np.where(ids >= 0, scores, -np.inf)  # faiss marks missing results with -1.
    return _finish(scores, ids, excluded, k, single)

  def save(self, path):
    """Writes JSON metadata (and the faiss graph, if any) to directory `path`."""
    os.makedirs(path, exist_ok=True)
    meta = dict(format=_FORMAT, approximate=self.approximate, size=len(self), dim=self.dim)
    with open(os.path.join(path, 'index.json'), 'w') as f:
      json.dump(meta, f)
    if self.approximate:
      _faiss().write_index(self._hnsw, os.path.join(path, 'hnsw.faiss'))

  @classmethod
  def load(cls, path, keys):
    """The index saved in `path`, for the same `keys` [N, D] it was built from."""
    with open(os.path.join(path, 'index.json')) as f:
      meta = json.load(f)
    if meta.get('format') != _FORMAT:
      raise ValueError(f'{path} is not a saved search index (format {meta.get("format")!r})')
    keys = normalize(keys)
    if keys.shape != (meta['size'], meta['dim']):
      saved = (meta['size'], meta['dim'])
      raise ValueError(f'keys have shape {keys.shape}, the saved index {saved}')
    if not meta['approximate']:
      return cls(keys=jnp.asarray(keys))
    hnsw = _faiss().read_index(os.path.join(path, 'hnsw.faiss'))
    probe = np.unique(np.linspace(0, len(keys) - 1, 8).astype(np.int64))
    if not np.allclose(hnsw.reconstruct_batch(probe), keys[probe], atol=1e-6):
      raise ValueError(f'keys do not match the index saved in {path}')
    return cls(hnsw=hnsw)


def combine(vectors, weights):
  """The unit vector along the weighted sum of `vectors` [M, D] with `weights` [M]."""
  vectors, weights = np.asarray(vectors, np.float64), np.asarray(weights, np.float64)
  if vectors.ndim != 2 or vectors.shape[0] == 0 or vectors.shape[1] == 0:
    raise ValueError(f'combine: need non-empty [M, D] vectors, got shape {vectors.shape}')
  if weights.shape != (len(vectors),):
    raise ValueError(f'combine: {weights.size} weights for {len(vectors)} vectors')
  if not (np.isfinite(vectors).all() and np.isfinite(weights).all()):
    raise ValueError('combine: vectors or weights contain NaN or inf')
  total = weights @ vectors
  norm = np.linalg.norm(total)
  if norm <= _CANCEL_TOL * (np.abs(weights) @ np.linalg.norm(vectors, axis=1)):
    raise ValueError('combine: the weights cancel to a zero vector')
  return (total / norm).astype(np.float32)


def label_softmax_penalty(keys, label_vectors, beta, shift=None, chunk=65536):
  """[N] penalty of each unit key for words -> images: (1/beta) * log sum_l
  exp(beta * (key . label_l - shift_l)) over the label space's unit vectors [L, D].

  Ranking keys by `query . key - penalty` ranks them by the log of a softmax over
  the labels (Smith et al., 2017's inverted softmax, image side): an image comes
  first for a word when the word beats the labels it already fits, not when it merely
  lies in a dense, central region that is near every word (hubness). As beta grows the
  penalty tends to the key's best label score. `shift` [L] lowers labels' scores
  (calibrated stacking's gamma on seen classes).
  """
  keys = np.asarray(keys, np.float32)
  labels = np.asarray(label_vectors, np.float64)
  shift = np.zeros(len(labels)) if shift is None else np.asarray(shift, np.float64)
  out = np.empty(len(keys))
  for start in range(0, len(keys), chunk):
    z = beta * (keys[start:start + chunk] @ labels.T - shift)
    top = z.max(axis=1)
    out[start:start + chunk] = (top + np.log(np.exp(z - top[:, None]).sum(axis=1))) / beta
  return out


def with_penalty(keys, penalty):
  """Keys [N, D + 1] whose `topk` score for a unit query q, times sqrt(2), is
  `q . key - penalty`: `topk` normalises the query [q, 1] to [q, 1] / sqrt(2), which
  scales every score alike and keeps the ranking."""
  return np.concatenate([np.asarray(keys, np.float32),
                         -np.asarray(penalty, np.float32)[:, None]], axis=1)


def algebra(terms, weights, index, k, exclude_ids=()):
  """Top-`k` gallery items nearest the normalised weighted sum of unit `terms`.

  `index` is an `Index` or unit keys [N, D]; `exclude_ids` (e.g. the gallery ids of
  the input images) are never returned. Returns (scores [k], indices [k]).
  """
  query = combine(terms, weights)
  exclude = np.asarray(list(exclude_ids), np.int64)
  if isinstance(index, Index):
    return index.search(query, k, exclude=exclude)
  return topk(query, index, k, exclude=exclude)


def recall_at_k(approx_indices, exact_indices):
  """Fraction of each row of `exact_indices` found in the same row of `approx_indices`,
  averaged over rows ([Q, k] or [k] each)."""
  approx, exact = np.atleast_2d(approx_indices), np.atleast_2d(exact_indices)
  if len(approx) != len(exact) or exact.shape[1] == 0:
    raise ValueError(f'recall_at_k: shapes {approx.shape} and {exact.shape} do not match')
  return float(np.mean([np.isin(e, a).mean() for a, e in zip(approx, exact)]))
