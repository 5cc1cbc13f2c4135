"""Latency of the demo's zero-shot endpoint through gradio_client on localhost.

    .venv/bin/python experiments/bench/bench_demo.py --workdir workdirs/default_seed2

Starts the demo (`devise_jax.demo.app.launch`) in a separate process on a free port of
127.0.0.1, waits for it, then times `Client.predict(..., api_name='/zero_shot')` one
request at a time: an uploaded 28x28 PNG (a gallery image) with the dataset's classes
and with every raw word-vector token ('tokens', 400k) as candidates, and a gallery image by id (no
upload).
Each request is timed end to end as a client sees it (upload, queue, model, search,
answer). After `--warmup` untimed requests per case, `--requests` timed ones give p50
and p95. The same handler is also timed in this process without HTTP, to show what the
server adds, and the same requests are made with plain HTTP (httpx: upload, then the
`/gradio_api/call/zero_shot` REST API), as curl or a browser would: gradio_client polls
its message queue every 50 ms (`gradio_client.utils.stream_sse_v1plus`) and spends tens
of milliseconds in its own threads, which plain HTTP does not. `--url` times a server
that is already running instead.
"""

import argparse
import contextlib
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time

import httpx
import numpy as np

from devise_jax import files

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def free_port():
  with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]


def start_server(workdir, port):
  code = ('import sys, time\n'
          'from devise_jax.demo import app\n'
          f'app.launch({workdir!r}, port={port}, prevent_thread_lock=True, quiet=True)\n'
          'print("READY", flush=True)\n'
          'while True: time.sleep(3600)\n')
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='3')
  # As `devise-jax` does: XLA's persistent cache, so a restart skips compiling.
  env.setdefault('JAX_COMPILATION_CACHE_DIR', os.path.join(files.cache_root(), 'xla'))
  proc = subprocess.Popen([sys.executable, '-c', code], cwd=ROOT, env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
  start = time.perf_counter()
  for line in proc.stdout:
    if line.startswith('READY'):
      return proc, time.perf_counter() - start
  raise RuntimeError(f'the demo server exited with status {proc.wait()}')


def percentiles(times):
  ms = np.asarray(times) * 1e3
  return float(np.percentile(ms, 50)), float(np.percentile(ms, 95)), float(ms.mean())


def time_calls(fn, warmup, requests):
  for _ in range(warmup):
    fn()
  times = []
  for _ in range(requests):
    start = time.perf_counter()
    fn()
    times.append(time.perf_counter() - start)
  return times


def machine():
  cpu = platform.processor()
  with contextlib.suppress(OSError):
    with open('/proc/cpuinfo', encoding='utf-8') as f:
      cpu = next((line.split(':', 1)[1].strip() for line in f
                  if line.startswith('model name')), cpu)
  import gradio
  import gradio_client
  import jax
  import tensorflow as tf
  return (f'{os.cpu_count()} CPUs ({cpu}); python {platform.python_version()}, '
          f'jax {jax.__version__}, tensorflow {tf.__version__}, gradio {gradio.__version__}, '
          f'gradio_client {gradio_client.__version__}, numpy {np.__version__}')


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--workdir', default=os.path.join(ROOT, 'workdirs', 'default_seed2'))
  parser.add_argument('--url', default=None, help='a running demo (else one is started)')
  parser.add_argument('--requests', type=int, default=60)
  parser.add_argument('--warmup', type=int, default=5)
  parser.add_argument('--gallery_id', type=int, default=5)
  parser.add_argument('--no_local', action='store_true', help='skip the in-process rows')
  args = parser.parse_args()
  os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '3')

  from gradio_client import Client, handle_file
  import PIL.Image
  from devise_jax.demo import handlers
  from devise_jax.demo import images

  backend = None
  if not args.no_local or args.url is None:
    backend = handlers.Backend(args.workdir)
  picture = backend.images.get(args.gallery_id) if backend else np.zeros((28, 28, 1), 'u1')
  path = os.path.join(tempfile.mkdtemp(), 'query.png')
  PIL.Image.fromarray(picture[..., 0] if picture.shape[-1] == 1 else picture).save(path)

  server, startup = None, None
  url = args.url
  if url is None:
    port = free_port()
    server, startup = start_server(os.path.abspath(args.workdir), port)
    url = f'http://127.0.0.1:{port}/'
  load_before = os.getloadavg()
  try:
    client = Client(url, verbose=False, download_files=False)
    cases = [
        ('upload, candidates = classes', lambda: client.predict(
            handle_file(path), -1, 'classes', '', 5, api_name='/zero_shot')),
        ('upload, candidates = vocabulary', lambda: client.predict(
            handle_file(path), -1, 'tokens', '', 5, api_name='/zero_shot')),
        ('gallery id, candidates = classes', lambda: client.predict(
            None, args.gallery_id, 'classes', '', 5, api_name='/zero_shot')),
    ]
    http = httpx.Client(base_url=url.rstrip('/'), timeout=60)
    with open(path, 'rb') as f:
      png = f.read()

    def raw_http(candidates):
      """What curl would do: upload, POST /gradio_api/call/zero_shot, read the stream."""
      uploaded = http.post('/gradio_api/upload', files={'files': ('query.png', png)}).json()
      image = {'path': uploaded[0], 'meta': {'_type': 'gradio.FileData'}}
      event = http.post('/gradio_api/call/zero_shot',
                        json={'data': [image, -1, candidates, '', 5]}).json()['event_id']
      with http.stream('GET', f'/gradio_api/call/zero_shot/{event}') as stream:
        for line in stream.iter_lines():
          if line.startswith('event: error'):
            raise RuntimeError('the server answered an error')
          if line.startswith('event: complete'):
            break

    cases += [
        ('raw HTTP (httpx: upload + /gradio_api/call), classes',
         lambda: raw_http('classes')),
        ('raw HTTP (httpx: upload + /gradio_api/call), vocabulary',
         lambda: raw_http('tokens')),
    ]
    if backend is not None and not args.no_local:
      zero_shot = handlers.make_handlers(backend)['zero_shot']
      run = backend.run
      cases += [
          ('in-process handler, no HTTP: classes',
           lambda: zero_shot(path, -1, 'classes', '', 5)),
          ('in-process handler, no HTTP: vocabulary',
           lambda: zero_shot(path, -1, 'tokens', '', 5)),
          ('decode + embed only (images.decode, Run.encode_images + Run.devise)',
           lambda: run.devise(run.encode_images([images.decode(path)]))),
      ]
    rows = []
    for name, fn in cases:
      p50, p95, mean = percentiles(time_calls(fn, args.warmup, args.requests))
      rows.append((name, p50, p95, mean))
      print(f'{name}: p50 {p50:.1f} ms, p95 {p95:.1f} ms', flush=True)
  finally:
    if server is not None:
      server.terminate()
      server.wait(timeout=30)
  load_after = os.getloadavg()

  print(f'\nworkdir: {args.workdir}; {args.requests} timed requests per row after '
        f'{args.warmup} warm-up requests, one at a time')
  print(f'machine: {machine()}')
  print(f'load average (1 min) {load_before[0]:.2f} before, {load_after[0]:.2f} after'
        + (f'; server start-up {startup:.1f} s' if startup else ''))
  print('\n| request (zero-shot, top-5) | p50 | p95 | mean |\n|---|---|---|---|')
  for name, p50, p95, mean in rows:
    print(f'| {name} | {p50:.1f} ms | {p95:.1f} ms | {mean:.1f} ms |')


if __name__ == '__main__':
  main()
