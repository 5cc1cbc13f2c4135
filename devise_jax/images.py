"""Safe image decoding: the one decoder of the CLI, the galleries, the REST API and the demo.

`decode` turns an image file (a path, bytes or a file object) into an RGB uint8 array
the model can take, or raises `ImageError` (a `ValueError`) with one line meant for the
user. One set of limits and conversions, so every entry point treats a file the same:

- URLs are refused before anything is opened (`http://`, `https://`, `ftp://`, `file://`,
  `data:`, ...): nothing in the project downloads a caller-supplied address; give the
  image as a (local or uploaded) file;
- more than `MAX_BYTES` bytes: refused before reading them;
- not an image, an empty file or an image of zero size: refused;
- more than `MAX_PIXELS` pixels (decompression bombs, e.g. a 12 KB PNG of 10000x10000):
  refused from the header, before any pixel is decoded;
- truncated or corrupt files: refused (Pillow's `LOAD_TRUNCATED_IMAGES` stays off);
- EXIF orientation is applied; animated images (GIF, APNG, WebP) give their first
  frame, as a still picture of them would;
- CMYK, palette (P), 1-bit, 16-bit (I;16), 32-bit (I) and float (F) images become RGB
  (16-bit and wider values are scaled to 8 bits, not clipped or binarised; NaN becomes
  0); 48-bit RGB PNGs keep their high bytes (Pillow's reading);
- transparency (RGBA, LA, P with a transparent colour) is composited on white;
- anything larger than `MAX_SIDE` is shrunk to fit (aspect kept, at least 1 pixel a
  side), so that 100000x1 and 1x1 images both reach the model's resize cheaply;
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
import PIL.ImageOps

MAX_PIXELS = 40_000_000  # 40 MP: Pillow's own limit is ~89 MP.
MAX_BYTES = 10 * 1024 * 1024  # Larger files are refused (the demo's server refuses them too).
MAX_SIDE = 1024  # Decoded images are shrunk to fit in MAX_SIDE x MAX_SIDE.
DISPLAY_SIDE = 112  # Small gallery pictures are enlarged (nearest) to about this size.

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
        _check_size(image, name)
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


def _check_size(image, name):
  width, height = image.size
  if width <= 0 or height <= 0:
    raise ImageError(f'{name} is empty ({width}x{height} pixels)')
  if width * height > MAX_PIXELS:
    raise ImageError(f'{name} is {width}x{height} = {width * height / 1e6:.0f} megapixels; '
                     f'the limit is {MAX_PIXELS // 1_000_000} megapixels')


def _to_array(image, name, shrink=1.0):
  if getattr(image, 'n_frames', 1) > 1:
    image.seek(0)  # Animated: the first frame.
  if image.format == 'JPEG':  # Decodes large JPEGs at a reduced scale: much faster.
    width, height = image.size
    shrink = max(1.0, shrink)
    image.draft(image.mode, (min(MAX_SIDE, math.ceil(width / shrink)),
                             min(MAX_SIDE, math.ceil(height / shrink))))
  image.load()
  try:
    image = PIL.ImageOps.exif_transpose(image)
  except Exception:  # pylint: disable=broad-except
    pass  # A malformed EXIF block: keep the stored orientation.
  image = _to_rgb(image)
  width, height = image.size
  if max(width, height) > MAX_SIDE:
    scale = MAX_SIDE / max(width, height)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    image = image.resize(size, PIL.Image.Resampling.BOX)
  array = np.asarray(image, dtype=np.uint8)
  if array.ndim != 3 or array.shape[2] != 3 or array.size == 0:
    raise ImageError(f'{name} could not be converted to RGB (shape {array.shape})')
  return np.ascontiguousarray(array)
def _to_rgb(image):
  """RGB from any mode; transparency composited on white; wide modes scaled to 8 bits."""
  mode = image.mode
  if mode.startswith('I') or mode == 'F':
    return PIL.Image.fromarray(_wide_to_uint8(np.asarray(image), mode), 'L').convert('RGB')
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


def _wide_to_uint8(array, mode):
  """8-bit gray from 16-bit, 32-bit integer or float pixels, without NaN."""
  array = np.nan_to_num(array.astype(np.float64), nan=0.0, posinf=0.0, neginf=0.0)
  if array.ndim == 3:
    array = array[..., 0]
  top = float(array.max()) if array.size else 0.0
  low = float(array.min()) if array.size else 0.0
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


