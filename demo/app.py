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

Safety: binds 127.0.0.1 unless told otherwise; `share` is opt-in; optional basic auth,
with a brake on password guessing (5 failures a minute per address, then 429:
`logins.py`); request bodies are bounded before they are read, chunked ones too
(uploads 10 MB, other bodies 16 MB: 413); one gate for the page and the REST API (two
requests compute at a time, at most 64 wait, then 503; big images one at a time:
`gate.py`); uploads and results live in this process's own folder and only results are
served (the workdir, the word vectors and the data set are on the blocklist, and
`/file=<URL>` proxying and `/monitoring` are switched off); proxy headers count only from
`trusted_proxy`; the REST API's URLs are paths or start with `public_url`, never the
Host header's; uploads
are decoded by `images.decode` (pixel limit, truncated files, odd modes); every bad input
answers with a message (`devise_jax.queries`), never a traceback. The middleware
(`guard.py`) and the server's settings (`server.py`) say how.

The sources live in demo/ at the repository root and install as `devise_jax.demo`
(setup.cfg): `layout` builds the page, `handlers` answer the endpoints through the
query layer (`devise_jax.queries`: the checks, shared with the CLI and the REST API),
`images` shows the gallery's pictures, `about` describes the run, `gate`, `guard`,
`logins` and `server` guard the server; this module serves the app.
"""

import logging
import os
import signal
import sys

import gradio as gr

from devise_jax import checkpoint

from . import api
from . import guard
from . import server
from .handlers import Backend, make_handlers
from .layout import build_app

__all__ = ['Backend', 'build_app', 'check_options', 'launch', 'launch_kwargs',
           'make_handlers', 'parse_auth', 'serve']

log = logging.getLogger(__name__)

MAX_UPLOAD = '10mb'  # Gradio refuses larger uploads (HTTP 413) before any decoding.
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


def check_options(public_url='', trusted_proxy=None):
  """Raises ValueError naming a bad `public_url` or `trusted_proxy`."""
  server.parse_public_url(public_url)
  server.parse_proxies(trusted_proxy)


def launch_kwargs(demo, host='127.0.0.1', port=7860, share=False, auth=None,
                  public_url='', trusted_proxy=None):
  """The safe `Blocks.launch` arguments for a demo made by `build_app`."""
  from starlette.middleware import Middleware  # pylint: disable=import-outside-toplevel
  auth, public_url = parse_auth(auth), server.parse_public_url(public_url)
  middleware = Middleware(guard.Guard, demo=demo, auth=auth,
                          trusted_proxies=server.parse_proxies(trusted_proxy))
  return dict(
      server_name=host, server_port=port, share=bool(share), auth=auth,
      show_error=False, max_file_size=MAX_UPLOAD, allowed_paths=[],
      blocked_paths=blocked_paths(demo.devise_backend), enable_monitoring=False,
      mcp_server=False, ssr_mode=False, pwa=False, inbrowser=False,
      footer_links=['api', 'settings'], theme=_theme(), css=CSS,
      # Gradio's own URLs (result files) from the public URL, when there is one.
      root_path=public_url or None,
      # The REST API (demo/api.py) is served by the same app, on the same port.
      app_kwargs=dict(middleware=[middleware],
                      routes=api.routes(demo.devise_backend, auth, gate=demo.devise_gate,
                                        public_url=public_url)))


def serve(demo, *, prevent_thread_lock=False, quiet=False, **options):
  """Serves a demo made by `build_app` with `launch_kwargs(demo, **options)` and the
  server's own settings (`server.SETTINGS`); returns what `Blocks.launch` returns."""
  kwargs = launch_kwargs(demo, **options)
  with server.uvicorn_settings(**server.SETTINGS):
    result = demo.launch(prevent_thread_lock=True, quiet=quiet, **kwargs)
  if not server.has_settings(demo.server.config):  # Gradio started it another way.
    demo.close()
    raise RuntimeError('the demo server did not take its settings (gradio.http_server '
                       'no longer builds uvicorn.Config): not serving')
  if not prevent_thread_lock:
    # SIGTERM ends the process without exit handlers: the private folder would stay.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    demo.block_thread()
  return result


def launch(workdir, host='127.0.0.1', port=7860, share=False, auth=None, *,
           public_url='', trusted_proxy=None, prevent_thread_lock=False, quiet=False):
  """Builds the demo of `workdir` and serves it; returns what `Blocks.launch` returns.

  Args:
    workdir: a trained workdir (stages 1 and 2, 3 for the Siamese space; a gallery
      for the search tabs).
    host: address to bind; 127.0.0.1 (this machine only) by default.
    port: TCP port.
    share: also open a public *.gradio.live link (off by default).
    auth: None, 'USER:PASS' or (user, password): HTTP basic log-in for every page.
    public_url: the base URL clients reach the demo at (e.g. behind a proxy,
      'https://demo.example.org'); result URLs are built from it. Without it the REST
      API's URLs are paths ('/api/images/12.png'); nothing is built from the Host header.
    trusted_proxy: address(es) or networks ('10.0.0.5' or '10.0.0.0/8,::1') whose
      X-Forwarded-For/-Proto/-Host are believed; everyone else's are dropped.
    prevent_thread_lock: return at once (the server runs in a thread; tests).
    quiet: do not print the URL.
  """
  auth = parse_auth(auth)
  check_options(public_url, trusted_proxy)  # Bad values fail before the run is loaded.
  if (share or host not in ('127.0.0.1', 'localhost', '::1')) and auth is None:
    log.warning('the demo is reachable from other machines without a password; '
                'consider auth=USER:PASS')
  demo = build_app(workdir)
  return serve(demo, prevent_thread_lock=prevent_thread_lock, quiet=quiet, host=host,
               port=port, share=share, auth=auth, public_url=public_url,
               trusted_proxy=trusted_proxy)
