"""Image folders (devise_jax/datasets/image_folder.py) through the input pipeline:
`root/<split>/<class>/` and the older projects' `root/<class>/`, checked against solid
colour images made here with PIL."""

import pathlib
import shutil

import numpy as np
from PIL import Image
import pytest
import tensorflow_datasets as tfds

from conftest import load_config
from devise_jax import input_pipeline


def _base_dcfg():
  return load_config(variant='tiny').data


def _unnormalise(images, dcfg):
  pixels = (images * np.array(dcfg.std) + np.array(dcfg.mean)) * 255
  return np.round(pixels).astype(np.uint8)


# Solid colours survive JPEG, so a decoded pixel tells which class it was.
COLOURS = {'cat': (200, 30, 30), 'dog': (30, 30, 200), 'owl': (128, 128, 128)}
ALPHA = 100  # Of the RGBA files, which `images.decode` composites on white.


def _make_class_dir(directory, label, count):
  """Writes `count` images of sizes around 30 px, JPEG and PNG alternately."""
  directory.mkdir(parents=True)
  paths = []
  for i in range(count):
    path = directory / f'{label}{i}{".png" if i % 2 else ".jpg"}'
    size = (20 + 7 * i, 30 + 3 * i)
    if label == 'owl':  # Grayscale files.
      image = Image.new('L', size, COLOURS[label][0])
    elif i % 4 == 3:  # A PNG with an alpha channel.
      image = Image.new('RGBA', size, COLOURS[label] + (ALPHA,))
    else:
      image = Image.new('RGB', size, COLOURS[label])
    image.save(path)
    paths.append(path)
  return paths


def _folder_dcfg(root):
  dcfg = _base_dcfg()
  dcfg.name, dcfg.folder = 'image_folder', str(root)
  dcfg.train_split, dcfg.eval_split = 'train', 'test'
  dcfg.unseen_classes = ()
  dcfg.unseen_fraction = 0.3
  return dcfg


def _check_colours(batch, dcfg, names):
  pixels = _unnormalise(batch['image'], dcfg).astype(int)
  for image, label, valid in zip(pixels, batch['label'], batch['mask']):
    if valid:
      colour = np.array(COLOURS[names[label]])
      on_white = colour * ALPHA / 255 + 255 * (1 - ALPHA / 255)
      error = min(np.abs(image - colour).max(), np.abs(image - on_white).max())
      assert error <= 8, (names[label], image[0, 0])


def test_image_folder_with_splits(tmp_path):
  for split, count in [('train', 5), ('test', 3)]:
    for label in COLOURS:
      _make_class_dir(tmp_path / split / label, label, count)
  dcfg = _folder_dcfg(tmp_path)
  names = input_pipeline.class_names(dcfg)
  assert names == ['cat', 'dog', 'owl']
  assert input_pipeline.num_examples(dcfg, 'train') == 15
  assert input_pipeline.num_examples(dcfg, 'test') == 9
  batches = list(input_pipeline.eval_iterator(dcfg, split='test', batch_size=4))
  assert len(batches) == 3
  labels = np.concatenate([b['label'][b['mask']] for b in batches])
  assert sorted(labels) == [0] * 3 + [1] * 3 + [2] * 3
  for batch in batches:
    assert batch['image'].shape == (4, 32, 32, 3)
    _check_colours(batch, dcfg, names)
  seen, _ = input_pipeline.split_classes(dcfg, seed=0)
  batch = next(input_pipeline.train_iterator(dcfg, batch_size=6, seed=0,
                                             class_ids=seen))
  assert set(batch['label']) <= set(seen.tolist())
  _check_colours(dict(batch, mask=np.ones(6, bool)), dcfg, names)
  with pytest.raises(ValueError, match='no slices'):
    input_pipeline.eval_iterator(dcfg, split='train[:10%]', batch_size=4)


def _split_files(dcfg):
  builder = input_pipeline.get_builder(dcfg)
  files = {}
  for split in ('train', 'test'):
    ds = builder.as_dataset(split=split,
                            decoders={'image': tfds.decode.SkipDecoding()})
    paths = tfds.as_numpy(ds.map(lambda ex: ex['image/filename']))
    files[split] = [pathlib.Path(p.decode()).relative_to(dcfg.folder)
                    for p in paths]
  return files


def test_flat_image_folder(tmp_path):
  root = tmp_path / 'pictures'
  expected = {'cat': 10, 'dog': 5, 'owl': 1}
  all_files = set()
  for label, count in expected.items():
    all_files |= {p.relative_to(root)
                  for p in _make_class_dir(root / label, label, count)}
  (root / 'empty').mkdir()
  dcfg = _folder_dcfg(root)
  names = input_pipeline.class_names(dcfg)
  assert names == ['cat', 'dog', 'empty', 'owl']
  files = _split_files(dcfg)
  train, test = set(files['train']), set(files['test'])
  assert not train & test and train | test == all_files
  assert len(files['train']) == len(train)
  # Test fraction 0.2: 2 of 10 cats, 1 of 5 dogs, and the single owl trains.
  assert sorted(p.parts[0] for p in test) == ['cat', 'cat', 'dog']
  assert input_pipeline.num_examples(dcfg, 'test') == 3
  assert input_pipeline.num_examples(dcfg, 'train') == 13
  # The split depends on file names only, not on where the folder is.
  moved = tmp_path / 'elsewhere'
  shutil.copytree(root, moved)
  assert _split_files(_folder_dcfg(moved)) == files
  batches = list(input_pipeline.eval_iterator(dcfg, split='test', batch_size=2))
  assert sum(b['mask'].sum() for b in batches) == 3
  for batch in batches:
    _check_colours(batch, dcfg, names)
  batch = next(input_pipeline.train_iterator(dcfg, batch_size=4, seed=0,
                                             class_ids=[0, 3]))
  assert batch['image'].shape == (4, 32, 32, 3)
  assert set(batch['label']) <= {0, 3}
  _check_colours(dict(batch, mask=np.ones(4, bool)), dcfg, names)
  with pytest.raises(ValueError, match='no examples of classes'):
    input_pipeline.train_iterator(dcfg, batch_size=4, seed=0, class_ids=[2])


def test_image_folder_errors(tmp_path):
  with pytest.raises(ValueError, match='config.data.folder is empty'):
    input_pipeline.class_names(_folder_dcfg(''))
  with pytest.raises(ValueError, match='is not a directory'):
    input_pipeline.class_names(_folder_dcfg(tmp_path / 'missing'))
  (tmp_path / 'cat').mkdir()
  with pytest.raises(ValueError, match='no images'):
    input_pipeline.class_names(_folder_dcfg(tmp_path))
