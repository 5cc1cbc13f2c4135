"""Preprocessing: encoded images -> the model's normalised float32 input.

One definition, shared by training, evaluation, galleries and the demo:

- evaluation (and every image that is not trained on): the image, cropped to its
  bounding box where the dataset has one (`config.data.crop_to_box`), is squashed
  to a square of side `image_size + crop_padding` (bilinear, antialiased when
  shrinking), and its centre `image_size` square is kept;
- training adds the augmentation `config.data.augment` names (`augment.py`):
  `'pad_crop'` takes a random square of the squashed image instead of the centre
  one; `'random_resized_crop'` resizes a random box of the image straight to
  `image_size` (this is where ImageNet-scale training differs from evaluation, as
  in the ImageNet literature), with OpenCV's bilinear resize (not antialiased, as
  tf.image.resize in the ImageNet pipelines; 4x faster than Pillow's, and the box
  is at most 2x the output once decoded at a reduced scale); both flip at random;
- pixels are normalised with `config.data.mean` and `config.data.std`.

JPEGs are decoded at the smallest DCT scale (1, 1/2, 1/4, 1/8) that still covers what
the resize needs (`images.decode(..., shrink=...)`): the pixels differ from a full
decode's only by the decoder's own scaling, at a fraction of the cost.
"""

import functools

import ml_collections
import numpy as np
import PIL.Image

from devise_jax import augment
from devise_jax import datasets
from devise_jax import images as images_lib



@functools.cache
def _cv2():
  """OpenCV, imported on first use (0.5 s; only training's random-resized crop needs
  it). The loader's threads work in parallel; OpenCV's own would compete with them."""
  import cv2  # pylint: disable=import-outside-toplevel
  cv2.setNumThreads(1)
  return cv2


def preprocess(image: np.ndarray, dcfg: ml_collections.ConfigDict, *,
               train: bool, rng: np.random.Generator | None = None) -> np.ndarray:
  """Maps uint8 [H, W, C] to normalised float32 [S, S, 3], S = image_size.

  Evaluation: squash to `image_size + crop_padding`, keep the centre. Training
  (`pad_crop` only: a decoded array has no JPEG to decode at a reduced scale): a
  random crop and flip drawn from `rng`, as the training iterator does.

  Args:
    image: uint8 [H, W], [H, W, 1], [H, W, 3] or [H, W, 4] (alpha dropped).
    dcfg: `config.data`.
    train: whether to augment.
    rng: the numpy Generator the augmentation draws from; required when training.

  Returns:
    float32 [S, S, 3].
  """
  if train and rng is None:
    raise ValueError('preprocess(train=True) needs rng, a numpy Generator')
  resized = resize(image, dcfg.image_size + dcfg.crop_padding)[None]
  crops = draw_pad_crops(rng, 1, dcfg.crop_padding) if train else None
  return normalise(pad_crop(resized, dcfg, crops), dcfg)[0]


def resize(image: np.ndarray, side: int) -> np.ndarray:
  """uint8 RGB [side, side, 3]; PIL's bilinear filter widens when shrinking."""
  resized = PIL.Image.fromarray(_to_rgb(image)).resize((side, side), PIL.Image.BILINEAR)
  return np.asarray(resized)


def _to_rgb(image: np.ndarray) -> np.ndarray:
  """Returns uint8 [H, W, 3] from [H, W] or [H, W, C], C in {1, 3, 4}."""
  image = np.asarray(image)
  image = image[..., None] if image.ndim == 2 else image
  if image.dtype != np.uint8 or image.ndim != 3 or image.shape[-1] not in (1, 3, 4):
    raise ValueError('expected a uint8 image with 1, 3 or 4 channels, got '
                     f'{image.dtype} of shape {image.shape}')
  return np.ascontiguousarray(np.repeat(image, 3, axis=-1) if image.shape[-1] == 1
                              else image[..., :3])


def draw_pad_crops(rng: np.random.Generator, n: int, padding: int):
  """n random `pad_crop`s: (offsets int [n, 2] in [0, padding], flips bool [n])."""
  return rng.integers(0, padding + 1, (n, 2)), rng.integers(0, 2, n).astype(bool)


def pad_crop(images: np.ndarray, dcfg: ml_collections.ConfigDict,
             crops=None) -> np.ndarray:
  """uint8 [n, S + P, S + P, 3] -> float32 [n, S, S, 3]: each cropped at its offset
  and flipped where `crops` = (offsets, flips) says, else centre-cropped."""
  size, n = dcfg.image_size, len(images)
  offsets, flips = crops or (np.full((n, 2), dcfg.crop_padding // 2), np.zeros(n, bool))
  out = np.empty((n, size, size, 3), np.float32)
  for i, (image, (y, x), flip) in enumerate(zip(images, offsets, flips)):
    crop = image[y:y + size, x:x + size]
    out[i] = crop[:, ::-1] if flip else crop
  return out


def normalise(images: np.ndarray, dcfg: ml_collections.ConfigDict,
              out: np.ndarray | None = None) -> np.ndarray:
  """[0, 255] pixels -> (x / 255 - mean) / std, float32, into `out` (default: in
  place for float32 images, a new array for uint8 ones)."""
  if out is None:
    out = images if images.dtype == np.float32 else np.empty(images.shape, np.float32)
  n, height, width, channels = images.shape
  scale, offset = _rows(tuple(dcfg.mean), tuple(dcfg.std), width)
  # Rows of W * 3 values against tiled constants: numpy's inner loop then runs over
  # a row, not over 3 channels (4x faster; the same float32 operations).
  shape = (n, height, width * channels)
  rows, out_rows = images.reshape(shape), out.reshape(shape)
  for i in range(0, n, 4):  # A few images at a time stay in the cache.
    np.multiply(rows[i:i + 4], scale, out=out_rows[i:i + 4])
    out_rows[i:i + 4] -= offset
  return out


@functools.lru_cache(maxsize=16)
def _rows(mean, std, width):
  """float32 1 / (255 std) and mean / std, tiled over a row of `width` pixels."""
  std = np.asarray(std, np.float32)
  scale, offset = 1 / (255 * std), np.asarray(mean, np.float32) / std
  return np.tile(scale, width), np.tile(offset, width)


class Loader:
  """Records ({'image': encoded bytes or a path, 'label', ...}) -> uint8 images.

  `squashed` gives [n, side, side, 3], side = image_size + crop_padding (what
  evaluation and `pad_crop` start from); `random_resized_crops` gives [n, S, S, 3]
  for `random_resized_crop`. With `cache` (an int: how many records the ids index),
  `cached` loads each squashed image once, when first asked for, and keeps it.
  """

  def __init__(self, name: str, dcfg: ml_collections.ConfigDict, cache: int = 0):
    self.name, self.dcfg = name, dcfg
    self.side = dcfg.image_size + dcfg.crop_padding
    self.box = datasets.boxes(name, dcfg.get('crop_to_box', False))
    self.cache = np.zeros((cache, self.side, self.side, 3), np.uint8) if cache else None
    self.done = np.zeros(cache, bool)

  def _label(self, index) -> str:
    return f'{self.name} record {index}'

  def squashed(self, records: list[dict], indices) -> np.ndarray:
    """The records' images, cropped to their box and squashed to side x side."""
    out = np.empty((len(records), self.side, self.side, 3), np.uint8)
    for k, (i, record) in enumerate(zip(indices, records)):
      data, name = record['image'], self._label(i)
      if self.box:
        image = datasets.crop(images_lib.decode(data, name), self.box(record))
      else:
        image = images_lib.decode(data, name, shrink=min(images_lib.size(data, name))
                                  / self.side)
      out[k] = resize(image, self.side)
    return out

  def cached(self, read, ids: np.ndarray, indices: np.ndarray) -> np.ndarray:
    """The squashed images of records `indices[ids]`, each loaded once; `read`
    maps record indices to records."""
    missing = np.unique(ids[~self.done[ids]])
    if len(missing):
      # Threads may load one image twice, writing the same pixels: harmless.
      self.cache[missing] = self.squashed(read(indices[missing]), indices[missing])
      self.done[missing] = True
    return self.cache[ids]

  def random_resized_crops(self, records: list[dict], indices,
                           draws: augment.Draws) -> np.ndarray:
    """float32 [n, S, S, 3], normalised: each record's random box (drawn with its
    row of `draws`) resized to S and flipped where `draws['flip']` says."""
    dcfg, names = self.dcfg, [self._label(i) for i in indices]
    if self.box:  # A box of the annotated box: the image decoded whole, then cropped.
      pictures = [datasets.crop(images_lib.decode(r['image'], name), self.box(r))
                  for r, name in zip(records, names)]
      sizes = [(p.shape[1], p.shape[0]) for p in pictures]
    else:  # From the headers alone: the decode then knows how far it may shrink.
      pictures = [None] * len(records)
      sizes = [images_lib.size(r['image'], name) for r, name in zip(records, names)]
    widths, heights = np.array(sizes).reshape(-1, 2).T
    boxes = augment.crop_boxes(draws, heights, widths, dcfg.crop_area, dcfg.crop_ratio)
    out = np.empty((len(records), dcfg.image_size, dcfg.image_size, 3), np.float32)
    for k, record in enumerate(records):
      image = self._resized_box(record['image'], names[k], pictures[k], sizes[k],
                                boxes[k])
      normalise((image[:, ::-1] if draws['flip'][k] else image)[None], dcfg,
                out[k:k + 1])
    return out

  def _resized_box(self, data, name, picture, size, box) -> np.ndarray:
    """uint8 [S, S, 3]: `box` (x0, y0, x1, y1) of the image, resized; `picture` is
    the decoded image, or None to decode `data` at a scale that covers the box."""
    side, (width, height), (x0, y0, x1, y1) = self.dcfg.image_size, size, box
    if picture is None:
      picture = _decode_record(data, name, width, height,
                               shrink=min(x1 - x0, y1 - y0) / side)
    # The box in the decoded image's pixels (a reduced decode rounds its edges).
    sy, sx = picture.shape[0] / height, picture.shape[1] / width
    top, left = round(y0 * sy), round(x0 * sx)
    bottom, right = max(round(y1 * sy), top + 1), max(round(x1 * sx), left + 1)
    cv2 = _cv2()
    return cv2.resize(np.ascontiguousarray(picture[top:bottom, left:right]),
                      (side, side), interpolation=cv2.INTER_LINEAR)


def _decode_record(data, name, width, height, shrink=1.0):
  """`images.decode` for the records of a prepared dataset, whose size was read and
  checked first (`images.size`): a JPEG is decoded by OpenCV (libjpeg-turbo, like
  Pillow: the same pixels, at `images.dct_scale`, with one copy less, about 20 % less
  CPU); any other format, or anything OpenCV cannot read, goes through `decode`."""
  if isinstance(data, bytes) and data[:3] == b'\xff\xd8\xff':
    cv2, scale = _cv2(), images_lib.dct_scale(width, height, shrink)
    flags = {1: cv2.IMREAD_COLOR_RGB, 2: cv2.IMREAD_REDUCED_COLOR_2,
             4: cv2.IMREAD_REDUCED_COLOR_4, 8: cv2.IMREAD_REDUCED_COLOR_8}[scale]
    array = cv2.imdecode(np.frombuffer(data, np.uint8), flags)
    if array is not None and array.ndim == 3 and array.shape[2] == 3:
      return array if scale == 1 else array[..., ::-1]  # Reduced modes give BGR.
  return images_lib.decode(data, name, shrink)
