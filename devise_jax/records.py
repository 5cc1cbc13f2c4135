"""A prepared split's records, read fast, and its label index, built once.

TFDS's array_record data source parses each record into numpy through its generic
feature decoders (about 0.3 ms a record here, as much as decoding a small JPEG). The
input pipeline needs two fields of most datasets, the encoded image and the label, so
`Source` reads the raw records and parses the tf.Example protocol buffer itself
(about 0.01 ms); datasets whose other features the pipeline reads (bounding boxes)
keep TFDS's decoding.

`labels(source)` is every record's label, in order. The iterator needs it to keep the
classes of a zero-shot split, and reading it means reading every record (1.28M for
ImageNet); so it is read once and kept as `labels-<key>.npy` beside the data files
(or in the cache directory when the data is read-only), keyed by the split's files
(names, sizes, times) and its slice: a re-prepared dataset gets a new index.
"""

import hashlib
import json
import os
from concurrent import futures
from typing import Sequence

from absl import logging
import numpy as np
import tensorflow_datasets as tfds
from tensorflow_datasets.proto import tf_example_pb2

from devise_jax import files

_SKIP_IMAGE = {'image': tfds.decode.SkipDecoding()}  # Records keep encoded images.
_CHUNK = 4096  # Records a label-index worker reads at once.
INDEX_VERSION = 1  # Part of the key: a change to the index's format rebuilds it.


class Source:
  """Random access to one split of a prepared TFDS dataset, in file order.

  Record i is {'image': encoded bytes, 'label': int}, plus every other feature
  (TFDS-decoded) when `all_features` is set.
  """

  def __init__(self, builder: tfds.core.DatasetBuilder, split: str,
               all_features: bool = False):
    self.builder, self.split = builder, split
    self.tfds = builder.as_data_source(split, decoders=_SKIP_IMAGE)
    # A mocked dataset (tfds.testing.mock_data) has no files: TFDS decodes it.
    self.raw = None if all_features else getattr(self.tfds, 'data_source', None)

  def __len__(self) -> int:
    return len(self.tfds)

  def __getitems__(self, indices: Sequence[int]) -> list[dict]:
    indices = [int(i) for i in indices]
    if not indices:  # array_record refuses an empty read.
      return []
    if self.raw is not None:
      return [_parse(r) for r in self.raw.__getitems__(indices)]
    read = getattr(self.tfds, '__getitems__', None)  # A mocked source is a list.
    return read(indices) if read else [self.tfds[i] for i in indices]

  def __getitem__(self, index: int) -> dict:
    return self.__getitems__([index])[0]

  def read_labels(self, start: int, stop: int) -> np.ndarray:
    """int64 labels of records [start, stop)."""
    return np.array([r['label'] for r in self.__getitems__(range(start, stop))],
                    np.int64)

  def files(self) -> list[list]:
    """[file name, skip, take, size, mtime_ns] of each file the split reads."""
    rows = []
    for part in self.builder.info.splits[self.split].file_instructions:
      stat = os.stat(part.filename)
      rows.append([os.path.basename(part.filename), part.skip, part.take,
                   stat.st_size, stat.st_mtime_ns])
    return rows


def _parse(serialized: bytes) -> dict:
  """{'image': bytes, 'label': int} of a serialized TFDS tf.Example."""
  feature = tf_example_pb2.Example.FromString(serialized).features.feature
  return {'image': feature['image'].bytes_list.value[0],
          'label': int(feature['label'].int64_list.value[0])}


def labels(source) -> np.ndarray:
  """int64 [len(source)]: every record's label, in order (see the module's doc)."""
  if hasattr(source, 'labels'):  # An image folder's list: labels from the paths.
    return source.labels
  if source.raw is None and not hasattr(source.tfds, 'data_source'):
    return _read_all(source)  # A mocked dataset: no files to key an index by.
  key = hashlib.sha256(json.dumps([INDEX_VERSION, source.split, source.files()])
                       .encode()).hexdigest()[:16]
  name = f'labels-{key}.npy'
  places = [os.fspath(source.builder.data_dir), _cache_dir()]
  for place in places:
    path = os.path.join(place, name)
    if os.path.exists(path):
      found = np.load(path, allow_pickle=False)
      if found.shape == (len(source),):
        return found
  found = _read_all(source)
  for place in places:
    try:
      _save(os.path.join(place, name), found)
      break
    except OSError as e:
      logging.info('label index not written to %s (%s)', place, e)
  return found


def _read_all(source) -> np.ndarray:
  """Every label, read by a few threads (array_record releases the GIL)."""
  starts = range(0, len(source), _CHUNK)
  with futures.ThreadPoolExecutor(max(1, min(8, os.cpu_count() or 1))) as pool:
    parts = pool.map(lambda s: source.read_labels(s, min(s + _CHUNK, len(source))),
                     starts)
    return np.concatenate(list(parts)) if len(source) else np.zeros(0, np.int64)


def _cache_dir() -> str:
  return os.path.join(files.cache_root(), 'label_index')


def _save(path: str, array: np.ndarray) -> None:
  """Writes `array` to `path` whole or not at all."""
  os.makedirs(os.path.dirname(path), exist_ok=True)
  files.write_atomic(path, lambda f: np.save(f, array, allow_pickle=False))
