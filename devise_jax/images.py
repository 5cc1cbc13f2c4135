"""Safe image decoding: the one decoder of the CLI, the galleries, the REST API and the demo.

`decode` turns an image file (a path, bytes or a file object) into an RGB uint8 array
the model can take, or raises `ImageError` (a `ValueError`) with one line meant for the
user. One set of limits and conversions, so every entry point treats a file the same:

- URLs are refused before anything is opened (`http://`, `https://`, `ftp://`, `file://`,
  `data:`, ...): nothing in the project downloads a caller-supplied address; give the
  image as a (local or uploaded) file;
- more than `MAX_BYTES` bytes: refused before reading them;
- not an image, an empty file or an image of zero size: refused;
- more than `MAX_PIXELS` pixels (decompression bombs, e.g. a 12 KB PNG of 10000x10000),
  or more than `MAX_DECODED_BYTES` to hold while decoding (`decoded_bytes`: pixels x
  bytes a pixel as Pillow holds them, 2 for 16-bit, 4 for float and 8-bit RGB, times
  the copies the format's decoder makes; for a JPEG, its DCT-reduced output plus the
  whole image's coefficients when it has several scans, as progressive JPEGs do), or
  a file of more than `MAX_SLOW_BYTES` in a format Pillow decodes in Python (QOI,
  run-length BMP, plain PPM, ...): refused from the header, before any pixel is
  decoded. The costliest images admitted take about 63 MB and 0.33 s here
  (experiments/bench/bench_decode.py);
- truncated or corrupt files: refused (Pillow's `LOAD_TRUNCATED_IMAGES` stays off);
- EXIF orientation is applied; animated images (GIF, APNG, WebP) give their first
  frame, as a still picture of them would;
- CMYK, palette (P), 1-bit, 16-bit (I;16), 32-bit (I) and float (F) images become RGB
  (16-bit and wider values are scaled to 8 bits, not clipped or binarised; NaN becomes
  0); 48-bit RGB PNGs keep their high bytes (Pillow's reading);
- transparency (RGBA, LA, P with a transparent colour) is composited on white;
- anything larger than `MAX_SIDE` is shrunk to fit (aspect kept, at least 1 pixel a
  side), so that 100000x1 and 1x1 images both reach the model's resize cheaply: a JPEG
  is decoded at a reduced DCT scale; other images are converted a band of rows at a
  time, and one of 2 x MAX_SIDE or more a side is reduced band by band (box means,
  `Image.reduce`) before the final resize, so a decode holds one full-size copy only.
  Such large images differ from one direct resize (both are box means, over
  slightly different windows: about 0.2 grey levels apart on average once the
  model has resized them to 36 px, 1 at 256 px); smaller ones give the same pixels;
- a caller that needs fewer pixels passes `shrink`: a JPEG is then decoded at a
  reduced DCT scale (`dct_scale`), far cheaper than a full decode. `size` reads an
  image's size from its header, with the same checks, before anything is decoded.
"""

import contextlib
import io
import math
import os
import re
import warnings

import numpy as np
import PIL.Image

from devise_jax import image_cost

MAX_PIXELS = 40_000_000  # 40 MP: Pillow's own limit is ~89 MP.
MAX_BYTES = 10 * 1024 * 1024  # Larger files are refused (the demo's server refuses them too).
MAX_DECODED_BYTES = 32 * 2**20  # What a decode may hold at once (`decoded_bytes`).
MAX_SLOW_BYTES = 256 * 1024  # Files that Pillow decodes in Python (QOI, RLE BMP, ...).
MAX_SIDE = 1024  # Decoded images are shrunk to fit in MAX_SIDE x MAX_SIDE.
MODEL_SIDE = 256  # The largest input of the recipes (ImageNet's 224 + 32 of padding).
DISPLAY_SIDE = 112  # Small gallery pictures are enlarged (nearest) to about this size.

_BAND_BYTES = 2 * 2**20  # Rows converted at a time, as 4-byte pixels.
_SIXTEEN_BITS = np.rint(np.arange(65536) / 257.0).astype(np.uint8)  # 16 -> 8 bits.
_URL = re.compile(r"^\s*([a-z][a-z0-9+.-]*://|data:)", re.IGNORECASE)


class ImageError(ValueError):
  """An input that is not a usable image; the message is meant for the user."""


def is_url(value):
  """Whether a string (or path) names a URL rather than a file."""
  return isinstance(value, (str, os.PathLike)) and bool(_URL.match(os.fspath(value)))


def refuse_url(value, name='the image'):
  """Raises `ImageError` when `value` is a URL; images are never downloaded."""
  if is_url(value):
    raise ImageError(f'{name} is a URL: give the image as an uploaded or local file, '
                     'not a URL (images are never downloaded)')


def decode(source, name='the image', shrink=1.0):
  """An RGB uint8 [H, W, 3] array of an image file (a path, bytes or a file object).

  `shrink` > 1 lets a JPEG be decoded at a reduced scale (libjpeg's DCT scaling by
  1/2, 1/4 or 1/8, much cheaper than a full decode) as long as each side stays at
  least 1/shrink of the full image's: a caller that resizes a region of w x h
  pixels to S x S passes min(w, h) / S.
  """
  with _opened(_read_bytes(source, name), name) as image:
    return _to_array(image, name, shrink)


def size(source, name='the image'):
  """(width, height) of an image as `decode` returns it (EXIF orientation applied),
  from its header alone; the same checks and errors as `decode`."""
  with _opened(_read_bytes(source, name), name) as image:
    width, height = image.size
    transposed = image.getexif().get(_ORIENTATION, 1) in (5, 6, 7, 8)
    return (height, width) if transposed else (width, height)


_ORIENTATION = 0x0112  # The EXIF tag; values 5 to 8 swap width and height.
def dct_scale(width, height, shrink):
  """The JPEG DCT scale (1, 2, 4 or 8) a decode at `shrink` uses (Pillow's rule)."""
  most = min(width // math.ceil(width / max(1.0, shrink)),
             height // math.ceil(height / max(1.0, shrink)))
  return next(scale for scale in (8, 4, 2, 1) if scale <= most)


@contextlib.contextmanager
def _opened(data, name):
  """The PIL image of `data`, checked; Pillow's failures become `ImageError`s."""
  if not data:
    raise ImageError(f'{name} is an empty file')
  try:
    with warnings.catch_warnings():
      # Pillow warns above MAX_IMAGE_PIXELS and raises above twice that; both are
      # refusals here, and the size check below applies the lower MAX_PIXELS.
      warnings.simplefilter('error', PIL.Image.DecompressionBombWarning)
      with PIL.Image.open(io.BytesIO(data)) as image:
        _check_size(image, name, data)
        yield image
  except ImageError:
    raise
  except (PIL.Image.DecompressionBombError, PIL.Image.DecompressionBombWarning):
    raise ImageError(f'{name} has too many pixels (the limit is '
                     f'{MAX_PIXELS // 1_000_000} megapixels)') from None
  except PIL.UnidentifiedImageError:
    raise ImageError(f'{name} is not an image file that can be read (PNG, JPEG, GIF, '
                     'BMP, WebP, TIFF, ...)') from None
  except MemoryError:
    raise ImageError(f'{name} is too large to decode') from None
  except (OSError, SyntaxError, ValueError, TypeError, EOFError, IndexError,
          KeyError, ZeroDivisionError, OverflowError) as e:
    # Pillow's decoders raise all of these for truncated or corrupt files.
    reason = str(e).splitlines()[0][:120] if str(e) else type(e).__name__
    raise ImageError(f'{name} is truncated or corrupt ({reason})') from None


def _read_bytes(source, name):
  if isinstance(source, (bytes, bytearray, memoryview)):
    data = bytes(source)
  elif isinstance(source, (str, os.PathLike)):
    refuse_url(source, name)
    if os.path.isdir(source):
      raise ImageError(f'{name} {os.fspath(source)!r} is a directory, not an image file')
    try:
      size = os.path.getsize(source)
      if size > MAX_BYTES:
        raise ImageError(f'{name} is larger than {MAX_BYTES // 2**20} MB ({size:,} bytes)')
      with open(source, 'rb') as f:
        data = f.read(MAX_BYTES + 1)
    except FileNotFoundError:
      raise ImageError(f'{name} {os.fspath(source)!r} does not exist') from None
    except OSError:
      raise ImageError(f'{name} could not be read') from None
  elif hasattr(source, 'read'):
    data = source.read(MAX_BYTES + 1)
  else:
    raise ImageError(f'{name} is not a file')
  if len(data) > MAX_BYTES:
    raise ImageError(f'{name} is larger than {MAX_BYTES // 2**20} MB')
  return data


def _check_size(image, name, data):
  width, height = image.size
  if width <= 0 or height <= 0:
    raise ImageError(f'{name} is empty ({width}x{height} pixels)')
  if width * height > MAX_PIXELS:
    raise ImageError(f'{name} is {width}x{height} = {width * height / 1e6:.0f} megapixels; '
                     f'the limit is {MAX_PIXELS // 1_000_000} megapixels')
  if image_cost.slow(image) and len(data) > MAX_SLOW_BYTES:
    raise ImageError(f'{name} is a {image.format} file ({image_cost.codec(image)}) of '
                     f'{len(data) / 2**20:.1f} MB, which Pillow decodes slowly; the limit '
                     f'for it is {MAX_SLOW_BYTES // 1024} KB: send a PNG or JPEG')
  cost = decoded_bytes(image, data)
  if cost > MAX_DECODED_BYTES:
    kind = f'{image.format or ""} {image.mode}'.strip()
    raise ImageError(f'{name} ({width}x{height} {kind}) would take {cost / 2**20:.0f} MB '
                     f'to decode; the limit is {MAX_DECODED_BYTES // 2**20} MB: send a '
                     f'smaller image (the model sees at most {MODEL_SIDE}x{MODEL_SIDE} '
                     'pixels)')


def decoded_bytes(image, data):
  """Bytes a decode of `image` (opened, not loaded; `data` its file) holds at once,
  from its header (`devise_jax.image_cost`): the pixels as Pillow holds them, times
  the copies the format's decoder makes; a JPEG's at the DCT scale `decode` asks for
  (at most 2 x MAX_SIDE a side), plus the whole image's DCT coefficients when it has
  several scans (progressive JPEGs)."""
  width, height = image.size
  if image.format not in image_cost.JPEG:
    return width * height * image_cost.pixel_bytes(image.mode) * image_cost.copies(image)
  most = min(width // min(MAX_SIDE, width), height // min(MAX_SIDE, height))
  scale = next(s for s in (8, 4, 2, 1) if s <= most)  # What `draft` picks at shrink 1.
  out = math.ceil(width / scale) * math.ceil(height / scale)
  return (out * image_cost.pixel_bytes(image.mode)
          + image_cost.jpeg_coefficient_bytes(image, data))


def _to_array(image, name, shrink=1.0):
  if getattr(image, 'n_frames', 1) > 1:
    image.seek(0)  # Animated: the first frame.
  if image.format in image_cost.JPEG:  # Large JPEGs decode at a reduced scale: faster.
    width, height = image.size
    shrink = max(1.0, shrink)
    image.draft(image.mode, (min(MAX_SIDE, math.ceil(width / shrink)),
                             min(MAX_SIDE, math.ceil(height / shrink))))
  image.load()
  try:
    orientation = image.getexif().get(_ORIENTATION, 1)
  except Exception:  # pylint: disable=broad-except
    orientation = 1  # A malformed EXIF block: keep the stored orientation.
  image = _reduced_rgb(image, max(1, max(image.size) // MAX_SIDE))
  if orientation in _TRANSPOSE:
    image = image.transpose(_TRANSPOSE[orientation])
  width, height = image.size
  if max(width, height) > MAX_SIDE:
    scale = MAX_SIDE / max(width, height)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    image = image.resize(size, PIL.Image.Resampling.BOX)
  array = np.asarray(image, dtype=np.uint8)
  if array.ndim != 3 or array.shape[2] != 3 or array.size == 0:
    raise ImageError(f'{name} could not be converted to RGB (shape {array.shape})')
  return np.ascontiguousarray(array)


_T = PIL.Image.Transpose
_TRANSPOSE = {2: _T.FLIP_LEFT_RIGHT, 3: _T.ROTATE_180, 4: _T.FLIP_TOP_BOTTOM,
              5: _T.TRANSPOSE, 6: _T.ROTATE_270, 7: _T.TRANSVERSE, 8: _T.ROTATE_90}


def _reduced_rgb(image, factor):
  """RGB of a loaded image, shrunk `factor` times (box means), converted a band of
  rows at a time: the conversions never hold a second full-size copy."""
  width, height = image.size
  wide = _wide_range(image) if _is_wide(image.mode) and image.mode[:4] != 'I;16' else None
  if image.mode == 'P' and 'transparency' in image.info:
    _composite_palette(image)
  if width * height * 4 <= _BAND_BYTES:
    rgb = _to_rgb(image, wide)
    return rgb.reduce(factor) if factor > 1 else rgb
  out = PIL.Image.new('RGB', (math.ceil(width / factor), math.ceil(height / factor)))
  for top, band in _bands(image, factor):
    band = _to_rgb(band, wide)
    out.paste(band.reduce(factor) if factor > 1 else band, (0, top // factor))
  return out


def _composite_palette(image):
  """Composites a palette image's colours on white, in place (its transparency then
  dropped): a pixel's colour is its index's, so the bands convert as plain palette
  images, several times faster than compositing every pixel."""
  strip = PIL.Image.frombytes('P', (256, 1), bytes(range(256)))
  strip.putpalette(image.getpalette(image.palette.mode), image.palette.mode)
  strip.info['transparency'] = image.info.pop('transparency')
  image.putpalette(_to_rgb(strip).tobytes(), 'RGB')


def _bands(image, factor=1):
  """(top row, crop) of bands of about _BAND_BYTES (as 4-byte pixels), a multiple of
  `factor` rows each: the crops are copies of one band."""
  width, height = image.size
  rows = factor * max(1, _BAND_BYTES // (4 * width * factor))
  for top in range(0, height, rows):
    yield top, image.crop((0, top, width, min(height, top + rows)))


def _is_wide(mode):
  return mode.startswith('I') or mode == 'F'


def _to_rgb(image, wide=None):
  """RGB from any mode; transparency composited on white; wide modes (16-bit, 32-bit,
  float) scaled to 8 bits over `wide`, the whole image's (low, top)."""
  mode = image.mode
  if mode.startswith('I;16'):  # Every 16-bit value scales by 1/257: a table does it.
    return PIL.Image.fromarray(_SIXTEEN_BITS[np.asarray(image)], 'L').convert('RGB')
  if _is_wide(mode):
    array = _finite(np.asarray(image))
    return PIL.Image.fromarray(_wide_to_uint8(array, mode, *wide), 'L').convert('RGB')
  has_alpha = (mode in ('RGBA', 'RGBa', 'LA', 'La', 'PA')
               or 'transparency' in image.info)
  if has_alpha:
    try:
      rgba = image.convert('RGBA')
    except ValueError:
      rgba = image.convert('RGB').convert('RGBA')
    white = PIL.Image.new('RGBA', rgba.size, (255, 255, 255, 255))
    return PIL.Image.alpha_composite(white, rgba).convert('RGB')
  if mode == 'RGB':
    return image
  try:
    return image.convert('RGB')  # L, 1, P, CMYK, YCbCr, HSV, ...
  except ValueError:
    raise ImageError(f'images of mode {mode} are not supported') from None


def _finite(array):
  """float64 of one band (the first, if several), NaN and infinities 0."""
  array = np.asarray(array, np.float64)
  return np.nan_to_num(array[..., 0] if array.ndim == 3 else array,
                       nan=0.0, posinf=0.0, neginf=0.0)


def _wide_range(image):
  """(lowest, highest) value of a 32-bit or float image, NaN and infinities counted
  as 0, a band at a time (in the band's own type: the same values as float64)."""
  low, top = math.inf, -math.inf
  for _, band in _bands(image):
    array = np.array(band)
    array = array[..., 0] if array.ndim == 3 else array
    if array.dtype.kind == 'f':
      np.nan_to_num(array, copy=False, nan=0.0, posinf=0.0, neginf=0.0)
    if array.size:
      low, top = min(low, float(array.min())), max(top, float(array.max()))
  return (low, top) if low <= top else (0.0, 0.0)


def _wide_to_uint8(array, mode, low, top):
  """8-bit gray from 16-bit, 32-bit integer or float pixels (finite), given the whole
  image's lowest and highest values."""
  if mode == 'F' and low >= 0.0 and top <= 1.0:
    array = array * 255.0  # Floats in [0, 1].
  elif low >= 0.0 and top <= 255.0 and mode == 'F':
    pass
  elif low >= 0.0 and top <= 65535.0:
    array = array / 257.0  # 16-bit range -> 8-bit range.
  elif top > low:
    array = (array - low) * (255.0 / (top - low))
  else:
    array = np.zeros_like(array)
  return np.clip(np.rint(array), 0, 255).astype(np.uint8)


def for_display(array, side=DISPLAY_SIDE):
  """RGB uint8 for showing: small images enlarged (nearest), large ones shrunk."""
  array = np.asarray(array)
  if array.ndim == 3 and array.shape[2] == 1:
    array = array[..., 0]
  image = PIL.Image.fromarray(array.astype(np.uint8)).convert('RGB')
  width, height = image.size
  if max(width, height) < side:
    factor = max(1, side // max(width, height))
    image = image.resize((width * factor, height * factor), PIL.Image.Resampling.NEAREST)
  elif max(width, height) > 2 * side:
    scale = 2 * side / max(width, height)
    image = image.resize((max(1, round(width * scale)), max(1, round(height * scale))),
                         PIL.Image.Resampling.BOX)
  return np.asarray(image)


def placeholder(side=DISPLAY_SIDE):
  """A grey square shown where a gallery picture cannot be loaded."""
  return np.full((side, side, 3), 200, np.uint8)


