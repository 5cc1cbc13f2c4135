"""Training augmentation: which pixels of an image a training example sees.

Two definitions, chosen by `config.data.augment`:

- `'pad_crop'` (the small-image default): squash the image to a square of side
  `image_size + crop_padding`, take a random `image_size` crop of it, flip at random.
- `'random_resized_crop'` (the ImageNet literature's Inception-style crop, for the
  ImageNet and Stanford Dogs recipes): a box covering a fraction of the image's area
  drawn uniformly from `config.data.crop_area`, with an aspect ratio drawn
  log-uniformly from `config.data.crop_ratio`, at a uniform position; up to
  `ATTEMPTS` draws until one fits, else the centre crop of the whole image with its
  ratio clamped to the range (torchvision's `RandomResizedCrop`). The box is resized
  to `image_size` and flipped at random. Because the box is known from the image's
  size alone, the JPEG can be decoded at a reduced scale that still covers the box
  (`images.decode(..., shrink=...)`).

The random numbers of a batch are drawn once, for the whole global batch, by
`draw(np.random.default_rng((seed, step)), batch_size)`, and do not depend on the
images: boxes are then a pure function of the draws and each image's size, so batch
k is a pure function of (seed, k).
"""

import numpy as np

ATTEMPTS = 10  # Draws of a random-resized crop before falling back to the centre.

Draws = dict[str, np.ndarray]


def draw(rng: np.random.Generator, n: int) -> Draws:
  """The uniform random numbers of n examples' augmentation, in [0, 1).

  Returns {'area', 'ratio', 'x', 'y': float64 [n, ATTEMPTS], 'flip': bool [n]}.
  """
  numbers = rng.random((4, n, ATTEMPTS))
  flip = rng.integers(0, 2, n).astype(bool)
  return {'area': numbers[0], 'ratio': numbers[1], 'x': numbers[2], 'y': numbers[3],
          'flip': flip}


def crop_boxes(draws: Draws, heights, widths, area_range=(0.08, 1.0),
               ratio_range=(3 / 4, 4 / 3)) -> np.ndarray:
  """int64 [n, 4] boxes (x0, y0, x1, y1), pixel edges, of a random-resized crop.

  Example i's attempt a has area `(a0 + area * (a1 - a0)) * H * W` and aspect ratio
  (width / height) `exp(log r0 + ratio * (log r1 - log r0))`; its width and height
  are rounded to whole pixels; it fits when both are in [1, W] x [1, H]. The first
  attempt that fits is placed at offset (floor(x * (W - w + 1)), floor(y * (H - h +
  1))); with none, the box is the centre crop of the image, its ratio clamped to
  `ratio_range`.
  """
  heights = np.asarray(heights, np.float64)[:, None]
  widths = np.asarray(widths, np.float64)[:, None]
  (a0, a1), (r0, r1) = area_range, ratio_range
  area = (a0 + draws['area'] * (a1 - a0)) * heights * widths
  ratio = np.exp(np.log(r0) + draws['ratio'] * (np.log(r1) - np.log(r0)))
  w = np.round(np.sqrt(area * ratio))
  h = np.round(np.sqrt(area / ratio))
  fits = (w >= 1) & (w <= widths) & (h >= 1) & (h <= heights)
  first = np.argmax(fits, axis=1)
  rows = np.arange(len(first))
  w, h, fits = w[rows, first], h[rows, first], fits[rows, first]
  x = np.floor(draws['x'][rows, first] * (widths[:, 0] - w + 1))
  y = np.floor(draws['y'][rows, first] * (heights[:, 0] - h + 1))
  centre = _centre_boxes(heights[:, 0], widths[:, 0], r0, r1)
  boxes = np.stack([x, y, x + w, y + h], axis=1)
  return np.where(fits[:, None], boxes, centre).astype(np.int64)


def _centre_boxes(heights, widths, r0, r1) -> np.ndarray:
  """The whole image's centre crop with its ratio clamped to [r0, r1]."""
  ratio = widths / heights
  w = np.where(ratio > r1, np.round(heights * r1), widths)
  h = np.where(ratio < r0, np.round(widths / r0), heights)
  x = np.floor((widths - w) / 2)
  y = np.floor((heights - h) / 2)
  return np.stack([x, y, x + w, y + h], axis=1)
