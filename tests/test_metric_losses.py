"""Stage-3 metric-learning losses and mining against plain loops and a hand-made batch."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from devise_jax import losses


def _unit(x):
  return x / np.linalg.norm(x, axis=-1, keepdims=True)


def _batch(seed=0, n=12, d=5, classes=3):
  rng = np.random.default_rng(seed)
  return _unit(rng.normal(size=(n, d))), rng.integers(0, classes, size=n)


def _dist(e, i, j):
  return float(np.linalg.norm(e[i] - e[j]))


def test_pairwise_distances_against_numpy():
  e, _ = _batch()
  ref = np.linalg.norm(e[:, None] - e[None], axis=-1)
  # d^2 = |a|^2 + |b|^2 - 2ab loses ~1e-7 to rounding, so sqrt is off by ~3e-4 near 0.
  np.testing.assert_allclose(losses.pairwise_distances(jnp.asarray(e)), ref, atol=1e-3)


@pytest.mark.parametrize('margin', [0.5, 1.2])
def test_contrastive_against_a_loop(margin):
  e, y = _batch()
  got = losses.contrastive(jnp.asarray(e), jnp.asarray(y), margin)
  for i in range(len(y)):
    terms = []
    for j in range(len(y)):
      if i == j:
        continue
      d = _dist(e, i, j)
      terms.append(d**2 / 2 if y[i] == y[j] else max(0.0, margin - d)**2 / 2)
    np.testing.assert_allclose(got[i], np.mean(terms), rtol=1e-4, atol=1e-6)


def test_batch_hard_against_a_loop():
  e, y = _batch(1)
  got = losses.triplet_batch_hard(jnp.asarray(e), jnp.asarray(y), 0.2)
  for a in range(len(y)):
    pos = [_dist(e, a, p) for p in range(len(y)) if p != a and y[p] == y[a]]
    neg = [_dist(e, a, n) for n in range(len(y)) if y[n] != y[a]]
    want = max(0.0, 0.2 + max(pos) - min(neg)) if pos and neg else 0.0
    np.testing.assert_allclose(got[a], want, rtol=1e-4, atol=1e-6)


def test_semi_hard_against_a_loop():
  e, y = _batch(2, n=16)
  got = losses.triplet_semi_hard(jnp.asarray(e), jnp.asarray(y), 0.3)
  for a in range(len(y)):
    terms = []
    for p in range(len(y)):
      if p == a or y[p] != y[a]:
        continue
      d_ap = _dist(e, a, p)
      negs = [_dist(e, a, n) for n in range(len(y)) if y[n] != y[a]]
      farther = [d for d in negs if d > d_ap]
      d_an = min(farther) if farther else max(negs)
      terms.append(max(0.0, 0.3 + d_ap - d_an))
    np.testing.assert_allclose(got[a], np.mean(terms) if terms else 0.0, rtol=1e-4,
                               atol=1e-6)


def test_mining_picks_the_right_pairs_on_a_hand_made_batch():
  # Points on a line; labels: A A A B B.
  x = np.array([0.0, 1.0, 3.0, 2.0, 5.0])
  labels = jnp.array([0, 0, 0, 1, 1])
  d = jnp.abs(jnp.asarray(x)[:, None] - jnp.asarray(x)[None, :])
  pos, neg, valid = losses.batch_hard_triplets(d, labels)
  # Anchor 0: farthest positive is 2 (distance 3), nearest negative is 3 (distance 2).
  assert (int(pos[0]), int(neg[0])) == (2, 3)
  # Anchor 3 (label B): its only positive is 4; nearest negative: 2 or 1 (distance 1);
  # argmin takes the first, index 1.
  assert (int(pos[3]), int(neg[3])) == (4, 1)
  assert bool(valid.all())
  semi, ok = losses.semi_hard_negatives(d, labels)
  # Anchor 0, positive 1 (d=1): negatives at 2 (index 3) and 5 (index 4); the nearest
  # one farther than 1 is index 3.
  assert int(semi[0, 1]) == 3
  # Anchor 0, positive 2 (d=3): only index 4 (d=5) is farther.
  assert int(semi[0, 2]) == 4
  # Anchor 2 (x=3), positive 1 (d=2): negatives at d=1 (3) and d=2 (4); none is
  # strictly farther, so the farthest negative (index 4) is used.
  assert int(semi[2, 1]) == 4
  assert bool(ok[0, 1]) and not bool(ok[0, 0]) and not bool(ok[0, 3])


def test_single_class_batch_has_no_valid_triplets_and_no_nans():
  e = jnp.asarray(_unit(np.random.default_rng(3).normal(size=(4, 3))))
  labels = jnp.zeros(4, jnp.int32)
  for name, fn in losses.SIAMESE_LOSSES.items():
    value = fn(e, labels).mean()
    grads = jax.grad(lambda x: fn(x, labels).mean())(e)
    assert np.isfinite(float(value)) and np.all(np.isfinite(grads)), name
  assert float(losses.triplet_batch_hard(e, labels).sum()) == 0.0


def test_identical_embeddings_have_finite_gradients():
  e = jnp.ones((4, 3)) / np.sqrt(3)
  labels = jnp.array([0, 0, 1, 1])
  for name, fn in losses.SIAMESE_LOSSES.items():
    grads = jax.grad(lambda x: fn(x, labels).mean())(e)
    assert np.all(np.isfinite(grads)), name
