"""Leave-one-out gallery retrieval metrics (Musgrave et al., 2020).

Every item of a labelled set queries all the other items of the same set, by cosine;
an item never retrieves itself. Items with no other item of their label (singletons,
R == 0) can neither hit nor be ranked, so, as in the paper's accuracy calculator,
they are skipped as queries by every metric here (they still serve as gallery items);
`num_queries` counts the queries used. Exactly tied scores (e.g. duplicate
embeddings) are ranked in an unspecified order.
"""

import jax
import jax.numpy as jnp
import numpy as np

from devise_jax import search

# Up to this many results a query, `search.topk` (fused lax.top_k) is fastest; beyond
# it a numpy partial sort of whole score rows is: at N = 70k, k = 1024 it takes ~0.5 s
# per 1k queries against ~3.7 s, and ~0.5 s against ~28 s at k = 7000.
_TOPK_MAX = 256
_MAX_SCORES = 2**23  # Scores held per batch of queries on the partial-sort path (32 MB).


def _check_k(k, name='k'):
  if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
    raise ValueError(f'{name} must be a positive integer, got {k!r}')
  return int(k)


def _check_set(embeddings, labels, name='embeddings'):
  """Checked float32 [N, D] embeddings and [N] labels."""
  x, labels = np.asarray(embeddings, np.float32), np.asarray(labels)
  if x.ndim != 2 or 0 in x.shape:
    raise ValueError(f'{name} must be a non-empty [N, D] array, got shape {x.shape}')
  if labels.shape != (len(x),):
    raise ValueError(f'labels have shape {labels.shape}, expected ({len(x)},) for {name}')
  return x, labels


@jax.jit
def _cosines(queries, keys):
  return queries @ keys.T


def _nearest_others(x, keys, ids, k, size):
  """Ids [B, k] of the k nearest items other than each of `ids` [B <= size], best
  first; `size` pads the partial-sort path to one compiled shape."""
  if k <= _TOPK_MAX:
    return search.topk(x[ids], keys, k, exclude=ids[:, None])[1]
  queries = jnp.asarray(np.pad(x[ids], ((0, size - len(ids)), (0, 0))))
  scores = np.array(_cosines(queries, keys)[:len(ids)])
  scores[np.arange(len(ids)), ids] = -np.inf
  top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
  order = np.argsort(-np.take_along_axis(scores, top, axis=1), axis=1)
  return np.take_along_axis(top, order, axis=1)


def _relevance(embeddings, labels, min_k, to_r, batch_size):
  """Yields (R, rel) per batch of non-singleton queries, where R [B] counts the other
  items with the query's label and rel [B, K] says whether each of the K nearest other
  items has it; K = max(min_k, largest R in the batch if `to_r`), at most N - 1."""
  x, labels = _check_set(embeddings, labels)
  x = search.normalize(x)
  _, codes, counts = np.unique(labels, return_inverse=True, return_counts=True)
  r = counts[codes] - 1
  order = np.flatnonzero(r > 0)
  if not order.size:
    raise ValueError('no label occurs twice, so there is nothing to retrieve')
  # Largest R first, so each batch's first query fixes its K (and so its path and
  # size); queries of similar R share a batch, so few results are fetched in vain.
  order = order[np.argsort(-r[order], kind='stable')]
  keys, start = jnp.asarray(x), 0
  wide = max(1, min(batch_size, _MAX_SCORES // len(x)))
  while start < len(order):
    k = min(max(min_k, r[order[start]] if to_r else 0), len(x) - 1)
    ids = order[start:start + (batch_size if k <= _TOPK_MAX else wide)]
    nn = _nearest_others(x, keys, ids, k, wide)
    yield r[ids], (nn >= 0) & (codes[nn] == codes[ids, None])
    start += len(ids)


def _average_precision_at_r(rel, r):
  """(1/R) * sum_{i<=R} P(i) rel(i) per row of `rel` [B, K >= R]."""
  rank = np.arange(1, rel.shape[1] + 1)
  rel = rel & (rank <= r[:, None])
  return (np.cumsum(rel, axis=1) / rank * rel).sum(axis=1) / r


def _metrics(embeddings, labels, ks, with_map, batch_size):
  ks = tuple(_check_k(k, 'each of ks') for k in ks)
  if not ks:
    raise ValueError('ks must name at least one k')
  batch_size = _check_k(batch_size, 'batch_size')
  hits, ap, count = np.zeros(len(ks)), 0.0, 0
  for r, rel in _relevance(embeddings, labels, max(ks), with_map, batch_size):
    hits += [rel[:, :k].any(axis=1).sum() for k in ks]
    ap += _average_precision_at_r(rel, r).sum() if with_map else 0.0
    count += len(r)
  out = {f'recall@{k}': float(h / count) for k, h in zip(ks, hits)}
  if with_map:
    out['map@r'] = float(ap / count)
  out['num_queries'] = count
  return out


def recall_at_k(embeddings, labels, ks=(1, 5), batch_size=256):
  """{'recall@k': ...} for each k in `ks`: the fraction of (non-singleton) queries with
  at least one item of their label among their k nearest other items.

  This is the metric-learning "Recall@k" (hit rate), not the IR recall |hits| / R.
  """
  out = _metrics(embeddings, labels, ks, False, batch_size)
  return {name: value for name, value in out.items() if name != 'num_queries'}


def map_at_r(embeddings, labels, batch_size=256):
  """MAP@R: the mean over (non-singleton) queries of (1/R) sum_{i<=R} P(i) rel(i), where
  R counts the other items of the query's label and P(i) is precision at rank i."""
  return _metrics(embeddings, labels, (1,), True, batch_size)['map@r']


def retrieval_metrics(embeddings, labels, ks=(1, 5), batch_size=256):
  """{'recall@k' for k in ks, 'map@r', 'num_queries'} from one pass over the queries."""
  return _metrics(embeddings, labels, ks, True, batch_size)


def precision_at_k_per_query(query_vectors, gallery, gallery_labels, query_labels, k=10,
                             batch_size=256):
  """[C] fraction of each query's k nearest gallery items (by cosine) whose label is the
  query's label, e.g. class word vectors searched against image embeddings. k is
  clamped to the gallery size."""
  keys, gallery_labels = _check_set(gallery, gallery_labels, 'gallery')
  queries, query_labels = _check_set(query_vectors, query_labels, 'query_vectors')
  k, batch_size = min(_check_k(k), len(keys)), _check_k(batch_size, 'batch_size')
  if queries.shape[1] != keys.shape[1]:
    dims = queries.shape[1], keys.shape[1]
    raise ValueError('query_vectors have dimension %d but the gallery %d' % dims)
  queries, keys = search.normalize(queries), jnp.asarray(search.normalize(keys))
  out = []
  for start in range(0, len(queries), batch_size):
    _, nn = search.topk(queries[start:start + batch_size], keys, k)
    out.append(gallery_labels[nn] == query_labels[start:start + batch_size, None])
  return np.concatenate(out).mean(axis=1)
