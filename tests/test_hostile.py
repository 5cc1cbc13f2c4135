"""The demo's server against hostile clients (issue 25): bodies bounded whatever their
framing, one gate for the page and the REST API, one-line JSON errors down to the
socket, nothing of the app before log-in, private uploads, URLs never built from the
Host header, and a brake on password guessing.

Live tests use the session's `server` when they only read; the others start their own
server on the same loaded backend (`demo_support.start`).
"""

import asyncio
import io
import json
import os
import select
import socket
import stat
import subprocess
import sys
import threading
import time

import gradio as gr
import gradio_client
import httpx
import numpy as np
import PIL.Image
import pytest

from devise_jax import queries
from devise_jax.demo import app
from devise_jax.demo import gate as gate_lib
from devise_jax.demo import guard as guard_lib
from devise_jax.demo import handlers
from devise_jax.demo import images
from devise_jax.demo import logins
from devise_jax.demo import server as server_lib

from demo_support import Client, start

USER, PASSWORD = 'alice', 'wonderland'


def png(array):
  buffer = io.BytesIO()
  PIL.Image.fromarray(array).save(buffer, 'PNG')
  return buffer.getvalue()


SMALL = png(np.full((28, 28), 90, np.uint8))
BIG = png(np.zeros((2000, 1500), np.uint8))  # 3 MP: heavy, and cheap to decode.


def error_of(response, status):
  """The one-line message of a `{"error": ...}` answer with `status`."""
  assert response.status_code == status, (response.status_code, response.text[:300])
  body = response.json()
  assert list(body) == ['error'] and isinstance(body['error'], str), body
  assert body['error'] and '\n' not in body['error'], body
  return body['error']


def raw_exchange(url, request, timeout=10):
  """Sends raw bytes; returns (status, headers, body) of the answer."""
  host, port = url.split('//')[1].rstrip('/').split(':')
  with socket.create_connection((host, int(port)), timeout=timeout) as s:
    s.sendall(request)
    data = b''
    while True:
      chunk = s.recv(65536)
      if not chunk:
        break
      data += chunk
  head, _, body = data.partition(b'\r\n\r\n')
  lines = head.decode('latin-1').split('\r\n')
  headers = dict(line.split(': ', 1) for line in lines[1:])
  return int(lines[0].split()[1]), headers, body


def send_chunked(url, path, cap, content_type, total=200 * 2**20, chunk=2**16):
  """Streams a chunked body of up to `total` bytes until an answer comes (a multipart
  body is one endless part: a file for the REST API, a form field for Gradio's upload,
  whose own 10 MB check counts files only); returns (status, body, bytes sent, seconds
  from passing `cap` to the answer)."""
  host, port = url.split('//')[1].rstrip('/').split(':')
  with socket.create_connection((host, int(port)), timeout=30) as s:
    s.sendall(f'POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: {content_type}\r\n'
              'Transfer-Encoding: chunked\r\n\r\n'.encode())
    sent, passed, piece = 0, None, b'%x\r\n' % chunk + b'x' * chunk + b'\r\n'
    if content_type.startswith('multipart/'):
      name = 'note' if path.endswith('upload') else 'image"; filename="a.png'
      part = (f'--zz\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n').encode()
      s.sendall(b'%x\r\n' % len(part) + part + b'\r\n')
    while sent < total and not select.select([s], [], [], 0)[0]:
      s.sendall(piece)
      sent += chunk
      if passed is None and sent > cap:
        passed = time.perf_counter()
    select.select([s], [], [], 10)
    answered = time.perf_counter()
    data = b''
    while b'\r\n\r\n' not in data:
      data += s.recv(65536)
    head, _, body = data.partition(b'\r\n\r\n')
    length = int(next(line.split(b': ')[1] for line in head.split(b'\r\n')
                      if line.lower().startswith(b'content-length')))
    while len(body) < length:
      body += s.recv(65536)
  return int(head.split()[1]), json.loads(body), sent, answered - (passed or answered)


# 1. Bodies are bounded before they are read, whatever their framing.


@pytest.mark.parametrize('path, cap, content_type', [
    ('/api/algebra', guard_lib.JSON_BODY, 'application/json'),
    ('/api/labels', guard_lib.UPLOAD_BODY, 'multipart/form-data; boundary=zz'),
    ('/gradio_api/upload', guard_lib.UPLOAD_BODY, 'multipart/form-data; boundary=zz'),
    ('/gradio_api/queue/join', guard_lib.MAX_BODY, 'application/json'),
])
def test_chunked_bodies_are_refused_past_the_cap(server, path, cap, content_type):
  status, body, sent, late = send_chunked(server.url, path, cap, content_type)
  assert status == 413 and list(body) == ['error'], body
  assert f'larger than {cap // 2**20 or cap // 2**10} ' in body['error']
  assert sent < 200 * 2**20 and late < 1.0, (sent, late)  # Answered as the cap passed.
  # With a declared length, before a byte of the body.
  response = httpx.post(f'{server.url.rstrip("/")}{path}', content=b'x' * (cap + 1),
                        headers={'content-type': content_type})
  assert 'larger than' in error_of(response, 413)


def test_the_app_never_reads_past_the_cap():
  """The middleware alone: the app behind it gets at most the cap, then a disconnect,
  and the server's receive is not called again once the cap has passed."""
  cap, chunk = guard_lib.JSON_BODY, 10_000
  pulled, got, sent = [], [], []

  async def receive():
    pulled.append(chunk)
    return {'type': 'http.request', 'body': b'x' * chunk, 'more_body': True}

  async def reader(scope, receive, send):
    while True:
      message = await receive()
      if message['type'] == 'http.disconnect':
        break
      got.append(len(message['body']))
    await send({'type': 'http.response.start', 'status': 200, 'headers': []})
    await send({'type': 'http.response.body', 'body': b'late'})

  async def send(message):
    sent.append(message)

  guard = guard_lib.Guard(reader, demo=None, upload_dir='/nonexistent')
  scope = {'type': 'http', 'method': 'POST', 'path': '/api/algebra', 'headers': [],
           'client': ('127.0.0.1', 5)}
  asyncio.run(guard(scope, receive, send))
  assert sum(pulled) == cap // chunk * chunk + chunk  # The chunk that passed the cap.
  assert sum(got) <= cap
  assert [m.get('status') for m in sent if 'status' in m] == [413]  # Not the app's 200.
  assert json.loads(sent[1]['body'])['error'] == 'the request body is larger than 64 KB'


# 2. One gate for the page and the REST API.


@pytest.fixture
def blocked(monkeypatch):
  """Requests with k=7 compute until the event is set (both front-ends call
  `queries.answer`)."""
  release, real = threading.Event(), queries.answer

  def answer(searcher, request):
    if getattr(request, 'k', None) == 7:
      assert release.wait(60)
    return real(searcher, request)

  monkeypatch.setattr(queries, 'answer', answer)
  yield release
  release.set()


@pytest.fixture(scope='module')
def narrow(server):
  """A server whose gate lets 2 compute (1 heavy) and 2 wait."""
  gate = gate_lib.Gate(running=2, waiting=2, heavy_running=1)
  demo = app.build_app(server.backend.workdir, backend=server.backend, gate=gate)
  url = start(demo)
  yield url.rstrip('/'), gate
  demo.close()


def wait_for(condition, timeout=30):
  deadline = time.monotonic() + timeout
  while not condition():
    assert time.monotonic() < deadline, 'timed out'
    time.sleep(0.02)


def test_one_gate_for_the_page_and_the_rest_api(narrow, blocked):
  url, gate = narrow
  page = Client(url + '/', verbose=False, download_files=False)
  words = f'{url}/api/images?words=boot&k=7'
  with httpx.Client(timeout=60) as http:
    results = {}

    def rest(name):
      results[name] = http.get(words)

    threads = [threading.Thread(target=rest, args=('rest-1',))]
    threads[0].start()
    jobs = [page.submit('boot', 1.0, '', 1.0, 7, api_name='/search_words')]
    wait_for(lambda: gate.active == 2)  # A REST and a page request compute ...
    threads.append(threading.Thread(target=rest, args=('rest-2',)))
    threads[-1].start()
    jobs.append(page.submit('sandal', 1.0, '', 1.0, 7, api_name='/search_words'))
    wait_for(lambda: gate.queued == 2)  # ... one of each waits ...
    busy = http.get(words)
    assert 'the server is busy' in error_of(busy, 503)  # ... the rest is
    assert busy.headers['retry-after'] == '5'
    with pytest.raises(gradio_client.exceptions.AppError, match='the server is busy'):
      page.predict('boot', 1.0, '', 1.0, 7, api_name='/search_words')  # refused.
    blocked.set()
    for thread in threads:
      thread.join(60)
    assert [len(results[n].json()['images']) for n in ('rest-1', 'rest-2')] == [7, 7]
    assert [len(job.result(timeout=60)[1]['data']) for job in jobs] == [7, 7]
  assert gate.active == 0 and gate.queued == 0


def test_a_normal_request_passes_big_images(narrow, blocked):
  """Big images compute one at a time; a normal request takes the other slot."""
  url, gate = narrow
  with httpx.Client(timeout=60) as http:
    results = []

    def big():
      results.append(http.post(f'{url}/api/labels?k=7',
                               files={'image': ('big.png', BIG, 'image/png')}))

    threads = [threading.Thread(target=big) for _ in range(2)]
    for thread in threads:
      thread.start()
    wait_for(lambda: gate.active_heavy == 1 and gate.queued == 1)
    started = time.perf_counter()
    response = http.post(f'{url}/api/labels',
                         files={'image': ('s.png', SMALL, 'image/png')})
    assert response.status_code == 200 and len(response.json()['labels']) == 5
    assert time.perf_counter() - started < 2.0
    assert gate.active_heavy == 1 and gate.queued == 1 and not results  # Still held.
    blocked.set()
    for thread in threads:
      thread.join(60)
  assert [r.status_code for r in results] == [200, 200]


def test_the_gate_in_order():
  """First come, first served; light requests pass heavy ones that wait for the heavy
  lane; a full gate refuses; a request that leaves while waiting frees its place."""
  async def scenario():
    gate, order, hold = gate_lib.Gate(running=2, waiting=3, heavy_running=1), [], {}

    async def request(name, heavy):
      hold[name] = asyncio.Event()
      async with gate.slot(heavy):
        order.append(name)
        await hold[name].wait()

    tasks = {n: asyncio.create_task(request(n, h))
             for n, h in (('H1', True), ('H2', True), ('L1', False), ('L2', False))}
    await asyncio.sleep(0.01)
    assert order == ['H1', 'L1'] and gate.queued == 2  # H2 waits for the heavy lane.
    tasks['L3'] = asyncio.create_task(request('L3', False))
    await asyncio.sleep(0.01)
    with pytest.raises(gate_lib.Busy, match='2 requests computing, 3 waiting'):
      async with gate.slot():
        pass
    tasks.pop('L3').cancel()  # Leaves the line.
    await asyncio.sleep(0.01)
    assert gate.queued == 2
    hold['L1'].set()
    await asyncio.sleep(0.01)
    assert order == ['H1', 'L1', 'L2']  # L2 passes H2: the heavy lane is taken.
    hold['H1'].set()
    await asyncio.sleep(0.01)
    assert order == ['H1', 'L1', 'L2', 'H2']
    hold['L2'].set()
    hold['H2'].set()
    await asyncio.gather(*tasks.values())
    assert (gate.active, gate.active_heavy, gate.queued) == (0, 0, 0)

  asyncio.run(scenario())


def test_image_weight_from_the_header_alone(tmp_path):
  path = tmp_path / 'big.png'
  path.write_bytes(BIG)
  assert gate_lib.pixels(str(path)) == 3_000_000 and gate_lib.pixels(BIG) == 3_000_000
  handle = open(path, 'rb')  # pylint: disable=consider-using-with
  with handle:
    assert gate_lib.pixels(handle) == 3_000_000 and handle.tell() == 0
  assert gate_lib.pixels(b'not an image') == 0 and gate_lib.pixels(None) == 0
  assert asyncio.run(gate_lib.is_heavy([SMALL, BIG])) is True
  assert asyncio.run(gate_lib.is_heavy([SMALL, None])) is False


# 3. Every error of the REST API is one line of JSON, down to the socket.


def multipart(*parts, boundary='zz'):
  body = b''.join(f'--{boundary}\r\nContent-Disposition: form-data; name="{n}"\r\n\r\n'
                  f'{v}\r\n'.encode() for n, v in parts)
  return body + f'--{boundary}--\r\n'.encode()


MULTIPART = {'content-type': 'multipart/form-data; boundary=zz'}
JSON = {'content-type': 'application/json'}
REST_ERRORS = [
    ('put', '/api/labels', {}, 405, 'PUT is not allowed on /api/labels (use POST)'),
    ('delete', '/api/images', {}, 405, 'DELETE is not allowed on /api/images (use GET)'),
    ('post', '/docs', {}, 405, 'POST is not allowed on /docs'),
    ('get', '/api/nothing', {}, 404, 'no such route: GET /api/nothing'),
    ('get', '/api/images/12.jpg', {}, 404, 'no such route'),
    ('post', '/api/labels', dict(content=b'x', headers={
        'content-type': 'multipart/form-data'}), 400, 'Missing boundary in multipart'),
    ('post', '/api/labels', dict(content=b'--zz\r\ngarbage\r\n\r\n', headers=MULTIPART),
     400, 'multipart'),
    ('post', '/api/labels', dict(content=multipart(*[(f'f{i}', 'v') for i in range(1001)]),
                                 headers=MULTIPART), 400, 'Too many fields'),
    ('post', '/api/algebra', dict(content=b'{"ids": ["\xff\xfe"]}', headers=JSON), 400,
     'must be valid JSON in UTF-8'),
    ('post', '/api/algebra', dict(content=b'[' * 30_000 + b']' * 30_000, headers=JSON),
     400, 'must be valid JSON in UTF-8'),
    ('post', '/api/algebra', dict(content=b'[' * 100_000 + b']' * 100_000, headers=JSON),
     413, 'larger than 64 KB'),
    ('get', '/gradio_api/file=https://example.com/a.png', {}, 404, 'not found'),
]


@pytest.mark.parametrize('method, path, kwargs, status, message', REST_ERRORS,
                         ids=[f'{e[0]}-{e[1][:20]}-{e[3]}' for e in REST_ERRORS])
def test_rest_errors_are_one_line_json(server, method, path, kwargs, status, message):
  response = httpx.request(method, server.url.rstrip('/') + path, timeout=30, **kwargs)
  assert message in error_of(response, status)


def test_requests_the_server_cannot_parse_get_json(server):
  """A 200 KB query string used to reset the connection with no answer."""
  long_query = b'GET /api/images?words=' + b'a' * 200_000 + b' HTTP/1.1\r\nHost: x\r\n\r\n'
  status, headers, body = raw_exchange(server.url, long_query)
  assert status == 431 and headers['content-type'] == 'application/json'
  assert json.loads(body) == {'error': 'the request line and headers are longer than 16 KB'}
  status, _, body = raw_exchange(server.url,
                                 b'GET / HTTP/1.1\r\nHost: x\r\nno colon\r\n\r\n')
  assert status == 400 and json.loads(body) == {'error': 'malformed HTTP request'}
  # Under the limit, the app itself answers.
  response = httpx.get(f'{server.url}api/images', params={'words': 'a' * 8000})
  assert 'longer than 200 characters' in error_of(response, 400)


def test_the_running_server_has_the_demo_settings(server):
  config = server.demo.server.config
  assert config.http is server_lib.Protocol and config.proxy_headers is False
  assert server_lib.has_settings(config)


# 4, 6 and 7: a server with a password, behind a proxy at a public URL.


PUBLIC = 'https://demo.example.org/base'


@pytest.fixture(scope='module')
def secured(server):
  """Auth, a public URL, 127.0.0.1 as the trusted proxy; log-ins locked for 2 s."""
  with pytest.MonkeyPatch.context() as patch:
    patch.setattr(logins, 'WINDOW', 2.0)
    demo = app.build_app(server.backend.workdir, backend=server.backend)
    url = start(demo, auth=f'{USER}:{PASSWORD}', public_url=PUBLIC,
                trusted_proxy='127.0.0.1')
    httpx.get(url)  # The middleware is built at the first request (WINDOW read then).
  yield url.rstrip('/')
  demo.close()


def test_nothing_of_the_app_before_log_in(secured, server):
  workdir = server.backend.workdir
  secrets = ('zero_shot', 'search_words', 'gallery_id', '/api/labels', workdir,
             os.path.basename(os.path.dirname(workdir)), 'Model from')
  routes = ['/', '/?page=', '/gradio_api/runs', '/config', '/gradio_api/info',
            '/gradio_api/info?all_endpoints=true', '/gradio_api/openapi.json',
            '/openapi.json', '/docs', '/manifest.json', '/gradio_api/app_id',
            '/gradio_api/startup-events', '/theme.css', '/gradio_api/token']
  with httpx.Client(base_url=secured, timeout=30) as http:
    for route in routes:
      response = http.get(route)
      leaked = [s for s in secrets if s in response.text]
      assert not leaked, (route, response.status_code, leaked)
    page = http.get('/')
    assert page.status_code == 200 and 'window.gradio_api_info = null;' in page.text
    assert http.get('/manifest.json').status_code == 401
    # Logged in, the same page describes the API (the check above is not vacuous).
    assert http.post('/login', data={'username': USER, 'password': PASSWORD}).status_code == 200
    page = http.get('/')
    assert 'zero_shot' in page.text and 'window.gradio_api_info = null;' not in page.text
    assert workdir in http.get('/config').text


def test_log_in_brake(secured):
  """Parallel guesses: 5 are checked, the rest refused; the same brake for the page's
  log-in and the REST API; per client address (here the trusted proxy's
  X-Forwarded-For); lifted after the window, and cleared by a good log-in."""
  def guesses(address):
    headers = {'x-forwarded-for': address}

    async def main():
      async with httpx.AsyncClient(base_url=secured, timeout=30, headers=headers) as http:
        return await asyncio.gather(
            *[http.post('/login', data={'username': USER, 'password': f'x{i}'})
              for i in range(20)],
            *[http.get('/api/images', params={'words': 'boot'}, auth=(USER, f'y{i}'))
              for i in range(20)])
    return asyncio.run(main())

  answers = guesses('10.0.0.1')
  statuses = sorted(r.status_code for r in answers)
  assert statuses.count(429) == 35 and len([s for s in statuses if s in (400, 401)]) == 5
  refused = next(r for r in answers if r.status_code == 429)
  assert 'too many failed log-ins' in error_of(refused, 429)
  assert int(refused.headers['retry-after']) >= 1
  with httpx.Client(base_url=secured, timeout=30) as http:
    locked = {'x-forwarded-for': '10.0.0.1'}
    right = dict(data={'username': USER, 'password': PASSWORD})
    assert http.post('/login', headers=locked, **right).status_code == 429
    assert http.get('/api/images', params={'words': 'boot'}, auth=(USER, PASSWORD),
                    headers=locked).status_code == 429
    other = {'x-forwarded-for': '10.0.0.2'}  # Another client is not locked out.
    assert http.post('/login', headers=other, **right).status_code == 200
    time.sleep(2.1)  # The window (2 s here, a minute by default) passes.
    assert http.post('/login', headers=locked, **right).status_code == 200
    assert http.get('/api/images', params={'words': 'boot'}, auth=(USER, PASSWORD),
                    headers=locked).status_code == 200


def test_log_in_throttle_by_the_clock():
  now = [0.0]
  throttle = logins.LoginThrottle(max_failures=3, window=60, clock=lambda: now[0])
  for t in (0, 10, 20):
    now[0] = t
    assert throttle.admit('a') == 0
    throttle.done('a', ok=False)
  now[0] = 30
  assert throttle.admit('a') == 31  # Until the first failure is 60 s old.
  assert throttle.admit('b') == 0
  throttle.done('b', ok=True)
  now[0] = 60.5
  assert throttle.admit('a') == 0  # One failure left the window.
  throttle.done('a', ok=True)  # A good log-in clears the address.
  assert throttle.admit('a') == 0 and throttle.admit('a') == 0 and throttle.admit('a') == 0
  assert throttle.admit('a') == 1  # Three in flight: the next waits for their answers.


def test_urls_from_the_public_url_never_the_host(secured, server):
  with httpx.Client(timeout=30) as http:
    evil = {'host': 'evil.example:666', 'x-forwarded-host': 'evil.example',
            'x-forwarded-proto': 'https'}
    response = http.get(f'{server.url}api/images', params={'words': 'boot', 'k': 2},
                        headers=evil)
    urls = [r['url'] for r in response.json()['images']]
    assert urls == [f"/api/images/{r['id']}.png" for r in response.json()['images']]
    assert http.get(server.url + urls[0].lstrip('/')).headers['content-type'] == 'image/png'
    response = http.get(f'{secured}/api/images', params={'words': 'boot', 'k': 2},
                        headers=evil, auth=(USER, PASSWORD))
    assert [r['url'] for r in response.json()['images']] == [
        f"{PUBLIC}/api/images/{r['id']}.png" for r in response.json()['images']]
    # Gradio's result files: from the public URL; without one, a client's proxy
    # headers are dropped (Gradio's URL follows that request's own address).
    for url, auth, want in ((server.url, None, server.url.rstrip('/')),
                            (secured + '/', (USER, PASSWORD), PUBLIC)):
      grid = Client(url, verbose=False, download_files=False, auth=auth,
                    headers={'x-forwarded-host': 'evil.example'}).predict(
                        'boot', api_name='/search_words')[0]
      assert grid[0]['image']['url'].startswith(want + '/gradio_api/file='), grid[0]


def test_proxy_headers_only_from_the_trusted_proxy():
  guard = guard_lib.Guard(None, demo=None, trusted_proxies=server_lib.parse_proxies(
      '10.0.0.0/8'), upload_dir='/nonexistent')
  forwarded = [(b'x-forwarded-for', b'1.2.3.4, 10.0.0.7'), (b'x-forwarded-proto', b'https'),
               (b'x-forwarded-host', b'a.example'), (b'x-gradio-server', b'http://x')]
  scope = dict(client=('10.0.0.5', 1), scheme='http', headers=list(forwarded))
  guard._forwarded(scope)  # pylint: disable=protected-access
  assert scope['client'] == ('1.2.3.4', 0) and scope['scheme'] == 'https'
  assert dict(scope['headers'])[b'x-forwarded-host'] == b'a.example'
  assert b'x-gradio-server' not in dict(scope['headers'])
  scope = dict(client=('192.168.1.9', 1), scheme='http', headers=list(forwarded))
  guard._forwarded(scope)  # pylint: disable=protected-access
  assert scope['client'] == ('192.168.1.9', 1) and scope['scheme'] == 'http'
  assert scope['headers'] == []
  with pytest.raises(ValueError, match='trusted_proxy must be IP addresses'):
    server_lib.parse_proxies('proxy.example')
  with pytest.raises(ValueError, match='public_url must be an http'):
    app.check_options(public_url='demo.example.org')


# 5. Uploads are private to the server and never served.


def test_uploads_are_private_and_never_served(server, client):
  folder = server_lib.private_upload_dir()
  assert os.environ['GRADIO_TEMP_DIR'] == folder
  assert stat.S_IMODE(os.stat(folder).st_mode) == 0o700
  with httpx.Client(base_url=server.url.rstrip('/'), timeout=30) as http:
    for name, content in (('note.png', b'this is text, not a picture'),
                          ('shoe.png', SMALL)):
      path = http.post('/gradio_api/upload', files={'files': (name, content)}).json()[0]
      assert os.path.dirname(os.path.dirname(path)) == folder
      with open(path, 'rb') as f:
        assert f.read() == content
      for route in (f'/gradio_api/file={path}', f'/gradio_api/file/{path}',
                    f'/gradio_api/file={folder}/../{os.path.basename(folder)}'
                    f'{path[len(folder):]}'):
        assert 'not found' in error_of(http.get(route), 404), route
    # What the server made for results is served.
    grid, _, _ = client.predict('boot', api_name='/search_words')
    picture = http.get(grid[0]['image']['url'].split(server.url.rstrip('/'), 1)[1])
    assert picture.status_code == 200 and picture.headers['content-type'] == 'image/png'
    assert picture.content.startswith(b'\x89PNG')


def test_the_page_shows_an_upload_as_the_server_decoded_it(server, pictures):
  """The page's upload preview is a picture the server makes (uploads are never
  served): the decoded pixels, which give the same pixels once sent back as PNG."""
  preview = handlers.make_handlers(server.backend)['preview']
  for name in ('exif.jpg', 'rgba.png', 'i16.png', 'anim.gif'):
    shown, gallery_id = preview(pictures[name])
    assert gallery_id == -1
    np.testing.assert_array_equal(shown, images.decode(pictures[name]))
    np.testing.assert_array_equal(images.decode(png(shown)), shown)
  with pytest.raises(gr.Error, match='is not an image file'):
    preview(pictures['text.png'])


def test_the_private_folder_goes_at_exit(tmp_path):
  code = ('from devise_jax.demo import server; import os; '
          "open(os.path.join(server.private_upload_dir(), 'x'), 'w').close(); "
          'print(server.private_upload_dir())')
  out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                       check=True, timeout=120,
                       env=dict(os.environ, GRADIO_TEMP_DIR=str(tmp_path)))
  folder = out.stdout.split()[-1]
  assert os.path.dirname(folder) == str(tmp_path) and not os.path.exists(folder)


def test_zz_the_server_still_answers(server):
  """Last in this module (tests run in file order): after every hostile request above,
  the session's server answers a plain request (the workdir it serves is checked
  unchanged at the end of the session, `demo_workdir` in conftest)."""
  response = httpx.post(server.url.rstrip('/') + '/api/labels?k=3',
                        files={'image': ('a.png', SMALL, 'image/png')}, timeout=60)
  assert response.status_code == 200, response.text[:300]
  assert len(response.json()['labels']) == 3
