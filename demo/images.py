"""The gallery's own pictures for the demo; uploads are decoded by `devise_jax.images`.

`decode` (from `devise_jax.images`, the project's one image decoder) turns whatever a
visitor uploads into an RGB uint8 array the model can take, or raises `ImageError` with
a one-line message: URLs, files over the byte limit, decompression bombs (checked from
the header), truncated files and non-images are refused; EXIF rotation, animation,
16-bit, palette, CMYK and transparency are handled there (see its docstring).

`GalleryImages` returns a gallery's pictures by id: `tfds:<dataset>/<split>/<index>`
refs are read once per split through TFDS; file refs are decoded with `decode`, and
only paths that are refs of the gallery are ever opened.
"""

import logging
import threading

import numpy as np

# The decoder and its limits live in the library (one decoder for the CLI, the
# galleries, the REST API and the demo); re-exported here for the demo's modules.
from devise_jax.images import DISPLAY_SIDE, MAX_BYTES, MAX_PIXELS, MAX_SIDE  # noqa: F401
from devise_jax.images import ImageError, decode, for_display, placeholder  # noqa: F401
from devise_jax.images import refuse_url  # noqa: F401

log = logging.getLogger(__name__)


class GalleryImages:
  """The pictures of a gallery by id, loaded on first use and kept in memory."""

  def __init__(self, config, refs, labels=None):
    self._config = config
    self._refs = list(refs)
    self._ref_set = frozenset(self._refs)
    self._labels = None if labels is None else np.asarray(labels)
    self._splits = {}
    self._lock = threading.Lock()

  def __len__(self):
    return len(self._refs)

  def get(self, gallery_id):
    """RGB uint8 array of the gallery's image `gallery_id`; a placeholder if unreadable."""
    try:
      return self._get(int(gallery_id))
    except Exception as e:  # pylint: disable=broad-except
      log.warning('gallery image %s unavailable: %s', gallery_id, e)
      return placeholder()

  def _get(self, gallery_id):
    if not 0 <= gallery_id < len(self._refs):
      raise IndexError(f'no gallery image {gallery_id}')
    ref = self._refs[gallery_id]
    if ref.startswith('tfds:'):
      body, index = ref[len('tfds:'):].rsplit('/', 1)
      name, split = body.split('/', 1)
      return self._split(name, split)[int(index)]
    if ref not in self._ref_set:  # Only the gallery's own files are ever opened.
      raise ValueError(f'{ref!r} is not a ref of the gallery')
    return decode(ref, name=f'gallery image {gallery_id}')

  def _split(self, name, split):
    with self._lock:
      if (name, split) not in self._splits:
        self._splits[(name, split)] = self._load_split(name, split)
      images = self._splits[(name, split)]
    if isinstance(images, Exception):
      raise images
    return images

  def _load_split(self, name, split):
    """Every image of one split, in file order (as `devise-jax embed` read them)."""
    try:
      import tensorflow_datasets as tfds  # pylint: disable=import-outside-toplevel
      from devise_jax import input_pipeline  # Registers the project's datasets.
      dcfg = self._config.data
      builder = (input_pipeline.get_builder(dcfg) if name == dcfg.name else
                 tfds.builder(name, data_dir=dcfg.data_dir or None))
      images, labels = [], []
      for example in builder.as_data_source(split):  # array_record files, in order.
        images.append(example['image'])
        labels.append(int(example['label']))
      prefix = f'tfds:{name}/{split}/'
      ids = [i for i, r in enumerate(self._refs) if r.startswith(prefix)]
      if self._labels is not None and ids:
        indices = [int(self._refs[i][len(prefix):]) for i in ids]
        if max(indices) >= len(labels) or any(
            labels[j] != self._labels[i] for i, j in zip(ids, indices)):
          raise ValueError(f'{name}/{split} on disk does not match the gallery\'s labels')
      return images
    except Exception as e:  # pylint: disable=broad-except
      log.warning('cannot load the gallery images of %s/%s: %s', name, split, e)
      return e
