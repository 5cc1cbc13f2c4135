"""The paper-style recipes (experiments/configs/): each `tiny` variant end to end on
`tfds.testing.mock_data`, plus what each recipe promises (the CIFAR-100 split, crops
from the Stanford Dogs boxes, readable ImageNet names).

mock_data makes random images and labels. TFDS learns the CIFAR-100 and Stanford Dogs
label names only when it prepares the real data, and split sizes for any dataset, so
each test writes the dataset's metadata (names, split sizes) into a data_dir first, as
the mock_data documentation suggests.
"""

import io
import json
import math
import os
import re

import numpy as np
from PIL import Image
import pytest
import tensorflow_datasets as tfds

from devise_jax import evaluate
from devise_jax import gallery
from devise_jax import input_pipeline
from devise_jax import plots
from devise_jax import protocol
from devise_jax import run as run_lib
from devise_jax import train
from devise_jax import wordnet
from devise_jax import wordvec
from devise_jax.datasets import cifar100
from devise_jax.datasets import stanford_dogs

from conftest import ROOT, load_config

CONFIGS = ROOT / 'experiments' / 'configs'
NUM_EXAMPLES = 48
_QUIET = lambda message: None


def _write_metadata(data_dir, name, splits, names=None):
  """dataset_info.json (and the label names) of `name`, as a dataset prepared as
  array_record files (what the input pipeline reads) has."""
  builder = tfds.builder(name, data_dir=str(data_dir), file_format='array_record')
  if names is not None:
    builder.info.features['label'].names = list(names)
  builder.info.set_splits(tfds.core.SplitDict([
      tfds.core.SplitInfo(name=s, shard_lengths=[NUM_EXAMPLES], num_bytes=0)
      for s in splits]))
  os.makedirs(builder.data_dir, exist_ok=True)
  builder.info.write_to_directory(builder.data_dir)


def _train_and_evaluate(config, workdir, stages):
  train.train(config, str(workdir), stages=stages, log=_QUIET)
  evaluate.evaluate(str(workdir))
  return json.loads((workdir / 'eval.json').read_text())


def _assert_finite_metrics(metrics, keys):
  for key in keys:
    assert key in metrics, key
    assert np.isfinite(metrics[key]) and 0.0 <= metrics[key] <= 1.0, (key, metrics[key])
  values = {k: v for k, v in metrics.items() if isinstance(v, (int, float))}
  assert all(np.isfinite(v) for v in values.values()), [
      k for k, v in values.items() if not np.isfinite(v)]


def _unit(v):
  return v / np.linalg.norm(v)


def _png(image):
  out = io.BytesIO()
  Image.fromarray(image).save(out, format='PNG')
  return out.getvalue()


def _random_source(num_classes):
  """mock_data's `as_data_source_fn`: NUM_EXAMPLES random 32 px PNGs with random
  labels, the same for every split (as mock_data's own). Its own data source cannot
  read records together (its `__getitems__` is not bound to the mock)."""
  rng = np.random.default_rng(0)
  records = [{'image': _png(rng.integers(0, 256, (32, 32, 3), np.uint8)), 'label': int(l)}
             for l in rng.integers(0, num_classes, NUM_EXAMPLES)]
  return lambda self, split, decoders=None, **kwargs: records


# CIFAR-100.

DOCUMENTED_UNSEEN_IDS = (1, 3, 6, 15, 22, 26, 42, 46, 52, 53, 55, 57, 59, 61, 68, 70, 73,
                         83, 92, 93)  # As the recipe's docstring lists them.


def test_cifar100_split_is_the_documented_seeded_draw():
  config = load_config(CONFIGS / 'cifar100_zsl.py')
  assert len(cifar100.FINE_LABELS) == 100
  assert list(cifar100.FINE_LABELS) == sorted(cifar100.FINE_LABELS)  # TFDS's order.
  drawn = protocol.draw_splits(100, 20, 1, seed=0)[0]
  assert tuple(drawn) == DOCUMENTED_UNSEEN_IDS
  assert config.data.unseen_classes == tuple(cifar100.FINE_LABELS[i] for i in drawn)


def test_cifar100_tiny_end_to_end(tmp_path):
  config = load_config(CONFIGS / 'cifar100_zsl.py', 'tiny')
  _write_metadata(tmp_path / 'tfds', 'cifar100', ('train', 'test'), cifar100.FINE_LABELS)
  with tfds.testing.mock_data(num_examples=NUM_EXAMPLES, data_dir=str(tmp_path / 'tfds'),
                              as_data_source_fn=_random_source(100)):
    seen, unseen = input_pipeline.split_classes(config.data, config.seed)
    metrics = _train_and_evaluate(config, tmp_path / 'run', train.STAGES)['metrics']
  assert len(seen) == 80 and len(unseen) == 20
  assert not set(seen) & set(unseen) and set(seen) | set(unseen) == set(range(100))
  assert [cifar100.FINE_LABELS[i] for i in unseen] == list(config.data.unseen_classes)
  classes = json.loads((tmp_path / 'run' / 'classes.json').read_text())
  assert classes['names'] == list(cifar100.FINE_LABELS)
  assert classes['unseen_ids'] == list(DOCUMENTED_UNSEEN_IDS)
  _assert_finite_metrics(metrics, ('zsl_top1', 'gzsl_h', 'conse_zsl_top1', 'seen_hit@1',
                                   'siamese_seen_recall@1'))
  assert metrics['chance_zsl_top1'] == pytest.approx(1 / 20)
  assert metrics['num_seen_images'] + metrics['num_unseen_images'] == NUM_EXAMPLES


# ImageNet.


def test_imagenet_tiny_end_to_end_with_readable_wordnet_names(tmp_path):
  config = load_config(CONFIGS / 'imagenet_devise.py', 'tiny')
  _write_metadata(tmp_path / 'tfds', 'imagenet2012', ('train', 'validation'))
  with tfds.testing.mock_data(num_examples=NUM_EXAMPLES, data_dir=str(tmp_path / 'tfds'),
                              as_data_source_fn=_random_source(1000)):
    result = _train_and_evaluate(config, tmp_path / 'run', ('stage1', 'stage2'))
  names = json.loads((tmp_path / 'run' / 'classes.json').read_text())['names']
  # Label id 0 is n01440764; WordNet 3.0's lemmas of that synset, read by hand.
  assert names[0] == 'tench, Tinca tinca' and names[1] == 'goldfish, Carassius auratus'
  assert len(set(names)) == 1000 and not any(re.search(r'n\d{8}', n) for n in names)
  assert 'crane, wading bird' in names and 'crane, lifting device' in names
  assert len(result['unseen_classes']) == 200
  assert set(result['unseen_classes']) == set(config.data.unseen_classes)
  # A name GloVe lacks takes its hypernym's words: 'kuvasz' -> watchdog, guard dog.
  kv = wordvec.load_keyedvectors('glove-6b-50d')
  space = wordvec.LabelSpace.load(str(tmp_path / 'run' / 'label_space.npz'))
  u = lambda w: _unit(kv[w])
  expected = _unit(u('watchdog') + _unit(u('guard') + u('dog')))
  np.testing.assert_allclose(space.vectors[names.index('kuvasz')], expected, atol=1e-5)
  # config.data.synsets maps every readable name back to its id.
  synsets = dict(config.data.synsets)
  assert [synsets[n] for n in names] == list(wordnet.imagenet1k_ids())
  metrics = result['metrics']
  _assert_finite_metrics(metrics, ('zsl_top1', 'conse_zsl_top1', 'seen_hit@1',
                                   'seen_hit@20', 'softmax_seen_hit@5'))
  # The paper's rows: hit@k and hp@k on the seen classes (1K), 2-hop, 3-hop, all nouns.
  _assert_finite_metrics(metrics, ('seen_classes_hit@1', 'seen_classes_hp@5',
                                   '2-hop_hit@1', '2-hop_hp@5', '3-hop+seen_hit@20',
                                   'open_vocab_hit@1', 'open_vocab_hp@10'))
  assert metrics['seen_classes_num_labels'] == 800
  assert 0 < metrics['2-hop_num_images'] <= metrics['num_unseen_images']
  assert metrics['2-hop_num_labels'] < metrics['3-hop_num_labels']


def test_imagenet_without_its_tar_files_is_a_one_line_error_naming_manual_dir(tmp_path):
  dcfg = load_config(CONFIGS / 'imagenet_devise.py', 'tiny').data
  dcfg.data_dir, dcfg.manual_dir = str(tmp_path / 'tfds'), str(tmp_path / 'empty')
  with pytest.raises(ValueError) as error:
    input_pipeline.get_builder(dcfg)
  message = str(error.value)
  assert 'config.data.manual_dir' in message and str(tmp_path / 'empty') in message
  assert 'ILSVRC2012_img_train.tar' in message and '\n' not in message


# Stanford Dogs.

DOG_IMAGES = 48
# A stand-in for the 120 `<WordNet id>-<breed>` names TFDS reads from the real archive:
# ImageNet's dog synsets and the three wild dogs of Stanford Dogs, 120 in all.
DOG_IDS = ([i for i in wordnet.imagenet1k_ids() if 'n02085620' <= i <= 'n02113978'][:117]
           + ['n02115641', 'n02115913', 'n02116738'])


def _dog_boxes(i):
  """Example i's boxes: one, none (the whole image), or two (the first is used)."""
  if i % 5 == 3:
    return np.zeros((0, 4), np.float32)
  first = [0.05 * (i % 4), 0.1 + 0.03 * (i % 3), 0.55 + 0.1 * (i % 4), 0.9]
  return np.array([first, [0.0, 0.0, 0.2, 0.2]][:1 + i % 2], np.float32)


def _dog_examples(labels):
  rng = np.random.default_rng(0)
  images = [rng.integers(0, 256, (24 + 3 * (i % 7), 20 + 5 * (i % 3), 3), np.uint8)
            for i in range(DOG_IMAGES)]
  return images, [_dog_boxes(i) for i in range(DOG_IMAGES)], labels


def _dogs_mock(examples):
  """mock_data's `as_data_source_fn`: fixed PNG images with valid boxes (TFDS's random
  boxes have ymin > ymax, which its own BBoxFeature refuses), as the records of an
  array_record data source with undecoded images."""
  images, boxes, labels = examples
  records = [{'image': _png(im), 'label': l, 'objects': {'bbox': b}}
             for im, l, b in zip(images, labels, boxes)]
  return lambda self, split, decoders=None, **kwargs: records


def _numpy_crop(image, box):
  """The reference crop: every pixel the normalised box touches."""
  h, w = image.shape[:2]
  if not len(box):
    return image
  ymin, xmin, ymax, xmax = box[0]
  return image[math.floor(ymin * h):math.ceil(ymax * h),
               math.floor(xmin * w):math.ceil(xmax * w)]


@pytest.mark.parametrize('box,rows,cols', [
    ((0.25, 0.1, 0.75, 0.5), (2, 6), (1, 5)),  # Edges rounded outwards.
    ((0.5, 0.5, 0.5, 0.5), (4, 5), (5, 6)),  # A zero-area box keeps one pixel.
    ((-0.2, 0.9, 1.3, 1.0), (0, 8), (9, 10)),  # Clipped to the image.
])
def test_box_crop_against_hand_computed_pixels(box, rows, cols):
  image = np.arange(8 * 10 * 3, dtype=np.uint8).reshape(8, 10, 3)
  got = stanford_dogs.crop(image, np.array(box, np.float32))
  np.testing.assert_array_equal(got, image[rows[0]:rows[1], cols[0]:cols[1]])


def test_crop_to_box_on_a_dataset_without_boxes_is_a_clear_error(tiny_config):
  tiny_config.data.crop_to_box = True
  with pytest.raises(ValueError, match="crop_to_box.*'fashion_mnist_local'"):
    next(input_pipeline.eval_iterator(tiny_config.data, split='test[:8]', batch_size=8))


def test_stanford_dogs_tiny_end_to_end_crops_boxes_and_answers_puppy_algebra(tmp_path):
  config = load_config(CONFIGS / 'stanford_dogs_puppy.py', 'tiny')
  data_dir = str(tmp_path / 'tfds')
  _write_metadata(data_dir, 'stanford_dogs', ('train', 'test'),
                  [f'{i}-breed' for i in DOG_IDS])
  with tfds.testing.mock_data(num_examples=DOG_IMAGES, data_dir=data_dir):
    seen, unseen = input_pipeline.split_classes(config.data, config.seed)
    names = input_pipeline.class_names(config.data)
  # 8 seen breeds with 4+ images each (stage 3 draws 8 breeds x 2), and 2 unseen.
  labels = [int(seen[i % 8]) if i % 4 else int(unseen[i % 2]) for i in range(DOG_IMAGES)]
  examples = _dog_examples(labels)
  with tfds.testing.mock_data(num_examples=DOG_IMAGES, data_dir=data_dir,
                              as_data_source_fn=_dogs_mock(examples)):
    batch = next(input_pipeline.eval_iterator(config.data, split='test', batch_size=16))
    result = _train_and_evaluate(config, tmp_path / 'run', train.STAGES)
    run = run_lib.Run.load(str(tmp_path / 'run'))
    name, size = gallery.embed(run)

  assert len(unseen) == 20 and len(seen) == 100 and not set(seen) & set(unseen)
  assert names[0] == 'Chihuahua' and names[-1].startswith('African hunting dog')
  # The pipeline's images are the box crops, resized: against numpy slices.
  for i in range(16):
    crop = _numpy_crop(examples[0][i], examples[1][i])
    expected = input_pipeline.preprocess(crop, config.data, train=False)
    np.testing.assert_allclose(batch['image'][i], expected, atol=1e-5)
  assert batch['label'].tolist() == labels[:16]

  _assert_finite_metrics(result['metrics'], ('zsl_top1', 'seen_hit@1', 'gzsl_h',
                                             'siamese_seen_recall@1'))
  assert size == DOG_IMAGES
  # Puppy algebra: gallery 1 + gallery 2 in the Siamese space, against numpy.
  searcher = gallery.Searcher(run, name)
  g = searcher.gallery['siamese']
  found = searcher.algebra([g[1], g[2]], [1.0, 1.0], space='siamese', k=5,
                           exclude_ids=[1, 2])
  scores = g @ _unit(_unit(g[1]) + _unit(g[2])) / np.linalg.norm(g, axis=1)
  scores[[1, 2]] = -np.inf
  assert [r['id'] for r in found] == np.argsort(-scores, kind='stable')[:5].tolist()
  np.testing.assert_allclose([r['score'] for r in found], np.sort(scores)[::-1][:5],
                             atol=1e-5)
  assert [r['label'] for r in found] == [names[labels[r['id']]] for r in found]
