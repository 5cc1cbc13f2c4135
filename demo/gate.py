"""One gate for every request that computes: the page's endpoints and the REST API.

At most `RUNNING` requests compute at once and at most `WAITING` wait; a request past
that is refused at once (`Busy`: 503 in the REST API, a one-line error in the page)
rather than queued without end. The gate is taken before an uploaded image is decoded
(decoding is the expensive part), so a waiting request holds only its upload, which
sits on disk (Gradio's upload folder; Starlette spools REST uploads over 1 MB to disk).

Heavy requests, those with an image whose header claims more than `HEAVY_PIXELS`
pixels, compute one at a time: the memory of decoding big images is bounded by one
decode, and a normal request is not stuck behind a burst of big ones. The waiting list
is first come, first served, except that a light request may pass heavy ones that wait
for the heavy lane.

Every method runs on the server's event loop (the REST routes and the page's
endpoints are coroutines there); only the work itself runs in a thread of the gate's
own: heavy work always in the same one, since each thread that decodes a big image
keeps its own few hundred MB of freed memory (glibc's per-thread arenas), and light work
in `RUNNING` others.
"""

import asyncio
import collections
import concurrent.futures
import contextlib
import functools
import inspect
import io
import warnings

import anyio
import PIL.Image

RUNNING = 2  # Requests computed at once (2 CPU cores).
WAITING = 64  # Requests waiting; more are refused.
HEAVY_PIXELS = 2_000_000  # An image over 2 megapixels is heavy: one at a time.
HEAVY_RUNNING = 1


class Busy(Exception):
  """The gate is full: the request is refused, not queued."""

  status = 503


class Gate:
  """`async with gate.slot(heavy):` waits its turn, or raises `Busy` when full."""

  def __init__(self, running=RUNNING, waiting=WAITING, heavy_running=HEAVY_RUNNING):
    self.running, self.waiting, self.heavy_running = running, waiting, heavy_running
    self.active, self.active_heavy = 0, 0
    self._queue = collections.deque()  # (heavy, future) in order of arrival.
    self._threads = {
        False: concurrent.futures.ThreadPoolExecutor(running, 'demo-light'),
        True: concurrent.futures.ThreadPoolExecutor(heavy_running, 'demo-heavy')}

  def _may_start(self, heavy):
    return self.active < self.running and (not heavy
                                           or self.active_heavy < self.heavy_running)

  def _start(self, heavy):
    self.active += 1
    self.active_heavy += heavy

  def _admit_waiting(self):
    """Starts the waiting requests that may start now, oldest first."""
    for entry in list(self._queue):
      heavy, future = entry
      if future.cancelled():  # Its request went away: it leaves the line.
        self._queue.remove(entry)
      elif self._may_start(heavy):
        self._queue.remove(entry)
        self._start(heavy)
        future.set_result(None)

  @property
  def queued(self):
    """Requests waiting now."""
    return len(self._queue)

  def busy_message(self):
    return (f'the server is busy ({self.active} requests computing, '
            f'{len(self._queue)} waiting); try again in a few seconds')

  @contextlib.asynccontextmanager
  async def slot(self, heavy=False):
    heavy = bool(heavy)
    if self._may_start(heavy):  # Nobody waiting could take this slot (see _finish).
      self._start(heavy)
    elif len(self._queue) >= self.waiting:
      raise Busy(self.busy_message())
    else:
      entry = (heavy, asyncio.get_running_loop().create_future())
      self._queue.append(entry)
      try:
        await entry[1]
      except asyncio.CancelledError:  # The client went away while waiting.
        if entry in self._queue:
          self._queue.remove(entry)
        elif not entry[1].cancelled():  # Admitted just before: hand the slot on.
          self._finish(heavy)
        raise
    try:
      yield
    finally:
      self._finish(heavy)

  def _finish(self, heavy):
    self.active -= 1
    self.active_heavy -= heavy
    self._admit_waiting()

  async def run(self, work, heavy=False):
    """`work()` in one of the gate's threads once the gate lets it through."""
    async with self.slot(heavy):
      future = asyncio.get_running_loop().run_in_executor(self._threads[heavy], work)
      try:
        return await asyncio.shield(future)
      except asyncio.CancelledError:  # The work goes on: its slot stays taken till then.
        await asyncio.wait([future])
        raise


def pixels(source):
  """The pixel count an image file's header claims (path, bytes or file object), 0 if
  there is no readable header; nothing is decoded. A file object is rewound."""
  if source is None or isinstance(source, (int, float)):
    return 0
  try:
    with warnings.catch_warnings():
      warnings.simplefilter('ignore')
      opened = io.BytesIO(source) if isinstance(source, (bytes, bytearray)) else source
      with PIL.Image.open(opened) as image:
        return image.width * image.height
  except Exception:  # pylint: disable=broad-except
    return 0  # Not an image: the decoder refuses it quickly.
  finally:
    if hasattr(source, 'seek'):
      source.seek(0)


async def is_heavy(sources):
  """Whether any of the images (paths, bytes or file objects) is heavy."""
  sources = [s for s in sources if s is not None]
  if not sources:
    return False
  counts = await anyio.to_thread.run_sync(lambda: [pixels(s) for s in sources])
  return max(counts) > HEAVY_PIXELS


def gated(gate, fn, image_args=(), busy=Busy):
  """`fn` as a coroutine that computes behind `gate` (in a worker thread), with `fn`'s
  signature (Gradio names its API parameters after it). The arguments named in
  `image_args` are the images whose size makes the request heavy. A full gate raises
  `busy(message)`."""
  signature = inspect.signature(fn)

  @functools.wraps(fn)
  async def wrapper(*args, **kwargs):
    bound = signature.bind(*args, **kwargs)
    heavy = await is_heavy([bound.arguments.get(name) for name in image_args])
    try:
      return await gate.run(functools.partial(fn, *args, **kwargs), heavy)
    except Busy as e:
      raise busy(str(e)) from None

  return wrapper
