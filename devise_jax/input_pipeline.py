"""Input pipeline: TFDS datasets and image folders as numpy batches.

Every function takes `config.data` (called `dcfg`); see
experiments/configs/fashion_mnist_zsl.py for its fields. tf.data is used only
inside this module; the iterators yield dicts of numpy arrays.
"""

import math
from typing import Iterable, Iterator, Sequence

from absl import logging
import jax
import ml_collections
import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

# Importing the datasets registers their builders with TFDS.
from devise_jax import datasets  # pylint: disable=unused-import
from devise_jax.datasets import image_folder

try:
  # TF only preprocesses on the CPU; this keeps it off the accelerator memory
  # that JAX needs.
  tf.config.set_visible_devices([], 'GPU')
except RuntimeError:  # TF had already initialised its devices.
  logging.warning('input_pipeline: TF devices already initialised; TF may '
                  'see GPUs.')

Batch = dict[str, np.ndarray]

IMAGE_FOLDER = 'image_folder'

_AUTOTUNE = tf.data.AUTOTUNE


# Builders.


def get_builder(dcfg: ml_collections.ConfigDict) -> tfds.core.DatasetBuilder:
  """Returns the prepared builder that `dcfg` names."""
  if dcfg.name == IMAGE_FOLDER:
    builder = image_folder.builder(dcfg.folder)
    _check_features(builder)
    return builder
  try:
    builder = tfds.builder(dcfg.name, data_dir=dcfg.data_dir or None)
  except tfds.core.registered.DatasetNotFoundError:
    raise ValueError(f'unknown dataset {dcfg.name!r} (not registered in '
                     'tensorflow_datasets)') from None
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


# Splits and reading.


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


def _read(builder: tfds.core.DatasetBuilder, split: str,
          dcfg: ml_collections.ConfigDict) -> tf.data.Dataset:
  """Returns this process's share of `split` as {image: bytes, label: int64}
  (and `box`, normalised [4], with `dcfg.crop_to_box`). In file order; images
  stay encoded so that shuffling, caching and skipping are cheap.
  """
  _check_split(builder, split)
  box = datasets.boxes(builder.name, dcfg.get('crop_to_box', False))
  skip = {'image': tfds.decode.SkipDecoding()}
  if isinstance(builder, tfds.folder_dataset.ImageFolder):
    decoders = skip  # ImageFolder takes no PartialDecoding.
    if jax.process_count() > 1:
      raise ValueError('image folders are read by a single process only; '
                       'use a TFDS dataset for multi-process training')
  else:
    decoders = tfds.decode.PartialDecoding(
        {'image': True, 'label': True, **(box[0] if box else {})}, decoders=skip)
    if jax.process_count() > 1:
      split = tfds.split_for_jax_process(split)
  ds = builder.as_dataset(split=split, shuffle_files=False, decoders=decoders)
  return ds.map(lambda ex: {'image': ex['image'], 'label': ex['label'],
                            **({'box': box[1](ex)} if box else {})})


def _local_batch_size(batch_size: int) -> int:
  processes = jax.process_count()
  if batch_size <= 0 or batch_size % processes:
    raise ValueError(f'batch_size {batch_size} must be a positive multiple of '
                     f'jax.process_count() = {processes}')
  return batch_size // processes


def _deterministic(ds: tf.data.Dataset) -> tf.data.Dataset:
  options = tf.data.Options()
  options.deterministic = True
  return ds.with_options(options)


# Preprocessing.


def decode(encoded: tf.Tensor, box: tf.Tensor | None = None) -> tf.Tensor:
  """Decodes JPEG or PNG bytes to uint8 [H, W, 3] (gray is replicated), cropped
  to the normalised `box` if given."""
  image = tf.io.decode_image(encoded, channels=3, expand_animations=False)
  return image if box is None else datasets.crop(image, box)


def preprocess(image: tf.Tensor, dcfg: ml_collections.ConfigDict, *,
               train: bool, seed: tf.Tensor | None = None) -> tf.Tensor:
  """Maps uint8 [H, W, C] to normalised float32 [S, S, 3], S = image_size.

  Resizes to a square of side `image_size + crop_padding`, then crops
  `image_size`: at random (with a random horizontal flip) when training, from
  the centre otherwise. Training needs `seed`, an int [2] stateless seed.

  Args:
    image: uint8 [H, W], [H, W, 1], [H, W, 3] or [H, W, 4] (alpha dropped).
    dcfg: `config.data`.
    train: whether to augment.
    seed: the stateless seed of the augmentation; required when training.

  Returns:
    float32 [S, S, 3].
  """
  size, padding = dcfg.image_size, dcfg.crop_padding
  image = tf.image.convert_image_dtype(_to_rgb(image), tf.float32)  # [0, 1].
  image = _resize_square(image, size + padding)
  if train:
    if seed is None:
      raise ValueError('preprocess(train=True) needs a seed')
    crop_seed, flip_seed = tf.unstack(
        tf.random.experimental.stateless_split(seed, num=2))
    image = tf.image.stateless_random_crop(image, [size, size, 3], crop_seed)
    image = tf.image.stateless_random_flip_left_right(image, flip_seed)
  else:
    start = padding // 2
    image = image[start:start + size, start:start + size]
  mean = tf.constant(dcfg.mean, tf.float32)
  std = tf.constant(dcfg.std, tf.float32)
  return (image - mean) / std


def _resize_square(image: tf.Tensor, side: int) -> tf.Tensor:
  """Resizes bilinearly to [side, side], antialiased when shrinking."""
  # Antialiasing changes nothing when enlarging (as for Fashion-MNIST) but
  # triples the cost.
  shrinks = tf.reduce_any(tf.shape(image)[:2] > side)
  return tf.cond(
      shrinks,
      lambda: tf.image.resize(image, [side, side], antialias=True),
      lambda: tf.image.resize(image, [side, side]))


def _to_rgb(image: tf.Tensor) -> tf.Tensor:
  """Returns uint8 [H, W, 3] from [H, W] or [H, W, C], C in {1, 3, 4}."""
  image = tf.convert_to_tensor(image, tf.uint8)
  if image.shape.rank == 2:
    image = image[..., None]
  channels = image.shape[-1]
  if channels == 1:
    return tf.image.grayscale_to_rgb(image)
  if channels in (3, 4):
    return image[..., :3]
  raise ValueError(f'expected an image with 1, 3 or 4 channels, got shape '
                   f'{image.shape}')


# Iterators.


def train_iterator(dcfg: ml_collections.ConfigDict, *, batch_size: int,
                   seed: int, class_ids: Sequence[int],
                   start_step: int = 0) -> Iterator[Batch]:
  """Yields training batches forever, only of the classes `class_ids`.

  Batches are {'image': float32 [B, S, S, 3], 'label': int32 [B]} with the
  dataset's own label ids; B = batch_size / jax.process_count(). Order and
  augmentation are a function of (seed, example position) only, so the
  iterator started at `start_step=k` yields the batches k, k+1, ... of the one
  started at 0. Resuming reads past k * B encoded examples, which is fast once
  `dcfg.cache` holds them (about 4 s for 1,200 steps of 128 Fashion-MNIST
  images on 2 cores) and slow without it.
  """
  if start_step < 0:
    raise ValueError(f'start_step must be >= 0, got {start_step}')
  builder = get_builder(dcfg)
  local_batch = _local_batch_size(batch_size)
  keep = _class_mask(builder, class_ids)
  ds = _read(builder, dcfg.train_split, dcfg)
  ds = ds.filter(lambda ex: tf.gather(keep, ex['label']))
  if not any(True for _ in ds.take(1)):
    raise ValueError(f'no examples of classes {np.unique(class_ids).tolist()} '
                     f'in split {dcfg.train_split!r} of {builder.name!r}')
  if dcfg.cache:
    ds = ds.cache()
  # Shuffling after repeat mixes epochs but keeps one seeded stream, so that
  # skipping in it is an exact resume.
  ds = ds.repeat().shuffle(dcfg.shuffle_buffer, seed=seed).enumerate()
  ds = ds.skip(start_step * local_batch)
  key = tf.constant([seed, jax.process_index()], tf.int64)

  def example(position, ex):
    ex_seed = tf.random.experimental.stateless_fold_in(key, position)
    image = preprocess(decode(ex['image'], ex.get('box')), dcfg, train=True, seed=ex_seed)
    return {'image': image, 'label': tf.cast(ex['label'], tf.int32)}

  ds = ds.map(example, num_parallel_calls=_AUTOTUNE)
  ds = ds.batch(local_batch, drop_remainder=True).prefetch(_AUTOTUNE)
  return iter(tfds.as_numpy(_deterministic(ds)))


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


def _class_mask(builder: tfds.core.DatasetBuilder,
                class_ids: Sequence[int]) -> tf.Tensor:
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
  return tf.constant(mask)


def eval_iterator(dcfg: ml_collections.ConfigDict, *, split: str,
                  batch_size: int) -> Iterator[Batch]:
  """Yields the whole `split` once, all classes, in file order.

  Batches are {'image': float32 [B, S, S, 3], 'label': int32 [B],
  'mask': bool [B]}; the last batch is padded to B and `mask` is False on the
  padding. With several processes each yields its share, padded to the same
  number of batches.
  """
  builder = get_builder(dcfg)
  local_batch = _local_batch_size(batch_size)
  ds = _read(builder, split, dcfg)

  def example(ex):
    image = preprocess(decode(ex['image'], ex.get('box')), dcfg, train=False)
    return {'image': image, 'label': tf.cast(ex['label'], tf.int32)}

  ds = ds.map(example, num_parallel_calls=_AUTOTUNE)
  ds = _deterministic(ds.batch(local_batch).prefetch(_AUTOTUNE))
  num_batches = 0
  processes = jax.process_count()
  if processes > 1:
    # Every process must run as many steps as the one with the largest share.
    share = math.ceil(builder.info.splits[split].num_examples / processes)
    num_batches = math.ceil(share / local_batch)
  shape = (local_batch, dcfg.image_size, dcfg.image_size, 3)
  return _padded(tfds.as_numpy(ds), shape, num_batches)


def _padded(batches: Iterable[Batch], image_shape: tuple[int, ...],
            num_batches: int) -> Iterator[Batch]:
  """Pads each batch to image_shape[0] and adds a mask; then pads the count."""
  size = image_shape[0]
  count = 0
  for batch in batches:
    n = len(batch['label'])
    pad = size - n
    yield {
        'image': np.concatenate(
            [batch['image'], np.zeros((pad,) + image_shape[1:], np.float32)]),
        'label': np.concatenate([batch['label'], np.zeros(pad, np.int32)]),
        'mask': np.arange(size) < n,
    }
    count += 1
  for _ in range(count, num_batches):
    yield {'image': np.zeros(image_shape, np.float32),
           'label': np.zeros(size, np.int32), 'mask': np.zeros(size, bool)}
