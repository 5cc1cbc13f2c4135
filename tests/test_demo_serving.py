"""The demo's serving: only what it means to show, safe defaults, auth, concurrency,
a workdir without gallery, the About tab, and the install as a subpackage."""

import configparser
import json
import os
import pathlib
import shutil
import subprocess
import sys

import gradio as gr
import httpx
import pytest

from devise_jax import checkpoint
from devise_jax.demo import about
from devise_jax.demo import app
from devise_jax.demo import handlers
from devise_jax.demo import images

gradio_client = pytest.importorskip('gradio_client')
# pylint: disable=wrong-import-position
from gradio_client import Client, handle_file

from demo_support import ROOT, library_labels, rows, start, zero_shot
# pylint: enable=wrong-import-position


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
    # A result picture is served (the test above is not vacuous; uploads never are:
    # tests/test_hostile.py) ...
    event = http.post('/gradio_api/call/search_words', json={'data': ['boot', 1, '', 1, 2]})
    stream = http.get(f"/gradio_api/call/search_words/{event.json()['event_id']}").text
    grid = json.loads(stream.split('data: ', 1)[1].splitlines()[0])[0]
    picture = http.get(grid[0]['image']['url'])
    assert picture.status_code == 200 and picture.content.startswith(b'\x89PNG')
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
  with pytest.raises(ValueError, match=r"^auth must be 'USER:PASS'$"):
    app.parse_auth('alice')
  with pytest.raises(ValueError, match='non-empty user and password'):
    app.parse_auth('alice:')


def test_basic_auth(server):
  """With auth, the API needs the password; the same backend serves a second app."""
  backend = server.backend
  demo = app.build_app(backend.workdir, backend=backend)
  assert demo.devise_backend is backend
  url = start(demo, auth='alice:wonderland')
  try:
    # Without a login the page's config is refused (401: gradio_client's
    # AuthenticationError); a wrong password is refused at the login (Gradio answers
    # 400, which gradio_client raises as a ValueError).
    with pytest.raises(gradio_client.exceptions.AuthenticationError,
                       match='credentials were not provided'):
      Client(url, verbose=False)
    with pytest.raises(ValueError, match='^Could not login to '):
      Client(url, verbose=False, auth=('alice', 'wrong'))
    authed = Client(url, verbose=False, auth=('alice', 'wonderland'), download_files=False)
    got, _ = zero_shot(authed, gallery_id=2, k=2)
    assert len(got) == 2
    assert httpx.get(f'{url}config').status_code == 401
    assert httpx.post(f'{url}login', data={'username': 'alice', 'password': 'wrong'}
                      ).status_code == 400
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
  # Without calibration.json, like the `library` fixture's workdir (same gamma: none).
  shutil.copytree(reference, tmp_path / 'run',
                  ignore=shutil.ignore_patterns('gallery', 'calibration.json'))
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


def test_an_image_given_as_a_url_is_refused_without_fetching(client, monkeypatch):
  """`handle_file('http://...')` reaches the server as a URL: the caller gets one line
  saying to upload the file, and the server sends no request (neither to the local HTTP
  server named in the URL nor through Gradio's downloader)."""
  import http.server  # pylint: disable=import-outside-toplevel
  import threading  # pylint: disable=import-outside-toplevel
  from gradio import processing_utils  # pylint: disable=import-outside-toplevel
  requests = []

  class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # pylint: disable=invalid-name
      requests.append(self.path)
      self.send_response(404)
      self.end_headers()

    def log_message(self, *args):
      pass

  def no_download(url, *args, **kwargs):
    requests.append(url)
    raise AssertionError('the server tried to download ' + url)
  monkeypatch.setattr(processing_utils, 'async_ssrf_protected_download', no_download)
  monkeypatch.setattr(processing_utils, 'ssrf_protected_download', no_download)
  httpd = http.server.HTTPServer(('127.0.0.1', 0), Handler)
  thread = threading.Thread(target=httpd.serve_forever, daemon=True)
  thread.start()
  try:
    url = f'http://127.0.0.1:{httpd.server_address[1]}/cat.png'
    for endpoint, args in (('zero_shot', dict(image=handle_file(url), gallery_id=None,
                                              candidates='classes', labels='', k=3)),
                           ('similar', dict(image=handle_file(url), gallery_id=None,
                                            space='siamese', k=3))):
      with pytest.raises(gradio_client.exceptions.AppError) as info:
        client.predict(api_name=f'/{endpoint}', **args)
      text = str(info.value)
      assert 'is a URL: give the image as an uploaded or local file' in text
      assert '\n' not in text.strip() and 'Traceback' not in text
  finally:
    httpd.shutdown()
    httpd.server_close()
  assert requests == []
