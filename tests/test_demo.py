"""The Gradio demo over HTTP: endpoints against the library, bad inputs, file serving.

One server for the module (a copy of the tiny reference run with its gallery), called
through `gradio_client` as a user of the API would; every answer is compared with the
library's (`library`: a Run and a Searcher of the same workdir, loaded apart from the
demo's).
"""

import configparser
import contextlib
import io
import os
import pathlib
import shutil
import socket
import struct
import subprocess
import sys
import types
import zlib

import gradio as gr
import httpx
import numpy as np
import PIL.Image
import pytest

from devise_jax import checkpoint
from devise_jax import gallery
from devise_jax import run as run_lib
from devise_jax.demo import about
from devise_jax.demo import app
from devise_jax.demo import handlers
from devise_jax.demo import images

gradio_client = pytest.importorskip('gradio_client')
from gradio_client import Client, handle_file  # pylint: disable=wrong-import-position

ROOT = pathlib.Path(__file__).resolve().parent.parent
# What `devise-jax eval` would have written (the About tab shows it).
EVAL = dict(split='test[:256]', metrics=dict(zsl_top1=0.6125, gzsl_h=0.25, num_images=256))


def free_port():
  with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]


def start(demo, **kwargs):
  """Launches `demo` on a free port of 127.0.0.1 (in a thread); returns its URL."""
  kwargs = dict(app.launch_kwargs(demo, port=free_port(), **kwargs))
  demo.launch(prevent_thread_lock=True, quiet=True, **kwargs)
  return f"http://127.0.0.1:{kwargs['server_port']}/"


@pytest.fixture(scope='module')
def demo_workdir(reference_run, tmp_path_factory):
  _, reference, _ = reference_run
  path = tmp_path_factory.mktemp('demo') / 'run'
  shutil.copytree(reference, path)
  run = run_lib.Run.load(str(path))
  gallery.embed(run)
  checkpoint.save_eval(str(path), dict(EVAL, **{f'{s}_step': n for s, n in run.steps.items()}))
  return str(path)


@pytest.fixture(scope='module')
def library(demo_workdir):
  """The library's answers: a Run and a Searcher of the workdir, apart from the demo's."""
  run = run_lib.Run.load(demo_workdir)
  return types.SimpleNamespace(run=run, searcher=gallery.Searcher(run))


def library_labels(library, array, candidates='classes', k=5):
  """The library's top-k labels of one RGB image (what a visitor uploads, decoded)."""
  vector = library.run.devise(library.run.encode_images([array]))[0]
  return library.searcher.labels(vector, candidates, k)


@pytest.fixture(scope='module')
def server(demo_workdir):
  """The running demo (url, backend, demo), until the module's tests are done."""
  demo = app.build_app(demo_workdir)
  url = start(demo)
  yield types.SimpleNamespace(url=url, backend=demo.devise_backend, demo=demo)
  demo.close()


@pytest.fixture(scope='module')
def client(server):
  return Client(server.url, verbose=False, download_files=False)


@pytest.fixture(scope='module')
def pictures(tmp_path_factory, server):
  """Image files for uploads: gallery images, and every awkward kind of image."""
  backend = server.backend
  root = tmp_path_factory.mktemp('pictures')
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


# The endpoints answer what the library answers.


def check_labels(result_rows, library_rows):
  assert [(r['label'], r['unseen']) for r in result_rows] == [
      (w['label'], w['unseen']) for w in library_rows]
  for got, want in zip(result_rows, library_rows):
    assert got['score'] == pytest.approx(want['score'], abs=1e-4)


def test_zero_shot_matches_the_library(library, client, pictures):
  searcher = library.searcher
  # A gallery image by id: the gallery's stored vector.
  got, status = zero_shot(client, gallery_id=12, k=10)
  want = searcher.labels(searcher.gallery['devise'][12], 'classes', 10)
  assert [r['label'] for r in got] == [w['label'] for w in want]
  assert [r['unseen'] for r in got] == [w['unseen'] for w in want]
  # All 10 classes are shown: the unseen ones are exactly the run's unseen classes.
  assert len(got) == len(searcher.names) and len(library.run.unseen)
  assert {r['label'] for r in got if r['unseen']} == {searcher.names[i]
                                                      for i in library.run.unseen}
  for r, w in zip(got, want):
    assert r['score'] == pytest.approx(w['score'], abs=1e-4)
  assert 'gallery image #12' in status
  # An uploaded image: the library's own embedding of the same pixels.
  got, status = zero_shot(client, handle_file(pictures['gallery5.png']), k=3)
  check_labels(got, library_labels(library, images.decode(pictures['gallery5.png']),
                                   k=3))
  assert 'the uploaded image' in status
  # The whole vocabulary, and a typed list (an unknown word is skipped, and said so).
  got, status = zero_shot(client, gallery_id=12, candidates='vocab', k=5)
  check_labels(got, searcher.labels(searcher.gallery['devise'][12], 'vocab', 5))
  assert f'all {len(searcher.kv.index_to_key):,} words' in status
  got, status = zero_shot(client, gallery_id=12, candidates='list',
                          labels='boot, shirt,\nsandal, qwxzzy, boot', k=5)
  want = searcher.labels(searcher.gallery['devise'][12], ['boot', 'shirt', 'sandal'], 5)
  assert [(r['label'], r['unseen']) for r in got] == [(w['label'], w['unseen']) for w in want]
  assert "qwxzzy" in status and 'no word vector' in status


def test_search_words_matches_the_library(library, client):
  searcher = library.searcher
  grid, table, status = client.predict(word_1='boot', weight_1=1.0, word_2='sandal',
                                       weight_2=-0.5, k=6, api_name='/search_words')
  want = searcher.words_to_images(['boot', 'sandal'], [1.0, -0.5], 6)
  check_images(rows(table), want)
  assert len(grid) == 6
  assert all(f"#{w['id']} {w['label']}" in g['caption'] for g, w in zip(grid, want))
  assert '+1 × boot -0.5 × sandal' in status


def test_similar_matches_the_library(library, client, pictures):
  searcher = library.searcher
  for space in ('siamese', 'devise'):
    _, table, status = client.predict(None, 7, space, 5, api_name='/similar')
    want = searcher.similar(searcher.gallery[space][7], space, 5, exclude_ids=[7])
    check_images(rows(table), want)
    assert 7 not in [r['id'] for r in rows(table)]
    assert f'gallery image #7 ({searcher.meta["label_names"][7]}) in {space}' in status
  _, table, _ = client.predict(handle_file(pictures['gallery40.png']), None, 'siamese', 5,
                               api_name='/similar')
  array = images.decode(pictures['gallery40.png'])
  vector = library.run.siamese(library.run.encode_images([array]))[0]
  check_images(rows(table), searcher.similar(vector, 'siamese', 5))


def test_algebra_matches_the_library(library, client, pictures):
  searcher = library.searcher
  g = searcher.gallery
  inputs, grid, table, status = client.predict(
      image_1=None, gallery_id_1=3, sign_1='+', weight_1=1.0,
      image_2=None, gallery_id_2=40, sign_2='-', weight_2=0.5,
      image_3=None, gallery_id_3=-1, sign_3='+', weight_3=1.0,
      image_4=None, gallery_id_4=None, sign_4='+', weight_4=1.0,
      words='boot', word_weights='0.5', space='devise', k=5, api_name='/algebra')
  want = searcher.algebra([g['devise'][3], g['devise'][40]], [1.0, -0.5], ['boot'], [0.5],
                          'devise', 5, exclude_ids=[3, 40])
  check_images(rows(table), want)
  assert [i['caption'] for i in inputs] == ['+1 × #3 ' + searcher.meta['label_names'][3],
                                            '-0.5 × #40 ' + searcher.meta['label_names'][40]]
  assert len(grid) == 5 and '"boot"' in status
  # An upload and a gallery image, Siamese space.
  _, _, table, _ = client.predict(
      handle_file(pictures['gallery5.png']), None, '+', 1.0, None, 12, '+', 1.0,
      None, None, '+', 1.0, None, None, '+', 1.0, '', '', 'siamese', 4, api_name='/algebra')
  upload = searcher.embed_images([images.decode(pictures['gallery5.png'])])[1][0]
  want = searcher.algebra([upload, g['siamese'][12]], [1.0, 1.0], space='siamese', k=4,
                          exclude_ids=[12])
  check_images(rows(table), want)


# Awkward images work; bad inputs are clear errors and the server keeps serving.


@pytest.mark.parametrize('name', ['rgba.png', 'cmyk.jpg', 'i16.png', 'palette.png',
                                  'anim.gif', 'exif.jpg', 'one.png', 'wide.png'])
def test_awkward_images_are_predicted(library, client, pictures, name):
  """The demo's answer is the library's for the same pixels, as `images.decode` reads
  them (the decoding itself is checked in test_image_decoding_details)."""
  got, status = zero_shot(client, handle_file(pictures[name]), k=3)
  decoded = images.decode(pictures[name])
  assert decoded.dtype == np.uint8 and decoded.ndim == 3 and decoded.shape[2] == 3
  check_labels(got, library_labels(library, decoded, k=3))
  assert 'the uploaded image' in status


def test_requests_do_not_recompile(server, client, pictures):
  """Uploads of any size reuse the run's compiled embedders (one trace per function)."""
  zero_shot(client, handle_file(pictures['rgba.png']), k=3)
  client.predict(handle_file(pictures['exif.jpg']), None, 'siamese', 3, api_name='/similar')
  traces = dict(server.backend.run.traces)
  for name in ('one.png', 'wide.png', 'cmyk.jpg'):
    zero_shot(client, handle_file(pictures[name]), k=3)
    client.predict(handle_file(pictures[name]), None, 'siamese', 3, api_name='/similar')
  assert dict(server.backend.run.traces) == traces
  assert traces['encode'] == 1 and traces['devise'] == 1


BAD_INPUTS = [
    ('zero_shot', dict(image='text.png'), 'not an image'),
    ('zero_shot', dict(image='empty.png'), 'empty'),
    ('zero_shot', dict(image='truncated.png'), 'truncated or corrupt'),
    ('zero_shot', dict(image='bomb.png'), 'megapixels'),
    ('zero_shot', dict(), 'upload an image or pick one'),
    ('zero_shot', dict(gallery_id=99999), 'not in the gallery'),
    ('zero_shot', dict(gallery_id=1, candidates='list', labels=' , ,'), 'label list is empty'),
    ('zero_shot', dict(gallery_id=1, candidates='list',
                       labels=','.join(f'w{i}' for i in range(10000))), 'limit is 1,000'),
    ('zero_shot', dict(gallery_id=1, candidates='list', labels='qwxzzy, zzqqxw'),
     'none of the labels has a word vector'),
    ('zero_shot', dict(gallery_id=1, candidates='everything'), 'not in the list of choices'),
    ('zero_shot', dict(gallery_id=1, k=0), 'less than minimum'),
    ('search_words', dict(word_1='qwxzzy'), "no word vector for 'qwxzzy'"),
    ('search_words', dict(word_1='boot', weight_1=1.0, word_2='boot', weight_2=-1.0),
     'cancel'),
    ('search_words', dict(word_1='  '), 'type a word'),
    ('similar', dict(image='text.png'), 'not an image'),
    ('similar', dict(gallery_id=3, space='pixels'), 'not in the list of choices'),
    ('algebra', dict(gallery_id_1=7, gallery_id_2=7, sign_2='-'), 'cancel'),
    ('algebra', dict(gallery_id_1=7), 'second image'),
    ('algebra', dict(gallery_id_1=7, gallery_id_2=9, words='boot'), 'devise space'),
    ('algebra', dict(gallery_id_1=7, gallery_id_2=9, words='boot, qwxzzy',
                     space='devise'), "no word vector for 'qwxzzy'"),
    ('algebra', dict(gallery_id_1=7, gallery_id_2=9, words='boot', word_weights='1, 2',
                     space='devise'), 'word weight'),
    ('algebra', dict(image_1='bomb.png', gallery_id_2=9), 'megapixels'),
    ('algebra', dict(), 'add at least one image'),
]


def call(client, endpoint, pictures, **kwargs):
  for key, value in kwargs.items():
    if key.startswith('image') and value:
      kwargs[key] = handle_file(pictures[value])
  if endpoint == 'zero_shot':
    args = dict(image=None, gallery_id=None, candidates='classes', labels='', k=5)
  elif endpoint == 'search_words':
    args = dict(word_1='', weight_1=1.0, word_2='', weight_2=1.0, k=5)
  elif endpoint == 'similar':
    args = dict(image=None, gallery_id=None, space='siamese', k=5)
  else:
    args = {f'{p}_{n}': v for n in range(1, 5) for p, v in (
        ('image', None), ('gallery_id', -1), ('sign', '+'), ('weight', 1.0))}
    args.update(words='', word_weights='', space='siamese', k=5)
  args.update(kwargs)
  return client.predict(api_name=f'/{endpoint}', **args)


@pytest.mark.parametrize('endpoint,kwargs,message', BAD_INPUTS,
                         ids=[f'{e}-{m[:20]}' for e, _, m in BAD_INPUTS])
def test_bad_inputs_are_clear_errors(client, pictures, endpoint, kwargs, message):
  with pytest.raises(gradio_client.exceptions.AppError) as info:
    call(client, endpoint, pictures, **kwargs)
  text = str(info.value)
  assert message in text
  assert 'Traceback' not in text and '.py' not in text
  # The server keeps serving.
  got, _ = zero_shot(client, gallery_id=2, k=2)
  assert len(got) == 2


def test_uploads_over_the_limit_are_refused(server):
  url = server.url
  big = b'\0' * (11 * 1024 * 1024)
  response = httpx.post(f'{url}gradio_api/upload', files={'files': ('big.png', big)},
                        timeout=60)
  assert response.status_code == 413
  response = httpx.post(f'{url}gradio_api/queue/join', content=b'{' + b' ' * (20 * 2**20),
                        headers={'content-type': 'application/json'}, timeout=60)
  assert response.status_code == 413


def test_image_decoding_details(pictures):
  rgba = np.zeros((4, 4, 4), np.uint8)  # Transparent black: white once composited.
  buffer = io.BytesIO()
  PIL.Image.fromarray(rgba, 'RGBA').save(buffer, 'PNG')
  assert (images.decode(buffer.getvalue()) == 255).all()
  gray16 = np.array([[0, 32896, 65535]], np.uint16)
  buffer = io.BytesIO()
  PIL.Image.fromarray(gray16, 'I;16').save(buffer, 'PNG')
  assert images.decode(buffer.getvalue())[0, :, 0].tolist() == [0, 128, 255]
  frame = images.decode(pictures['anim.gif'])
  assert tuple(frame[0, 0]) == (255, 0, 0)  # The first (red) frame.
  assert images.decode(pictures['exif.jpg']).shape == (30, 40, 3)  # Rotated.
  assert images.decode(pictures['wide.png']).shape == (1, images.MAX_SIDE, 3)
  assert images.decode(pictures['one.png']).shape == (1, 1, 3)
  assert images.decode(pictures['cmyk.jpg']).shape == (40, 30, 3)
  with pytest.raises(images.ImageError, match='too many pixels'):
    images.decode(png_header_only(30000, 30000))  # Above Pillow's own limit.
  nan = np.full((3, 3), np.nan, np.float32)
  buffer = io.BytesIO()
  PIL.Image.fromarray(nan, 'F').save(buffer, 'TIFF')
  assert np.isfinite(images.decode(buffer.getvalue())).all()


# Serving: only what the demo means to show.


def test_no_file_outside_the_demo_is_served(server, demo_workdir):
  url, backend = server.url, server.backend
  checkpoint_files = sorted(
      os.path.join(root, f) for root, _, files in os.walk(
          os.path.join(demo_workdir, 'checkpoints')) for f in files)
  assert checkpoint_files
  secrets = [checkpoint_files[0], checkpoint_files[-1],
             os.path.join(demo_workdir, 'config.json'),
             os.path.join(demo_workdir, 'label_space.npz'),
             os.path.join(demo_workdir, 'gallery', f'{backend.searcher.gallery_name}.npz')]
  cache = os.environ.get('DEVISE_JAX_CACHE')
  if cache:
    secrets += [os.path.join(r, f) for r, _, fs in os.walk(cache) for f in fs][:3]
  with httpx.Client(base_url=url.rstrip('/'), timeout=30) as http:
    for path in secrets:
      with open(path, 'rb') as f:
        content = f.read()
      for route in (f'/gradio_api/file={path}', f'/file={path}',
                    f'/gradio_api/file/{path}', f'/gradio_api/file=/tmp/gradio/../..{path}',
                    f'/gradio_api/file={os.path.relpath(path)}'):
        response = http.get(route)
        assert response.status_code in (403, 404), (route, response.status_code)
        assert content[:64] not in response.content or not content[:64]
    # Not a file proxy, and no monitoring dashboard.
    for route in ('/gradio_api/file=https://example.com/a.png', '/gradio_api/monitoring',
                  '/monitoring', '/gradio_api/monitoring/summary'):
      assert http.get(route).status_code == 404, route
    # An upload is served back (the test above is not vacuous) ...
    response = http.post('/gradio_api/upload', files={'files': ('x.txt', b'hello demo')})
    uploaded = response.json()[0]
    assert http.get(f'/gradio_api/file={uploaded}').content == b'hello demo'
    # ... but a request naming a server file as its input is refused before the model.
    event = http.post('/gradio_api/call/zero_shot', json={'data': [
        {'path': secrets[2], 'meta': {'_type': 'gradio.FileData'}}, None, 'classes', '', 5]})
    answer = http.get(f"/gradio_api/call/zero_shot/{event.json()['event_id']}").text
    assert 'event: error' in answer and 'seed' not in answer


def test_launch_defaults_are_safe(server, demo_workdir):
  demo_kwargs = app.launch_kwargs(server.demo)
  assert demo_kwargs['server_name'] == '127.0.0.1' and demo_kwargs['share'] is False
  assert demo_kwargs['max_file_size'] == '10mb' and demo_kwargs['auth'] is None
  assert demo_kwargs['enable_monitoring'] is False and demo_kwargs['allowed_paths'] == []
  blocked = demo_kwargs['blocked_paths']
  assert os.path.abspath(demo_workdir) in blocked
  assert os.path.abspath(os.environ['DEVISE_JAX_CACHE']) in blocked
  config = server.backend.run.config
  assert os.path.abspath(config.data.data_dir) in blocked
  assert app.parse_auth('alice:s3:cret') == ('alice', 's3:cret')
  with pytest.raises(ValueError):
    app.parse_auth('alice')


def test_basic_auth(server):
  """With auth, the API needs the password; the same backend serves a second app."""
  backend = server.backend
  demo = app.build_app(backend.workdir, backend=backend)
  assert demo.devise_backend is backend
  url = start(demo, auth='alice:wonderland')
  try:
    with pytest.raises(Exception):
      Client(url, verbose=False)
    with pytest.raises(Exception):
      Client(url, verbose=False, auth=('alice', 'wrong'))
    authed = Client(url, verbose=False, auth=('alice', 'wonderland'), download_files=False)
    got, _ = zero_shot(authed, gallery_id=2, k=2)
    assert len(got) == 2
    assert httpx.get(f'{url}config').status_code in (401, 403)
  finally:
    demo.close()


def test_concurrent_requests_all_get_their_answers(library, client):
  searcher = library.searcher
  jobs = {i: client.submit(None, i, 'classes', '', 3, api_name='/zero_shot')
          for i in range(8)}
  for i, job in jobs.items():
    table, _ = job.result(timeout=120)
    want = searcher.labels(searcher.gallery['devise'][i], 'classes', 3)
    assert [r['label'] for r in rows(table)] == [w['label'] for w in want]


def test_a_workdir_without_gallery_still_serves_zero_shot(reference_run, tmp_path,
                                                          pictures, library):
  _, reference, _ = reference_run
  shutil.copytree(reference, tmp_path / 'run', ignore=shutil.ignore_patterns('gallery'))
  backend = handlers.Backend(str(tmp_path / 'run'))
  assert backend.searcher.gallery is None and backend.gallery_size() == 0
  app.build_app(backend.workdir, backend=backend)  # The page builds (no pickers).
  endpoints = handlers.make_handlers(backend)
  table, _ = endpoints['zero_shot'](pictures['gallery5.png'], -1, 'classes', '', 3)
  want = library_labels(library, images.decode(pictures['gallery5.png']), k=3)
  assert table['label'].tolist() == [w['label'] for w in want]
  with pytest.raises(gr.Error, match='no gallery'):
    endpoints['search_words']('boot', 1.0, '', 1.0, 5)
  with pytest.raises(gr.Error, match='no gallery'):
    endpoints['zero_shot'](None, 3, 'classes', '', 3)
  assert 'gallery: none' in about.markdown(backend)


def test_about_shows_the_loaded_run(server, library):
  """Steps and params fingerprints of the loaded stages (checked against
  fingerprints.jsonl), and eval.json's metrics."""
  text = about.markdown(server.backend)
  recorded = checkpoint.read_fingerprints(server.backend.workdir)
  for stage, step in library.run.steps.items():
    sha = library.run.fingerprint(stage)
    assert recorded[stage][step] == sha
    row = next(line for line in text.splitlines() if line.startswith(f'| {stage} |'))
    assert f'| {step} | `{sha}` | matches |' in row
  assert '| `zsl_top1` | 0.6125 |' in text and '| `num_images` | 256 |' in text
  assert "split `test[:256]`" in text and 'evaluated at' not in text


def test_the_demo_is_installed_as_a_subpackage(tmp_path):
  """`devise_jax.demo` imports from the installed package, from any directory, and no
  top-level `demo` is installed; setup.cfg lists every package of devise_jax/."""
  code = ('import importlib.util, devise_jax.demo; print(devise_jax.demo.__file__); '
          "print(importlib.util.find_spec('demo'))")
  proc = subprocess.run([sys.executable, '-c', code], cwd=tmp_path,
                        capture_output=True, text=True, timeout=60, check=True,
                        env=dict(os.environ, PYTHONPATH=''))
  location, top_level = proc.stdout.split()
  assert pathlib.Path(location) == ROOT / 'demo' / '__init__.py' and top_level == 'None'
  config = configparser.ConfigParser()
  config.read(ROOT / 'setup.cfg')
  listed = set(config['options']['packages'].split())
  found = {'.'.join(p.parent.relative_to(ROOT).parts)
           for p in (ROOT / 'devise_jax').rglob('__init__.py')}
  assert listed == found | {'devise_jax.demo'}
