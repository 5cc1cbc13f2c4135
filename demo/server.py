"""What the demo changes in the HTTP server Gradio starts, and the server's own folder.

`Blocks.launch` builds its `uvicorn.Config` itself (`gradio.http_server.start_server`)
and takes no server settings, so `uvicorn_settings` adds ours to the Configs built while
the demo launches (`app.serve` checks afterwards that the running server has them):

- `Protocol`, uvicorn's h11 protocol whose refusal of a request it cannot parse is JSON:
  431 `{"error"}` when the request line and headers pass `MAX_HEAD` bytes (e.g. a
  200 KB query string), 400 when they are malformed; and the connection is closed
  gracefully (the rest of the request is read and dropped for up to `LINGER`
  seconds) instead of at once, which reset it with the answer unread;
- no proxy headers: uvicorn would take X-Forwarded-For and -Proto from any client on
  127.0.0.1; the demo's middleware (`guard.py`) takes them only from `--trusted_proxy`.

`private_upload_dir` gives Gradio a fresh folder of this process (mode 0700, removed at
exit) for uploads and results, instead of the machine's shared /tmp/gradio.
"""

import atexit
import contextlib
import ipaddress
import json
import os
import shutil
import tempfile
import threading
import urllib.parse

import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol, STATUS_PHRASES

MAX_HEAD = 16 * 1024  # Request line and headers (h11's own default).
LINGER = 2.0  # Seconds a refused connection is drained before it is closed.
_LAUNCH = threading.Lock()
_PRIVATE = []


class Protocol(H11Protocol):
  """uvicorn's h11 protocol; a request it cannot parse gets a JSON error."""

  refused = False

  def send_400_response(self, msg):
    del msg  # uvicorn's text: "Invalid HTTP request received."
    pending, _ = self.conn.trailing_data
    if len(pending) > MAX_HEAD:
      status, message = 431, (f'the request line and headers are longer than '
                              f'{MAX_HEAD // 1024} KB')
    else:
      status, message = 400, 'malformed HTTP request'
    body = json.dumps({'error': message}).encode()
    head = (f'HTTP/1.1 {status} {STATUS_PHRASES[status].decode()}\r\n'
            f'content-type: application/json\r\ncontent-length: {len(body)}\r\n'
            'connection: close\r\n\r\n')
    self.transport.write(head.encode() + body)
    self.refused = True
    # Closing now, with the request still arriving, resets the connection and the
    # client may lose the answer: stop writing, drop what comes, close later.
    if self.transport.can_write_eof():
      self.transport.write_eof()
    self.transport.resume_reading()
    self.loop.call_later(LINGER, self.transport.close)

  def data_received(self, data):
    if not self.refused:
      super().data_received(data)


@contextlib.contextmanager
def uvicorn_settings(**settings):
  """Every `uvicorn.Config` built inside gets `settings` (one launch at a time)."""
  real = uvicorn.Config

  def config(*args, **kwargs):
    return real(*args, **{**kwargs, **settings})

  with _LAUNCH:
    uvicorn.Config = config
    try:
      yield
    finally:
      uvicorn.Config = real


SETTINGS = dict(http=Protocol, proxy_headers=False,
                h11_max_incomplete_event_size=MAX_HEAD)


def has_settings(config):
  """Whether a running server's uvicorn Config has `SETTINGS`."""
  return all(getattr(config, key, None) == value for key, value in SETTINGS.items())


def private_upload_dir():
  """This process's folder for Gradio's uploads and results (GRADIO_TEMP_DIR, read by
  Gradio when components and apps are built), made once, removed at exit."""
  if not _PRIVATE:
    parent = os.environ.get('GRADIO_TEMP_DIR') or None
    if parent:
      os.makedirs(parent, exist_ok=True)
    path = os.path.realpath(tempfile.mkdtemp(prefix='devise_jax_demo-', dir=parent))
    atexit.register(shutil.rmtree, path, ignore_errors=True)
    os.environ['GRADIO_TEMP_DIR'] = path
    _PRIVATE.append(path)
  return _PRIVATE[0]


def parse_public_url(url):
  """'' or an http(s) base URL -> the base without a trailing slash ('' for none)."""
  if not url:
    return ''
  parts = urllib.parse.urlsplit(url)
  if parts.scheme not in ('http', 'https') or not parts.netloc or parts.query or (
      parts.fragment):
    raise ValueError(f'public_url must be an http:// or https:// base URL such as '
                     f'https://demo.example.org, got {url!r}')
  return url.rstrip('/')


def parse_proxies(proxies):
  """None, 'ADDR[,ADDR...]' or a list (addresses or networks) -> ip networks."""
  if not proxies:
    return ()
  if isinstance(proxies, str):
    proxies = proxies.split(',')
  try:
    return tuple(ipaddress.ip_network(p.strip(), strict=False) for p in proxies
                 if p.strip())
  except ValueError as e:
    raise ValueError(f'trusted_proxy must be IP addresses or networks: {e}') from None


def is_trusted(address, proxies):
  try:
    ip = ipaddress.ip_address(address)
  except (TypeError, ValueError):
    return False
  return any(ip in network for network in proxies)
