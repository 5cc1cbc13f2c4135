"""Cost of the most expensive images the limits of `devise_jax.images` admit.

  .venv/bin/python experiments/bench/bench_decode.py [--repeats 3] [--kinds png,jpeg]

For each kind of file (PNG 8-bit, 16-bit and palette, TIFF float, 16-bit and
compressed, JPEG baseline and progressive, GIF, BMP, WebP, AVIF, QOI) the largest
square image the limits admit is made: as many pixels as MAX_PIXELS and
MAX_DECODED_BYTES allow (the header's estimate, `images.decoded_bytes`), with
photo-like content (a smooth colour field plus the most noise the limits admit:
MAX_BYTES, and MAX_SLOW_BYTES for the formats Pillow decodes in Python; a kind refused
even without noise is made smaller until it passes). Each file is decoded by
`images.decode` in a fresh process, after a small file of the same kind (the codec's
first use is not counted), `--repeats` times: the median wall and CPU time, and the
largest peak of resident memory above the resident memory before the call (Linux's
VmHWM, reset before each call through /proc/self/clear_refs: C allocations count,
which tracemalloc misses). The issue's two files (refused now) come last, then the
kinds that cost the most memory, wall time and CPU time. `--max_decoded_mb` tries
another MAX_DECODED_BYTES.
"""

import argparse
import io
import json
import math
import os
import platform
import struct
import subprocess
import sys
import tempfile
import time
import zlib

import numpy as np
import PIL
import PIL.Image

from devise_jax import images

CHILD = r'''
import json, sys, time
from devise_jax import images

def status(key):
  with open('/proc/self/status') as f:
    return next(int(l.split()[1]) * 1024 for l in f if l.startswith(key))

path, warm, repeats = sys.argv[1], sys.argv[2], int(sys.argv[3])
images.MAX_DECODED_BYTES = int(sys.argv[4])
images.decode(warm)
with open(path, 'rb') as f:
  data = f.read()
times, cpu, peaks, shape = [], [], [], None
for _ in range(repeats):
  with open('/proc/self/clear_refs', 'w') as f:
    f.write('5')  # Resets VmHWM to the current resident memory.
  base = status('VmRSS:')
  start, start_cpu = time.perf_counter(), time.process_time()
  try:
    shape = list(images.decode(data).shape)
  except images.ImageError as e:
    shape = str(e)
  times.append(time.perf_counter() - start)
  cpu.append(time.process_time() - start_cpu)
  peaks.append(status('VmHWM:') - base)
print(json.dumps(dict(times=times, cpu=cpu, peaks=peaks, shape=shape)))
'''


def field(side, noise, seed=0):
  """float32 [side, side, 3] in [0, 255]: a smooth colour field plus uniform noise."""
  rng = np.random.default_rng(seed)
  coarse = rng.integers(0, 256, (5, 5, 3), np.uint8)
  smooth = np.asarray(PIL.Image.fromarray(coarse).resize((side, side), PIL.Image.BICUBIC),
                      np.float32)
  if noise:
    smooth += rng.integers(-noise, noise + 1, (side, side, 1)).astype(np.float32)
  return np.clip(smooth, 0, 255)


def saved(image, fmt, **kwargs):
  buffer = io.BytesIO()
  image.save(buffer, fmt, **kwargs)
  return buffer.getvalue()


def png16(rgb16):
  """A 48-bit RGB PNG written by hand (Pillow writes none): rows of big-endian samples."""
  height, width, _ = rgb16.shape
  raw = np.zeros((height, 1 + width * 6), np.uint8)
  raw[:, 1:] = rgb16.astype('>u2').reshape(height, -1).view(np.uint8)
  def chunk(kind, data):
    return (struct.pack('>I', len(data)) + kind + data
            + struct.pack('>I', zlib.crc32(kind + data) & 0xffffffff))
  return (b'\x89PNG\r\n\x1a\n'
          + chunk(b'IHDR', struct.pack('>IIBBBBB', width, height, 16, 2, 0, 0, 0))
          + chunk(b'IDAT', zlib.compress(raw.tobytes(), 6)) + chunk(b'IEND', b''))


def bmp_rle8(index):
  """An 8-bit run-length-encoded BMP of palette indices [H, W] (Pillow writes none):
  per row, (count, index) pairs of runs of at most 255, then an end-of-row pair."""
  height, width = index.shape
  rows = index[::-1]  # Bottom-up.
  starts = np.ones((height, width), bool)
  starts[:, 1:] = rows[:, 1:] != rows[:, :-1]
  starts[:, ::255] = True  # Runs of at most 255.
  r, c = np.nonzero(starts)
  last = np.append(r[1:] != r[:-1], True)  # The last run of its row.
  ends = np.where(last, width, np.append(c[1:], width))
  runs = np.zeros(2 * len(c) + 2 * height + 2, np.uint8)
  at = 2 * np.arange(len(c)) + 2 * r  # Each earlier row adds its end-of-row pair.
  runs[at], runs[at + 1] = ends - c, rows[r, c]
  runs[-1] = 1  # End of bitmap: 0, 1.
  palette = bytes(b for i in range(256) for b in (i, 255 - i, i // 2, 0))
  info = struct.pack('<IiiHHIIiiII', 40, width, height, 1, 8, 1, len(runs), 2835, 2835,
                     256, 0)
  offset = 14 + len(info) + len(palette)
  return (b'BM' + struct.pack('<IHHI', offset + len(runs), 0, 0, offset) + info + palette
          + runs.tobytes())


def gray(x):
  return x.mean(axis=2)


def with_alpha(x):
  side = x.shape[0]
  alpha = np.linspace(0, 255, side, dtype=np.float32)[None, :, None].repeat(side, 0)
  return np.concatenate([x, alpha], axis=2).astype(np.uint8)


def palette(x, transparent=False):
  image = PIL.Image.fromarray((gray(x) // 4).astype(np.uint8), 'P')
  image.putpalette([v for i in range(64) for v in (4 * i, 255 - 4 * i, 2 * i)])
  if transparent:
    image.info['transparency'] = 0
  return image


# name: x (a `field`) -> file bytes.
KINDS = {
    'PNG RGB 8-bit': lambda x: saved(PIL.Image.fromarray(x.astype(np.uint8)), 'PNG'),
    'PNG RGBA 8-bit': lambda x: saved(PIL.Image.fromarray(with_alpha(x)), 'PNG'),
    'PNG gray 8-bit': lambda x: saved(PIL.Image.fromarray(gray(x).astype(np.uint8)), 'PNG'),
    'PNG palette + transparency': lambda x: saved(palette(x, True), 'PNG',
                                                  transparency=0),
    'PNG gray 16-bit': lambda x: saved(PIL.Image.fromarray(
        (gray(x) * 257).astype(np.uint16)), 'PNG'),
    'PNG RGB 16-bit': lambda x: png16((x * 257).astype(np.uint16)),
    'TIFF float, deflate': lambda x: saved(PIL.Image.fromarray(gray(x) / 255, 'F'), 'TIFF',
                                           compression='tiff_adobe_deflate'),
    'TIFF float, uncompressed': lambda x: saved(PIL.Image.fromarray(gray(x) / 255, 'F'),
                                                'TIFF'),
    'TIFF gray 16-bit, LZW': lambda x: saved(PIL.Image.fromarray(
        (gray(x) * 257).astype(np.uint16)), 'TIFF', compression='tiff_lzw'),
    'TIFF RGB 8-bit, deflate': lambda x: saved(PIL.Image.fromarray(x.astype(np.uint8)),
                                               'TIFF', compression='tiff_adobe_deflate'),
    'TIFF CMYK 8-bit, LZW': lambda x: saved(PIL.Image.fromarray(
        x.astype(np.uint8)).convert('CMYK'), 'TIFF', compression='tiff_lzw'),
    'JPEG baseline 4:2:0': lambda x: saved(PIL.Image.fromarray(x.astype(np.uint8)), 'JPEG',
                                           quality=90),
    'JPEG progressive 4:2:0': lambda x: saved(PIL.Image.fromarray(x.astype(np.uint8)),
                                              'JPEG', quality=90, progressive=True),
    'JPEG progressive 4:4:4': lambda x: saved(PIL.Image.fromarray(x.astype(np.uint8)),
                                              'JPEG', quality=90, progressive=True,
                                              subsampling=0),
    'JPEG progressive CMYK': lambda x: saved(PIL.Image.fromarray(
        x.astype(np.uint8)).convert('CMYK'), 'JPEG', quality=90, progressive=True),
    'GIF': lambda x: saved(palette(x), 'GIF'),
    'BMP RGB 24-bit': lambda x: saved(PIL.Image.fromarray(x.astype(np.uint8)), 'BMP'),
    'BMP RLE8': lambda x: bmp_rle8((gray(x) // 4).astype(np.uint8)),
    'BMP RLE8, long runs': lambda x: bmp_rle8((gray(x) // 64).astype(np.uint8)),
    'WebP lossy': lambda x: saved(PIL.Image.fromarray(x.astype(np.uint8)), 'WEBP',
                                  quality=90),
    'WebP lossless': lambda x: saved(PIL.Image.fromarray(x.astype(np.uint8)), 'WEBP',
                                     lossless=True),
    'WebP lossless RGBA': lambda x: saved(PIL.Image.fromarray(with_alpha(x)), 'WEBP',
                                          lossless=True),
    'AVIF': lambda x: saved(PIL.Image.fromarray(x.astype(np.uint8)), 'AVIF', quality=90),
    'QOI': lambda x: saved(PIL.Image.fromarray(x.astype(np.uint8)), 'QOI'),
}


def largest_side(make):
  """The largest square side the pixel and decoded-bytes limits admit for a kind,
  from its header estimate: a small file's opened image, its size set to each side
  tried (the estimate reads only the header, the mode and the file's markers)."""
  data = make(field(64, 4))
  lo, hi = 1, math.isqrt(images.MAX_PIXELS)
  with PIL.Image.open(io.BytesIO(data)) as image:
    while lo < hi:
      side = (lo + hi + 1) // 2
      image._size = (side, side)  # pylint: disable=protected-access
      if images.decoded_bytes(image, data) <= images.MAX_DECODED_BYTES:
        lo = side
      else:
        hi = side - 1
  return lo


def admitted_file(make, side):
  """(file bytes, side, noise): the most noise the limits admit (MAX_BYTES, and
  MAX_SLOW_BYTES for Python's decoders); a smaller side if even none is refused."""
  while True:
    for noise in (16, 8, 4, 2, 1, 0):
      data = make(field(side, noise))
      try:
        images.size(data)
        return data, side, noise
      except images.ImageError:
        pass
    side = int(side * 0.8)


def measure(data, warm, repeats):
  with tempfile.TemporaryDirectory() as tmp:
    path, small = f'{tmp}/image', f'{tmp}/warm'
    with open(path, 'wb') as f:
      f.write(data)
    with open(small, 'wb') as f:
      f.write(warm)
    out = subprocess.run([sys.executable, '-c', CHILD, path, small, str(repeats),
                          str(images.MAX_DECODED_BYTES)], capture_output=True, text=True,
                         check=True)
  return json.loads(out.stdout)


def row(name, data, side, note, result):
  with PIL.Image.open(io.BytesIO(data)) as image:
    estimate = images.decoded_bytes(image, data) / 2**20
  shape = result['shape']
  outcome = 'x'.join(map(str, shape[:2])) if isinstance(shape, list) else 'refused'
  return (f'| {name} | {side}x{side} ({side * side / 1e6:.1f} MP){note} | '
          f'{len(data) / 2**20:.2f} | {estimate:.0f} | {outcome} | '
          f'{np.median(result["times"]):.3f} | {np.median(result["cpu"]):.3f} | '
          f'{max(result["peaks"]) / 2**20:.0f} |')


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument('--repeats', type=int, default=3)
  parser.add_argument('--kinds', default='', help='comma-separated name fragments')
  parser.add_argument('--max_decoded_mb', type=int, default=images.MAX_DECODED_BYTES >> 20,
                      help='MAX_DECODED_BYTES to try, in MB (default: the limit)')
  args = parser.parse_args()
  images.MAX_DECODED_BYTES = args.max_decoded_mb << 20
  wanted = [k for k in KINDS if not args.kinds or any(
      w.lower() in k.lower() for w in args.kinds.split(','))]
  print(f'{time.strftime("%Y-%m-%d")}, {platform.node()}, {platform.processor() or "cpu"}, '
        f'python {platform.python_version()}, Pillow {PIL.__version__}, numpy '
        f'{np.__version__}; limits: {images.MAX_PIXELS / 1e6:.0f} MP, '
        f'{images.MAX_DECODED_BYTES // 2**20} MB decoded, {images.MAX_BYTES // 2**20} MB '
        f'file; load average {os.getloadavg()[0]:.1f}\n')
  print('| kind | size | file MB | estimate MB | decoded to | median s | CPU s | peak MB |')
  print('|---|---|---|---|---|---|---|---|')
  worst = []
  for name in wanted:
    make = KINDS[name]
    data, side, noise = admitted_file(make, largest_side(make))
    result = measure(data, make(field(16, 4)), args.repeats)
    line = row(name, data, side, f', noise {noise}', result)
    print(line, flush=True)
    worst.append((max(result['peaks']), np.median(result['times']),
                  np.median(result['cpu']), line))
  # The issue's files: 6300 x 6300, float TIFF and 16-bit PNG of a smooth field.
  issue = {'issue: float TIFF': KINDS['TIFF float, deflate'],
           'issue: 16-bit PNG': KINDS['PNG gray 16-bit']}
  for name, make in issue.items():
    data = make(np.round(field(6300, 0) / 64) * 64)  # Few values: a small file.
    print(row(name, data, 6300, '', measure(data, make(field(16, 4)), args.repeats)))
  if worst:
    print(f'\nmost memory: {max(worst, key=lambda w: w[0])[3]}')
    print(f'slowest: {max(worst, key=lambda w: w[1])[3]}')
    print(f'most CPU: {max(worst, key=lambda w: w[2])[3]}')


if __name__ == '__main__':
  main()
