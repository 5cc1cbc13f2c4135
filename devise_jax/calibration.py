"""Calibrated stacking for generalized zero-shot (Chao et al., 2016).

A model's scores over all classes favour the seen ones, which it was trained on, so in
GZSL every unseen image tends to get a seen label. Calibrated stacking predicts
argmax_c score(c) - gamma * [c is seen]. Sweeping gamma traces the seen/unseen accuracy
curve; its area is AUSUC.

gamma is chosen on the training data alone, by class-wise folds: the seen classes are
split into folds (one class each, up to 10 folds); for each fold the head (DeViSE
projection, or the softmax classifier ConSE combines) is refitted on the cached
features of the other seen classes' training images; the fold's classes then act as unseen on the validation images
(`config.data.val_split`), and the gamma with the best harmonic mean is kept. The
chosen gamma is the mean over folds. The encoder was trained on every seen class, so
the fold's classes are less novel to it than real unseen ones: this is a cheap,
test-free estimate, not an exact replica. `scaled` multiplies the fold gamma by a
factor per method (`config.eval.gamma_scale`, `conse_gamma_scale`) chosen on the
validation protocol, whose pseudo-unseen classes the encoder never saw
(experiments/ablations/gamma_scale.py; how it did on the test protocol is in
experiments/results/fashion_mnist_zsl_ablation.md).
"""

import numpy as np

from devise_jax import stages as stages_lib
from devise_jax.evaluators import common
from devise_jax.evaluators import conse


def _best(scores, ids):
  ids = np.asarray(ids)
  return ids[np.argmax(scores[:, ids], axis=1)], np.max(scores[:, ids], axis=1)


def curve(scores, labels, seen, unseen):
  """(gammas, seen accuracy, unseen accuracy) of calibrated stacking at every distinct
  operating point, gamma increasing; per-class accuracies over all candidate classes.

  An image switches from its best seen class to its best unseen class when gamma
  exceeds its threshold (best seen score - best unseen score); the gammas returned
  lie below, between and above the distinct thresholds.
  """
  seen_pred, seen_score = _best(scores, seen)
  unseen_pred, unseen_score = _best(scores, unseen)
  threshold = seen_score - unseen_score
  is_seen = np.isin(labels, seen)
  # Per-class accuracy: each image weighs 1 / (its class size x classes in its group).
  weight = np.zeros(len(labels))
  for group in (seen, unseen):
    present = [c for c in group if np.any(labels == c)]
    for c in present:
      weight[labels == c] = 1.0 / (np.sum(labels == c) * len(present))
  order = np.argsort(threshold, kind='stable')
  t = threshold[order]
  seen_hit = (weight * (is_seen & (seen_pred == labels)))[order]
  unseen_hit = (weight * (~is_seen & (unseen_pred == labels)))[order]
  cuts = np.unique(t)
  gammas = np.concatenate([[cuts[0] - 1.0], (cuts[:-1] + cuts[1:]) / 2, [cuts[-1] + 1.0]])
  switched = np.searchsorted(t, gammas, side='left')  # Images with threshold < gamma.
  seen_cum = np.concatenate([[0.0], np.cumsum(seen_hit)])
  unseen_cum = np.concatenate([[0.0], np.cumsum(unseen_hit)])
  acc_seen = seen_cum[-1] - seen_cum[switched]
  acc_unseen = unseen_cum[switched]
  return gammas, acc_seen, acc_unseen


def ausuc(acc_seen, acc_unseen):
  """Area under the seen (y) / unseen (x) accuracy curve, by the trapezoid rule."""
  order = np.argsort(acc_unseen, kind='stable')
  x, y = np.asarray(acc_unseen)[order], np.asarray(acc_seen)[order]
  return float(np.sum((x[1:] - x[:-1]) * (y[1:] + y[:-1]) / 2))


def best_gamma(scores, labels, seen, unseen):
  """The gamma of the curve with the highest harmonic mean (the smallest on ties)."""
  gammas, s, u = curve(scores, labels, seen, unseen)
  h = np.where(s + u > 0, 2 * s * u / np.maximum(s + u, 1e-12), 0.0)
  return float(gammas[int(np.argmax(h))])


def stacked_predictions(scores, seen, unseen, gamma):
  """[N] label ids of argmax over the seen and unseen classes of score - gamma * [seen]."""
  candidates = np.union1d(seen, unseen)
  shifted = scores[:, candidates] - gamma * np.isin(candidates, seen)
  return candidates[np.argmax(shifted, axis=1)]


def stacked_accuracy(scores, labels, seen, unseen, gamma):
  """(seen, unseen, H) per-class GZSL accuracies of argmax score - gamma * [seen]."""
  pred = stacked_predictions(scores, seen, unseen, gamma)
  correct = (pred == labels).astype(np.float64)
  is_seen = np.isin(labels, seen)
  s = common.per_class_mean(correct[is_seen], labels[is_seen])
  u = common.per_class_mean(correct[~is_seen], labels[~is_seen])
  return s, u, common.harmonic_mean(s, u)


def scaled(fold_gammas, eval_config):
  """{gamma_devise, gamma_conse}: the fold gammas times `eval_config.gamma_scale` and
  `conse_gamma_scale` (1 when absent)."""
  scales = dict(gamma_devise=eval_config.get('gamma_scale', 1.0),
                gamma_conse=eval_config.get('conse_gamma_scale', 1.0))
  return {k: float(v) * scales[k] for k, v in fold_gammas.items()}


def num_validation_unseen(num_seen, num_unseen, num_classes):
  """As many pseudo-unseen classes as the real split's unseen share of the seen ones
  (at least 1, and at least 2 seen classes left to train on)."""
  return int(min(num_seen - 2, max(1, round(num_seen * num_unseen / num_classes))))


def class_folds(seen, seed, max_folds=10):
  """The seen classes shuffled (seeded) into min(len(seen), max_folds) folds: one class
  per fold up to `max_folds` seen classes. The same geometry whatever the split's
  unseen share, so the validation protocol (5 seen classes) and the test protocol (7)
  calibrate with the same estimator, and the fold gamma averages over as many folds as
  there are classes (up to `max_folds` refits)."""
  shuffled = np.random.default_rng(seed).permutation(np.asarray(seen))
  return [np.sort(f) for f in np.array_split(shuffled, min(len(shuffled), max_folds))]


def saved_key(steps, seen, seed):
  """What a saved calibration (calibration.json) was computed from: the checkpoint
  steps of the stages it reads (stages 1 and 2: a Siamese head changes nothing of it)
  and the folds. A saved record is reused only when these match."""
  steps = {s: steps[s] for s in stages_lib.REQUIRED_STAGES if s in steps}
  return dict(steps=steps, folds=[[int(c) for c in f] for f in class_folds(seen, seed)])


def matches(saved, key):
  """Whether the saved record `saved` (or None) was computed for `key` (`saved_key`)."""
  return bool(saved) and all(saved.get(k) == v for k, v in key.items())


def fold_gammas(fit_devise, fit_logits, train, val, seen, label_vectors, *, top_t, seed,
                hubness_k=0):
  """(DeViSE gamma, ConSE gamma): means over class-wise folds of the seen classes.

  `train` and `val` are (features, labels) of seen-class images only; `fit_devise(
  features, labels, class_ids)` returns a function features -> DeViSE vectors and
  `fit_logits(...)` one features -> logits over `class_ids`, both trained on the given
  classes' images alone. `hubness_k > 0` scores DeViSE as evaluation does with CSLS,
  the penalty computed from the fold's own training images.
  """
  gammas = []
  for fold in class_folds(seen, seed):
    rest = np.setdiff1d(seen, fold)
    keep = np.isin(train[1], rest)
    devise = fit_devise(train[0][keep], train[1][keep], rest)
    logits = fit_logits(train[0][keep], train[1][keep], rest)
    probs = common.softmax(logits(val[0]))
    conse_vectors = conse.conse_embedding(probs, label_vectors[rest], min(top_t, len(rest)))
    scores = devise(val[0]) @ label_vectors.T
    if hubness_k:
      scores -= common.csls_penalty(devise(train[0][keep][::max(1, keep.sum() // 10_000)]),
                                    label_vectors, hubness_k)
    gammas.append([best_gamma(scores, val[1], rest, fold),
                   best_gamma(conse_vectors @ label_vectors.T, val[1], rest, fold)])
  return tuple(float(g) for g in np.mean(gammas, axis=0))
