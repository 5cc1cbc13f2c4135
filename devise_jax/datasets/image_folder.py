"""Image folders as TFDS builders: `root/<split>/<class>/<image>` (TFDS's own
ImageFolder) or the older projects' `root/<class>/<image>` (FlatImageFolder), and
`FolderSource`, the random-access source the input pipeline reads a split through."""

import collections
import hashlib
from typing import Sequence

from etils import epath
import numpy as np
import tensorflow_datasets as tfds

IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png')  # What ImageFolder reads.
FLAT_TEST_FRACTION = 0.2  # Share of each class that a flat folder tests on.

_FolderExample = collections.namedtuple('_FolderExample', ['image_path', 'label'])


def builder(folder: str) -> tfds.folder_dataset.ImageFolder:
  """Returns the builder for `root/<split>/<class>/` or `root/<class>/`."""
  if not folder:
    raise ValueError("config.data.folder is empty; it must name the image "
                     "folder's root when config.data.name == 'image_folder'")
  root = epath.Path(folder).expanduser()
  if not root.is_dir():
    raise ValueError(f'image folder {folder!r} is not a directory')
  if any(_image_files(d) for d in _subdirs(root)):
    builder = FlatImageFolder(root)
  else:
    builder = tfds.folder_dataset.ImageFolder(str(root))
  if not builder.info.splits or not builder.info.features['label'].names:
    raise ValueError(
        f'no images ({", ".join(IMAGE_EXTENSIONS)}) found in image folder '
        f'{folder!r}; expected root/<split>/<class>/<image> or '
        'root/<class>/<image>')
  return builder


class FolderSource:
  """One split of an image folder builder as a random-access source, in the
  builder's order (what its `as_dataset` reads): record i is {'image': the file's
  path, 'label': its label id}. `labels` holds every label without opening a file."""

  def __init__(self, builder: tfds.folder_dataset.ImageFolder, split: str):
    examples = builder._split_examples[split]  # pylint: disable=protected-access
    to_id = builder.info.features['label'].str2int
    self.paths = [str(e.image_path) for e in examples]
    self.labels = np.array([to_id(e.label) for e in examples], np.int64)

  def __len__(self) -> int:
    return len(self.paths)

  def __getitem__(self, index: int) -> dict:
    return {'image': self.paths[index], 'label': int(self.labels[index])}


def _subdirs(path: epath.Path) -> list[epath.Path]:
  return sorted(p for p in path.iterdir() if p.is_dir())


def _image_files(path: epath.Path) -> list[epath.Path]:
  return sorted(p for p in path.iterdir()
                if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())


class FlatImageFolder(tfds.folder_dataset.ImageFolder, skip_registration=True):
  """An image folder without a split level: `root/<class>/<image>`.

  Older projects keep one folder per class, so the split is made here: in each
  class the files are ranked by the SHA-256 of '<class>/<file name>', and the
  first round(FLAT_TEST_FRACTION * n) of them (at least 1, at most n - 1) are
  'test', the rest 'train'; a class of one file is train only. The hash makes
  the split depend on the file names alone, not on the machine, the listing
  order or the seed, so it stays the same across runs; ranking within each
  class keeps every class of 2+ files in both splits, which zero-shot
  evaluation needs. Each split is ordered by the hash, which mixes the
  classes. As with ImageFolder, splits are read whole (no 'train[:10%]').
  """

  def __init__(self, root_dir: epath.PathLike):
    # ImageFolder.__init__ expects the split level, so this sets up the state
    # its `_info` and `_as_dataset` read.
    self._image_shape = None
    self._image_dtype = None
    root_dir = epath.Path(root_dir)
    tfds.core.DatasetBuilder.__init__(self, data_dir=str(root_dir))
    self._data_dir = str(root_dir)
    labels = [d.name for d in _subdirs(root_dir)]
    self._split_examples = _flat_split_examples(root_dir, labels)
    self.info.features['label'].names = labels
    self.info.set_splits(tfds.core.SplitDict([
        tfds.core.SplitInfo(name=name, shard_lengths=[len(examples)],
                            num_bytes=0)
        for name, examples in self._split_examples.items()
    ]))


def _flat_split_examples(root: epath.Path, labels: Sequence[str]):
  """Returns {'train': [...], 'test': [...]}, as FlatImageFolder documents."""
  keyed = {'train': [], 'test': []}
  for label in labels:
    files = sorted((_path_hash(label, p.name), p)
                   for p in _image_files(root / label))
    num_test = _num_test(len(files))
    for i, (digest, path) in enumerate(files):
      example = _FolderExample(str(path), label)
      keyed['test' if i < num_test else 'train'].append((digest, example))
  return {split: [example for _, example in sorted(pairs)]
          for split, pairs in keyed.items()}


def _num_test(num_files: int) -> int:
  if num_files < 2:
    return 0
  return min(num_files - 1, max(1, round(FLAT_TEST_FRACTION * num_files)))


def _path_hash(label: str, filename: str) -> str:
  return hashlib.sha256(f'{label}/{filename}'.encode('utf-8')).hexdigest()
