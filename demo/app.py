"""Gradio demo of a trained devise_jax workdir: zero-shot labels, search, puppy algebra.

    from devise_jax.demo import app
    app.launch('workdirs/fmnist')                  # http://127.0.0.1:7860
    app.launch('workdirs/fmnist', host='0.0.0.0', auth='alice:secret')

Tabs: zero-shot prediction, search by words, similar images, puppy algebra, Results
(evaluation's plots from WORKDIR/plots/) and About (the checkpoint, data, word vectors
and evaluation of the loaded model). The workdir
needs stages 1 and 2 (3 for the Siamese space) and, for everything but zero-shot on
uploads, a gallery (`devise-jax embed --workdir DIR`).

Every tab is also an HTTP endpoint (`gradio_client`, or "Use via API" in the page's
footer). Images go in as files (`handle_file`); a gallery image is chosen by its id
(`gallery_id`; None or -1 to use the uploaded image). Errors (an unknown word, a file
that is not an image, weights that cancel, ...) come back as `gradio_client`
`AppError`s with a one-line message. Every parameter but the main input has a default
(the component's initial value), so the one-argument call works. The same server also
answers a plain REST API with OpenAPI docs at /docs (`api.py`).

    from gradio_client import Client, handle_file
    client = Client('http://127.0.0.1:7860/')   # auth=('alice', 'secret') if set

    # Zero-shot: top-k labels of an image; candidates 'classes', 'vocab' (WordNet
    # nouns with a word vector), 'tokens' (every token of the word vectors) or 'list'
    # (then `labels` is a comma-separated list).
    table, status = client.predict(handle_file('shoe.png'), api_name='/zero_shot')
    # table['headers'] == ['rank', 'label', 'score', 'unseen']; table['data'] rows.
    table, status = client.predict(image=None, gallery_id=12, candidates='list',
                                   labels='boot, clog, slipper', k=3,
                                   api_name='/zero_shot')   # Other values by name.

    # Words -> images: one or two words with weights; the nearest gallery images.
    grid, table, status = client.predict('boot', api_name='/search_words')
    grid, table, status = client.predict('boot', word_2='sandal', weight_2=-0.5, k=8,
                                         api_name='/search_words')
    # table['headers'] == ['rank', 'id', 'label', 'score']; grid: [{'image': path,
    # 'caption': ...}, ...] (the pictures, downloaded by the client).

    # Similar images, in 'siamese' or 'devise' space (a gallery query never
    # returns itself).
    grid, table, status = client.predict(handle_file('shirt.jpg'), api_name='/similar')

    # Puppy algebra: up to four images (an upload or a gallery id each, a sign '+'
    # or '-' and a weight), optional words with weights (devise space only).
    inputs, grid, table, status = client.predict(
        gallery_id_1=12, gallery_id_2=40, sign_2='-', image_3=handle_file('boot.png'),
        words='sandal', word_weights='0.5', space='devise', api_name='/algebra')

Safety: binds 127.0.0.1 unless told otherwise; `share` is opt-in; optional basic auth;
uploads over 10 MB (other request bodies over 16 MB) are refused; two requests run at
a time and at most 64 wait; only Gradio's own upload and cache folders are served (the
workdir, the word vectors and the data set are on the blocklist, and `/file=<URL>`
proxying and `/monitoring` are switched off); uploads are decoded by `images.decode`
(pixel limit, truncated files, odd modes); every bad input answers with a message
(`devise_jax.queries`), never a traceback.

The sources live in demo/ at the repository root and install as `devise_jax.demo`
(setup.cfg): `layout` builds the page, `handlers` answer the endpoints through the
query layer (`devise_jax.queries`: the checks, shared with the CLI and the REST API),
`images` shows the gallery's pictures, `about` describes the run; this module serves
the app.
"""

import json
import logging
import os
import re

import gradio as gr

from devise_jax import checkpoint

from . import api
from .handlers import Backend, make_handlers
from .layout import build_app

__all__ = ['Backend', 'build_app', 'launch', 'launch_kwargs', 'make_handlers', 'parse_auth']

log = logging.getLogger(__name__)

MAX_UPLOAD = '10mb'  # Gradio refuses larger uploads (HTTP 413) before any decoding.
MAX_BODY = 16 * 1024 * 1024  # Other request bodies (JSON; a data-URL image fits).
CSS = """
.status-box {min-height: 2.5em;}
.query-image img {width: 100%; height: 100%; object-fit: contain; image-rendering: pixelated;}
"""
_SYSTEM_FONTS = ('ui-sans-serif', 'system-ui', 'sans-serif')
_MONO_FONTS = ('ui-monospace', 'monospace')


def _theme():
  # System fonts: the default theme would fetch Google Fonts from every browser.
  return gr.themes.Soft(font=list(_SYSTEM_FONTS), font_mono=list(_MONO_FONTS))


def blocked_paths(backend):
  """Absolute paths the server must never serve: the run's private paths
  (`checkpoint.private_paths`) and the folder of a gallery made from image files."""
  paths = checkpoint.private_paths(backend.workdir, backend.run.config)
  meta = backend.searcher.meta
  files = [r for r in (meta['refs'] if meta else []) if not r.startswith('tfds:')]
  if files:
    paths.append(os.path.commonpath([os.path.dirname(os.path.abspath(f)) for f in files]))
  return sorted(set(paths))


class _DenyRoutes:
  """ASGI middleware: no `/file=<URL>` proxying, no monitoring, no `proxy=` routes, and
  no request body over MAX_BODY outside the upload route (which has MAX_UPLOAD)."""

  _DENIED = re.compile(r'(^|/)(monitoring)(/|$)|/file=(https?:|//)|/file/(https?:|//)'
                       r'|/proxy=', re.IGNORECASE)

  def __init__(self, app):
    self.app = app

  async def __call__(self, scope, receive, send):
    if scope.get('type') == 'http':
      path = scope.get('path', '')
      if self._DENIED.search(path):
        return await self._answer(send, 404, 'Not Found', path)
      length = dict(scope.get('headers') or ()).get(b'content-length', b'0')
      if (not path.rstrip('/').endswith('/upload') and length.isdigit()
          and int(length) > MAX_BODY):
        return await self._answer(send, 413, 'Request body too large', path)
    return await self.app(scope, receive, send)

  @staticmethod
  async def _answer(send, status, message, path):
    if path.startswith('/api/'):  # The REST API answers {"error": ...} throughout.
      kind, body = b'application/json', json.dumps({'error': message}).encode()
    else:
      kind, body = b'text/plain; charset=utf-8', message.encode()
    await send({'type': 'http.response.start', 'status': status,
                'headers': [(b'content-type', kind)]})
    await send({'type': 'http.response.body', 'body': body})


def parse_auth(auth):
  """None, ('user', 'pass'), or 'user:pass' -> None or ('user', 'pass')."""
  if auth is None or auth == '':
    return None
  if isinstance(auth, (tuple, list)) and len(auth) == 2:
    user, password = auth
  elif isinstance(auth, str) and ':' in auth:
    user, password = auth.split(':', 1)
  else:
    raise ValueError("auth must be 'USER:PASS'")
  if not user or not password:
    raise ValueError("auth must be 'USER:PASS' with a non-empty user and password")
  return str(user), str(password)


def launch_kwargs(demo, host='127.0.0.1', port=7860, share=False, auth=None):
  """The safe `Blocks.launch` arguments for a demo made by `build_app`."""
  from starlette.middleware import Middleware  # pylint: disable=import-outside-toplevel
  return dict(
      server_name=host, server_port=port, share=bool(share), auth=parse_auth(auth),
      show_error=False, max_file_size=MAX_UPLOAD, allowed_paths=[],
      blocked_paths=blocked_paths(demo.devise_backend), enable_monitoring=False,
      mcp_server=False, ssr_mode=False, pwa=False, inbrowser=False,
      footer_links=['api', 'settings'], theme=_theme(), css=CSS,
      # The REST API (demo/api.py) is served by the same app, on the same port.
      app_kwargs=dict(middleware=[Middleware(_DenyRoutes)],
                      routes=api.routes(demo.devise_backend, parse_auth(auth))))


def launch(workdir, host='127.0.0.1', port=7860, share=False, auth=None, *,
           prevent_thread_lock=False, quiet=False):
  """Builds the demo of `workdir` and serves it; returns what `Blocks.launch` returns.

  Args:
    workdir: a trained workdir (stages 1 and 2, 3 for the Siamese space; a gallery
      for the search tabs).
    host: address to bind; 127.0.0.1 (this machine only) by default.
    port: TCP port.
    share: also open a public *.gradio.live link (off by default).
    auth: None, 'USER:PASS' or (user, password): HTTP basic log-in for every page.
    prevent_thread_lock: return at once (the server runs in a thread; tests).
    quiet: do not print the URL.
  """
  auth = parse_auth(auth)
  if (share or host not in ('127.0.0.1', 'localhost', '::1')) and auth is None:
    log.warning('the demo is reachable from other machines without a password; '
                'consider auth=USER:PASS')
  demo = build_app(workdir)
  return demo.launch(prevent_thread_lock=prevent_thread_lock, quiet=quiet,
                     **launch_kwargs(demo, host, port, share, auth))
