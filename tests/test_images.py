"""The one image decoder (`devise_jax.images`) over a table of odd and bad files.

Every file is made here (PNGs written byte by byte where Pillow would not write the
format) and every expectation is computed apart from the decoder: the 16-bit image
against its 8-bit source, transparency against a numpy composite on white, the palette
against a numpy lookup, EXIF rotation against `np.rot90`.
"""

import io
import struct
import zlib

import numpy as np
import PIL.Image
import PIL.ImageFile
import pytest

from devise_jax import images

RNG = np.random.default_rng(0)
RGB = RNG.integers(0, 256, (12, 9, 3), dtype=np.uint8)
GRAY = RNG.integers(0, 256, (12, 9), dtype=np.uint8)
ALPHA = RNG.integers(0, 256, (12, 9), dtype=np.uint8)


def png(array, bit_depth, color_type, width=None, height=None):
  """A PNG written by hand: rows of big-endian samples, filter 0, one IDAT."""
  height = array.shape[0] if height is None else height
  width = array.shape[1] if width is None else width
  dtype = '>u2' if bit_depth == 16 else 'u1'
  raw = b''.join(b'\0' + row.astype(dtype).tobytes() for row in array)

  def chunk(kind, data):
    return (struct.pack('>I', len(data)) + kind + data
            + struct.pack('>I', zlib.crc32(kind + data) & 0xffffffff))
  return (b'\x89PNG\r\n\x1a\n'
          + chunk(b'IHDR', struct.pack('>IIBBBBB', width, height, bit_depth, color_type,
                                       0, 0, 0))
          + chunk(b'IDAT', zlib.compress(raw)) + chunk(b'IEND', b''))


def bomb(side):
  """A real side x side 8-bit gray PNG of zeros: a few KB compressed, side^2 decoded."""
  compressor = zlib.compressobj(9)
  row = b'\0' * (side + 1)
  data = b''.join(compressor.compress(row) for _ in range(side)) + compressor.flush()
  head = png(np.zeros((1, 1), np.uint8), 8, 0, width=side, height=side)
  idat = head.index(b'IDAT') - 4
  chunk = (struct.pack('>I', len(data)) + b'IDAT' + data
           + struct.pack('>I', zlib.crc32(b'IDAT' + data) & 0xffffffff))
  return head[:idat] + chunk + head[-12:]


def saved(image, fmt='PNG', **kwargs):
  buffer = io.BytesIO()
  image.save(buffer, fmt, **kwargs)
  return buffer.getvalue()


def on_white(rgb, alpha):
  a = alpha[..., None].astype(np.float64) / 255.0
  return rgb.astype(np.float64) * a + 255.0 * (1.0 - a)


def gray3(gray):
  return np.repeat(np.asarray(gray, np.float64)[..., None], 3, axis=2)


def palette_file():
  palette = RNG.integers(0, 256, (16, 3), dtype=np.uint8)
  index = RNG.integers(0, 16, (12, 9), dtype=np.uint8)
  image = PIL.Image.fromarray(index, 'P')
  image.putpalette(palette.flatten().tolist())
  return saved(image), palette[index]


def exif_file():
  exif = PIL.Image.Exif()
  exif[0x0112] = 6  # Orientation: rotate 90 degrees clockwise to display.
  return saved(PIL.Image.fromarray(RGB), exif=exif), np.rot90(RGB, k=-1)


def animated_file():
  frames = [PIL.Image.new('RGB', (5, 4), c) for c in ((255, 0, 0), (0, 0, 255))]
  return (saved(frames[0], 'GIF', save_all=True, append_images=frames[1:], duration=50,
                loop=0), np.broadcast_to(np.array([255, 0, 0]), (4, 5, 3)))


def cmyk_file():
  cmy = RNG.integers(0, 256, (12, 9, 3), dtype=np.uint8)
  cmyk = np.dstack([cmy, np.zeros((12, 9), np.uint8)])  # No black: R = 255 - C, ...
  return saved(PIL.Image.fromarray(cmyk, 'CMYK'), 'TIFF'), 255 - cmy


_palette, _exif, _animated, _cmyk = palette_file(), exif_file(), animated_file(), cmyk_file()
WIDE = RNG.integers(0, 65536, (12, 9), dtype=np.uint16)
# Images of more than one band of rows (`images._BAND_BYTES`), under MAX_SIDE a side.
BIG_RGB = RNG.integers(0, 256, (700, 1000, 3), dtype=np.uint8)
BIG_ALPHA = RNG.integers(0, 256, (700, 1000), dtype=np.uint8)
BIG_WIDE = RNG.integers(0, 65536, (700, 1000), dtype=np.uint16)
BIG_FLOAT = RNG.normal(0, 1000, (700, 1000)).astype(np.float32)
BIG_FLOAT[699, 999] = np.nan  # 0, inside the range, which the last band alone holds:
BIG_FLOAT[0, 0], BIG_FLOAT[699, 0] = -5000.0, 7000.0  # one range over every band.


def stretched(values, low, top):
  return np.nan_to_num(values.astype(np.float64) - low) * 255.0 / (top - low)

# name: (file bytes, expected RGB array; compared within 1 grey level).
GOOD = {
    'rgb 8-bit png': (png(RGB, 8, 2), RGB),
    'gray 16-bit png = its 8-bit source': (png(GRAY.astype(np.uint16) * 257, 16, 0),
                                          gray3(GRAY)),
    'gray 16-bit png, any values': (png(WIDE, 16, 0), gray3(WIDE / 257.0)),
    'rgb 16-bit png = its 8-bit source': (png(RGB.astype(np.uint16) * 257, 16, 2), RGB),
    'rgba png on white': (png(np.dstack([RGB, ALPHA]), 8, 6), on_white(RGB, ALPHA)),
    'gray+alpha png on white': (png(np.dstack([GRAY, ALPHA]), 8, 4),
                                on_white(gray3(GRAY), ALPHA)),
    '1-bit': (saved(PIL.Image.fromarray(GRAY > 127)), gray3((GRAY > 127) * 255)),
    'palette': _palette,
    'cmyk tiff': _cmyk,
    'exif orientation 6': _exif,
    'animated gif: first frame': _animated,
    'float tiff in [0, 1]': (saved(PIL.Image.fromarray((GRAY / 255.0).astype(np.float32),
                                                       'F'), 'TIFF'), gray3(GRAY)),
    'float tiff of NaN': (saved(PIL.Image.fromarray(np.full((3, 3), np.nan, np.float32),
                                                    'F'), 'TIFF'), np.zeros((3, 3, 3))),
    'small qoi (decoded by Python code)': (saved(PIL.Image.fromarray(RGB), 'QOI'), RGB),
    'rgba png in bands': (png(np.dstack([BIG_RGB, BIG_ALPHA]), 8, 6),
                          on_white(BIG_RGB, BIG_ALPHA)),
    'gray 16-bit png in bands': (png(BIG_WIDE, 16, 0), gray3(BIG_WIDE / 257.0)),
    'float tiff in bands, stretched over all of them': (
        saved(PIL.Image.fromarray(BIG_FLOAT, 'F'), 'TIFF'),
        gray3(np.where(np.isnan(BIG_FLOAT), 5000 * 255 / 12000,
                       stretched(BIG_FLOAT, -5000.0, 7000.0)))),
}

# name: (file bytes or a path-like string, a phrase the one-line error must contain).
BAD = {
    'empty file': (b'', 'empty file'),
    'text': (b'this is not an image\n' * 10, 'not an image file'),
    'truncated png': (png(RGB, 8, 2)[:60], 'truncated or corrupt'),
    'corrupt png data': (png(RGB, 8, 2)[:45] + b'\x13' * 40 + png(RGB, 8, 2)[85:],
                         'truncated or corrupt'),
    'truncated jpeg': (saved(PIL.Image.fromarray(RGB), 'JPEG')[:200], 'truncated or corrupt'),
    'header says 10000x10000': (png(np.zeros((1, 1), np.uint8), 8, 0, 10000, 10000),
                                'the limit is 40 megapixels'),
    'header says 30000x30000': (png(np.zeros((1, 1), np.uint8), 8, 0, 30000, 30000),
                                'too many pixels'),
    'over the byte limit': (b'\x89PNG' + b'\0' * images.MAX_BYTES, 'larger than 10 MB'),
    '16-bit png of 6300x6300 (the issue\'s)': (
        png(np.zeros((1, 1), np.uint16), 16, 0, 6300, 6300),
        '(6300x6300 PNG I;16) would take 76 MB to decode; the limit is 32 MB'),
    'float tiff of 3000x3000': (
        saved(PIL.Image.new('F', (3000, 3000)), 'TIFF', compression='tiff_adobe_deflate'),
        '(3000x3000 TIFF F) would take 34 MB to decode; the limit is 32 MB'),
    'qoi of 750 KB': (saved(PIL.Image.fromarray(RNG.integers(0, 256, (500, 500, 3),
                                                             dtype=np.uint8)), 'QOI'),
                      'which Pillow decodes slowly; the limit for it is 256 KB'),
    'progressive jpeg of 2400x2400': (
        saved(PIL.Image.new('RGB', (2400, 2400)), 'JPEG', progressive=True, subsampling=0),
        '(2400x2400 JPEG RGB) would take 38 MB to decode'),
    'http url': ('http://127.0.0.1:9/cat.png', 'is a URL'),
    'https url': ('HTTPS://example.com/cat.png', 'is a URL'),
    'ftp url': ('ftp://example.com/cat.png', 'is a URL'),
    'file url': ('file:///etc/hostname', 'is a URL'),
    'data url': ('data:image/png;base64,iVBORw0KGgo=', 'is a URL'),
    'missing file': ('/nonexistent/cat.png', 'does not exist'),
    'a directory': ('/', 'is a directory'),
}


@pytest.mark.parametrize('name', list(GOOD))
def test_odd_files_decode_as_expected(name, tmp_path):
  data, want = GOOD[name]
  path = tmp_path / 'image'
  path.write_bytes(data)
  for source in (data, str(path), io.BytesIO(data)):
    got = images.decode(source)
    assert got.dtype == np.uint8 and got.shape == np.shape(want), name
    assert np.abs(got.astype(np.float64) - want).max() <= 1.0, name


@pytest.mark.parametrize('name', list(BAD))
def test_bad_files_are_refused_in_one_line(name, tmp_path):
  data, phrase = BAD[name]
  if isinstance(data, bytes):
    path = tmp_path / 'image.png'
    path.write_bytes(data)
    sources = [data, str(path)]
  else:
    sources = [data]
  for source in sources:
    with pytest.raises(images.ImageError) as error:
      images.decode(source, name='--images x')
    message = str(error.value)
    assert phrase in message and '\n' not in message and message.startswith('--images x')
    assert isinstance(error.value, ValueError)  # The CLI prints ValueErrors as one line.


def test_a_decompression_bomb_is_refused_before_any_pixel_is_decoded(monkeypatch):
  data = bomb(10000)  # 100 MP of zeros in a few KB.
  assert len(data) < 200_000
  wide = png(np.zeros((1, 1), np.uint16), 16, 0, 6000, 6000)  # 36 MP, 69 MB decoded.

  def no_decoding(*args, **kwargs):
    raise AssertionError('pixels were decoded')
  monkeypatch.setattr(PIL.ImageFile.ImageFile, 'load', no_decoding)
  with pytest.raises(images.ImageError, match='megapixels'):
    images.decode(data)
  with pytest.raises(images.ImageError, match='would take 69 MB to decode'):
    images.decode(wide)


def test_what_a_decode_holds_is_estimated_from_the_header():
  """Pixels x bytes a pixel as Pillow holds them (x the copies WebP's decoder keeps);
  a JPEG at its DCT scale, plus, with several scans, 2 bytes a coefficient."""
  def cost(data):
    with PIL.Image.open(io.BytesIO(data)) as image:
      return images.decoded_bytes(image, data)
  gray = np.zeros((50, 100), np.uint8)
  rgb = np.zeros((50, 100, 3), np.uint8)
  assert cost(png(gray, 8, 0)) == 100 * 50
  assert cost(png(gray, 16, 0)) == 100 * 50 * 2
  assert cost(png(rgb, 8, 2)) == cost(png(rgb, 16, 2)) == 100 * 50 * 4
  assert cost(saved(PIL.Image.fromarray(gray.astype(np.float32), 'F'), 'TIFF')) == 20000
  assert cost(saved(PIL.Image.fromarray(rgb), 'WEBP')) == 100 * 50 * 4 * 4
  jpeg = lambda size, **kw: saved(PIL.Image.new('RGB', size), 'JPEG', **kw)
  assert cost(jpeg((100, 50))) == 100 * 50 * 4
  assert cost(jpeg((8192, 2048))) == 4096 * 1024 * 4  # At 1/2: the short side's 1024.
  # Y at full resolution, Cb and Cr at a quarter (4:2:0), or all three at full (4:4:4).
  assert cost(jpeg((64, 64), progressive=True)) == 64 * 64 * (4 + 2 * 6 // 4)
  assert cost(jpeg((64, 64), progressive=True, subsampling=0)) == 64 * 64 * (4 + 2 * 3)
  exif = PIL.Image.Exif()
  exif[0x0112] = 6  # An EXIF block holding a thumbnail's markers is not a second scan.
  assert cost(saved(PIL.Image.new('RGB', (64, 64)), 'JPEG', exif=exif)) == 64 * 64 * 4


@pytest.mark.parametrize('mode', ['RGBA', 'I;16', 'P'])
def test_large_images_are_reduced_band_by_band_to_box_means(mode):
  """4096 x 300: reduced 4 x 4 (to 1024 x 75) a band at a time, against numpy's means
  of 4 x 4 blocks of the image composited on white (or scaled to 8 bits)."""
  rng = np.random.default_rng(1)
  rgb = rng.integers(0, 256, (300, 4096, 3), dtype=np.uint8)
  alpha = rng.integers(0, 256, (300, 4096), dtype=np.uint8)
  index = rng.integers(0, 16, (300, 4096), dtype=np.uint8)
  palette = rng.integers(0, 256, (16, 3), dtype=np.uint8)
  if mode == 'RGBA':
    data, full = png(np.dstack([rgb, alpha]), 8, 6), on_white(rgb, alpha)
  elif mode == 'I;16':
    wide = rgb[..., 0].astype(np.uint16) * 257 + 100
    data, full = png(wide, 16, 0), gray3(np.rint(wide / 257.0))
  else:  # Palette, colour 3 transparent.
    image = PIL.Image.fromarray(index, 'P')
    image.putpalette(palette.flatten().tolist())
    data = saved(image, transparency=3)
    full = np.where((index == 3)[..., None], 255.0, palette[index])
  full = np.rint(full)  # The 8-bit image the blocks are averaged over.
  want = full.reshape(75, 4, 1024, 4, 3).mean(axis=(1, 3))
  got = images.decode(data)
  assert got.shape == (75, 1024, 3)
  assert np.abs(got - want).max() <= 1.0


def test_large_images_are_shrunk_to_the_side_limit():
  wide = saved(PIL.Image.new('L', (images.MAX_SIDE * 4, 2), 200))
  got = images.decode(wide)
  assert got.shape == (1, images.MAX_SIDE, 3) and (got == 200).all()


@pytest.mark.parametrize('value, is_url', [
    ('http://x/y.png', True), (' https://x', True), ('Data:image/png,abc', True),
    ('s3://bucket/key', True), ('cat.png', False), ('/tmp/http:/x.png', False),
    ('C:\\pictures\\cat.png', False), ('./data:x.png', False)])
def test_urls_are_told_apart_from_paths(value, is_url):
  assert images.is_url(value) is is_url


def test_every_entry_point_uses_this_decoder():
  """The demo (and its REST API) re-export this module's decoder; the CLI and the
  galleries call it: no second decoder is left."""
  from devise_jax import gallery  # pylint: disable=import-outside-toplevel
  from devise_jax.demo import images as demo_images  # pylint: disable=import-outside-toplevel
  assert demo_images.decode is images.decode and demo_images.ImageError is images.ImageError
  assert demo_images.MAX_PIXELS == images.MAX_PIXELS and not hasattr(gallery, 'read_image')
