"""Fashion-MNIST from the local IDX files of Debian's `dataset-fashion-mnist`.

TFDS's own `fashion_mnist` builder downloads the upstream archives and checks
their gzip checksums; Debian's files hold the same decoded content but different
gzip bytes, so that builder rejects them. This builder reads them instead and
writes a regular TFDS dataset with the same features.
"""

import gzip
import os
import struct

from etils import epath
import numpy as np
import tensorflow_datasets as tfds

DEFAULT_DIR = '/usr/share/datasets/fashion-mnist'
CLASS_NAMES = ('T-shirt/top', 'Trouser', 'Pullover', 'Dress', 'Coat', 'Sandal',
               'Shirt', 'Sneaker', 'Bag', 'Ankle boot')
IMAGE_SIDE = 28
_IMAGES_MAGIC = 2051  # IDX: unsigned bytes, 3 dimensions.
_LABELS_MAGIC = 2049  # IDX: unsigned bytes, 1 dimension.
_SPLITS = {
    'train': ('train-images-idx3-ubyte.gz', 'train-labels-idx1-ubyte.gz',
              60_000),
    'test': ('t10k-images-idx3-ubyte.gz', 't10k-labels-idx1-ubyte.gz', 10_000),
}


def _read_gzip(path: epath.Path) -> bytes:
  """Returns the decompressed bytes of `path`."""
  if not path.exists():
    raise FileNotFoundError(
        f'missing Fashion-MNIST file {path} '
        '(apt-get install dataset-fashion-mnist)')
  try:
    return gzip.decompress(path.read_bytes())
  except (EOFError, OSError, gzip.BadGzipFile) as e:
    raise ValueError(f'corrupt or truncated gzip file {path}: {e}') from e


def _parse_idx(path: epath.Path, magic: int, num_dims: int) -> np.ndarray:
  """Parses an IDX file of unsigned bytes into an array of its shape."""
  data = _read_gzip(path)
  header_size = 4 * (1 + num_dims)
  if len(data) < header_size:
    raise ValueError(f'truncated IDX file {path}: {len(data)} bytes')
  found_magic, *shape = struct.unpack(f'>{1 + num_dims}I', data[:header_size])
  if found_magic != magic:
    raise ValueError(f'bad IDX magic number {found_magic} in {path}, '
                     f'expected {magic}')
  size = int(np.prod(shape))
  if len(data) != header_size + size:
    raise ValueError(f'truncated IDX file {path}: {len(data) - header_size} '
                     f'data bytes for shape {tuple(shape)}')
  return np.frombuffer(data, np.uint8, offset=header_size).reshape(shape)


def load_split(directory: os.PathLike | str, split: str):
  """Returns (images uint8 [N, 28, 28, 1], labels uint8 [N]), validated."""
  images_name, labels_name, size = _SPLITS[split]
  directory = epath.Path(directory)
  images = _parse_idx(directory / images_name, _IMAGES_MAGIC, 3)
  labels = _parse_idx(directory / labels_name, _LABELS_MAGIC, 1)
  if images.shape != (size, IMAGE_SIDE, IMAGE_SIDE):
    raise ValueError(f'{directory / images_name} has shape {images.shape}, '
                     f'expected {(size, IMAGE_SIDE, IMAGE_SIDE)}')
  if labels.shape != (size,):
    raise ValueError(f'{directory / labels_name} has shape {labels.shape}, '
                     f'expected {(size,)}')
  if labels.max() >= len(CLASS_NAMES):
    raise ValueError(f'{directory / labels_name} has label {labels.max()}, '
                     f'expected < {len(CLASS_NAMES)}')
  return images[..., None], labels


class FashionMnistLocal(tfds.core.GeneratorBasedBuilder):
  """Fashion-MNIST read from local IDX files; no downloads."""

  VERSION = tfds.core.Version('1.0.0')
  RELEASE_NOTES = {'1.0.0': 'Initial release.'}
  MANUAL_DOWNLOAD_INSTRUCTIONS = f"""\
  Run `apt-get install dataset-fashion-mnist`, which puts the four
  `*-ubyte.gz` IDX files in {DEFAULT_DIR} (the default), or pass a
  `manual_dir` holding those files.
  """

  @tfds.core.utils.classproperty
  @classmethod
  def code_path(cls) -> epath.Path:
    # TFDS's default imports `importlib_resources`, which tensorflow-datasets
    # only declares as a dependency for Python < 3.9.
    return epath.Path(__file__)

  def _info(self) -> tfds.core.DatasetInfo:
    return tfds.core.DatasetInfo(
        builder=self,
        description=(
            "Fashion-MNIST: Zalando's 28x28 grayscale article images, 60,000 "
            'train and 10,000 test examples in 10 classes, in the order of '
            'the IDX files.'),
        features=tfds.features.FeaturesDict({
            'image': tfds.features.Image(shape=(IMAGE_SIDE, IMAGE_SIDE, 1)),
            'label': tfds.features.ClassLabel(names=list(CLASS_NAMES)),
        }),
        supervised_keys=('image', 'label'),
        homepage='https://github.com/zalandoresearch/fashion-mnist',
        # Keep the IDX order so that 'train[:512]' is the first 512 images.
        disable_shuffling=True,
    )

  def _split_generators(self, dl_manager: tfds.download.DownloadManager):
    directory = _source_dir(dl_manager)
    return {split: self._generate_examples(directory, split)
            for split in _SPLITS}

  def _generate_examples(self, directory: epath.Path, split: str):
    images, labels = load_split(directory, split)
    for index, (image, label) in enumerate(zip(images, labels)):
      yield index, {'image': image, 'label': int(label)}


def _source_dir(dl_manager: tfds.download.DownloadManager) -> epath.Path:
  """Returns the manual dir if it exists and is not empty, else DEFAULT_DIR."""
  try:
    return dl_manager.manual_dir
  except AssertionError:
    # TFDS raises this when no manual dir exists (or it is empty); the files
    # then come from the Debian package's directory.
    return epath.Path(DEFAULT_DIR)
