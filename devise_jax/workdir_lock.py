"""One writer per workdir: `hold(workdir)`, a lock on WORKDIR/.lock.

Whatever writes a workdir (`devise-jax train`, `eval`, `embed`, `protocol` and the
library functions behind them: `train.train`, `evaluate.evaluate`, `gallery.embed`,
`protocol.run_protocol`) holds the lock while it runs. A second writer is refused at
once with `WorkdirBusy`, one line naming the holder: its pid, host, command and start
time. Readers (search, the demo) never take it: they read only complete files.

The lock is `fcntl.flock(LOCK_EX | LOCK_NB)` on WORKDIR/.lock, which the kernel
releases when its holder ends in any way, so a killed holder never leaves the lock
held. The holder writes its record (JSON) into the file and removes the file when it
releases the lock; a file that still holds a record when the lock is taken was left by
a holder that died, which is said on stderr (one line) as the lock is taken over.
Within one process the lock is re-entrant (`protocol` trains and evaluates its runs,
`devise-jax train` evaluates after training). A directory the lock had to create is
removed again on release if nothing else was written into it.
"""

import contextlib
import fcntl
import json
import os
import socket
import sys
import threading
import time

LOCK_FILE = '.lock'
_held = {}  # Real path of a workdir -> [its _Holder, how many `hold`s are open].
_mutex = threading.Lock()


class WorkdirBusy(RuntimeError):
  """Another command is writing the workdir; the message names it."""


@contextlib.contextmanager
def hold(workdir, command=None):
  """Holds `workdir`'s lock for the block (re-entrant in one process); `command` is
  recorded for others to see (default: this process's command line).

  Raises `WorkdirBusy` when another process holds it. Nothing is locked when
  `workdir` is empty or names something other than a directory: the caller's own
  checks then say what is wrong with it.
  """
  if not workdir or (os.path.lexists(workdir) and not os.path.isdir(workdir)):
    yield
    return
  key = os.path.realpath(workdir)
  with _mutex:
    if key not in _held:
      _held[key] = [_acquire(workdir, command), 0]
    _held[key][1] += 1
  try:
    yield
  finally:
    with _mutex:
      _held[key][1] -= 1
      if not _held[key][1]:
        _held.pop(key)[0].release()


def holder(workdir):
  """The record of the process holding `workdir`'s lock, or None (free, or a record
  not written yet)."""
  try:
    with open(os.path.join(workdir, LOCK_FILE), 'rb') as f:
      return _record(f.read())
  except OSError:
    return None


def describe(record):
  """'pid P on host H (COMMAND, started T)' of a lock record."""
  command = ' '.join(str(record.get('command', '?')).split())
  command = command if len(command) <= 200 else command[:197] + '...'
  return (f"pid {record.get('pid', '?')} on host {record.get('host', '?')} ({command}, "
          f"started {record.get('started', '?')})")


class _Holder:
  """This process's hold: the open, locked file, and the directory it created."""

  def __init__(self, fd, path, created):
    self.fd, self.path, self.created = fd, path, created

  def release(self):
    """Removes the file (its record with it) while still locked, then unlocks it, and
    removes the directories the lock created if they are empty."""
    try:
      if _same_file(self.fd, self.path):
        os.remove(self.path)
    finally:
      os.close(self.fd)
    directory = os.path.dirname(self.path)
    while self.created and directory.startswith(self.created):
      try:
        os.rmdir(directory)
      except OSError:
        break
      directory = os.path.dirname(directory)


def _acquire(workdir, command):
  created = _make_dirs(workdir)
  path = os.path.join(os.path.abspath(workdir), LOCK_FILE)
  while True:
    try:
      fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except FileNotFoundError:  # A releasing holder removed the directory it made.
      created = _make_dirs(workdir) or created
      continue
    try:
      fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
      busy = _busy(workdir, fd)
      os.close(fd)
      raise busy from None
    if _same_file(fd, path):
      break
    os.close(fd)  # Released and removed while it was being opened: once more.
  previous = _record(os.pread(fd, 65536, 0))
  if previous:
    print(f'warning: taking over the lock of {workdir}: {describe(previous)} ended '
          'without releasing it', file=sys.stderr, flush=True)
  record = dict(pid=os.getpid(), host=socket.gethostname(),
                command=command or ' '.join([os.path.basename(sys.argv[0])] + sys.argv[1:]),
                started=time.strftime('%Y-%m-%d %H:%M:%S %z'))
  os.ftruncate(fd, 0)
  os.pwrite(fd, (json.dumps(record) + '\n').encode('utf-8'), 0)
  return _Holder(fd, path, created)


def _busy(workdir, fd):
  """The refusal naming the holder (whose record may take a moment to be written)."""
  for _ in range(20):
    record = _record(os.pread(fd, 65536, 0))
    if record:
      return WorkdirBusy(f'{workdir} is being written by {describe(record)}: wait for it '
                         'to end, or use another workdir')
    time.sleep(0.01)
  return WorkdirBusy(f'{workdir} is being written by another process (see its {LOCK_FILE}'
                     '): wait for it to end, or use another workdir')


def _record(data):
  try:
    record = json.loads(data.decode('utf-8'))
  except (UnicodeDecodeError, ValueError):
    return None
  return record if isinstance(record, dict) else None


def _same_file(fd, path):
  try:
    return os.path.samestat(os.fstat(fd), os.stat(path))
  except FileNotFoundError:
    return False


def _make_dirs(workdir):
  """Makes `workdir` and its missing parents; the topmost one made, or None."""
  top, path = None, os.path.abspath(workdir)
  while not os.path.lexists(path):
    top, path = path, os.path.dirname(path)
  os.makedirs(workdir, exist_ok=True)
  return top
