"""Losses against plain-Python loops and hand-computed cases."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from devise_jax import losses


def _unit(x):
  return x / np.linalg.norm(x, axis=-1, keepdims=True)


def _hinge_rank_loop(v, t, y, margin):
  """Frome et al. eq. 1 for one example, and its gradient with respect to Mv."""
  loss, grad = 0.0, np.zeros_like(v)
  for j in range(len(t)):
    if j == y:
      continue
    term = margin - float(t[y] @ v) + float(t[j] @ v)
    if term > 0:
      loss += term
      grad += t[j] - t[y]
  return loss, grad


@pytest.mark.parametrize('margin', [0.1, 0.5])
def test_hinge_rank_and_gradient_match_a_loop(margin):
  rng = np.random.default_rng(0)
  emb = rng.normal(size=(16, 7)) * 0.3
  vecs = _unit(rng.normal(size=(9, 7)))
  labels = rng.integers(0, 9, size=16)
  got = losses.hinge_rank(jnp.asarray(emb), jnp.asarray(vecs), jnp.asarray(labels), margin)
  grads = jax.grad(lambda e: losses.hinge_rank(e, jnp.asarray(vecs), jnp.asarray(labels),
                                               margin).sum())(jnp.asarray(emb))
  for b in range(16):
    loss, grad = _hinge_rank_loop(emb[b], vecs, labels[b], margin)
    np.testing.assert_allclose(got[b], loss, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(grads[b], grad, rtol=1e-5, atol=1e-6)


def test_hinge_rank_hand_computed():
  vecs = jnp.array([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
  emb = jnp.array([[0.5, 0.45]])
  # True label 0 scores 0.5; label 1 scores 0.45 -> 0.1 - 0.5 + 0.45 = 0.05;
  # label 2 scores -0.5 -> 0.1 - 0.5 - 0.5 < 0 -> 0.
  np.testing.assert_allclose(losses.hinge_rank(emb, vecs, jnp.array([0])), [0.05],
                             rtol=1e-6)
  # Well separated by more than the margin: zero loss, zero gradient.
  far = jnp.array([[2.0, 0.0]])
  assert float(losses.hinge_rank(far, vecs, jnp.array([0]))[0]) == 0.0
  g = jax.grad(lambda e: losses.hinge_rank(e, vecs, jnp.array([0])).sum())(far)
  np.testing.assert_array_equal(g, 0.0)


def test_hinge_rank_numeric_gradients_and_no_nans():
  rng = np.random.default_rng(1)
  emb = jnp.asarray(rng.normal(size=(4, 5)))
  vecs = jnp.asarray(_unit(rng.normal(size=(6, 5))))
  labels = jnp.asarray(rng.integers(0, 6, size=4))
  check_grads(lambda e: losses.hinge_rank(e, vecs, labels).sum(), (emb,), order=1,
              modes=['rev'], eps=1e-4)
  zero = jax.grad(lambda e: losses.hinge_rank(e, vecs, labels).sum())(jnp.zeros((4, 5)))
  assert np.all(np.isfinite(zero))


def test_cosine_loss_against_numpy_and_finite_at_zero():
  rng = np.random.default_rng(2)
  emb = rng.normal(size=(5, 4))
  vecs = _unit(rng.normal(size=(3, 4)))
  labels = np.array([0, 2, 1, 1, 0])
  expected = [1 - emb[i] @ vecs[labels[i]] / np.linalg.norm(emb[i]) for i in range(5)]
  got = losses.cosine(jnp.asarray(emb), jnp.asarray(vecs), jnp.asarray(labels))
  np.testing.assert_allclose(got, expected, rtol=1e-5)
  g = jax.grad(lambda e: losses.cosine(e, jnp.asarray(vecs), jnp.asarray(labels)).sum())(
      jnp.zeros((5, 4)))
  assert np.all(np.isfinite(g))


def test_softmax_cross_entropy_against_numpy():
  logits = np.array([[1.0, 2.0, 0.5], [0.0, 0.0, 0.0]])
  labels = np.array([1, 2])
  expected = -np.log(np.exp(logits[np.arange(2), labels]) / np.exp(logits).sum(1))
  np.testing.assert_allclose(
      losses.softmax_cross_entropy(jnp.asarray(logits), jnp.asarray(labels)), expected,
      rtol=1e-6)


def test_label_to_image_hinge_matches_a_loop():
  rng = np.random.default_rng(3)
  emb = rng.normal(size=(12, 5)) * 0.4
  vecs = _unit(rng.normal(size=(4, 5)))
  labels = rng.integers(0, 4, size=12)
  got = losses.label_to_image_hinge(jnp.asarray(emb), jnp.asarray(vecs),
                                    jnp.asarray(labels), 0.2)
  for i in range(12):
    t = vecs[labels[i]]
    terms = [max(0.0, 0.2 - t @ emb[i] + t @ emb[j])
             for j in range(12) if labels[j] != labels[i]]
    np.testing.assert_allclose(got[i], np.mean(terms) if terms else 0.0, rtol=1e-5,
                               atol=1e-6)
  # A batch of one class has no negatives: zero loss, finite gradient.
  same = losses.label_to_image_hinge(jnp.asarray(emb), jnp.asarray(vecs),
                                     jnp.zeros(12, jnp.int32), 0.2)
  assert float(jnp.abs(same).sum()) == 0.0


def test_label_softmax_against_numpy():
  rng = np.random.default_rng(4)
  emb = rng.normal(size=(5, 4)) * 3
  vecs = _unit(rng.normal(size=(3, 4)))
  labels = np.array([0, 2, 1, 1, 0])
  expected = []
  for i in range(5):
    s = [emb[i] @ vecs[j] for j in range(3)]
    expected.append(np.log(sum(np.exp(x) for x in s)) - s[labels[i]])
  got = losses.label_softmax(jnp.asarray(emb), jnp.asarray(vecs), jnp.asarray(labels))
  np.testing.assert_allclose(got, expected, rtol=1e-5)
