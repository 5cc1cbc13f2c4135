"""A brake on password guessing: one for the page's log-in and the REST API's basic auth.

After `MAX_FAILURES` failed log-ins from one client address within `WINDOW` seconds,
that address's log-ins are refused (HTTP 429, without checking the password) until
the oldest of those failures is `WINDOW` seconds old. Attempts still being checked
count as failures until they are answered, so a burst of parallel guesses gets no
more than `MAX_FAILURES` passwords checked. A successful log-in clears the address.

The server's middleware (`guard.py`) calls `admit` before a log-in attempt reaches
Gradio's /login or a REST route with credentials, and `done` with the answer; it all
runs on the server's event loop, so there is no lock.
"""

import collections
import time

MAX_FAILURES = 5
WINDOW = 60.0  # Seconds.
MAX_ADDRESSES = 10_000  # Addresses remembered; the oldest are forgotten past this.


class LoginThrottle:
  """Failed log-ins by client address."""

  def __init__(self, max_failures=None, window=None, clock=time.monotonic):
    self.max_failures = max_failures or MAX_FAILURES
    self.window, self.clock = window or WINDOW, clock
    self._failures = collections.OrderedDict()  # address -> deque of failure times
    self._pending = collections.Counter()  # address -> attempts being checked

  def _recent(self, address):
    times = self._failures.get(address)
    if times is None:
      return ()
    while times and times[0] <= self.clock() - self.window:
      times.popleft()
    if not times:
      del self._failures[address]
      return ()
    return times

  def admit(self, address):
    """0 if a log-in from `address` may be checked now (it then counts as pending),
    else the seconds until it may."""
    recent = self._recent(address)
    if len(recent) + self._pending[address] >= self.max_failures:
      if len(recent) < self.max_failures:
        return 1  # Attempts in flight would reach the limit: wait for their answers.
      return max(1, int(recent[-self.max_failures] + self.window - self.clock()) + 1)
    self._pending[address] += 1
    return 0

  def done(self, address, ok):
    """Records the answer to an attempt that `admit` let through."""
    self._pending[address] -= 1
    if self._pending[address] <= 0:
      del self._pending[address]
    if ok:
      self._failures.pop(address, None)
      return
    times = self._failures.setdefault(address, collections.deque())
    times.append(self.clock())
    self._failures.move_to_end(address)
    while len(self._failures) > MAX_ADDRESSES:
      self._failures.popitem(last=False)
