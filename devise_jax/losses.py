"""Losses: softmax cross-entropy (stage 1) and the DeViSE losses (stage 2).

Every function returns per-example losses [B]; the caller averages them.
"""

import jax.numpy as jnp
import optax


def softmax_cross_entropy(logits, labels):
  """Cross-entropy of integer `labels` [B] under `logits` [B, C]."""
  return optax.softmax_cross_entropy_with_integer_labels(logits, labels)


def hinge_rank(embedding, label_vectors, labels, margin=0.1):
  """DeViSE hinge rank loss (Frome et al., 2013, eq. 1).

  loss(v, y) = sum_{j != y} max(0, margin - t_y . Mv + t_j . Mv), where Mv is
  `embedding` [B, D], t are the rows of `label_vectors` [C, D] (the training labels'
  unit word vectors) and y is `labels` [B].
  """
  scores = embedding @ label_vectors.T  # [B, C]
  true = jnp.take_along_axis(scores, labels[:, None], axis=1)
  hinge = jnp.maximum(0.0, margin - true + scores)
  not_true = jnp.arange(scores.shape[1])[None, :] != labels[:, None]
  return jnp.sum(jnp.where(not_true, hinge, 0.0), axis=1)


def cosine(embedding, label_vectors, labels, eps=1e-8):
  """1 - cos(Mv, t_y): the first seed's regression baseline."""
  target = label_vectors[labels]
  norm = jnp.sqrt(jnp.sum(embedding**2, axis=1) + eps)
  return 1.0 - jnp.sum(embedding * target, axis=1) / (norm * jnp.linalg.norm(target, axis=1))


DEVISE_LOSSES = {'hinge_rank': hinge_rank, 'cosine': cosine}
