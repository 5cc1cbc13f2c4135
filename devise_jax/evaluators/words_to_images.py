"""Words -> images: precision@10 of each class name's word vector as a query against
every image of the split (seen and unseen classes apart).

`cfg.words_to_images` picks the ranking, the same one galleries use
(`gallery.Searcher.words_to_images`): 'conse' ranks images by the cosine of the word
with the image's ConSE vector (the top-`cfg.conse_top_t` seen labels' word vectors
weighted by the stage-1 classifier's probabilities; chosen on the validation protocol,
experiments/ablations/w2i_sweep.py); 'cosine' by its cosine with the image's DeViSE vector;
'label_softmax' subtracts each image's `search.label_softmax_penalty` over the run's
classes (temperature `cfg.label_softmax_beta`; calibrated stacking's gamma on the seen
classes when `cfg.label_softmax_calibrated` and the run has one).
"""

import numpy as np

from devise_jax import search
from devise_jax.evaluators import common
from devise_jax.evaluators import conse

KINDS = ('conse', 'cosine', 'label_softmax')


def words_to_images(data, cfg):
  gallery = image_keys(data.devise, data.logits, data.label_vectors[data.seen], cfg)
  classes = np.union1d(data.seen, data.unseen)
  queries = data.label_vectors[classes]
  scores = gallery @ queries.T  # [N, C]
  penalty = image_penalty(gallery, queries, np.isin(classes, data.seen), data.gamma_devise,
                          cfg)
  if penalty is not None:
    scores = scores - penalty[:, None]
  top = np.argsort(-scores, axis=0, kind='stable')[:min(10, len(gallery))]  # [10, C]
  precision = (data.labels[top] == classes[None, :]).mean(axis=0)
  for set_name, ids in (('seen', data.seen), ('unseen', data.unseen)):
    yield (f'words_to_images_{set_name}_precision@10',
           float(np.mean(precision[np.isin(classes, ids)])))
  for c, p in zip(classes, precision):
    yield f'words_to_images_precision@10/{data.names[c]}', float(p)


def kind(cfg):
  """The configured ranking ('cosine' without a config); a clear error when unknown."""
  name = cfg.get('words_to_images', 'cosine') if cfg is not None else 'cosine'
  if name not in KINDS:
    raise ValueError(f'config.eval.words_to_images must be one of {KINDS}, got {name!r}')
  return name


def image_keys(devise, logits, seen_vectors, cfg):
  """[N, D] unit vectors of the images that a word ranks by cosine: ConSE vectors from
  the stage-1 logits [N, S] (columns in seen-class order) for 'conse', else the DeViSE
  vectors."""
  if kind(cfg) == 'conse':
    probs = common.softmax(np.asarray(logits, np.float64))
    top_t = min(cfg.get('conse_top_t', 5), len(seen_vectors))
    vectors = conse.conse_embedding(probs, np.asarray(seen_vectors, np.float64), top_t)
  else:
    vectors = np.asarray(devise)
  return vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)


def image_penalty(gallery, label_vectors, is_seen, gamma, cfg):
  """[N] per-image penalty of the configured ranking, or None (no penalty)."""
  if kind(cfg) != 'label_softmax':
    return None
  shift = None
  if cfg.get('label_softmax_calibrated', False) and gamma is not None:
    shift = np.where(is_seen, gamma, 0.0)
  return search.label_softmax_penalty(gallery, label_vectors, cfg.label_softmax_beta, shift)
