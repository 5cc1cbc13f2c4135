"""Zero-shot (ZSL), generalized zero-shot (GZSL) and seen-class hit@k of DeViSE.

Scores are `Data.scores()` (cosines, less the hubness penalty when configured).
Protocol of Xian et al. (2018): unseen-class images are classified among the unseen
classes only (ZSL) or among all classes (GZSL); per-class accuracy is the mean over
classes of each class's accuracy; H is the harmonic mean of the GZSL per-class
accuracies on seen and unseen images. Scores are dot products with unit label vectors,
so they rank as cosines.
"""

import numpy as np

from devise_jax.evaluators import common


def zsl(data, cfg):
  del cfg
  unseen = np.asarray(data.unseen)
  is_unseen = np.isin(data.labels, unseen)
  u_labels = data.labels[is_unseen]
  scores = data.scores()[is_unseen][:, unseen]
  correct = (unseen[np.argmax(scores, axis=1)] == u_labels).astype(np.float64)
  yield 'zsl_top1', float(correct.mean())
  yield 'per_class_zsl_top1', common.per_class_mean(correct, u_labels)
  yield 'chance_zsl_top1', 1.0 / len(unseen)
  yield 'num_seen_images', int(np.isin(data.labels, data.seen).sum())
  yield 'num_unseen_images', int(is_unseen.sum())


def gzsl(data, cfg):
  del cfg
  candidates = np.union1d(data.seen, data.unseen)  # Excluded classes compete nowhere.
  pred = candidates[np.argmax(data.scores()[:, candidates], axis=1)]
  correct = (pred == data.labels).astype(np.float64)
  is_seen, is_unseen = np.isin(data.labels, data.seen), np.isin(data.labels, data.unseen)
  s = common.per_class_mean(correct[is_seen], data.labels[is_seen])
  u = common.per_class_mean(correct[is_unseen], data.labels[is_unseen])
  yield 'gzsl_seen', s
  yield 'gzsl_unseen', u
  yield 'gzsl_h', common.harmonic_mean(s, u)


def seen_hit(data, cfg):
  """Flat hit@k on seen-class images among the seen classes: DeViSE and the softmax."""
  seen = np.asarray(data.seen)
  is_seen = np.isin(data.labels, seen)
  targets = common.seen_targets(data.labels[is_seen], seen)
  devise_scores = data.scores()[is_seen][:, seen]
  for k in cfg.hit_k:
    if k <= len(seen):
      yield f'seen_hit@{k}', float(common.topk_hit(devise_scores, targets, k).mean())
      yield f'softmax_seen_hit@{k}', float(
          common.topk_hit(data.logits[is_seen], targets, k).mean())
