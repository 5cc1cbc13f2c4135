"""Generalized zero-shot with calibrated stacking, for DeViSE and ConSE.

gamma comes from the training data (`Data.gamma_devise`, `Data.gamma_conse`; see
devise_jax/calibration.py); without it only the curve's area (AUSUC), which needs no
gamma, is reported. ConSE's GZSL scores compare its vector with every class's vector.
"""

import numpy as np

from devise_jax import calibration
from devise_jax.evaluators import common
from devise_jax.evaluators import conse


def gzsl_calibrated(data, cfg):
  seen, unseen = np.asarray(data.seen), np.asarray(data.unseen)
  probs = common.softmax(data.logits)
  conse_vectors = conse.conse_embedding(probs, data.label_vectors[seen],
                                        min(cfg.conse_top_t, len(seen)))
  for prefix, scores, gamma in (('', data.scores(), data.gamma_devise),
                                ('conse_', conse_vectors @ data.label_vectors.T,
                                 data.gamma_conse)):
    _, acc_seen, acc_unseen = calibration.curve(scores, data.labels, seen, unseen)
    yield f'{prefix}ausuc', calibration.ausuc(acc_seen, acc_unseen)
    if prefix:
      yield 'conse_gzsl_h', calibration.stacked_accuracy(scores, data.labels, seen,
                                                        unseen, 0.0)[2]
    if gamma is not None:
      s, u, h = calibration.stacked_accuracy(scores, data.labels, seen, unseen, gamma)
      yield f'{prefix}gzsl_calibrated_seen', s
      yield f'{prefix}gzsl_calibrated_unseen', u
      yield f'{prefix}gzsl_calibrated_h', h
      yield f'{prefix}gzsl_calibrated_gamma', float(gamma)
