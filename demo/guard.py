"""The demo's ASGI middleware: what every request meets before Gradio or the REST API.

- **Bodies are bounded before they are read**, whatever their framing: a declared
  Content-Length over the route's cap is refused at once, and the bytes of every body
  (chunked ones included) are counted as the app reads them; past the cap the client
  gets 413 and the app a disconnect, so nothing past the cap is ever held. Caps:
  uploads (Gradio's /upload, the REST API's images) `UPLOAD_BODY`, the REST API's JSON
  `JSON_BODY`, every other body `MAX_BODY`.
- **Proxy headers** (X-Forwarded-*, Forwarded, X-Real-IP) are honoured only from a
  trusted proxy's address and removed from everyone else's requests, so neither the
  client address (the log-in brake's key) nor Gradio's URLs follow a client's say;
  /gradio_api/info, whose first answer Gradio caches, is asked at the server's own
  address whatever the Host header says.
- **Files**: Gradio's file routes serve only what this server wrote into its private
  folder for results (`server.private_upload_dir`), never an upload; no URL proxying,
  no monitoring.
- **Log-ins**: Gradio's /login and REST requests with credentials pass the log-in
  brake (`logins.LoginThrottle`; 429 past it).
- **With a password, nothing of the app before log-in**: the log-in page comes without
  Gradio's API description (`window.gradio_api_info`), /manifest.json (which names the
  run) is refused.
- **REST errors are one line of JSON**: every 4xx/5xx under /api/, /docs and
  /openapi.json is `{"error": "<one line>"}`, FastAPI's and Starlette's own (404, 405,
  bad multipart or JSON) included.
"""

import http.cookies
import json
import logging
import os
import re

from . import logins
from . import server

log = logging.getLogger(__name__)

UPLOAD_BODY = 10 * 2**20 + 64 * 2**10  # A 10 MB file and its multipart envelope.
JSON_BODY = 64 * 2**10  # An algebra query is a few hundred bytes.
MAX_BODY = 16 * 2**20  # Gradio's JSON (a 10 MB image as a data URL fits).
_UPLOAD_ROUTES = ('/gradio_api/upload', '/api/labels', '/api/similar')
_DENIED = re.compile(r'(^|/)monitoring(/|$)|/file=(https?:|//)|/file/(https?:|//)'
                     r'|/proxy=', re.IGNORECASE)
_FILE = re.compile(r'^(?:/gradio_api)?/file[=/](.*)$', re.DOTALL)
_FORWARDED = frozenset([b'forwarded', b'x-forwarded-for', b'x-forwarded-proto',
                        b'x-forwarded-host', b'x-forwarded-port', b'x-forwarded-prefix',
                        b'x-real-ip'])
_API_INFO = re.compile(rb'(window\.gradio_api_info = )[^<]*(;</script>)')


def is_rest(path):
  """Whether `path` is the REST API's (demo/api.py), which answers errors as JSON."""
  return (path in ('/api', '/docs', '/openapi.json')
          or path.startswith(('/api/', '/docs/')))


def body_cap(path):
  path = path.rstrip('/')
  if path in _UPLOAD_ROUTES:
    return UPLOAD_BODY
  return JSON_BODY if path == '/api/algebra' else MAX_BODY


def _size(n):
  return f'{n // 2**20} MB' if n >= 2**20 else f'{n // 2**10} KB'


async def respond(send, status, message, headers=()):
  """Sends `{"error": message}` with `status`."""
  body = json.dumps({'error': message}).encode()
  await send({'type': 'http.response.start', 'status': status,
              'headers': [(b'content-type', b'application/json'),
                          (b'content-length', str(len(body)).encode()), *headers]})
  await send({'type': 'http.response.body', 'body': body})


def one_line_error(status, body, scope, headers):
  """The message of an error response that is not yet `{"error": "<one line>"}`."""
  try:
    detail = json.loads(body)
  except ValueError:
    detail = body.decode('utf-8', 'replace')
  if isinstance(detail, dict):
    detail = detail.get('error', detail.get('detail', detail))
  if isinstance(detail, dict):
    detail = detail.get('error', json.dumps(detail))
  if isinstance(detail, list) and detail and isinstance(detail[0], dict):
    detail = detail[0].get('msg', detail[0])  # Validation errors: the first one.
  message = str(detail).strip().splitlines()[0] if str(detail).strip() else ''
  method, path = scope['method'], scope['path']
  if status == 404 and message in ('', 'Not Found'):
    return f'no such route: {method} {path}'
  if status == 405:
    allowed = dict(headers).get(b'allow', b'').decode('latin-1')
    return f'{method} is not allowed on {path}' + (f' (use {allowed})' if allowed else '')
  return message or f'HTTP {status}'


class Guard:
  """The middleware (`Blocks.launch(app_kwargs={'middleware': ...})`), over `demo`."""

  def __init__(self, app, demo, auth=None, trusted_proxies=(), upload_dir=None):
    self.app, self.demo, self.auth = app, demo, auth
    self.trusted_proxies = trusted_proxies
    self.upload_dir = upload_dir or server.private_upload_dir()
    self.logins = logins.LoginThrottle()

  async def __call__(self, scope, receive, send):
    if scope['type'] != 'http':
      return await self.app(scope, receive, send)
    self._forwarded(scope)
    path = scope['path']
    if path.rstrip('/') == '/gradio_api/info':
      self._pin_host(scope)
    if _DENIED.search(path) or not self._may_serve(path):
      return await respond(send, 404, f'not found: {path}')
    if self.auth and path == '/manifest.json' and not self.signed_in(scope):
      return await respond(send, 401, 'log in first')
    cap = body_cap(path)
    length = dict(scope['headers']).get(b'content-length', b'')  # h11 checked its form.
    if length.isdigit() and int(length) > cap:
      return await respond(send, 413, f'the request body is larger than {_size(cap)}')
    exchange = _Exchange(self, scope, receive, send, cap)
    return await exchange.run()

  def _forwarded(self, scope):
    """Applies a trusted proxy's headers; removes them from anyone else's request."""
    headers = scope['headers']
    peer = (scope.get('client') or (None,))[0]
    if not (self.trusted_proxies and server.is_trusted(peer, self.trusted_proxies)):
      scope['headers'] = [(k, v) for k, v in headers
                          if k not in _FORWARDED and k != b'x-gradio-server']
      return
    scope['headers'] = [(k, v) for k, v in headers if k != b'x-gradio-server']
    forwarded_for = b','.join(v for k, v in headers if k == b'x-forwarded-for')
    hosts = [h.strip() for h in forwarded_for.decode('latin-1').split(',') if h.strip()]
    for host in reversed(hosts):  # The nearest address the proxies do not vouch for.
      if not server.is_trusted(host, self.trusted_proxies):
        scope['client'] = (host, 0)
        break
    proto = dict(headers).get(b'x-forwarded-proto', b'').decode('latin-1').strip()
    if proto in ('http', 'https'):
      scope['scheme'] = proto

  @staticmethod
  def _pin_host(scope):
    """Gradio caches its first answer to /gradio_api/info, code snippets with URLs
    built from that request's Host: it is answered as if asked at this server's own
    address (or `public_url`, which Gradio prefers), never at a client's Host."""
    host, port = scope.get('server') or ('127.0.0.1', None)
    own = f'[{host}]' if ':' in host else host
    own = (own if port is None else f'{own}:{port}').encode()
    scope['headers'] = [(k, v) for k, v in scope['headers'] if k != b'host'] + [
        (b'host', own)]

  def _may_serve(self, path):
    """Gradio's file routes: only results this server wrote, never an upload."""
    match = _FILE.match(path)
    if not match:
      return True
    target = os.path.realpath(os.path.abspath(match.group(1)))
    if os.path.commonpath([target, self.upload_dir]) != self.upload_dir:
      return False
    return target not in getattr(self.demo, 'upload_file_set', ())

  def signed_in(self, scope):
    """Whether the request carries a log-in cookie of Gradio's page."""
    app = getattr(self.demo, 'server_app', None)
    if app is None:
      return False
    cookies = http.cookies.SimpleCookie()
    try:
      cookies.load(dict(scope['headers']).get(b'cookie', b'').decode('latin-1'))
    except http.cookies.CookieError:
      return False
    for kind in ('access-token', 'access-token-unsecure'):
      name = f'{kind}-{app.cookie_id}'
      if name in cookies and cookies[name].value in app.tokens:
        return True
    return False

  def login_attempt(self, scope):
    """'page' for Gradio's log-in form, 'rest' for REST credentials, else None."""
    if not self.auth:
      return None
    if scope['method'] == 'POST' and scope['path'].rstrip('/') == '/login':
      return 'page'
    if is_rest(scope['path']) and b'authorization' in dict(scope['headers']):
      return 'rest'
    return None


class _Exchange:
  """One request through the guard: its body counted, its answer watched."""

  def __init__(self, guard, scope, receive, send, cap):
    self.guard, self.scope, self.cap = guard, scope, cap
    self._receive, self._send = receive, send
    self.received, self.status, self.refused = 0, None, False
    self.rest = is_rest(scope['path'])
    self.hide_api = (bool(guard.auth) and scope['method'] != 'HEAD'
                     and not guard.signed_in(scope))
    self._held = None  # An error response being rewritten, or a page being cleaned.

  async def run(self):
    guard, address = self.guard, (self.scope.get('client') or ('?',))[0]
    login = guard.login_attempt(self.scope)
    if login:
      wait = guard.logins.admit(address)
      if wait:
        return await respond(self._send, 429, f'too many failed log-ins from this '
                             f'address; try again in {wait} s',
                             [(b'retry-after', str(wait).encode())])
    try:
      await guard.app(self.scope, self.receive, self.send)
    except Exception:  # pylint: disable=broad-except
      if self.refused:
        return  # The app failed on the disconnect that the refusal gave it.
      if not self.rest or self.status is not None:
        raise
      log.exception('demo API: unexpected error')
      await respond(self._send, 500, 'internal error while answering this request (it '
                    'was logged on the server)')
    finally:
      if login:
        ok = self.status is not None and (self.status < 400 if login == 'page'
                                          else self.status != 401)
        guard.logins.done(address, ok)

  async def receive(self):
    if self.refused:
      return {'type': 'http.disconnect'}
    message = await self._receive()
    if message['type'] == 'http.request':
      self.received += len(message.get('body', b''))
      if self.received > self.cap:
        self.refused = True
        if self.status is None:
          self.status = 413
          await respond(self._send, 413, f'the request body is larger than '
                        f'{_size(self.cap)}')
        return {'type': 'http.disconnect'}
    return message

  async def send(self, message):
    if self.refused:
      return  # The client has its answer already.
    if message['type'] == 'http.response.start':
      self.status = message['status']
      content_type = dict(message.get('headers', ())).get(b'content-type', b'')
      if (self.rest and self.status >= 400) or (
          self.hide_api and content_type.startswith(b'text/html')):
        self._held = (message, bytearray())
        return
    elif message['type'] == 'http.response.body' and self._held is not None:
      start, body = self._held
      body += message.get('body', b'')
      if message.get('more_body', False):
        return
      self._held = None
      return await self._send_rewritten(start, bytes(body))
    await self._send(message)

  async def _send_rewritten(self, start, body):
    headers = [(k, v) for k, v in start.get('headers', ())
               if k not in (b'content-length', b'content-encoding')]
    if self.rest and self.status >= 400:
      try:
        parsed = json.loads(body)
      except ValueError:
        parsed = None
      if not (isinstance(parsed, dict) and list(parsed) == ['error']
              and isinstance(parsed['error'], str) and '\n' not in parsed['error']):
        message = one_line_error(self.status, body, self.scope, headers)
        body = json.dumps({'error': message}).encode()
        headers = [(k, v) for k, v in headers if k != b'content-type'] + [
            (b'content-type', b'application/json')]
    else:  # A page before log-in: without the description of the API.
      body = _API_INFO.sub(rb'\1null\2', body)
    headers.append((b'content-length', str(len(body)).encode()))
    await self._send(dict(start, headers=headers))
    await self._send({'type': 'http.response.body', 'body': body})
