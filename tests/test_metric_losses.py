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


def _ms_loop(e, y, alpha, beta, base, epsilon):
  """Multi-similarity loss per anchor, and its mined pairs, written as plain loops."""
  s = e @ e.T
  out, kept = [], []
  for i in range(len(y)):
    pos = [j for j in range(len(y)) if j != i and y[j] == y[i]]
    neg = [j for j in range(len(y)) if y[j] != y[i]]
    keep_p = [j for j in pos if neg and s[i, j] - epsilon < max(s[i, n] for n in neg)]
    keep_n = [j for j in neg if pos and s[i, j] + epsilon > min(s[i, p] for p in pos)]
    loss = np.log(1 + sum(np.exp(-alpha * (s[i, j] - base)) for j in keep_p)) / alpha
    loss += np.log(1 + sum(np.exp(beta * (s[i, j] - base)) for j in keep_n)) / beta
    out.append(loss)
    kept.append((keep_p, keep_n))
  return np.array(out), kept


def _ms_gradient(e, y, alpha, beta, base, epsilon):
  """d mean(loss) / d e, derived by hand: with the mined pairs fixed, G = dL/dS has
  -exp(-alpha (S_ip - base)) / (1 + sum_p ...) at the kept positives and
  exp(beta (S_in - base)) / (1 + sum_n ...) at the kept negatives; S = e e^T, so
  dL/de = (G + G^T) e, all over the batch size."""
  s = e @ e.T
  g = np.zeros_like(s)
  for i, (keep_p, keep_n) in enumerate(_ms_loop(e, y, alpha, beta, base, epsilon)[1]):
    wp = np.exp(-alpha * (s[i, keep_p] - base))
    wn = np.exp(beta * (s[i, keep_n] - base))
    g[i, keep_p] = -wp / (1 + wp.sum())
    g[i, keep_n] = wn / (1 + wn.sum())
  return (g + g.T) @ e / len(y)


@pytest.mark.parametrize('alpha,beta,base,epsilon', [(2.0, 50.0, 0.5, 0.1),
                                                     (1.0, 10.0, 1.0, 0.3),
                                                     (2.0, 40.0, 0.0, 5.0)])
def test_multi_similarity_value_and_gradient_against_loops(alpha, beta, base, epsilon):
  e, y = _batch(4, n=16, d=6, classes=4)
  options = dict(alpha=alpha, beta=beta, base=base, epsilon=epsilon)
  want, kept = _ms_loop(e, y, **options)
  got = losses.multi_similarity(jnp.asarray(e, jnp.float32), jnp.asarray(y), **options)
  np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)
  grad = jax.grad(lambda x: losses.multi_similarity(x, jnp.asarray(y), **options).mean())(
      jnp.asarray(e, jnp.float32))
  np.testing.assert_allclose(grad, _ms_gradient(e, y, **options), rtol=1e-3, atol=1e-6)
  if epsilon < 1:  # The mining drops pairs (with epsilon 5 it keeps every pair).
    assert sum(len(p) + len(n) for p, n in kept) < sum(
        (y == y[i]).sum() - 1 + (y != y[i]).sum() for i in range(len(y)))


def test_multi_similarity_on_a_hand_made_batch():
  # Unit vectors at 0 and 10 degrees (class A), 90 and 180 degrees (class B).
  angles = np.radians([0.0, 10.0, 90.0, 180.0])
  e = jnp.asarray(np.stack([np.cos(angles), np.sin(angles)], 1), jnp.float32)
  got = losses.multi_similarity(e, jnp.array([0, 0, 1, 1]))
  # Anchor 0: its positive (cos 10 = 0.985) is easy, 0.1 above every negative (0 and
  # -1), and no negative comes within 0.1 of it: no pair is kept, the loss is 0.
  assert float(got[0]) == 0.0
  # Anchor 2 (90 degrees): positive at cos 90 = 0, negatives at 0 and cos 80 = 0.174;
  # all are kept: log(1 + e^{-2(0 - 0.5)}) / 2 + log(1 + e^{50(0 - 0.5)}
  # + e^{50(0.174 - 0.5)}) / 50.
  want = np.log1p(np.e) / 2 + np.log1p(np.exp(-25) + np.exp(50 * (np.cos(np.radians(80))
                                                                 - 0.5))) / 50
  np.testing.assert_allclose(float(got[2]), want, rtol=1e-5)
