"""ConSE (Norouzi et al., 2014): convex combinations of seen-label word vectors.

An image's vector is the average of its T most probable seen labels' unit vectors,
weighted by the stage-1 softmax probabilities; it is then named like a DeViSE vector.
"""

import numpy as np

from devise_jax.evaluators import common


def conse_embedding(probs, seen_vectors, top_t):
  """The top-T seen labels' vectors [T, D] weighted by their probabilities [N, S]."""
  top = np.argsort(-probs, axis=1, kind='stable')[:, :top_t]
  weights = np.take_along_axis(probs, top, axis=1)
  combined = np.einsum('nt,ntd->nd', weights, seen_vectors[top])
  return combined / weights.sum(axis=1, keepdims=True)


def conse(data, cfg):
  unseen, seen = np.asarray(data.unseen), np.asarray(data.seen)
  is_unseen = np.isin(data.labels, unseen)
  u_labels = data.labels[is_unseen]
  probs = common.softmax(data.logits[is_unseen])
  vectors = conse_embedding(probs, data.label_vectors[seen], min(cfg.conse_top_t, len(seen)))
  pred = unseen[np.argmax(vectors @ data.label_vectors[unseen].T, axis=1)]
  correct = (pred == u_labels).astype(np.float64)
  yield 'conse_zsl_top1', float(correct.mean())
  yield 'conse_per_class_zsl_top1', common.per_class_mean(correct, u_labels)
