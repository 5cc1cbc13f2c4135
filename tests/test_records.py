"""The fast record reader and the label index against TFDS's own reading, and the
random-resized-crop training iterator against its definition, on a small synthetic
ImageNet-shaped set prepared through the project's data path."""

import io
import os

import cv2
import grain
import numpy as np
import PIL.Image
import pytest
import tensorflow_datasets as tfds

from conftest import load_config
from devise_jax import augment
from devise_jax import images
from devise_jax import input_pipeline
from devise_jax import records
from devise_jax.datasets import synthetic_imagenet

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
IMAGENET = os.path.join(ROOT, 'experiments', 'configs', 'imagenet_devise.py')


@pytest.fixture(scope='session')
def synthetic_dirs(tmp_path_factory):
  base = tmp_path_factory.mktemp('synthetic')
  spec = str(base / 'spec')
  synthetic_imagenet.write_spec(spec, train=72, validation=8, height=(40, 90),
                                width=(50, 120))
  dcfg = _dcfg(spec, str(base / 'tfds'))
  input_pipeline.get_builder(dcfg)
  return spec, str(base / 'tfds')


def _dcfg(spec, data_dir):
  dcfg = load_config(IMAGENET).data
  dcfg.name, dcfg.manual_dir, dcfg.data_dir = 'synthetic_imagenet', spec, data_dir
  dcfg.train_split, dcfg.image_size, dcfg.crop_padding = 'train', 32, 4
  return dcfg


@pytest.fixture
def dcfg(synthetic_dirs):
  return _dcfg(*synthetic_dirs)


def test_the_spec_prepares_imagenet_classes_and_sizes(dcfg):
  builder = input_pipeline.get_builder(dcfg)
  assert builder.info.splits['train'].num_examples == 72
  assert builder.info.features['label'].names[0] == 'n01440764'
  assert input_pipeline.class_names(dcfg)[0].startswith('tench')
  record = records.Source(builder, 'train')[5]
  width, height = images.size(record['image'])
  assert 50 <= width <= 120 and 40 <= height <= 90
  np.testing.assert_array_equal(  # Record i is the image drawn from (seed, split, i).
      images.decode(record['image']).shape,
      synthetic_imagenet.image(0, 'train', 5, height, width).shape)


@pytest.mark.parametrize('split', ['train', 'train[10:50]', 'train[90%:]'])
def test_fast_records_equal_tfds_decoding(dcfg, split):
  builder = input_pipeline.get_builder(dcfg)
  ours = records.Source(builder, split)
  theirs = builder.as_data_source(split, decoders={'image': tfds.decode.SkipDecoding()})
  assert len(ours) == len(theirs)
  indices = list(range(len(theirs)))
  for got, want in zip(ours.__getitems__(indices), theirs.__getitems__(indices)):
    assert got['image'] == want['image'] and got['label'] == int(want['label'])


def test_label_index_is_built_once_beside_the_data(dcfg, monkeypatch):
  builder = input_pipeline.get_builder(dcfg)
  split = 'train[3:40]'
  want = [int(r['label']) for r in builder.as_data_source(split)]
  before = set(os.listdir(builder.data_dir))
  first = records.labels(records.Source(builder, split))
  np.testing.assert_array_equal(first, want)
  written = set(os.listdir(builder.data_dir)) - before
  assert len(written) == 1 and written.pop().startswith('labels-')

  def no_reading(source):
    raise AssertionError('the index was read again from the records')
  monkeypatch.setattr(records, '_read_all', no_reading)
  np.testing.assert_array_equal(records.labels(records.Source(builder, split)), want)


def test_a_rewritten_data_file_gets_a_new_index(dcfg, monkeypatch):
  builder = input_pipeline.get_builder(dcfg)
  source = records.Source(builder, 'train[:8]')
  records.labels(source)
  reads = []
  monkeypatch.setattr(records, '_read_all',
                      lambda s: reads.append(1) or np.zeros(len(s), np.int64))
  path = os.path.join(builder.data_dir, source.files()[0][0])
  stat = os.stat(path)
  os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1))
  try:
    records.labels(records.Source(builder, 'train[:8]'))
  finally:
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
  assert reads == [1]


def _defined_rrc_batch(dcfg, *, class_ids, batch_size, seed, step):
  """Batch `step` from the definition: kept records in file order, grain's
  index_shuffle for the order, augment.draw(default_rng((seed, step))) for the
  boxes and flips; each image decoded whole by PIL, its box sliced out and resized
  by OpenCV's bilinear resize."""
  builder = input_pipeline.get_builder(dcfg)
  source = builder.as_data_source(dcfg.train_split,
                                  decoders={'image': tfds.decode.SkipDecoding()})
  labels = np.array([int(r['label']) for r in source])
  kept = np.flatnonzero(np.isin(labels, class_ids))
  shuffle_seed = int(np.random.SeedSequence(seed).generate_state(1)[0])
  chosen = []
  for position in range(step * batch_size, (step + 1) * batch_size):
    epoch, j = divmod(position, len(kept))
    chosen.append(kept[grain.experimental.index_shuffle(
        j, max_index=len(kept) - 1, seed=(shuffle_seed + epoch) % 2**32, rounds=4)])
  draws = augment.draw(np.random.default_rng((seed, step)), batch_size)
  out = []
  for k, index in enumerate(chosen):
    picture = PIL.Image.open(io.BytesIO(source[index]['image']))
    picture = picture.convert('RGB')
    box = augment.crop_boxes({key: v[k:k + 1] for key, v in draws.items()},
                             [picture.height], [picture.width], dcfg.crop_area,
                             dcfg.crop_ratio)[0]
    x0, y0, x1, y1 = box
    crop = cv2.resize(np.asarray(picture)[y0:y1, x0:x1], (dcfg.image_size,) * 2,
                      interpolation=cv2.INTER_LINEAR).astype(np.float32)
    crop = crop[:, ::-1] if draws['flip'][k] else crop
    out.append((crop / 255 - np.array(dcfg.mean)) / np.array(dcfg.std))
  return np.stack(out), labels[chosen]


def test_random_resized_crop_batches_are_their_definition_and_resume_exactly(dcfg):
  dcfg.augment = 'random_resized_crop'
  # Every box is under 2 x 64 px (images are at most 90 px high), so every image is
  # decoded at full scale and the definition's full decode is exact; reduced-scale
  # decoding is held to a full decode in test_augment.
  dcfg.image_size = 64
  classes = np.arange(0, 1000, 2)  # Half the classes: records with even labels.
  iterator = input_pipeline.train_iterator(dcfg, batch_size=16, seed=5, class_ids=classes)
  batches = [next(iterator) for _ in range(6)]  # 36 kept records: crosses an epoch.
  for step in (0, 5):
    want_images, want_labels = _defined_rrc_batch(dcfg, class_ids=classes,
                                                  batch_size=16, seed=5, step=step)
    np.testing.assert_array_equal(batches[step]['label'], want_labels)
    assert (batches[step]['label'] % 2 == 0).all()
    np.testing.assert_allclose(batches[step]['image'], want_images, atol=1e-4)
  resumed = next(input_pipeline.train_iterator(dcfg, batch_size=16, seed=5,
                                               class_ids=classes, start_step=5))
  np.testing.assert_array_equal(resumed['image'], batches[5]['image'])
  np.testing.assert_array_equal(resumed['label'], batches[5]['label'])


def test_eval_iterator_reads_the_synthetic_split_once(dcfg):
  batches = list(input_pipeline.eval_iterator(dcfg, split='validation', batch_size=3))
  labels = np.concatenate([b['label'][b['mask']] for b in batches])
  np.testing.assert_array_equal(labels, np.arange(8) % 1000)
  assert batches[0]['image'].shape == (3, 32, 32, 3)


def test_the_synthetic_recipe_variant_is_the_imagenet_recipe_on_synthetic_data():
  base, synthetic = load_config(IMAGENET), load_config(IMAGENET, 'synthetic')
  assert synthetic.data.name == 'synthetic_imagenet/recipe'
  assert synthetic.data.image_size == base.data.image_size == 224
  assert synthetic.data.augment == base.data.augment == 'random_resized_crop'
  assert synthetic.data.unseen_classes == base.data.unseen_classes  # 200 of 1,000.
  assert synthetic.evals == base.evals and 'open_vocab' in synthetic.evals
  assert synthetic_imagenet.SyntheticImagenet.SIZES['recipe'] == {
      'train': 12_800, 'validation': 10_000}
