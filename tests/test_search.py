"""Search and embedding algebra against numpy references and hand-built cases."""

import numpy as np
import pytest

from devise_jax import search


def _unit(x):
  return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def _random_unit(rng, n, d):
  return _unit(rng.normal(size=(n, d)))


def _reference_topk(queries, keys, k, excluded=None):
  """Top-k by numpy argsort of float64 cosines; `excluded` lists ids per query."""
  scores = np.atleast_2d(queries).astype(np.float64) @ keys.astype(np.float64).T
  for row, ids in enumerate(excluded or []):
    scores[row, list(ids)] = -np.inf
  order = np.argsort(-scores, axis=1, kind='stable')[:, :k]
  return np.take_along_axis(scores, order, axis=1), order


@pytest.fixture(name='clustered', scope='module')
def _clustered():
  """60k x 32 unit keys around 500 centres, 200 queries from the same mixture."""
  rng = np.random.default_rng(0)
  centres = _random_unit(rng, 500, 32)
  noise = 0.5 / np.sqrt(32) * rng.normal(size=(60_200, 32))
  points = _unit(centres[rng.integers(0, 500, 60_200)] + noise)
  return points[:60_000], points[60_000:]


@pytest.fixture(name='approx_index', scope='module')
def _approx_index(clustered):
  pytest.importorskip('faiss')
  return search.Index.build(clustered[0], approximate=True)


@pytest.mark.parametrize('window', [7, 64, None])
def test_topk_matches_argsort_across_window_boundaries(window, monkeypatch):
  if window is not None:  # Small windows: N = 1000 is no multiple of either.
    monkeypatch.setattr(search, '_MIN_WINDOW', window)
    monkeypatch.setattr(search, '_MAX_WINDOW', window)
  rng = np.random.default_rng(1)
  keys, queries = _random_unit(rng, 1000, 16), _random_unit(rng, 5, 16)
  scores, indices = search.topk(queries, keys, 10)
  ref_scores, ref_indices = _reference_topk(queries, keys, 10)
  assert scores.shape == indices.shape == (5, 10)
  np.testing.assert_array_equal(indices, ref_indices)
  np.testing.assert_allclose(scores, ref_scores, atol=1e-5)


def test_topk_default_windows_find_the_best_key_in_the_last_window():
  rng = np.random.default_rng(2)
  keys, queries = _random_unit(rng, 70_001, 8), _random_unit(rng, 3, 8)
  keys[-1], keys[65_536] = queries[0], queries[1]  # In the overlapping last window.
  scores, indices = search.topk(queries, keys, 5)
  _, ref_indices = _reference_topk(queries, keys, 5)
  np.testing.assert_array_equal(indices, ref_indices)
  assert indices[0, 0] == 70_000 and indices[1, 0] == 65_536
  assert all(len(set(row)) == 5 for row in indices)  # The overlap is not counted twice.
  np.testing.assert_allclose(scores[:2, 0], 1.0, atol=1e-6)


def test_topk_clamps_k_to_the_gallery_size():
  rng = np.random.default_rng(3)
  keys, queries = _random_unit(rng, 3, 4), _random_unit(rng, 2, 4)
  scores, indices = search.topk(queries, keys, 10)
  ref_scores, ref_indices = _reference_topk(queries, keys, 3)
  assert indices.shape == (2, 3)
  np.testing.assert_array_equal(indices, ref_indices)
  np.testing.assert_allclose(scores, ref_scores, atol=1e-6)


def test_topk_single_query_vector_and_batch_of_one_agree():
  rng = np.random.default_rng(4)
  keys, query = _random_unit(rng, 50, 6), _random_unit(rng, 1, 6)
  scores, indices = search.topk(query[0], keys, 4)
  batch_scores, batch_indices = search.topk(query, keys, 4)
  assert scores.shape == indices.shape == (4,)
  assert batch_indices.shape == (1, 4)
  np.testing.assert_array_equal(indices, batch_indices[0])
  np.testing.assert_array_equal(indices, _reference_topk(query, keys, 4)[1][0])
  np.testing.assert_allclose(scores, batch_scores[0])


def test_topk_normalises_queries():
  rng = np.random.default_rng(5)
  keys, queries = _random_unit(rng, 40, 5), _random_unit(rng, 2, 5)
  scores, _ = search.topk(queries * 7.0, keys, 3)
  np.testing.assert_allclose(scores, _reference_topk(queries, keys, 3)[0], atol=1e-6)


@pytest.mark.parametrize('as_mask', [False, True])
def test_exclude_removes_exactly_the_given_items(as_mask):
  rng = np.random.default_rng(6)
  keys, queries = _random_unit(rng, 300, 8), _random_unit(rng, 3, 8)
  best = _reference_topk(queries, keys, 5)[1]
  excluded = [best[0, :3].tolist(), [], best[2, [0, 2, 4]].tolist()]
  exclude = excluded
  if as_mask:
    exclude = np.zeros((3, 300), bool)
    for row, ids in enumerate(excluded):
      exclude[row, ids] = True
  scores, indices = search.topk(queries, keys, 5, exclude=exclude)
  ref_scores, ref_indices = _reference_topk(queries, keys, 5, excluded)
  np.testing.assert_array_equal(indices, ref_indices)
  np.testing.assert_allclose(scores, ref_scores, atol=1e-5)
  for row, ids in enumerate(excluded):
    assert not set(ids) & set(indices[row])


def test_exclude_leaves_unfillable_slots_empty():
  keys = np.eye(4, dtype=np.float32)
  scores, indices = search.topk(keys[0], keys, 4, exclude=[0, 2])
  assert indices[:2].tolist() in ([1, 3], [3, 1])  # Tied at cosine 0: any order.
  np.testing.assert_array_equal(indices[2:], [-1, -1])
  assert np.isneginf(scores[2:]).all()


def test_exclude_errors():
  keys = np.eye(4, dtype=np.float32)
  with pytest.raises(ValueError, match='rows for 2 queries'):
    search.topk(keys[:2], keys, 2, exclude=[[0]])
  with pytest.raises(ValueError, match=r'in \[0, 4\)'):
    search.topk(keys[0], keys, 2, exclude=[4])


def test_combine_matches_numpy_by_hand():
  vectors = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.6, 0.0, 0.8]], np.float32)
  weights = [1.0, -2.0, 0.5]
  total = np.array([1.0 + 0.3, -2.0, 0.4])
  want = total / np.sqrt(1.69 + 4 + 0.16)
  np.testing.assert_allclose(search.combine(vectors, weights), want, rtol=1e-6)
  np.testing.assert_allclose(search.combine(vectors[:2], [1, 1]), [0.5**0.5, 0.5**0.5, 0],
                             rtol=1e-6)


@pytest.mark.parametrize('vectors, weights, message', [
    (np.eye(3)[[0, 0]], [1.0, -1.0], 'cancel to a zero vector'),
    (np.eye(3)[[0, 1, 0, 1]], [0.5, 2.0, -0.5, -2.0], 'cancel to a zero vector'),
    (np.zeros((0, 3)), [], 'non-empty'),
    ([], [], 'non-empty'),
    (np.eye(3), [1.0, 1.0], '2 weights for 3 vectors'),
    (np.eye(3), [1.0, np.nan, 1.0], 'NaN or inf'),
    (np.array([[1.0, np.inf, 0.0]]), [1.0], 'NaN or inf'),
])
def test_combine_errors(vectors, weights, message):
  with pytest.raises(ValueError, match=message):
    search.combine(vectors, weights)


def test_normalize_and_its_zero_norm_error():
  np.testing.assert_allclose(search.normalize([[3.0, 4.0]]), [[0.6, 0.8]])
  with pytest.raises(ValueError, match='vector 1 has zero norm'):
    search.normalize([[1.0, 0.0], [0.0, 0.0]])


@pytest.mark.parametrize('kind', ['keys', 'exact', 'approximate'])
def test_algebra_never_returns_its_inputs(kind):
  # a and b are each nearer to normalize(a + b) (cosine 0.707) than any other item;
  # c (0.69) and d (0.66) come next; the random rest lie in the orthogonal complement.
  rng = np.random.default_rng(7)
  basis = np.linalg.qr(rng.normal(size=(32, 32)))[0].T.astype(np.float32)
  a, b = basis[0], basis[1]
  query = (a + b) / np.sqrt(2)
  c = 0.69 * query + np.sqrt(1 - 0.69**2) * basis[2]
  d = 0.66 * query + np.sqrt(1 - 0.66**2) * basis[3]
  rest = _unit(rng.normal(size=(500, 28)) @ basis[4:])
  gallery = np.concatenate([rest[:100], [a], rest[100:300], [c, b], rest[300:], [d]])
  ia, ic, ib, id_ = 100, 301, 302, 503
  if kind == 'keys':
    index = gallery
  else:
    if kind == 'approximate':
      pytest.importorskip('faiss')
    index = search.Index.build(gallery, approximate=kind == 'approximate')
  _, unfiltered = search.algebra([a, b], [1.0, 1.0], index, 2)
  assert set(unfiltered.tolist()) == {ia, ib}  # The inputs are the nearest items.
  scores, indices = search.algebra([a, b], [1.0, 1.0], index, 2, exclude_ids=[ia, ib])
  np.testing.assert_array_equal(indices, [ic, id_])
  np.testing.assert_allclose(scores, [0.69, 0.66], atol=1e-5)


def test_approximate_recall_at_10(clustered, approx_index):
  keys, queries = clustered
  assert approx_index.approximate and len(approx_index) == 60_000 and approx_index.dim == 32
  _, approx = approx_index.search(queries, 10)
  _, exact = search.topk(queries, keys, 10)
  assert search.recall_at_k(approx, exact) >= 0.9


def test_approximate_exclude_over_fetches(clustered, approx_index):
  _, queries = clustered
  _, first = approx_index.search(queries[:4], 10)
  excluded = [row[:3].tolist() for row in first]
  scores, indices = approx_index.search(queries[:4], 10, exclude=excluded)
  assert indices.shape == (4, 10) and (indices >= 0).all()
  for row, ids in enumerate(excluded):
    assert not set(ids) & set(indices[row])
  assert (np.diff(scores, axis=1) <= 0).all()


@pytest.mark.parametrize('kind', ['exact', 'approximate'])
def test_save_load_round_trip(kind, clustered, tmp_path, request):
  keys, queries = clustered
  if kind == 'approximate':
    index = request.getfixturevalue('approx_index')
  else:
    keys = keys[:5000]
    index = search.Index.build(keys)
  index.save(str(tmp_path / 'index'))
  loaded = search.Index.load(str(tmp_path / 'index'), keys)
  assert loaded.approximate == index.approximate and len(loaded) == len(index)
  for got, want in zip(loaded.search(queries, 10, exclude=[[0]] * len(queries)),
                       index.search(queries, 10, exclude=[[0]] * len(queries))):
    np.testing.assert_array_equal(got, want)
  with pytest.raises(ValueError, match='shape'):
    search.Index.load(str(tmp_path / 'index'), keys[:-1])
  if kind == 'approximate':
    with pytest.raises(ValueError, match='do not match'):
      search.Index.load(str(tmp_path / 'index'), keys[::-1])


def test_dimension_mismatch_is_an_error():
  keys = np.eye(4, dtype=np.float32)
  with pytest.raises(ValueError, match='dimension 5 but the keys have 4'):
    search.topk(np.ones((2, 5)), keys, 1)
  with pytest.raises(ValueError, match='dimension 3 but the keys have 4'):
    search.Index.build(keys).search(np.ones(3), 1)


def test_approximate_dimension_mismatch_is_an_error(approx_index):
  with pytest.raises(ValueError, match='dimension 31 but the keys have 32'):
    approx_index.search(np.ones((2, 31)), 1)


def test_automatic_threshold(monkeypatch):
  rng = np.random.default_rng(8)
  keys = _random_unit(rng, search.APPROX_THRESHOLD, 4)
  assert not search.Index.build(keys).approximate  # At the threshold: exact.
  pytest.importorskip('faiss')
  monkeypatch.setattr(search, 'APPROX_THRESHOLD', 99)
  assert not search.Index.build(keys[:99]).approximate
  assert search.Index.build(keys[:100]).approximate
  assert not search.Index.build(keys[:100], approximate=False).approximate
  assert search.Index.build(keys[:10], approximate=True).approximate


def test_recall_at_k_by_hand():
  recall = search.recall_at_k([[1, 2, 3], [4, 5, 6]], [[3, 2, 9], [7, 8, 9]])
  assert recall == pytest.approx((2 / 3 + 0) / 2)
  assert search.recall_at_k([5, 6], [6, 5]) == 1.0


def test_topk_reuses_its_compiled_program():
  rng = np.random.default_rng(9)
  keys = _random_unit(rng, 777, 8)
  search.topk(_random_unit(rng, 3, 8), keys, 5)
  compiled = search._exact_topk._cache_size()  # pylint: disable=protected-access
  search.topk(_random_unit(rng, 4, 8), keys, 5)  # Same query bucket (4).
  search.topk(_random_unit(rng, 3, 8), _random_unit(rng, 777, 8), 6, exclude=[[1]] * 3)
  assert search._exact_topk._cache_size() == compiled  # pylint: disable=protected-access
