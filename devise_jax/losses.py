"""Losses: softmax cross-entropy (stage 1), the DeViSE losses (stage 2) and the
metric-learning losses of the Siamese head (stage 3).

Every function returns per-example losses [B]; the caller averages them.
"""

import jax
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


def label_to_image_hinge(embedding, label_vectors, labels, margin=0.1):
  """The hinge rank loss the other way round: images ranked for each label word.

  For anchor image i of seen class y_i, every image j of another class in the batch
  should score lower with y_i's word than image i does, by `margin`:
  mean_{j: y_j != y_i} max(0, margin - t_{y_i}.v_i + t_{y_i}.v_j). Words -> images
  search is this ranking, which the image -> label loss never trains.
  """
  scores = embedding @ label_vectors.T  # [B, S]
  own = scores[jnp.arange(len(labels)), labels]  # t_{y_i}.v_i
  others = scores[:, labels].T  # [i, j] = t_{y_i}.v_j
  negative = labels[None, :] != labels[:, None]
  hinge = jnp.where(negative, jax.nn.relu(margin - own[:, None] + others), 0.0)
  return jnp.sum(hinge, axis=1) / jnp.maximum(jnp.sum(negative, axis=1), 1)


def cosine(embedding, label_vectors, labels, eps=1e-8):
  """1 - cos(Mv, t_y): the first seed's regression baseline."""
  target = label_vectors[labels]
  norm = jnp.sqrt(jnp.sum(embedding**2, axis=1) + eps)
  return 1.0 - jnp.sum(embedding * target, axis=1) / (norm * jnp.linalg.norm(target, axis=1))


def label_softmax(embedding, label_vectors, labels):
  """Cross-entropy of `labels` under a softmax over the dot products t_j . Mv: every
  label is a negative, weighted by how close it scores (the hinge weighs only those
  within the margin, equally). The scale of Mv acts as the inverse temperature."""
  return optax.softmax_cross_entropy_with_integer_labels(embedding @ label_vectors.T, labels)


DEVISE_LOSSES = {'hinge_rank': hinge_rank, 'cosine': cosine, 'label_softmax': label_softmax}


# Stage 3: metric-learning losses on L2-normalised embeddings [B, D] with labels [B].


def pairwise_distances(embeddings):
  """Euclidean distances [B, B]; the epsilon keeps the gradient finite at zero."""
  sq = jnp.sum(embeddings**2, axis=1)
  d2 = sq[:, None] + sq[None, :] - 2.0 * embeddings @ embeddings.T
  return jnp.sqrt(jnp.maximum(d2, 0.0) + 1e-12)


def contrastive(embeddings, labels, margin=0.5):
  """Contrastive loss (Hadsell et al., 2006) over every pair i != j of the batch.

  Same label: d^2 / 2; different: max(0, margin - d)^2 / 2. Returns the mean over
  pairs for each anchor [B].
  """
  d = pairwise_distances(embeddings)
  same = labels[:, None] == labels[None, :]
  off_diagonal = ~jnp.eye(len(labels), dtype=bool)
  pair = jnp.where(same, d**2, jnp.maximum(0.0, margin - d)**2) / 2
  return jnp.sum(jnp.where(off_diagonal, pair, 0.0), 1) / jnp.maximum(
      jnp.sum(off_diagonal, 1), 1)


def batch_hard_triplets(distances, labels):
  """Per anchor, the farthest positive and the nearest negative (Hermans et al., 2017).

  Returns (positive index, negative index, valid) for each anchor [B]; an anchor is
  valid when it has at least one positive and one negative in the batch.
  """
  same = labels[:, None] == labels[None, :]
  positive = same & ~jnp.eye(len(labels), dtype=bool)
  negative = ~same
  pos = jnp.argmax(jnp.where(positive, distances, -jnp.inf), axis=1)
  neg = jnp.argmin(jnp.where(negative, distances, jnp.inf), axis=1)
  return pos, neg, positive.any(1) & negative.any(1)


def triplet_batch_hard(embeddings, labels, margin=0.2):
  """max(0, margin + d(a, hardest p) - d(a, hardest n)) per anchor [B] (0 if invalid)."""
  d = pairwise_distances(embeddings)
  pos, neg, valid = batch_hard_triplets(d, labels)
  rows = jnp.arange(len(labels))
  loss = jnp.maximum(0.0, margin + d[rows, pos] - d[rows, neg])
  return jnp.where(valid, loss, 0.0)


def semi_hard_negatives(distances, labels):
  """For every (anchor, positive) pair, its negative (Schroff et al., 2015).

  The nearest negative farther than the positive, d(a, n) > d(a, p); when there is
  none, the farthest negative. Returns negative indices [B, B] (row = anchor, column
  = positive) and a mask of the valid (anchor, positive) pairs.
  """
  same = labels[:, None] == labels[None, :]
  negative = ~same
  pairs = same & ~jnp.eye(len(labels), dtype=bool)
  d_an = distances[:, None, :]  # [anchor, 1, negative]
  outside = negative[:, None, :] & (d_an > distances[:, :, None])
  semi = jnp.argmin(jnp.where(outside, d_an, jnp.inf), axis=2)
  hardest_far = jnp.argmax(jnp.where(negative, distances, -jnp.inf), axis=1)
  chosen = jnp.where(outside.any(2), semi, hardest_far[:, None])
  return chosen, pairs & negative.any(1)[:, None]


def triplet_semi_hard(embeddings, labels, margin=0.2):
  """Mean over each anchor's positives of max(0, margin + d(a, p) - d(a, n_semi)) [B]."""
  d = pairwise_distances(embeddings)
  neg, valid = semi_hard_negatives(d, labels)
  d_an = jnp.take_along_axis(d, neg, axis=1)  # [anchor, positive]
  loss = jnp.where(valid, jnp.maximum(0.0, margin + d - d_an), 0.0)
  return jnp.sum(loss, 1) / jnp.maximum(jnp.sum(valid, 1), 1)


def _log1p_sum_exp(z, mask):
  """log(1 + sum over `mask` of exp(z)) per row of `z` [B, B], without overflow."""
  z = jnp.where(mask, z, -jnp.inf)
  return jax.nn.logsumexp(jnp.concatenate([jnp.zeros((len(z), 1)), z], axis=1), axis=1)


def multi_similarity(embeddings, labels, alpha=2.0, beta=50.0, base=0.5, epsilon=0.1):
  """Multi-similarity loss with its pair mining (Wang et al., CVPR 2019).

  On cosines S, anchor i keeps the negatives j with S_ij + epsilon > its lowest
  positive S and the positives j with S_ij - epsilon < its highest negative S, and pays
  log(1 + sum_{kept p} exp(-alpha (S_ip - base))) / alpha
  + log(1 + sum_{kept n} exp(beta (S_in - base))) / beta
  (a part with no kept pair is 0). Mining only selects: no gradient flows through it.
  """
  s = embeddings @ embeddings.T
  same = labels[:, None] == labels[None, :]
  positive, negative = same & ~jnp.eye(len(labels), dtype=bool), ~same
  lowest_positive = jnp.min(jnp.where(positive, s, jnp.inf), axis=1, keepdims=True)
  highest_negative = jnp.max(jnp.where(negative, s, -jnp.inf), axis=1, keepdims=True)
  kept_positive = positive & (s - epsilon < highest_negative)
  kept_negative = negative & (s + epsilon > lowest_positive)
  return (_log1p_sum_exp(-alpha * (s - base), kept_positive) / alpha
          + _log1p_sum_exp(beta * (s - base), kept_negative) / beta)


SIAMESE_LOSSES = {'contrastive': contrastive, 'triplet_batch_hard': triplet_batch_hard,
                  'triplet_semi_hard': triplet_semi_hard,
                  'multi_similarity': multi_similarity}
