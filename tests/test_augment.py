"""The random-resized crop: boxes against a plain per-example loop, their ranges,
determinism in (seed, step), and JPEG decoding at a reduced scale."""

import io
import math

import cv2
import ml_collections
import numpy as np
import PIL.Image
import pytest

from devise_jax import augment
from devise_jax import images
from devise_jax import preprocessing
from devise_jax.datasets import synthetic_imagenet


def _reference_box(draws, i, height, width, area_range, ratio_range):
  """torchvision's RandomResizedCrop.get_params, written as a loop over attempts,
  fed the same uniform numbers."""
  (a0, a1), (r0, r1) = area_range, ratio_range
  for a in range(augment.ATTEMPTS):
    target = (a0 + draws['area'][i, a] * (a1 - a0)) * height * width
    ratio = math.exp(math.log(r0) + draws['ratio'][i, a] * (math.log(r1) - math.log(r0)))
    w = round(math.sqrt(target * ratio))
    h = round(math.sqrt(target / ratio))
    if 0 < w <= width and 0 < h <= height:
      x = math.floor(draws['x'][i, a] * (width - w + 1))
      y = math.floor(draws['y'][i, a] * (height - h + 1))
      return (x, y, x + w, y + h)
  if width / height < r0:
    w, h = width, round(width / r0)
  elif width / height > r1:
    w, h = round(height * r1), height
  else:
    w, h = width, height
  x, y = (width - w) // 2, (height - h) // 2
  return (x, y, x + w, y + h)


@pytest.mark.parametrize('area_range,ratio_range', [((0.08, 1.0), (3 / 4, 4 / 3)),
                                                    ((0.5, 1.0), (0.2, 5.0)),
                                                    ((0.9, 1.0), (2.0, 3.0))])
def test_boxes_match_a_plain_loop(area_range, ratio_range):
  rng = np.random.default_rng(0)
  n = 2000
  heights, widths = rng.integers(1, 600, n), rng.integers(1, 600, n)
  draws = augment.draw(np.random.default_rng(1), n)
  got = augment.crop_boxes(draws, heights, widths, area_range, ratio_range)
  want = [_reference_box(draws, i, heights[i], widths[i], area_range, ratio_range)
          for i in range(n)]
  np.testing.assert_array_equal(got, np.array(want))


def test_boxes_are_inside_the_image_with_area_and_ratio_in_range():
  rng = np.random.default_rng(2)
  n = 20_000
  heights, widths = rng.integers(250, 451, n), rng.integers(300, 501, n)
  boxes = augment.crop_boxes(augment.draw(np.random.default_rng(3), n), heights, widths)
  x0, y0, x1, y1 = boxes.T
  assert (x0 >= 0).all() and (y0 >= 0).all()
  assert (x1 <= widths).all() and (y1 <= heights).all()
  w, h = x1 - x0, y1 - y0
  assert (w >= 1).all() and (h >= 1).all()
  # Whole-pixel rounding moves a side by at most half a pixel.
  area = w * h / (heights * widths)
  area_low = (np.maximum(w - 0.5, 0) * np.maximum(h - 0.5, 0)) / (heights * widths)
  area_high = ((w + 0.5) * (h + 0.5)) / (heights * widths)
  assert (area_high >= 0.08).all() and (area_low <= 1.0).all()
  ratio_low, ratio_high = (w - 0.5) / (h + 0.5), (w + 0.5) / (h - 0.5)
  assert (ratio_high >= 3 / 4).all() and (ratio_low <= 4 / 3).all()
  # Every part of the range is drawn: areas spread over [0.08, 1], both ratio ends.
  assert area.min() < 0.1 and area.max() > 0.9
  ratio = w / h
  assert ratio.min() < 0.77 and ratio.max() > 1.3
  # Offsets spread over the free room (the box is not always at a corner or centre).
  free = widths - w
  moved = free > 50
  assert (x0[moved] < free[moved] / 4).any() and (x0[moved] > 3 * free[moved] / 4).any()


def test_boxes_are_a_pure_function_of_seed_and_step():
  heights, widths = np.full(64, 375), np.full(64, 500)

  def boxes(seed, step):
    return augment.crop_boxes(augment.draw(np.random.default_rng((seed, step)), 64),
                              heights, widths)

  np.testing.assert_array_equal(boxes(0, 7), boxes(0, 7))
  assert (boxes(0, 7) != boxes(0, 8)).any()
  assert (boxes(0, 7) != boxes(1, 7)).any()
  flips = [augment.draw(np.random.default_rng((0, s)), 64)['flip'] for s in (7, 7, 8)]
  np.testing.assert_array_equal(flips[0], flips[1])
  assert 10 < flips[0].sum() < 54 and (flips[0] != flips[2]).any()


def test_too_narrow_images_fall_back_to_the_centre_with_a_clamped_ratio():
  draws = augment.draw(np.random.default_rng(0), 2)
  draws['area'][:] = 0.999  # Near the whole area: no box of ratio <= 4/3 fits.
  boxes = augment.crop_boxes(draws, [10, 1000], [1000, 10])
  assert tuple(boxes[0]) == (493, 0, 506, 10)  # w = round(10 * 4/3) = 13, centred.
  assert tuple(boxes[1]) == (0, 493, 10, 506)  # h = round(10 / (3/4)) = 13.


def _jpeg(array, quality=95):
  buffer = io.BytesIO()
  PIL.Image.fromarray(array).save(buffer, 'JPEG', quality=quality)
  return buffer.getvalue()


@pytest.mark.parametrize('shrink,scale', [(1.5, 1), (2.0, 2), (3.9, 2), (4.0, 4), (9.0, 8)])
def test_reduced_scale_decoding_picks_the_largest_dct_scale_that_covers(shrink, scale):
  data = _jpeg(synthetic_imagenet.image(0, 'train', 0, 480, 640))
  decoded = images.decode(data, shrink=shrink)
  assert decoded.shape == (math.ceil(480 / scale), math.ceil(640 / scale), 3)
  assert images.size(data) == (640, 480)


@pytest.mark.parametrize('seed', range(6))
def test_training_crops_decoded_at_reduced_scale_are_close_to_full_decodes(seed):
  """The training loader (box drawn, JPEG decoded at 1/2 or 1/4 scale, box resized)
  against a full decode shrunk by the same factor (area averaging, what the DCT
  scaling approximates), the same box sliced out and resized alike."""
  side = 56
  dcfg = ml_collections.ConfigDict({
      'image_size': side, 'crop_padding': 8, 'crop_area': (0.3, 1.0),
      'crop_ratio': (3 / 4, 4 / 3), 'augment': 'random_resized_crop',
      'mean': (0.0, 0.0, 0.0), 'std': (1.0, 1.0, 1.0)})
  data = _jpeg(synthetic_imagenet.image(seed, 'train', 3, 480, 640))
  draws = augment.draw(np.random.default_rng(seed), 1)
  draws['flip'][:] = False
  got = preprocessing.Loader('synthetic_imagenet', dcfg).random_resized_crops(
      [{'image': data, 'label': 0}], [0], draws)[0].astype(np.float64) * 255
  x0, y0, x1, y1 = augment.crop_boxes(draws, [480], [640], (0.3, 1.0), (3 / 4, 4 / 3))[0]
  height, width = images.decode(data, shrink=min(x1 - x0, y1 - y0) / side).shape[:2]
  assert height < 480  # The decode was reduced.
  full = np.asarray(PIL.Image.open(io.BytesIO(data)).convert('RGB'))
  reduced = cv2.resize(full, (width, height), interpolation=cv2.INTER_AREA)

  def crop(dx, dy=0):
    s = height / 480
    box = reduced[round((y0 + dy) * s):round((y1 + dy) * s),
                  round((x0 + dx) * s):round((x1 + dx) * s)]
    return cv2.resize(box, (side, side), interpolation=cv2.INTER_LINEAR)

  difference = np.abs(got - crop(0))
  assert difference.mean() < 2.5, difference.mean()
  assert np.percentile(difference, 99) < 12
  # The closeness means something: the box moved by a tenth of its size is far off.
  dx, dy = (x1 - x0) // 10, (y1 - y0) // 10
  moves = [(dx, 0), (-dx, 0), (0, dy), (0, -dy)]
  dx, dy = next((a, b) for a, b in moves
                if 0 <= x0 + a and x1 + a <= 640 and 0 <= y0 + b and y1 + b <= 480)
  assert np.abs(got - crop(dx, dy)).mean() > 2 * difference.mean()


@pytest.mark.parametrize('mode,fmt', [('RGB', 'JPEG'), ('L', 'JPEG'), ('CMYK', 'JPEG'),
                                      ('RGB', 'PNG')])
@pytest.mark.parametrize('shrink', [1.0, 2.0, 4.5])
def test_training_decoder_gives_the_safe_decoders_pixels(mode, fmt, shrink):
  """OpenCV decodes the training JPEGs; Pillow (`images.decode`) everything else.
  Both give the same pixels at the same DCT scale."""
  array = synthetic_imagenet.image(4, 'train', 1, 300, 400)
  buffer = io.BytesIO()
  PIL.Image.fromarray(array).convert(mode).save(buffer, fmt)
  data = buffer.getvalue()
  got = preprocessing._decode_record(data, 'x', 400, 300, shrink)  # pylint: disable=protected-access
  want = images.decode(data, shrink=shrink)
  assert got.shape == want.shape and got.dtype == np.uint8
  assert np.abs(got.astype(int) - want).max() <= 1
