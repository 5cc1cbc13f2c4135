"""Helpers of the demo tests (tests/test_demo*.py, tests/test_api.py): the demo's
workdir, server and pictures that the session fixtures in tests/conftest.py build once
(`make_demo_workdir`, `serve`, `make_pictures`), and small helpers to call the demo and
compare its answers with the library's."""

import contextlib
import io
import os
import pathlib
import shutil
import socket
import struct
import types
import zlib

import numpy as np
import PIL.Image
import pytest

from devise_jax import checkpoint
from devise_jax import gallery
from devise_jax import run as run_lib
from devise_jax.demo import app
# Re-exported: the test modules take the client from here.
from gradio_client import Client, handle_file  # noqa: F401  pylint: disable=unused-import

ROOT = pathlib.Path(__file__).resolve().parent.parent
# What `devise-jax eval` would have written (the About tab shows it).
EVAL = dict(split='test[:256]', metrics=dict(zsl_top1=0.6125, gzsl_h=0.25, num_images=256))


def free_port():
  with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]


def start(demo, **kwargs):
  """Serves `demo` (`app.serve`: the demo's settings, `kwargs` as `app.launch_kwargs`
  takes them) on a free port of 127.0.0.1, in a thread; returns its URL."""
  port = free_port()
  app.serve(demo, prevent_thread_lock=True, quiet=True, port=port, **kwargs)
  return f'http://127.0.0.1:{port}/'


def make_demo_workdir(evaluated, path):
  """A copy at `path` of the evaluated run `evaluated` (its plots/ are the Results tab),
  with its gallery and the eval.json above; returns the path.

  Its calibration.json goes, so the demo ranks as the reference run's copies in other
  tests do (no gamma)."""
  shutil.copytree(evaluated, path)
  os.remove(os.path.join(path, 'calibration.json'))
  run = run_lib.Run.load(str(path))
  gallery.embed(run)
  checkpoint.save_eval(str(path), dict(EVAL, **{f'{s}_step': n for s, n in run.steps.items()}))
  return str(path)


def load_library(workdir):
  """The library's answers: a Run and a Searcher of the workdir, apart from the demo's."""
  run = run_lib.Run.load(workdir)
  return types.SimpleNamespace(run=run, searcher=gallery.Searcher(run))


def library_labels(library, array, candidates='classes', k=5):
  """The library's top-k labels of one RGB image (what a visitor uploads, decoded)."""
  vector = library.run.devise(library.run.encode_images([array]))[0]
  return library.searcher.labels(vector, candidates, k)


@contextlib.contextmanager
def serve(workdir):
  """The running demo of `workdir` as (url, backend, demo), closed on exit."""
  demo = app.build_app(workdir)
  url = start(demo)
  try:
    yield types.SimpleNamespace(url=url, backend=demo.devise_backend, demo=demo)
  finally:
    demo.close()


def make_pictures(root, backend):
  """Image files for uploads in `root`: gallery images of `backend`, and every awkward
  kind of image; {file name: path}."""
  paths = {}

  def save(name, image, **kwargs):
    paths[name] = str(root / name)
    image.save(paths[name], **kwargs)

  for i in (5, 40):
    save(f'gallery{i}.png', PIL.Image.fromarray(backend.images.get(i)[..., 0], 'L'))
  rng = np.random.default_rng(0)
  rgb = rng.integers(0, 255, (40, 30, 3), dtype=np.uint8)
  save('rgba.png', PIL.Image.fromarray(np.dstack([rgb, np.full((40, 30), 128, np.uint8)]),
                                       'RGBA'))
  save('cmyk.jpg', PIL.Image.fromarray(rgb).convert('CMYK'), quality=95)
  save('i16.png', PIL.Image.fromarray(rng.integers(0, 65535, (30, 30), dtype=np.uint16),
                                      'I;16'))
  save('palette.png', PIL.Image.fromarray(rgb).convert('P'))
  frames = [PIL.Image.new('RGB', (20, 20), c) for c in ('red', 'blue')]
  paths['anim.gif'] = str(root / 'anim.gif')
  frames[0].save(paths['anim.gif'], save_all=True, append_images=frames[1:], duration=50,
                 loop=0)
  exif = PIL.Image.Exif()
  exif[0x0112] = 6  # Orientation: rotate 90 degrees clockwise to display.
  save('exif.jpg', PIL.Image.fromarray(rgb), exif=exif)
  save('one.png', PIL.Image.new('L', (1, 1), 255))
  save('wide.png', PIL.Image.new('L', (100000, 1), 200))
  # Bad files.
  (root / 'text.png').write_text('this is not an image\n' * 10)
  (root / 'empty.png').write_bytes(b'')
  good = io.BytesIO()
  PIL.Image.fromarray(rgb).save(good, 'PNG')
  (root / 'truncated.png').write_bytes(good.getvalue()[:len(good.getvalue()) // 2])
  (root / 'bomb.png').write_bytes(png_header_only(8000, 6000))  # 48 MP.
  for name in ('text.png', 'empty.png', 'truncated.png', 'bomb.png'):
    paths[name] = str(root / name)
  return paths


def png_header_only(width, height):
  """A PNG whose header claims width x height and whose pixel data is a few bytes."""
  def chunk(kind, data):
    return (struct.pack('>I', len(data)) + kind + data
            + struct.pack('>I', zlib.crc32(kind + data) & 0xffffffff))
  return (b'\x89PNG\r\n\x1a\n'
          + chunk(b'IHDR', struct.pack('>IIBBBBB', width, height, 8, 0, 0, 0, 0))
          + chunk(b'IDAT', zlib.compress(b'\x00' * 64)) + chunk(b'IEND', b''))


def rows(table):
  return [dict(zip(table['headers'], row)) for row in table['data']]


def check_images(result_rows, library_rows):
  assert [r['id'] for r in result_rows] == [r['id'] for r in library_rows]
  assert [r['label'] for r in result_rows] == [r['label'] for r in library_rows]
  for got, want in zip(result_rows, library_rows):
    assert got['score'] == pytest.approx(want['score'], abs=1e-4)


def zero_shot(client, image=None, gallery_id=None, candidates='classes', labels='', k=5):
  table, status = client.predict(image, gallery_id, candidates, labels, k,
                                 api_name='/zero_shot')
  return rows(table), status
