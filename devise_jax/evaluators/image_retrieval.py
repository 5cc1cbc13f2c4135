"""Image retrieval within the seen and the unseen classes, in every embedding space.

Raw encoder features, DeViSE space (stage 2) and Siamese space (stage 3, when
trained): Recall@1, Recall@5 and MAP@R, each image querying the others of its class set
(leave-one-out); see `devise_jax.retrieval`.
"""

import numpy as np

from devise_jax import retrieval as metrics_lib


def _unit(x):
  return x / np.linalg.norm(x, axis=1, keepdims=True)


def retrieval(data, cfg):
  del cfg
  spaces = {'features': data.features, 'devise': data.devise, 'siamese': data.siamese}
  for set_name, ids in (('seen', data.seen), ('unseen', data.unseen)):
    mask = np.isin(data.labels, ids)
    for space, x in spaces.items():
      if x is None:
        continue
      metrics = metrics_lib.retrieval_metrics(_unit(np.asarray(x, np.float32))[mask],
                                            data.labels[mask])
      for key, value in metrics.items():
        if key != 'num_queries':
          yield f'{space}_{set_name}_{key}', float(value)
