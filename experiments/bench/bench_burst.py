"""The demo's server under a burst of worst-case images: memory, and a normal request.

    .venv/bin/python experiments/bench/bench_burst.py [--workdir W] [--clients 16] \
        [--seconds 20]

Starts the demo (`devise_jax.demo.app.launch`) in its own process on a free port of
127.0.0.1; without `--workdir` it first trains the tiny Fashion-MNIST config into a
temporary folder and embeds its gallery (`devise-jax train ...:tiny`, `devise-jax
embed`, about a minute). Then, reading the server's resident memory (RSS, psutil) every
20 ms:

1. idle: the RSS after a few normal requests;
2. one worst image alone, `--alone` times in a row: its time end to end (REST
   /api/labels) and the peak RSS over idle;
3. a burst: `--clients` clients (half through the REST API, half through the page's
   Gradio API: upload, then /gradio_api/call/zero_shot) each send the worst image again
   and again for `--seconds`; meanwhile one more client sends a normal 28x28 PNG to
   /api/labels every `--every` seconds and times it. Reported: the peak RSS over idle,
   the normal request's latencies, and the burst's answers by status (200, 503, ...).

The worst image admitted (`--image` takes another file): the float32 TIFF at the
decoder's memory limit (2896 x 2896 at 32 MB decoded; `worst_image`), deflate-compressed,
made with numpy and Pillow. Before that limit it was a 6300 x 6300 float TIFF (40 MP).
"""

import argparse
import collections
import contextlib
import io
import json
import math
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

import httpx
import numpy as np
import PIL.Image
import psutil

from devise_jax import images

# The demo's server in its own process, as the latency benchmark starts it.
from bench_demo import free_port, start_server

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CONFIG = os.path.join(ROOT, 'experiments', 'configs', 'fashion_mnist_zsl.py')


def worst_image():
  """The float32 TIFF with the most pixels the decoder admits (`images.MAX_DECODED_BYTES`
  at 4 bytes a pixel: 2896 x 2896 at 32 MB), the costliest admitted image for memory
  in experiments/bench/bench_decode.py."""
  side = math.isqrt(images.MAX_DECODED_BYTES // 4)
  array = np.zeros((side, side), np.float32)
  array[::7] = 1.0
  buffer = io.BytesIO()
  PIL.Image.fromarray(array, 'F').save(buffer, 'TIFF', compression='tiff_adobe_deflate')
  return buffer.getvalue()


def normal_image():
  buffer = io.BytesIO()
  PIL.Image.fromarray(np.full((28, 28), 90, np.uint8)).save(buffer, 'PNG')
  return buffer.getvalue()


def train_tiny(folder):
  """A tiny trained workdir with its gallery, as the tests make one."""
  workdir = os.path.join(folder, 'run')
  command = os.path.join(os.path.dirname(sys.executable), 'devise-jax')
  for args in (['train', '--config', f'{CONFIG}:tiny'], ['embed']):
    subprocess.run([command, *args, '--workdir', workdir], check=True, cwd=ROOT,
                   stdout=subprocess.DEVNULL)
  return workdir


class Memory:
  """The peak RSS of a process, sampled every 20 ms in a thread."""

  def __init__(self, pid):
    self.process, self.peak, self._stop = psutil.Process(pid), 0, threading.Event()
    self._thread = threading.Thread(target=self._sample, daemon=True)
    self._thread.start()

  def rss(self):
    return self.process.memory_info().rss

  def _sample(self):
    while not self._stop.is_set():
      self.peak = max(self.peak, self.rss())
      time.sleep(0.02)

  def reset(self):
    self.peak = self.rss()

  def stop(self):
    self._stop.set()
    self._thread.join()


def rest_labels(http, data, name):
  return http.post('/api/labels',
                   files={'image': (name, data, 'application/octet-stream')})


def page_labels(http, data, name):
  """What a page visitor's request costs: the upload, then the queued call."""
  uploaded = http.post('/gradio_api/upload', files={'files': (name, data)})
  if uploaded.status_code != 200:
    return uploaded
  image = {'path': uploaded.json()[0], 'meta': {'_type': 'gradio.FileData'}}
  event = http.post('/gradio_api/call/zero_shot',
                    json={'data': [image, -1, 'classes', '', 5]})
  if event.status_code != 200:
    return event
  stream = http.get(f"/gradio_api/call/zero_shot/{event.json()['event_id']}").text
  status = 200 if 'event: complete' in stream else (
      503 if 'the server is busy' in stream else 500)
  return httpx.Response(status, text=stream)


def burst(url, data, clients, seconds, normal, every):
  """Runs the burst; returns (statuses of the burst, latencies of the normal client)."""
  statuses, latencies, stop = collections.Counter(), [], threading.Event()

  def client(kind):
    with httpx.Client(base_url=url, timeout=300) as http:
      while not stop.is_set():
        statuses[(kind, kind_call[kind](http, data, 'worst.tif').status_code)] += 1

  def timed():
    with httpx.Client(base_url=url, timeout=300) as http:
      while not stop.is_set():
        started = time.perf_counter()
        response = rest_labels(http, normal, 'normal.png')
        latencies.append((time.perf_counter() - started, response.status_code))
        time.sleep(every)

  kind_call = {'rest': rest_labels, 'page': page_labels}
  threads = [threading.Thread(target=client, args=('rest' if i % 2 == 0 else 'page',))
             for i in range(clients)]
  threads.append(threading.Thread(target=timed))
  for thread in threads:
    thread.start()
  time.sleep(seconds)
  stop.set()
  for thread in threads:
    thread.join()
  return statuses, latencies


def machine():
  cpu = platform.processor()
  with contextlib.suppress(OSError):
    with open('/proc/cpuinfo', encoding='utf-8') as f:
      cpu = next((line.split(':', 1)[1].strip() for line in f
                  if line.startswith('model name')), cpu)
  import gradio  # pylint: disable=import-outside-toplevel
  import jax  # pylint: disable=import-outside-toplevel
  import uvicorn  # pylint: disable=import-outside-toplevel
  return (f'{os.cpu_count()} CPUs ({cpu}), {psutil.virtual_memory().total / 2**30:.0f} GiB; '
          f'python {platform.python_version()}, jax {jax.__version__}, gradio '
          f'{gradio.__version__}, uvicorn {uvicorn.__version__}, Pillow {PIL.__version__}, '
          f'numpy {np.__version__}')


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--workdir', default=None, help='a trained workdir with a gallery '
                      '(default: train the tiny config into a temporary folder)')
  parser.add_argument('--image', default=None, help='the worst image (default: made)')
  parser.add_argument('--clients', type=int, default=16)
  parser.add_argument('--seconds', type=float, default=20)
  parser.add_argument('--every', type=float, default=0.5, help='normal request period')
  parser.add_argument('--alone', type=int, default=3)
  args = parser.parse_args()

  folder = tempfile.mkdtemp(prefix='bench_burst-')
  workdir = os.path.abspath(args.workdir) if args.workdir else train_tiny(folder)
  if args.image:
    with open(args.image, 'rb') as f:
      data = f.read()
  else:
    data = worst_image()
  normal = normal_image()
  port = free_port()
  url = f'http://127.0.0.1:{port}'
  server, _ = start_server(workdir, port)
  load = [os.getloadavg()[0]]
  try:
    memory = Memory(server.pid)
    with httpx.Client(base_url=url, timeout=300) as http:
      for _ in range(5):
        assert rest_labels(http, normal, 'normal.png').status_code == 200
      time.sleep(1)
      idle = memory.rss()
      alone = []
      for _ in range(args.alone):
        memory.reset()
        started = time.perf_counter()
        status = rest_labels(http, data, 'worst.tif').status_code
        alone.append((time.perf_counter() - started, memory.peak - idle, status))
    memory.reset()
    statuses, latencies = burst(url, data, args.clients, args.seconds, normal, args.every)
    peak = memory.peak
    load.append(os.getloadavg()[0])
    memory.stop()
  finally:
    server.send_signal(signal.SIGINT)  # Exits cleanly: its upload folder goes too.
    server.wait(timeout=30)
    shutil.rmtree(folder, ignore_errors=True)  # The tiny run, when trained here.

  seconds = np.array([t for t, _ in latencies])
  result = dict(
      image_bytes=len(data), idle_rss_mb=idle / 2**20,
      alone=[dict(seconds=round(t, 2), peak_over_idle_mb=round(m / 2**20), status=s)
             for t, m, s in alone],
      burst=dict(clients=args.clients, seconds=args.seconds,
                 peak_over_idle_mb=round((peak - idle) / 2**20),
                 answers={f'{k} {s}': n for (k, s), n in sorted(statuses.items())}),
      normal=dict(requests=len(latencies),
                  statuses=dict(collections.Counter(s for _, s in latencies)),
                  p50_s=round(float(np.percentile(seconds, 50)), 3),
                  p95_s=round(float(np.percentile(seconds, 95)), 3),
                  max_s=round(float(seconds.max()), 3)),
      load_average_1min=[round(x, 2) for x in load],
      workdir=args.workdir or 'the tiny config, trained in a temporary folder',
      machine=machine(),
      date=time.strftime('%Y-%m-%d'))
  print(json.dumps(result, indent=2))


if __name__ == '__main__':
  main()
