"""What a decoder holds, read from an opened image's header: the pieces of
`images.decoded_bytes`, the estimate `devise_jax.images` refuses a file by.

Pillow keeps a pixel in 1, 2 or 4 bytes (`pixel_bytes`); some decoders keep more
copies of the image while they work (`copies`, measured by
experiments/bench/bench_decode.py); a JPEG with several scans (progressive ones) keeps
the whole image's DCT coefficients until its last scan (`jpeg_coefficient_bytes`);
and a few formats are decoded by Pillow in Python, slowly (`slow`).
"""

import numpy as np
import PIL.Image
import PIL.ImageMode

JPEG = ('JPEG', 'MPO')  # MPO: a JPEG holding more pictures (phones' photos).
# Full-size copies of the pixels a decoder holds at once, by format or codec: WebP's
# animation decoder keeps two canvases and hands Pillow a third; AVIF's converts from
# its own planes; BMP's run-length decoder builds the image in a bytearray, then
# copies it. Every other decoder writes into Pillow's image directly.
COPIES = {'WEBP': 4, 'AVIF': 2, 'bmp_rle': 3}


def pixel_bytes(mode):
  """Bytes of one pixel in Pillow's memory: 8-bit images of 2 to 4 bands take 4."""
  base = PIL.ImageMode.getmode(mode)
  size = np.dtype(base.typestr).itemsize * len(base.bands)
  return 4 if len(base.bands) > 1 and size <= 4 else size


def codec(image):
  """The name of the decoder Pillow will use (None when it is chosen on load)."""
  return image.tile[0][0] if image.tile else None


def copies(image):
  return COPIES.get(image.format) or COPIES.get(codec(image), 1)


def slow(image):
  """Whether Pillow decodes the image in Python (QOI, run-length BMP, plain PPM, ...):
  the decoders it registers in `PIL.Image.DECODERS`."""
  return codec(image) in PIL.Image.DECODERS


def jpeg_coefficient_bytes(image, data):
  """The DCT coefficients (2 bytes each) a JPEG of several scans holds: every
  component at its own sampling (4:2:0 colour at a quarter); 0 for a single scan."""
  if not (image.info.get('progressive') or jpeg_scans(data) > 1):
    return 0
  width, height = image.size
  layers = getattr(image, 'layer', None) or [(0, 1, 1, 0)] * len(image.getbands())
  most = max(h * v for _, h, v, _ in layers)
  return width * height * 2 * sum(h * v for _, h, v, _ in layers) // most


def jpeg_scans(data):
  """The number of scans (SOS markers) of the first image of a JPEG file: its marker
  segments are walked to the first scan, the scans counted up to the image's end (the
  entropy-coded data holds no other marker bytes)."""
  pos = 2
  while pos + 4 <= len(data) and data[pos] == 0xFF:
    marker = data[pos + 1]
    if marker == 0xDA:
      end = data.find(b'\xff\xd9', pos)
      return 1 + data.count(b'\xff\xda', pos + 2, end if end >= 0 else len(data))
    if marker == 0xFF:
      pos += 1  # A fill byte.
    elif 0xD0 <= marker <= 0xD8 or marker == 0x01:
      pos += 2  # A marker without a segment.
    else:
      pos += 2 + int.from_bytes(data[pos + 2:pos + 4], 'big')
  return 1
