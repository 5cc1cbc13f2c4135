"""Words -> images: precision@10 of each class name's word vector as a query against
the DeViSE vectors of every image of the split (seen and unseen classes apart).

`cfg.words_to_images` picks the ranking, the same one galleries use
(`gallery.Searcher.words_to_images`): 'cosine' ranks images by cosine with the word;
'label_softmax' subtracts each image's `search.label_softmax_penalty` over the run's
classes (temperature `cfg.label_softmax_beta`; calibrated stacking's gamma on the seen
classes when `cfg.label_softmax_calibrated` and the run has one).
"""

import numpy as np

from devise_jax import search

KINDS = ('cosine', 'label_softmax')


def words_to_images(data, cfg):
  gallery = data.devise / np.linalg.norm(data.devise, axis=1, keepdims=True)
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


def image_penalty(gallery, label_vectors, is_seen, gamma, cfg):
  """[N] per-image penalty of the configured ranking, or None for plain cosine."""
  kind = cfg.get('words_to_images', 'cosine') if cfg is not None else 'cosine'
  if kind not in KINDS:
    raise ValueError(f'config.eval.words_to_images must be one of {KINDS}, got {kind!r}')
  if kind == 'cosine':
    return None
  shift = None
  if cfg.get('label_softmax_calibrated', False) and gamma is not None:
    shift = np.where(is_seen, gamma, 0.0)
  return search.label_softmax_penalty(gallery, label_vectors, cfg.label_softmax_beta, shift)
