"""Small metric helpers shared by the evaluators."""

import numpy as np


def topk_hit(scores, labels, k):
  """1.0 where `labels` [N] is among the `k` highest of `scores` [N, C], else 0.0."""
  topk = np.argsort(-scores, axis=1, kind='stable')[:, :k]
  return (topk == labels[:, None]).any(axis=1).astype(np.float64)


def per_class_mean(correct, labels):
  """Mean over the classes present in `labels` of each class's mean of `correct`."""
  classes = np.unique(labels)
  return float(np.mean([correct[labels == c].mean() for c in classes]))


def harmonic_mean(a, b):
  return 0.0 if a + b == 0 else 2 * a * b / (a + b)


def softmax(x):
  x = x - x.max(axis=1, keepdims=True)
  e = np.exp(x)
  return e / e.sum(axis=1, keepdims=True)


def seen_targets(labels, seen):
  """Index of each label among the seen ids (the logits' column order)."""
  index = {int(c): i for i, c in enumerate(seen)}
  return np.array([index[int(c)] for c in labels], dtype=np.int64)


def csls_penalty(reference, label_vectors, k):
  """Hubness of each class word (Lample et al., 2018's CSLS, word side): the mean cosine
  of its unit vector [C, D] with its `k` nearest unit reference vectors [M, D] (the
  training images' DeViSE vectors: no test image is used)."""
  sims = label_vectors @ reference.T
  k = min(k, sims.shape[1])
  return np.mean(-np.partition(-sims, k - 1, axis=1)[:, :k], axis=1)
