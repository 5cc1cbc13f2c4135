"""Evaluators: one small function per metric family, chosen by `config.evals`.

An evaluator is `fn(data, cfg) -> iterator of (metric, value)`: `data` is a `Data`
(one split's model outputs and the run's classes, plain arrays) and `cfg` is
`config.eval`. A metric whose name holds a '/' (`family/class name`) is a per-class
value; `evaluate.evaluate` groups those under the family's name in eval.json.
"""

import dataclasses

import numpy as np

from devise_jax.evaluators import calibrated
from devise_jax.evaluators import conse
from devise_jax.evaluators import hierarchy
from devise_jax.evaluators import image_retrieval
from devise_jax.evaluators import words_to_images
from devise_jax.evaluators import zero_shot


@dataclasses.dataclass(frozen=True)
class Data:
  """What evaluators see: one split's outputs [N, ...] and every class's unit vector."""
  labels: np.ndarray  # [N] dataset label ids.
  logits: np.ndarray  # [N, S] stage-1 logits over the seen classes.
  devise: np.ndarray  # [N, D] DeViSE vectors (cosine scoring: any positive scale).
  label_vectors: np.ndarray  # [C, D] unit word vectors, in label-id order.
  seen: np.ndarray  # Seen label ids (the order of the logits' columns).
  unseen: np.ndarray  # Unseen label ids.
  names: tuple = ()  # Class names in label-id order.
  features: np.ndarray | None = None  # [N, F] encoder features.
  siamese: np.ndarray | None = None  # [N, d] Siamese embeddings (stage 3).
  gamma_devise: float | None = None  # Calibrated-stacking gammas, chosen on training
  gamma_conse: float | None = None  # data (devise_jax/calibration.py); None: none.
  # [C] subtracted from every DeViSE class score (hubness reduction, CSLS); None: 0.
  class_penalty: np.ndarray | None = None
  # For the WordNet evaluators (NEEDS_WORDNET; evaluate.py loads them when named):
  synsets: tuple = ()  # Each class's WordNet noun id ('n04199027') or None.
  wordnet: object = None  # A devise_jax.wordnet.WordNet.
  vocabulary: object = None  # The open vocabulary (devise_jax.vocabulary.Vocabulary).

  def scores(self):
    """DeViSE class scores [N, C]: dot products with the unit label vectors (cosines
    for unit vectors), less the class penalty."""
    scores = self.devise @ self.label_vectors.T
    return scores if self.class_penalty is None else scores - self.class_penalty


EVALUATORS = {
    'zero_shot': zero_shot.zsl,
    'gzsl': zero_shot.gzsl,
    'gzsl_calibrated': calibrated.gzsl_calibrated,
    'seen_hit': zero_shot.seen_hit,
    'conse': conse.conse,
    'retrieval': image_retrieval.retrieval,
    'words_to_images': words_to_images.words_to_images,
    'open_vocab': hierarchy.open_vocab,
    'hierarchy': hierarchy.hierarchy,
}
DEFAULT = ('zero_shot', 'gzsl', 'gzsl_calibrated', 'conse', 'seen_hit', 'retrieval',
           'words_to_images')
NEEDS_WORDNET = ('open_vocab', 'hierarchy')


def run_all(names, data, cfg):
  """{metric: value} of the evaluators `names`, in order."""
  unknown = [n for n in names if n not in EVALUATORS]
  if unknown:
    raise ValueError(f'config.evals: unknown evaluators {unknown}; '
                     f'expected some of {sorted(EVALUATORS)}')
  check(data)
  metrics = {}
  for name in names:
    metrics.update(EVALUATORS[name](data, cfg))
  return metrics


def check(data):
  if not np.isin(data.labels, data.unseen).any() or not np.isin(data.labels,
                                                                 data.seen).any():
    raise ValueError('the eval split needs images of both seen and unseen classes')
