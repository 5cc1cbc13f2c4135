"""A synthetic ImageNet-shaped dataset: the paper's shapes without ImageNet's files.

No ImageNet image exists on a machine without the ILSVRC tars, yet the input
pipeline's speed and memory at ImageNet's shapes decide a real run's wall time. This
TFDS builder writes JPEGs with ILSVRC-2012's size distribution (sides drawn
uniformly from 250-450 x 300-500 px, about 350 x 400 on average, both
orientations), photo-like content (a smooth colour field, shapes, and texture at two
scales, not pure noise, which decodes unlike photos) and the 1,000 classes of
`imagenet2012`, named by the same WordNet ids (TFDS's `imagenet2012/labels.txt`).
It is prepared as array_record files by the same `input_pipeline.get_builder` as
every dataset, so everything downstream (class names from WordNet, label sets, the
recipes) reads it as it reads `imagenet2012`. Its accuracy means nothing.

Its size: `synthetic_imagenet/small` (the default: 2,000 training and 500 validation
images) or `synthetic_imagenet/recipe` (12,800 and 10,000: the ImageNet recipe's
`synthetic` variant); any other size is a spec file, `synthetic.json`, in
`config.data.manual_dir` (written by `write_spec`; it overrides the config): the
number of records per split and the side ranges. Every image is a pure function of
(seed, split, index), so a spec always prepares the same data.
"""

import io
import json
import os

from etils import epath
import numpy as np
import PIL.Image
import PIL.ImageDraw
import tensorflow_datasets as tfds

from devise_jax import wordnet

SPEC_FILE = 'synthetic.json'
# ILSVRC-2012's training images average about 400 x 350 (most are 500 x 375 or
# 375 x 500, many smaller); drawing each side uniformly keeps that mean and varies
# the aspect ratio from about 0.55 to 2.
DEFAULT_SPEC = {'train': 2_000, 'validation': 500, 'height': (250, 450),
                'width': (300, 500), 'quality': 90, 'seed': 0}


def write_spec(directory: str, **spec) -> str:
  """Writes `synthetic.json` (DEFAULT_SPEC updated by `spec`) into `directory`."""
  unknown = sorted(set(spec) - set(DEFAULT_SPEC))
  if unknown:
    raise ValueError(f'unknown synthetic_imagenet spec keys {unknown}; '
                     f'valid: {sorted(DEFAULT_SPEC)}')
  os.makedirs(directory, exist_ok=True)
  path = os.path.join(directory, SPEC_FILE)
  with open(path, 'w') as f:
    json.dump({**DEFAULT_SPEC, **spec}, f, indent=1)
  return path


def image(seed: int, split: str, index: int, height: int, width: int) -> np.ndarray:
  """uint8 [height, width, 3]: a photo-like picture drawn from (seed, split, index)."""
  rng = np.random.default_rng([seed, sum(map(ord, split)), index])
  coarse = rng.integers(0, 256, (rng.integers(2, 7), rng.integers(2, 7), 3), np.uint8)
  picture = PIL.Image.fromarray(coarse).resize((width, height), PIL.Image.BICUBIC)
  draw = PIL.ImageDraw.Draw(picture)
  for _ in range(rng.integers(2, 7)):
    x, y = rng.integers(0, width), rng.integers(0, height)
    box = [x, y, x + rng.integers(1, max(2, width // 2)), y + rng.integers(1, max(2, height // 2))]
    colour = tuple(int(c) for c in rng.integers(0, 256, 3))
    (draw.ellipse if rng.integers(2) else draw.rectangle)(box, fill=colour)
  texture = rng.normal(0, 1, (height // 2 + 1, width // 2 + 1)).astype(np.float32)
  texture = np.asarray(PIL.Image.fromarray(texture).resize((width, height),
                                                          PIL.Image.BILINEAR))
  out = np.asarray(picture, np.float32) + 20 * texture[..., None]
  out += rng.normal(0, 22, (height, width, 3)).astype(np.float32)
  return np.clip(out, 0, 255).astype(np.uint8)


def jpeg(array: np.ndarray, quality: int) -> bytes:
  """The JPEG bytes of `array` (libjpeg's default 4:2:0 chroma subsampling)."""
  buffer = io.BytesIO()
  PIL.Image.fromarray(array).save(buffer, 'JPEG', quality=quality)
  return buffer.getvalue()


def read_spec(path, spec=None) -> dict:
  """The spec of the file `path`, else `spec`, with every key checked."""
  path = epath.Path(path)
  spec = {**DEFAULT_SPEC, **(json.loads(path.read_text()) if path.exists() else spec)}
  for key in ('height', 'width'):
    low, high = spec[key]
    if not 1 <= low <= high:
      raise ValueError(f'{path}: {key} must be [low, high] with 1 <= low <= high')
  if spec['train'] < 1 or spec['validation'] < 0:
    raise ValueError(f'{path}: train must be >= 1 and validation >= 0')
  return spec


class SyntheticImagenet(tfds.core.GeneratorBasedBuilder):
  """ImageNet-2012's shapes and classes with generated JPEG content."""

  VERSION = tfds.core.Version('1.0.0')
  RELEASE_NOTES = {'1.0.0': 'Initial release.'}
  BUILDER_CONFIGS = [
      tfds.core.BuilderConfig(name='small', description='2,000 + 500 images.'),
      tfds.core.BuilderConfig(name='recipe', description='12,800 + 10,000 images.'),
  ]
  SIZES = {'small': {}, 'recipe': {'train': 12_800, 'validation': 10_000}}

  @tfds.core.utils.classproperty
  @classmethod
  def code_path(cls) -> epath.Path:
    return epath.Path(__file__)  # As in fashion_mnist_local: no importlib_resources.

  def _info(self) -> tfds.core.DatasetInfo:
    return tfds.core.DatasetInfo(
        builder=self,
        description='Synthetic JPEGs with ImageNet-2012 shapes and class ids.',
        features=tfds.features.FeaturesDict({
            'image': tfds.features.Image(encoding_format='jpeg'),
            'label': tfds.features.ClassLabel(names=wordnet.imagenet1k_ids()),
        }),
        supervised_keys=('image', 'label'),
        disable_shuffling=True,  # Record i of a split is image (seed, split, i).
    )

  def _split_generators(self, dl_manager: tfds.download.DownloadManager):
    # No instructions: TFDS then lets a manual dir be absent (it is optional here).
    manual = dl_manager._manual_dir  # pylint: disable=protected-access
    spec = read_spec(epath.Path(manual or '/nonexistent') / SPEC_FILE,
                     self.SIZES[self.builder_config.name])
    return {split: self._generate_examples(spec, split)
            for split in ('train', 'validation') if spec[split]}

  def _generate_examples(self, spec: dict, split: str):
    (h0, h1), (w0, w1) = spec['height'], spec['width']
    sides = np.random.default_rng([spec['seed'], len(split)])
    for index in range(spec[split]):
      height, width = int(sides.integers(h0, h1 + 1)), int(sides.integers(w0, w1 + 1))
      array = image(spec['seed'], split, index, height, width)
      yield index, {'image': jpeg(array, spec['quality']), 'label': index % 1000}
