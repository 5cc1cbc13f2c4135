"""Words -> images: precision@10 of each class name's word vector as a query against
the DeViSE vectors of every image of the split (seen and unseen classes apart)."""

import numpy as np

from devise_jax import retrieval


def words_to_images(data, cfg):
  del cfg
  gallery = data.devise / np.linalg.norm(data.devise, axis=1, keepdims=True)
  classes = np.union1d(data.seen, data.unseen)
  precision = retrieval.precision_at_k_per_query(
      data.label_vectors[classes], gallery.astype(np.float32), data.labels, classes, k=10)
  for set_name, ids in (('seen', data.seen), ('unseen', data.unseen)):
    yield (f'words_to_images_{set_name}_precision@10',
           float(np.mean(precision[np.isin(classes, ids)])))
  for c, p in zip(classes, precision):
    yield f'words_to_images_precision@10/{data.names[c]}', float(p)
