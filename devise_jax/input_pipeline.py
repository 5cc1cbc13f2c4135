"""Input pipeline: TFDS datasets and image folders as numpy batches, read with grain.

Every function takes `config.data` (called `dcfg`); see
experiments/configs/fashion_mnist_zsl.py for its fields. A split is read as a
random-access source: a TFDS dataset prepared as array_record files
(`builder.as_data_source`) or an image folder's file list
(`image_folder.FolderSource`); a dataset's records are read by `records.Source`
and its labels come from `records.labels`, an index built once. Images are decoded
by `images.decode` (PIL) and preprocessed by `preprocessing`, the one definition
that training, evaluation, galleries and the demo share. Training batch k is a pure function of (seed, k, process index), so
`train_iterator(start_step=k)` resumes exactly and in O(1).
"""

import math
import os
from typing import Iterable, Iterator, Sequence

from absl import logging
import grain
import jax
import ml_collections
import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

# Importing the datasets registers their builders with TFDS.
from devise_jax import augment
from devise_jax import datasets
from devise_jax import preprocessing
from devise_jax import records
from devise_jax.datasets import image_folder

try:
  # The pipeline runs no TF op, but TFDS (preparing datasets) and the metric
  # writer do; this keeps TF off the accelerator memory that JAX needs.
  tf.config.set_visible_devices([], 'GPU')
except RuntimeError:  # TF had already initialised its devices.
  logging.warning('input_pipeline: TF devices already initialised; TF may '
                  'see GPUs.')

Batch = dict[str, np.ndarray]

IMAGE_FOLDER = 'image_folder'
FILE_FORMAT = 'array_record'  # What TFDS datasets are prepared as: random access.
preprocess = preprocessing.preprocess  # The one preprocessing (see preprocessing.py).


def _read_options() -> grain.ReadOptions:
  """Batches prepared at once, in threads: one per core this process may use."""
  threads = min(8, len(os.sched_getaffinity(0)))
  return grain.ReadOptions(num_threads=threads, prefetch_buffer_size=max(2, threads))


# Builders.


def get_builder(dcfg: ml_collections.ConfigDict) -> tfds.core.DatasetBuilder:
  """Returns the prepared builder that `dcfg` names."""
  if dcfg.name == IMAGE_FOLDER:
    builder = image_folder.builder(dcfg.folder)
    _check_features(builder)
    return builder
  data_dir = dcfg.data_dir or None
  try:
    builder = tfds.builder(dcfg.name, data_dir=data_dir, file_format=FILE_FORMAT)
  except tfds.core.registered.DatasetNotFoundError:
    raise ValueError(f'unknown dataset {dcfg.name!r} (not registered in '
                     'tensorflow_datasets)') from None
  except ValueError as e:
    if 'File format is already set' not in str(e):
      raise
    prepared = tfds.builder(dcfg.name, data_dir=data_dir)
    raise ValueError(f'dataset {dcfg.name!r} at {prepared.data_dir} was prepared as '
                     f'{prepared.info.file_format.value} files, '
                     f'but the input pipeline reads {FILE_FORMAT} files (random access): '
                     'delete that directory, or set config.data.data_dir to another '
                     'one, to prepare it again') from None
  _check_features(builder)
  datasets.prepare(builder, dcfg.manual_dir)
  return builder


def _check_features(builder: tfds.core.DatasetBuilder) -> None:
  """Raises unless the builder has an `image` Image and a `label` ClassLabel."""
  features = builder.info.features
  names = list(features.keys()) if hasattr(features, 'keys') else []
  if not ('image' in names and 'label' in names
          and isinstance(features['image'], tfds.features.Image)
          and isinstance(features['label'], tfds.features.ClassLabel)):
    raise ValueError(
        f'dataset {builder.name!r} needs an Image feature `image` and a '
        f'ClassLabel feature `label`; its features are {names}')


# Classes.


def class_names(dcfg: ml_collections.ConfigDict) -> list[str]:
  """Returns the dataset's class names in label-id order (readable: datasets/)."""
  return datasets.class_names(get_builder(dcfg))


def split_classes(dcfg: ml_collections.ConfigDict,
                  seed: int) -> tuple[np.ndarray, np.ndarray]:
  """Returns (seen_ids, unseen_ids), sorted int32 arrays of label ids.

  Unseen classes are `dcfg.unseen_classes` (exact dataset names) or, when that
  is empty, a random `dcfg.unseen_fraction` of the classes drawn with `seed`.
  Classes named in `dcfg.exclude_classes` (if any) are in neither set: no image
  of theirs is trained on or evaluated (the validation protocol uses this to
  put a run's real unseen classes out of sight).
  """
  names = class_names(dcfg)
  excluded = _named_ids(dcfg.get('exclude_classes', ()), names, 'exclude_classes')
  if dcfg.unseen_classes:
    unseen = _named_ids(dcfg.unseen_classes, names)
  else:
    unseen = _random_ids(len(names), dcfg.unseen_fraction, seed)
  clash = sorted(names[i] for i in np.intersect1d(unseen, excluded))
  if clash:
    raise ValueError(f'classes {clash} are both unseen and excluded')
  seen = np.setdiff1d(np.arange(len(names)), np.union1d(unseen, excluded))
  if not len(seen):
    raise ValueError('config.data.unseen_classes names every class; no seen '
                     'class is left to train on')
  return seen.astype(np.int32), np.sort(unseen).astype(np.int32)


def _named_ids(unseen_names: Sequence[str], names: Sequence[str],
               key: str = 'unseen_classes') -> np.ndarray:
  """Returns the ids of `unseen_names`, which must be distinct valid names."""
  if isinstance(unseen_names, str):
    raise ValueError(f'config.data.{key} must be a tuple of class '
                     f'names, not the string {unseen_names!r}')
  what = 'unseen' if key == 'unseen_classes' else 'excluded'
  unknown = [n for n in unseen_names if n not in names]
  if unknown:
    raise ValueError(f'config.data.{key}: unknown {what} classes {unknown}; valid class '
                     f'names: {list(names)}')
  duplicates = sorted({n for n in unseen_names
                       if list(unseen_names).count(n) > 1})
  if duplicates:
    raise ValueError(f'duplicate {what} classes {duplicates} in config.data.{key}')
  return np.array([names.index(n) for n in unseen_names], np.int32)


def _random_ids(num_classes: int, fraction: float, seed: int) -> np.ndarray:
  """Returns round(fraction * num_classes) ids, at least 1 and at most n - 1."""
  if not 0 < fraction < 1:
    raise ValueError('config.data.unseen_classes is empty and '
                     'config.data.unseen_fraction is not in (0, 1) '
                     f'(it is {fraction})')
  if num_classes < 2:
    raise ValueError(f'a zero-shot split needs 2+ classes, got {num_classes}')
  count = min(num_classes - 1, max(1, round(fraction * num_classes)))
  rng = np.random.default_rng(seed)
  return np.sort(rng.choice(num_classes, size=count, replace=False))


def _class_mask(builder: tfds.core.DatasetBuilder,
                class_ids: Sequence[int]) -> np.ndarray:
  """Returns bool [num_classes], True at `class_ids`."""
  num_classes = builder.info.features['label'].num_classes
  ids = np.asarray(class_ids).reshape(-1)
  if not ids.size:
    raise ValueError('class_ids is empty: no class to train on')
  if not np.issubdtype(ids.dtype, np.integer) or ids.min() < 0 or (
      ids.max() >= num_classes):
    raise ValueError(f'class_ids {ids.tolist()} are not label ids in '
                     f'[0, {num_classes})')
  mask = np.zeros(num_classes, bool)
  mask[ids] = True
  return mask


# Splits and sources.


def num_examples(dcfg: ml_collections.ConfigDict, split: str) -> int:
  """Returns the number of examples of `split` (all processes together)."""
  builder = get_builder(dcfg)
  _check_split(builder, split)
  return builder.info.splits[split].num_examples


def _check_split(builder: tfds.core.DatasetBuilder, split: str) -> None:
  """Raises a clear error if `builder` cannot read `split`."""
  splits = builder.info.splits
  valid = sorted(splits.keys())
  if isinstance(builder, tfds.folder_dataset.ImageFolder):
    if split not in valid:
      raise ValueError(f'bad split {split!r} for image folder '
                       f'{builder.data_dir}: it has the splits {valid} and '
                       'takes whole split names only (no slices)')
  elif not valid:
    return  # Splits unknown before reading (e.g. a mocked dataset).
  try:
    size = splits[split].num_examples
  except (KeyError, ValueError, AssertionError) as e:
    raise ValueError(f'bad split {split!r} for dataset {builder.name!r} '
                     f'(its splits are {valid}): {e}') from None
  if size <= 0:
    raise ValueError(f'split {split!r} of dataset {builder.name!r} is empty')


def _source(builder: tfds.core.DatasetBuilder, split: str, dcfg):
  """Random access to `split`, in file order: record i is a dict with `image`
  (encoded bytes, or a file path), `label` and, where the pipeline reads them (a
  dataset's boxes), the dataset's other features."""
  _check_split(builder, split)
  if isinstance(builder, tfds.folder_dataset.ImageFolder):
    return image_folder.FolderSource(builder, split)
  boxes = datasets.boxes(builder.name, dcfg.get('crop_to_box', False))
  return records.Source(builder, split, all_features=boxes is not None)


def _records(source, indices: Iterable[int]) -> list[dict]:
  """The records `indices` of `source`, read together where it can."""
  indices = [int(i) for i in indices]
  read = getattr(source, '__getitems__', None)
  return read(indices) if read else [source[i] for i in indices]


# Iterators.


def _local_batch_size(batch_size: int) -> int:
  processes = jax.process_count()
  if batch_size <= 0 or batch_size % processes:
    raise ValueError(f'batch_size {batch_size} must be a positive multiple of '
                     f'jax.process_count() = {processes}')
  return batch_size // processes


def _shuffle_seed(seed: int) -> int:
  """The seed of epoch 0's permutation (epoch e's is + e), hashed from `seed` so
  that nearby seeds (stages, protocol runs) do not share epoch orders."""
  return int(np.random.SeedSequence(seed).generate_state(1)[0])


def train_iterator(dcfg: ml_collections.ConfigDict, *, batch_size: int,
                   seed: int, class_ids: Sequence[int],
                   start_step: int = 0) -> Iterator[Batch]:
  """Yields training batches forever, only of the classes `class_ids`.

  Batches are {'image': float32 [B, S, S, 3], 'label': int32 [B]} with the
  dataset's own label ids; B = batch_size / jax.process_count().

  The examples of `class_ids` (n of them, in file order) form one stream: global
  position i = e * n + j holds example `index_shuffle(j, n - 1, _shuffle_seed(seed)
  + e)` (grain's shuffle: a new permutation each epoch e, each example once per
  epoch). Global batch k is positions [k * batch_size, (k + 1) * batch_size), and
  process p takes its p-th slice of B. The augmentation's random numbers are drawn
  for the whole global batch from `default_rng((seed, k))` (`_augment`), then
  sliced alike. So batch k is a pure function of (seed, k, p): `start_step=k`
  yields the batches k, k+1, ... of the iterator started at 0 without reading
  anything before them, and the processes' batches together are the one-process
  batch.

  Start-up reads no record: the split's labels come from its label index
  (`records.labels`, built the first time a split is read). With `dcfg.cache`
  every image is decoded and squashed once, when first used, and kept in memory
  (small datasets). Batches are prepared ahead in threads.
  """
  if start_step < 0:
    raise ValueError(f'start_step must be >= 0, got {start_step}')
  builder = get_builder(dcfg)
  local_batch = _local_batch_size(batch_size)
  mask = _class_mask(builder, class_ids)
  source = _source(builder, dcfg.train_split, dcfg)
  labels = records.labels(source)
  kept = np.flatnonzero(mask[labels])
  if not len(kept):
    raise ValueError(f'no examples of classes {np.unique(class_ids).tolist()} '
                     f'in split {dcfg.train_split!r} of {builder.name!r}')
  resized_crops = dcfg.get('augment', 'pad_crop') == 'random_resized_crop'
  cache = len(kept) if dcfg.cache and not resized_crops else 0
  loader = preprocessing.Loader(builder.name, dcfg, cache=cache)
  process, processes = jax.process_index(), jax.process_count()
  mine = slice(process * local_batch, (process + 1) * local_batch)

  def batch(step: int, ids: np.ndarray) -> Batch:
    rng = np.random.default_rng((seed, step))
    indices = kept[ids]
    if resized_crops:
      draws = {k: v[mine] for k, v in augment.draw(rng, batch_size).items()}
      images = loader.random_resized_crops(_records(source, indices), indices, draws)
      return {'image': images, 'label': labels[indices].astype(np.int32)}
    offsets, flips = preprocessing.draw_pad_crops(rng, batch_size, dcfg.crop_padding)
    squashed = (loader.cached(lambda i: _records(source, i), ids, kept) if cache
                else loader.squashed(_records(source, indices), indices))
    images = preprocessing.pad_crop(squashed, dcfg, (offsets[mine], flips[mine]))
    return {'image': preprocessing.normalise(images, dcfg),
            'label': labels[indices].astype(np.int32)}

  ds = (grain.MapDataset.range(len(kept)).shuffle(seed=_shuffle_seed(seed)).repeat()
        .batch(local_batch)[process::processes][start_step:]
        .map_with_index(lambda i, ids: batch(start_step + i, ids)))
  return iter(ds.to_iter_dataset(_read_options()))


def feature_batches(features: np.ndarray, labels: np.ndarray,
                    class_ids: Sequence[int], *, batch_size: int, seed: int,
                    start_step: int = 0) -> Iterator[Batch]:
  """Yields batches of cached features of the classes `class_ids`, forever.

  Batch s is drawn without replacement by `default_rng([seed, s])`, a function of
  (seed, step) only, so the iterator started at `start_step=k` is exact and O(1).
  """
  ids = np.flatnonzero(np.isin(labels, class_ids))
  if len(ids) < batch_size:
    raise ValueError(f'{len(ids)} examples of classes {list(class_ids)} cannot fill a '
                     f'batch of {batch_size}')
  step = start_step
  while True:
    chosen = np.random.default_rng([seed, step]).choice(ids, batch_size, replace=False)
    yield {'features': features[chosen], 'label': labels[chosen].astype(np.int32)}
    step += 1


def eval_iterator(dcfg: ml_collections.ConfigDict, *, split: str,
                  batch_size: int) -> Iterator[Batch]:
  """Yields the whole `split` once, all classes, in file order.

  Batches are {'image': float32 [B, S, S, 3], 'label': int32 [B],
  'mask': bool [B]}; the last batch is padded to B and `mask` is False on the
  padding. With several processes each yields its share (a contiguous range of
  the split), padded to the same number of batches.
  """
  builder = get_builder(dcfg)
  local_batch = _local_batch_size(batch_size)
  source = _source(builder, split, dcfg)
  loader = preprocessing.Loader(builder.name, dcfg)
  size, processes, process = len(source), jax.process_count(), jax.process_index()
  start, stop = process * size // processes, (process + 1) * size // processes

  def batch(b: int) -> Batch:
    indices = np.arange(start + b * local_batch, min(start + (b + 1) * local_batch, stop))
    chunk = _records(source, indices)
    images = preprocessing.pad_crop(loader.squashed(chunk, indices), dcfg)
    pad = local_batch - len(indices)
    return {'image': np.concatenate([preprocessing.normalise(images, dcfg), np.zeros(
                (pad, dcfg.image_size, dcfg.image_size, 3), np.float32)]),
            'label': np.concatenate([np.array([r['label'] for r in chunk], np.int32),
                                     np.zeros(pad, np.int32)]),
            'mask': np.arange(local_batch) < len(indices)}

  # Every process runs as many batches as the one with the largest share.
  num_batches = math.ceil(math.ceil(size / processes) / local_batch)
  return iter(grain.MapDataset.range(num_batches).map(batch)
              .to_iter_dataset(_read_options()))
