"""Tests of devise_jax.input_pipeline and the fashion_mnist_local builder.

References are independent of the code under test: the IDX files decoded with
plain gzip/numpy, images made here with PIL, and training batches rebuilt here
from their definition (grain's index_shuffle, PIL's resize, numpy slicing).
Preparing fashion_mnist_local (70,000 images) once for the session takes about
15 s on 2 cores.
"""

import gzip
import importlib.util
import io
import json
import pathlib
import shutil
import subprocess
import sys
import time

import grain
import jax
import numpy as np
from PIL import Image
import pytest
import tensorflow_datasets as tfds

from devise_jax import input_pipeline
from devise_jax.datasets import fashion_mnist_local

IDX_DIR = pathlib.Path('/usr/share/datasets/fashion-mnist')
REPO_ROOT = pathlib.Path(__file__).parents[1]
CONFIG_PATH = REPO_ROOT / 'experiments' / 'configs' / 'fashion_mnist_zsl.py'
FASHION_NAMES = ['T-shirt/top', 'Trouser', 'Pullover', 'Dress', 'Coat',
                 'Sandal', 'Shirt', 'Sneaker', 'Bag', 'Ankle boot']


def _idx(name, header_bytes):
  with gzip.open(IDX_DIR / name) as f:
    return np.frombuffer(f.read(), np.uint8, offset=header_bytes)


@pytest.fixture(scope='session')
def raw_train():
  images = _idx('train-images-idx3-ubyte.gz', 16).reshape(-1, 28, 28)
  return images, _idx('train-labels-idx1-ubyte.gz', 8)


@pytest.fixture(scope='session')
def raw_test():
  images = _idx('t10k-images-idx3-ubyte.gz', 16).reshape(-1, 28, 28)
  return images, _idx('t10k-labels-idx1-ubyte.gz', 8)


def _base_dcfg():
  spec = importlib.util.spec_from_file_location('fmnist_config', CONFIG_PATH)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config('tiny').data


@pytest.fixture(scope='session')
def data_dir(fmnist_data_dir):
  """The session's TFDS data_dir with fashion_mnist_local prepared (tests/conftest.py)."""
  return fmnist_data_dir


@pytest.fixture
def dcfg(data_dir):
  dcfg = _base_dcfg()
  dcfg.data_dir = data_dir
  return dcfg


def _unnormalise(images, dcfg):
  pixels = (images * np.array(dcfg.std) + np.array(dcfg.mean)) * 255
  return np.round(pixels).astype(np.uint8)


# fashion_mnist_local.


def test_fashion_mnist_local_matches_idx_files(data_dir, raw_train, raw_test):
  builder = tfds.builder('fashion_mnist_local', data_dir=data_dir)
  assert builder.info.file_format == tfds.core.FileFormat.ARRAY_RECORD
  assert builder.info.features['label'].names == FASHION_NAMES
  assert builder.info.features['image'].shape == (28, 28, 1)
  assert builder.info.supervised_keys == ('image', 'label')
  assert builder.info.splits['train'].num_examples == 60_000
  assert builder.info.splits['test'].num_examples == 10_000
  for split, (images, labels) in [('train[:300]', raw_train),
                                  ('test[:300]', raw_test)]:
    got = builder.as_data_source(split)
    assert len(got) == 300
    np.testing.assert_array_equal([r['image'][..., 0] for r in got], images[:300])
    np.testing.assert_array_equal([r['label'] for r in got], labels[:300])
  got = builder.as_data_source('train[-50:]')
  np.testing.assert_array_equal([r['image'][..., 0] for r in got], raw_train[0][-50:])


def test_a_dataset_prepared_as_tfrecord_is_a_one_line_error(data_dir, tmp_path):
  # A data_dir whose fashion_mnist_local was prepared by the tf.data pipeline.
  prepared = pathlib.Path(data_dir) / 'fashion_mnist_local' / '1.0.0'
  old = tmp_path / 'fashion_mnist_local' / '1.0.0'
  shutil.copytree(prepared, old, ignore=shutil.ignore_patterns('*.array_record*'))
  info = json.loads((old / 'dataset_info.json').read_text())
  info['fileFormat'] = 'tfrecord'
  (old / 'dataset_info.json').write_text(json.dumps(info))
  dcfg = _base_dcfg()
  dcfg.data_dir = str(tmp_path)
  with pytest.raises(ValueError) as error:
    input_pipeline.get_builder(dcfg)
  message = str(error.value)
  assert 'prepared as tfrecord' in message and str(old) in message
  assert 'array_record' in message and '\n' not in message


def test_fashion_idx_errors_name_the_file(tmp_path):
  shutil.copy(IDX_DIR / 't10k-images-idx3-ubyte.gz', tmp_path)
  with pytest.raises(FileNotFoundError, match='t10k-labels-idx1-ubyte.gz'):
    fashion_mnist_local.load_split(tmp_path, 'test')
  labels = gzip.decompress((IDX_DIR / 't10k-labels-idx1-ubyte.gz').read_bytes())
  (tmp_path / 't10k-labels-idx1-ubyte.gz').write_bytes(
      gzip.compress(labels[:-10]))
  with pytest.raises(ValueError, match='truncated IDX file .*t10k-labels'):
    fashion_mnist_local.load_split(tmp_path, 'test')
  (tmp_path / 't10k-labels-idx1-ubyte.gz').write_bytes(
      gzip.compress(labels)[:100])
  with pytest.raises(ValueError, match='truncated gzip file .*t10k-labels'):
    fashion_mnist_local.load_split(tmp_path, 'test')
  (tmp_path / 't10k-labels-idx1-ubyte.gz').write_bytes(
      gzip.compress(b'\0\0\x08\x03' + labels[4:]))
  with pytest.raises(ValueError, match='bad IDX magic number 2051'):
    fashion_mnist_local.load_split(tmp_path, 'test')


def test_fashion_manual_dir_without_the_files(tmp_path):
  manual = tmp_path / 'manual'
  manual.mkdir()
  (manual / 'README').write_text('not the IDX files')
  dcfg = _base_dcfg()
  dcfg.data_dir, dcfg.manual_dir = str(tmp_path / 'tfds'), str(manual)
  with pytest.raises(FileNotFoundError, match='train-images-idx3-ubyte.gz'):
    input_pipeline.get_builder(dcfg)


# Preprocessing.


def test_preprocess_gray_array():
  dcfg = _base_dcfg()
  image = np.full((10, 20), 51, np.uint8)  # 0.2 after scaling to [0, 1].
  for train, rng in [(False, None), (True, np.random.default_rng(1))]:
    out = input_pipeline.preprocess(image, dcfg, train=train, rng=rng)
    assert out.shape == (32, 32, 3) and out.dtype == np.float32
    np.testing.assert_allclose(out, (0.2 - 0.5) / 0.5, atol=1e-6)
  with pytest.raises(ValueError, match='needs rng'):
    input_pipeline.preprocess(image, dcfg, train=True)


def test_preprocess_train_is_seeded():
  dcfg = _base_dcfg()
  image = np.random.default_rng(0).integers(0, 256, (40, 30, 3), np.uint8)
  first, again, other = [
      input_pipeline.preprocess(image, dcfg, train=True, rng=np.random.default_rng(s))
      for s in ([3, 4], [3, 4], [3, 5])]
  np.testing.assert_array_equal(first, again)
  assert not np.array_equal(first, other)


def _reference_crop(image, dcfg, dy, dx, flip):
  """`image` (uint8 RGB) resized by PIL to S + P, cropped at (dy, dx) to S, then
  flipped if `flip`, and normalised with the config's mean and std, by hand."""
  side, size = dcfg.image_size + dcfg.crop_padding, dcfg.image_size
  resized = np.asarray(Image.fromarray(image).resize((side, side), Image.BILINEAR))
  crop = resized[dy:dy + size, dx:dx + size]
  crop = crop[:, ::-1] if flip else crop
  return (crop / 255.0 - np.array(dcfg.mean)) / np.array(dcfg.std)


def _reference_views(image, dcfg):
  """{(dy, dx, flip): float [S, S, 3]}: every crop `_reference_crop` can make."""
  offsets = range(dcfg.crop_padding + 1)
  return {(dy, dx, flip): _reference_crop(image, dcfg, dy, dx, flip)
          for dy in offsets for dx in offsets for flip in (False, True)}


@pytest.mark.parametrize('shape', [(28, 28), (30, 40, 1), (50, 70, 3), (100, 90, 4)])
def test_preprocess_against_pil_resize_and_slicing(shape):
  dcfg = _base_dcfg()  # 32 px crops of 36 px.
  image = np.random.default_rng(0).integers(0, 256, shape, np.uint8)
  rgb = image[..., :3] if image.ndim == 3 and shape[-1] > 1 else (
      np.repeat(image.reshape(shape[:2] + (1,)), 3, axis=-1))
  views = _reference_views(rgb, dcfg)
  got = input_pipeline.preprocess(image, dcfg, train=False)
  np.testing.assert_allclose(got, views[(2, 2, False)], atol=1e-5)  # The centre.
  found = set()
  for seed in range(40):
    got = input_pipeline.preprocess(image, dcfg, train=True,
                                    rng=np.random.default_rng(seed))
    matches = [k for k, view in views.items() if np.allclose(got, view, atol=1e-5)]
    assert matches, 'a training image is not a crop of the resized image'
    found.add(matches[0])
  assert len({(dy, dx) for dy, dx, _ in found}) >= 10
  assert {flip for _, _, flip in found} == {False, True}


def test_preprocess_antialiases_when_shrinking():
  # A one-pixel checkerboard shrunk 8x averages to grey; sampling it would not.
  board = (np.indices((288, 288)).sum(axis=0) % 2 * 255).astype(np.uint8)
  got = input_pipeline.preprocess(board, _base_dcfg(), train=False)
  np.testing.assert_allclose(got, 0.0, atol=0.02)


# Classes.


def test_class_names(dcfg):
  assert input_pipeline.class_names(dcfg) == FASHION_NAMES


def test_split_classes_named(dcfg):
  dcfg.unseen_classes = ('Trouser', 'Ankle boot', 'Pullover')
  seen, unseen = input_pipeline.split_classes(dcfg, seed=0)
  np.testing.assert_array_equal(unseen, [1, 2, 9])
  np.testing.assert_array_equal(seen, [0, 3, 4, 5, 6, 7, 8])


def test_split_classes_unknown_names_lists_all(dcfg):
  dcfg.unseen_classes = ('Trouser', 'Jacket', 'ankle boot')
  with pytest.raises(ValueError) as e:
    input_pipeline.split_classes(dcfg, seed=0)
  message = str(e.value)
  assert "unknown unseen classes ['Jacket', 'ankle boot']" in message
  assert "'Ankle boot'" in message and "'T-shirt/top'" in message


def test_split_classes_duplicates(dcfg):
  dcfg.unseen_classes = ('Bag', 'Bag')
  with pytest.raises(ValueError, match='duplicate unseen classes'):
    input_pipeline.split_classes(dcfg, seed=0)


def test_split_classes_random_fraction_is_seeded(dcfg):
  dcfg.unseen_classes = ()
  dcfg.unseen_fraction = 0.3
  seen, unseen = input_pipeline.split_classes(dcfg, seed=7)
  assert len(unseen) == 3 and len(seen) == 7
  np.testing.assert_array_equal(np.sort(np.concatenate([seen, unseen])),
                                np.arange(10))
  assert list(unseen) == sorted(unseen) and list(seen) == sorted(seen)
  again = input_pipeline.split_classes(dcfg, seed=7)
  np.testing.assert_array_equal(again[1], unseen)
  others = {tuple(input_pipeline.split_classes(dcfg, seed=s)[1])
            for s in range(10)}
  assert len(others) > 1


@pytest.mark.parametrize('fraction', [0.0, 1.0, -0.5, 1.5])
def test_split_classes_invalid_fraction(dcfg, fraction):
  dcfg.unseen_classes = ()
  dcfg.unseen_fraction = fraction
  with pytest.raises(ValueError, match=r'unseen_fraction is not in \(0, 1\)'):
    input_pipeline.split_classes(dcfg, seed=0)


# Training iterator.


def test_train_batches_never_hold_unseen_images(dcfg, raw_train):
  # image_size 28 without padding makes the train transform only a flip, so
  # every image can be looked up among the raw IDX images.
  dcfg.train_split = 'train[:1000]'
  dcfg.image_size, dcfg.crop_padding = 28, 0
  seen, unseen = input_pipeline.split_classes(dcfg, seed=0)
  images, labels = raw_train[0][:1000], raw_train[1][:1000]
  labels_of = {}
  for image, label in zip(images, labels):
    for view in (image, image[:, ::-1]):
      labels_of.setdefault(view.tobytes(), set()).add(int(label))
  it = input_pipeline.train_iterator(dcfg, batch_size=64, seed=1,
                                     class_ids=seen)
  got_labels = []
  for _ in range(40):  # Four epochs of the ~700 seen images.
    batch = next(it)
    assert batch['image'].shape == (64, 28, 28, 3)
    assert batch['image'].dtype == np.float32
    assert batch['label'].dtype == np.int32
    pixels = _unnormalise(batch['image'], dcfg)
    for image, label in zip(pixels, batch['label']):
      np.testing.assert_array_equal(image[..., 0], image[..., 2])
      assert label in labels_of[image[..., 0].tobytes()]
    got_labels.extend(batch['label'])
  assert not set(got_labels) & set(unseen.tolist())
  assert set(got_labels) == set(seen.tolist())


@pytest.mark.parametrize('cache', [True, False])
def test_train_resume_is_exact(dcfg, cache):
  dcfg.cache = cache
  dcfg.train_split = 'train[:600]'
  seen, _ = input_pipeline.split_classes(dcfg, seed=0)
  kwargs = dict(batch_size=32, seed=3, class_ids=seen)
  it = input_pipeline.train_iterator(dcfg, **kwargs)
  full = [next(it) for _ in range(20)]
  resumed = input_pipeline.train_iterator(dcfg, start_step=13, **kwargs)
  for k in range(13, 20):
    batch = next(resumed)
    np.testing.assert_array_equal(batch['image'], full[k]['image'])
    np.testing.assert_array_equal(batch['label'], full[k]['label'])
  other_seed = next(input_pipeline.train_iterator(
      dcfg, batch_size=32, seed=4, class_ids=seen))
  assert not np.array_equal(other_seed['image'], full[0]['image'])


def test_train_resume_in_a_new_process(dcfg, tmp_path):
  # A restarted job starts with fresh TF state.
  dcfg.train_split = 'train[:600]'
  kwargs = dict(batch_size=32, seed=5, class_ids=list(range(10)))
  it = input_pipeline.train_iterator(dcfg, **kwargs)
  expected = [next(it) for _ in range(8)][6:]
  out = tmp_path / 'batches.npz'
  script = f'''
import ml_collections
import numpy as np
from devise_jax import input_pipeline
dcfg = ml_collections.ConfigDict({dcfg.to_dict()!r})
it = input_pipeline.train_iterator(dcfg, start_step=6, **{kwargs!r})
batches = [next(it) for _ in range(2)]
np.savez({str(out)!r}, image=[b['image'] for b in batches],
         label=[b['label'] for b in batches])
'''
  result = subprocess.run([sys.executable, '-c', script], cwd=REPO_ROOT,
                          capture_output=True, text=True, check=False)
  assert result.returncode == 0, result.stderr[-3000:]
  got = np.load(out)
  np.testing.assert_array_equal(got['image'], [b['image'] for b in expected])
  np.testing.assert_array_equal(got['label'], [b['label'] for b in expected])


def _defined_batch(raw_train, dcfg, *, class_ids, batch_size, seed, step):
  """Training batch `step` (one process) rebuilt from train_iterator's definition:
  the kept examples in file order; global position i = e * n + j holds kept example
  index_shuffle(j, n - 1, shuffle seed + e); crops and flips drawn by
  default_rng((seed, step)) for the batch. Images from the IDX files."""
  split = int(dcfg.train_split[len('train[:'):-1])
  images, labels = raw_train[0][:split], raw_train[1][:split]
  kept = np.flatnonzero(np.isin(labels, class_ids))
  n = len(kept)
  shuffle_seed = int(np.random.SeedSequence(seed).generate_state(1)[0])
  records = []
  for position in range(step * batch_size, (step + 1) * batch_size):
    epoch, j = divmod(position, n)
    records.append(kept[grain.experimental.index_shuffle(
        j, max_index=n - 1, seed=(shuffle_seed + epoch) % 2**32, rounds=4)])
  rng = np.random.default_rng((seed, step))
  offsets = rng.integers(0, dcfg.crop_padding + 1, (batch_size, 2))
  flips = rng.integers(0, 2, batch_size)
  crops = [_reference_crop(np.repeat(images[r][..., None], 3, axis=-1), dcfg, dy, dx, f)
           for r, (dy, dx), f in zip(records, offsets, flips)]
  return np.stack(crops), labels[records]


@pytest.mark.parametrize('cache', [True, False])
def test_train_resume_at_a_million_steps_is_the_defined_batch(dcfg, raw_train, cache):
  # O(1): batch 10**6 is 32 million examples (53,000 epochs) in; nothing before it
  # is read.
  dcfg.cache = cache
  dcfg.train_split = 'train[:600]'
  seen, _ = input_pipeline.split_classes(dcfg, seed=0)
  for step in (0, 9, 10**6):
    start = time.time()
    batch = next(input_pipeline.train_iterator(dcfg, batch_size=32, seed=3,
                                               class_ids=seen, start_step=step))
    assert time.time() - start < 30
    images, labels = _defined_batch(raw_train, dcfg, class_ids=seen, batch_size=32,
                                    seed=3, step=step)
    np.testing.assert_array_equal(batch['label'], labels)
    np.testing.assert_allclose(batch['image'], images, atol=1e-5)


def test_each_epoch_is_a_new_permutation_of_the_kept_examples(dcfg, raw_train):
  # 28 px without padding: training images are the IDX images, maybe flipped.
  dcfg.train_split = 'train[:300]'
  dcfg.image_size, dcfg.crop_padding = 28, 0
  class_ids = [0, 2, 5, 9]
  images, labels = raw_train[0][:300], raw_train[1][:300]
  kept = np.flatnonzero(np.isin(labels, class_ids))
  index_of = {}
  for i in kept:
    for view in (images[i], images[i][:, ::-1]):
      assert index_of.setdefault(view.tobytes(), i) == i
  n, batch_size = len(kept), 16
  it = input_pipeline.train_iterator(dcfg, batch_size=batch_size, seed=2,
                                     class_ids=class_ids)
  stream, stream_labels = [], []
  for _ in range(-(-3 * n // batch_size)):
    batch = next(it)
    stream += [index_of[p.tobytes()] for p in _unnormalise(batch['image'], dcfg)[..., 0]]
    stream_labels += batch['label'].tolist()
  np.testing.assert_array_equal(stream_labels, labels[stream])
  epochs = [stream[e * n:(e + 1) * n] for e in range(3)]
  for epoch in epochs:
    assert sorted(epoch) == kept.tolist()  # Every kept example once.
  orders = {tuple(epoch) for epoch in epochs} | {tuple(kept)}
  assert len(orders) == 4  # Three different orders, none the file order.


def test_processes_split_each_global_batch(dcfg, monkeypatch):
  dcfg.train_split = 'train[:600]'
  kwargs = dict(batch_size=32, seed=1, class_ids=range(10), start_step=5)
  whole = next(input_pipeline.train_iterator(dcfg, **kwargs))
  monkeypatch.setattr(jax, 'process_count', lambda: 2)
  parts = []
  for index in (0, 1):
    monkeypatch.setattr(jax, 'process_index', lambda i=index: i)
    parts.append(next(input_pipeline.train_iterator(dcfg, **kwargs)))
  for key in ('image', 'label'):
    np.testing.assert_array_equal(np.concatenate([p[key] for p in parts]), whole[key])


def test_train_iterator_is_shuffled_and_augmented(dcfg, raw_train):
  dcfg.train_split = 'train[:200]'
  batch = next(input_pipeline.train_iterator(
      dcfg, batch_size=200, seed=0, class_ids=range(10)))
  assert batch['image'].shape == (200, 32, 32, 3)
  # Shuffled: the labels agree with the file order at about chance level (1/10).
  assert np.mean(batch['label'] == raw_train[1][:200]) < 0.3
  assert set(batch['label']) == set(range(10))
  # Augmented: every training image is a 32 px crop of its image resized to 36 px, at
  # some offset in [0, 4]^2, maybe flipped; the offsets and flips vary.
  full = dcfg.copy_and_resolve_references()
  full.image_size, full.crop_padding = 36, 0
  padded = next(input_pipeline.eval_iterator(full, split='train[:200]',
                                             batch_size=200))['image']
  found = []
  for image, label in zip(batch['image'], batch['label']):
    matches = [(dy, dx, flip)
               for i in np.flatnonzero(raw_train[1][:200] == label)
               for dy in range(5) for dx in range(5) for flip in (0, 1)
               if np.allclose(image, (padded[i][:, ::-1] if flip else padded[i])
                              [dy:dy + 32, dx:dx + 32], atol=1e-5)]
    assert matches, 'a training image is not a crop of any image of its class'
    found.append(matches[0])
  assert len({(dy, dx) for dy, dx, _ in found}) >= 15
  assert 40 < sum(flip for _, _, flip in found) < 160

def test_train_iterator_rejects_bad_class_ids(dcfg):
  with pytest.raises(ValueError, match='class_ids is empty'):
    input_pipeline.train_iterator(dcfg, batch_size=8, seed=0, class_ids=[])
  with pytest.raises(ValueError, match=r'not label ids in \[0, 10\)'):
    input_pipeline.train_iterator(dcfg, batch_size=8, seed=0, class_ids=[3, 10])


# Evaluation iterator.


def test_eval_iterator_covers_split_once(dcfg, raw_test):
  dcfg.image_size, dcfg.crop_padding = 28, 0
  assert input_pipeline.num_examples(dcfg, 'test[:1000]') == 1000
  batches = list(input_pipeline.eval_iterator(dcfg, split='test[:1000]',
                                              batch_size=300))
  assert len(batches) == 4
  for batch in batches:
    assert batch['image'].shape == (300, 28, 28, 3)
    assert batch['mask'].dtype == bool
  assert batches[-1]['mask'][:100].all() and not batches[-1]['mask'][100:].any()
  mask = np.concatenate([b['mask'] for b in batches])
  labels = np.concatenate([b['label'] for b in batches])[mask]
  images = np.concatenate([b['image'] for b in batches])[mask]
  assert mask.sum() == 1000
  np.testing.assert_array_equal(labels, raw_test[1][:1000])
  assert set(labels) == set(range(10))
  pixels = _unnormalise(images, dcfg)
  np.testing.assert_array_equal(pixels[..., 1], raw_test[0][:1000])


def test_eval_iterator_default_shapes(dcfg):
  batch = next(input_pipeline.eval_iterator(dcfg, split='test[:10]',
                                            batch_size=16))
  assert batch['image'].shape == (16, 32, 32, 3)
  assert batch['image'].dtype == np.float32
  assert batch['mask'].sum() == 10
  assert np.all(batch['image'][10:] == 0)
  assert -1 <= batch['image'].min() and batch['image'].max() <= 1


def test_multi_process_shares(dcfg, monkeypatch):
  monkeypatch.setattr(jax, 'process_count', lambda: 2)
  counts, num_batches = [], []
  for index in (0, 1):
    monkeypatch.setattr(jax, 'process_index', lambda i=index: i)
    batches = list(input_pipeline.eval_iterator(dcfg, split='test[:101]',
                                                batch_size=20))
    assert all(b['image'].shape[0] == 10 for b in batches)
    counts.append(sum(b['mask'].sum() for b in batches))
    num_batches.append(len(batches))
    batch = next(input_pipeline.train_iterator(dcfg, batch_size=20, seed=0,
                                               class_ids=range(10)))
    assert batch['label'].shape == (10,)
  assert sum(counts) == 101 and num_batches == [6, 6]
  with pytest.raises(ValueError, match='multiple of jax.process_count'):
    input_pipeline.train_iterator(dcfg, batch_size=15, seed=0,
                                  class_ids=range(10))


# A registered TFDS dataset.


def _png(image):
  out = io.BytesIO()
  Image.fromarray(image).save(out, format='PNG')
  return out.getvalue()


def test_stanford_dogs_through_mock_data():
  dcfg = _base_dcfg()
  dcfg.name = 'stanford_dogs'
  dcfg.train_split, dcfg.eval_split = 'train', 'test'
  rng = np.random.default_rng(0)
  # TFDS's own random records draw boxes with ymin > ymax, which it then refuses.
  records = [{'image': _png(rng.integers(0, 256, (30 + i, 40, 3), np.uint8)),
              'label': i % 120, 'objects': {'bbox': np.zeros((0, 4), np.float32)}}
             for i in range(20)]
  with tfds.testing.mock_data(num_examples=20,
                              as_data_source_fn=lambda *args, **kwargs: records):
    names = input_pipeline.class_names(dcfg)
    assert len(names) == 120 and len(set(names)) == 120
    batch = next(input_pipeline.train_iterator(dcfg, batch_size=8, seed=0,
                                               class_ids=range(120)))
    assert batch['image'].shape == (8, 32, 32, 3)
    assert batch['label'].shape == (8,) and batch['label'].max() < 120
    batches = list(input_pipeline.eval_iterator(dcfg, split='test',
                                                batch_size=8))
  assert [b['image'].shape for b in batches] == [(8, 32, 32, 3)] * 3
  assert sum(b['mask'].sum() for b in batches) == 20
  for b in batches:
    assert np.isfinite(b['image']).all()
    assert b['image'].std() > 0.1  # Random RGB pixels, not padding.


# Bad input.


def test_unknown_dataset_name(dcfg):
  dcfg.name = 'no_such_dataset'
  with pytest.raises(ValueError, match="unknown dataset 'no_such_dataset' "
                     r'\(not registered in tensorflow_datasets\)'):
    input_pipeline.get_builder(dcfg)


def test_dataset_without_image_and_label(dcfg, tmp_path):
  dcfg.name, dcfg.data_dir = 'iris', str(tmp_path)  # Features, no image.
  with pytest.raises(ValueError, match="needs an Image feature `image`"):
    input_pipeline.get_builder(dcfg)


@pytest.mark.parametrize('split', ['validation', 'train[:200%]', 'test[5:5]'])
def test_bad_split(dcfg, split):
  with pytest.raises(ValueError, match='split'):
    input_pipeline.eval_iterator(dcfg, split=split, batch_size=8)


def test_feature_batches_are_a_function_of_seed_and_step():
  features = np.arange(40, dtype=np.float32)[:, None] * np.ones((1, 3), np.float32)
  labels = np.repeat(np.arange(4), 10)
  run = lambda start: input_pipeline.feature_batches(features, labels, [1, 3], batch_size=6,
                                                     seed=5, start_step=start)
  first = [next(b) for b in [run(0)] for _ in range(4)]
  resumed = run(2)
  for want in first[2:]:
    got = next(resumed)
    np.testing.assert_array_equal(got['features'], want['features'])
  for batch in first:
    assert set(batch['label']) <= {1, 3}
    rows = batch['features'][:, 0].astype(int)
    assert len(set(rows)) == 6  # Without replacement.
    np.testing.assert_array_equal(labels[rows], batch['label'])
  assert not np.array_equal(first[0]['features'], first[1]['features'])
  with pytest.raises(ValueError, match='cannot fill a batch of 30'):
    next(input_pipeline.feature_batches(features, labels, [1, 3], batch_size=30, seed=0))
