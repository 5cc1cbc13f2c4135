"""Local TFDS dataset builders (importing this module registers them), and the
few dataset-specific rules the generic input pipeline asks for by dataset name:
preparing from a manual download dir, readable class names and crops from
bounding boxes."""

import tensorflow_datasets as tfds

from devise_jax.datasets import fashion_mnist_local
from devise_jax.datasets import imagenet
from devise_jax.datasets import stanford_dogs
from devise_jax.datasets import synthetic_imagenet

FashionMnistLocal = fashion_mnist_local.FashionMnistLocal

# Datasets whose label names start with a WordNet id: readable names from WordNet.
_WORDNET_NAMED = ('imagenet2012', 'stanford_dogs', 'synthetic_imagenet')
# Dataset -> the function record -> its normalised box [4].
_BOXES = {'stanford_dogs': stanford_dogs.first_box}


def prepare(builder, manual_dir: str = '') -> None:
  """Downloads and prepares `builder` (a no-op once prepared). Files a user must
  fetch by hand (ImageNet's tar files) are read from `manual_dir` ('' = TFDS's
  default, `<data_dir>/downloads/manual`)."""
  config = tfds.download.DownloadConfig(manual_dir=manual_dir) if manual_dir else None
  try:
    builder.download_and_prepare(download_config=config)
  except AssertionError as e:  # How TFDS reports a missing or empty manual dir.
    if 'Manual directory' not in str(e):
      raise
    how = ' '.join(' '.join(builder.MANUAL_DOWNLOAD_INSTRUCTIONS.split()).split('. ')[:1])
    raise ValueError(f'dataset {builder.name!r} needs files downloaded by hand in '
                     f'config.data.manual_dir ({manual_dir or "unset"}: missing or '
                     f'empty): {how}') from None


def class_names(builder) -> list[str]:
  """The builder's label names in label-id order, readable (see imagenet.py)."""
  names = list(builder.info.features['label'].names)
  return imagenet.readable_names(names) if builder.name in _WORDNET_NAMED else names


def boxes(name: str, crop_to_box: bool):
  """The function record -> box of dataset `name` when cropping; else None."""
  if not crop_to_box:
    return None
  if name not in _BOXES:
    raise ValueError(f'config.data.crop_to_box is set but dataset {name!r} has no '
                     f'bounding boxes this project reads (only {sorted(_BOXES)})')
  return _BOXES[name]


crop = stanford_dogs.crop
