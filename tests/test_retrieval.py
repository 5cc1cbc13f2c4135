"""Retrieval metrics against plain-loop references and cases worked by hand."""

import numpy as np
import pytest

from devise_jax import retrieval


def _rankings(x, labels):
  """Per item: relevance of all other items, nearest first (float64 numpy argsort)."""
  x = np.asarray(x, np.float64)
  x /= np.linalg.norm(x, axis=1, keepdims=True)
  scores = x @ x.T
  out = []
  for i in range(len(x)):
    order = [j for j in np.argsort(-scores[i], kind='stable') if j != i]
    out.append([labels[j] == labels[i] for j in order])
  return out


def _reference_recall(x, labels, k):
  hits = [any(rel[:k]) for rel in _rankings(x, labels) if any(rel)]
  return sum(hits) / len(hits)


def _reference_map(x, labels):
  aps = []
  for rel in _rankings(x, labels):
    r = sum(rel)
    if r == 0:
      continue
    found, total = 0, 0.0
    for i in range(r):
      if rel[i]:
        found += 1
        total += found / (i + 1)
    aps.append(total / r)
  return sum(aps) / len(aps)


# Float32 scores can order pairs whose float64 cosines differ by ~1e-8 the other way
# (found at N = 900). One such swap moves MAP@R by well under 1e-6 and recall@k by at
# most one query; a real error (self counted, ranks off by one) moves them by far more.
_MAP_TOL = 1e-6


def _recall_tol(n):
  return 1.5 / n


def _angles(degrees):
  radians = np.deg2rad(degrees)
  return np.stack([np.cos(radians), np.sin(radians)], axis=1)


@pytest.fixture(name='clustered', scope='module')
def _clustered():
  """300 x 8 points around 4 overlapping class centres, plus 3 singletons."""
  rng = np.random.default_rng(0)
  labels = np.concatenate([rng.integers(0, 4, 297), [10, 11, 12]])
  x = rng.normal(size=(4, 8))[labels % 4] + 1.5 * rng.normal(size=(300, 8))
  return x.astype(np.float32), labels


# Both search paths (search.topk and the partial sort), with batches that do not
# divide the queries evenly.
@pytest.fixture(name='path', params=['topk', 'partial_sort'])
def _path(request, monkeypatch):
  if request.param == 'partial_sort':
    monkeypatch.setattr(retrieval, '_TOPK_MAX', 0)
    monkeypatch.setattr(retrieval, '_MAX_SCORES', 300 * 5)  # Batches of 5.
  return request.param


def test_matches_loop_reference(clustered, path):
  del path
  x, labels = clustered
  got = retrieval.retrieval_metrics(x, labels, ks=(1, 3, 10), batch_size=7)
  assert got['num_queries'] == 297
  for k in (1, 3, 10):
    assert got[f'recall@{k}'] == pytest.approx(_reference_recall(x, labels, k),
                                               abs=_recall_tol(300))
  assert got['map@r'] == pytest.approx(_reference_map(x, labels), abs=_MAP_TOL)
  assert 0.1 < got['map@r'] < 0.9  # The classes overlap: neither trivial nor hopeless.
  assert retrieval.recall_at_k(x, labels, ks=(1, 3, 10), batch_size=7) == {
      name: got[name] for name in ('recall@1', 'recall@3', 'recall@10')}
  assert retrieval.map_at_r(x, labels, batch_size=7) == pytest.approx(got['map@r'], abs=1e-12)


def test_large_r_matches_loop_reference():
  # R ~ 300 > _TOPK_MAX, so the default thresholds take the partial-sort path.
  rng = np.random.default_rng(1)
  labels = rng.integers(0, 3, 900)
  x = rng.normal(size=(3, 6))[labels] + 2.0 * rng.normal(size=(900, 6))
  got = retrieval.retrieval_metrics(x, labels)
  assert got['recall@5'] == pytest.approx(_reference_recall(x, labels, 5),
                                          abs=_recall_tol(900))
  assert got['map@r'] == pytest.approx(_reference_map(x, labels), abs=_MAP_TOL)


def test_worked_example(path):
  del path
  # Angles on a Golomb ruler (all pairwise gaps differ, so no ties). Item 0 (A, R = 4)
  # ranks A B A B ...: AP = (1/1 + 2/3) / 4 = 5/12, as in the paper's definition. By
  # hand, the APs of the items in order are 5/12, 5/12, 0, 5/24, 1/4, 1/2, 3/8, 3/8.
  # The last item is a singleton, opposite them all, so it is never a query or a hit.
  x = _angles(3.0 * np.array([0, 1, 4, 9, 15, 22, 32, 34, 77]))
  labels = np.array(list('AABABBAAC'))
  got = retrieval.retrieval_metrics(x, labels, ks=(1, 2))
  assert got == pytest.approx(
      {'recall@1': 5 / 8, 'recall@2': 6 / 8, 'map@r': 61 / 192, 'num_queries': 8})


def test_perfect_embedding():
  rng = np.random.default_rng(2)
  labels = rng.permutation(np.repeat(np.arange(3), 20))
  x = np.eye(3)[labels] + 0.01 * rng.normal(size=(60, 3))
  assert retrieval.retrieval_metrics(x, labels) == pytest.approx(
      {'recall@1': 1.0, 'recall@5': 1.0, 'map@r': 1.0, 'num_queries': 60})


def test_self_is_never_retrieved(path):
  del path
  # Each item's nearest neighbour is itself; the next is of the other class. The
  # items at 0 and 91 degrees find their class second, those at 1 and 90 third.
  x, labels = _angles([0, 1, 90, 91]), np.array([0, 1, 0, 1])
  got = retrieval.retrieval_metrics(x, labels, ks=(1, 2, 3))
  assert got == {'recall@1': 0.0, 'recall@2': 0.5, 'recall@3': 1.0, 'map@r': 0.0,
                 'num_queries': 4}


def test_precision_at_k_matches_loop():
  rng = np.random.default_rng(3)
  gallery_labels = rng.integers(0, 5, 400)
  gallery = rng.normal(size=(5, 16))[gallery_labels] + 2.0 * rng.normal(size=(400, 16))
  queries, query_labels = rng.normal(size=(7, 16)), np.array([0, 1, 2, 3, 4, 0, 9])
  got = retrieval.precision_at_k_per_query(queries, gallery, gallery_labels, query_labels,
                                           k=10, batch_size=3)
  unit = gallery / np.linalg.norm(gallery, axis=1, keepdims=True)
  for c, (q, label) in enumerate(zip(queries, query_labels)):
    top = np.argsort(-(unit @ q), kind='stable')[:10]
    assert got[c] == pytest.approx(np.mean(gallery_labels[top] == label), abs=1e-12)
  assert got.shape == (7,) and got[-1] == 0.0
  everything = retrieval.precision_at_k_per_query(queries[:1], gallery, gallery_labels,
                                                  query_labels[:1], k=1000)
  assert everything[0] == pytest.approx(np.mean(gallery_labels == 0))  # k clamped to N.


@pytest.mark.parametrize('embeddings, labels, match', [
    (np.ones((3, 2)), [0, 0], 'labels have shape'),
    (np.ones((0, 2)), [], 'non-empty'),
    (np.ones(4), [0, 0, 1, 1], 'non-empty'),
    (np.eye(3), [0, 1, 2], 'no label occurs twice'),
    (np.array([[1, 0], [0, 0]]), [0, 0], 'zero norm'),
])
def test_bad_sets(embeddings, labels, match):
  with pytest.raises(ValueError, match=match):
    retrieval.retrieval_metrics(embeddings, labels)


def test_bad_arguments():
  x, labels = np.eye(4), [0, 0, 1, 1]
  with pytest.raises(ValueError, match='each of ks'):
    retrieval.recall_at_k(x, labels, ks=(1, 0))
  with pytest.raises(ValueError, match='ks must name'):
    retrieval.recall_at_k(x, labels, ks=())
  with pytest.raises(ValueError, match='batch_size'):
    retrieval.map_at_r(x, labels, batch_size=0)
  with pytest.raises(ValueError, match='labels have shape'):
    retrieval.precision_at_k_per_query(x[:2], x, labels, [0])
  with pytest.raises(ValueError, match='dimension'):
    retrieval.precision_at_k_per_query(np.ones((1, 3)), x, labels, [0])
  with pytest.raises(ValueError, match='k must be'):
    retrieval.precision_at_k_per_query(x[:1], x, labels, [0], k=0)
