"""Files written whole or not at all, and JSON read with errors that name the file.

`write_atomic` is the one way this package writes a file that must never be seen half
written (the workdir's run files, caches, galleries, reports): the bytes go to a
temporary file beside the target, which is then renamed over it.
"""

import json
import os
import uuid


class CheckpointError(RuntimeError):
  """A workdir or checkpoint that cannot be used as it is."""


def write_atomic(path, write):
  """Calls `write(f)` on a temporary binary file beside `path`, then renames it to
  `path`: a crash never leaves half a file, and a failed `write` leaves `path` as it
  was (the temporary file is removed)."""
  tmp = f'{path}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}'
  try:
    with open(tmp, 'wb') as f:
      write(f)
    os.replace(tmp, path)
  finally:
    if os.path.exists(tmp):
      os.remove(tmp)


def cache_root():
  """The user's cache directory: $DEVISE_JAX_CACHE or ~/.cache/devise_jax."""
  return os.path.expanduser(os.environ.get('DEVISE_JAX_CACHE') or '~/.cache/devise_jax')


def write_bytes(path, data):
  write_atomic(path, lambda f: f.write(data))


def write_text(path, text):
  write_bytes(path, text.encode('utf-8'))


def write_json(path, obj):
  write_text(path, json.dumps(obj, indent=2, sort_keys=True) + '\n')


def read_json(path):
  try:
    with open(path, encoding='utf-8') as f:
      return json.load(f)
  except FileNotFoundError:
    raise CheckpointError(f'{path} is missing: is this a devise-jax workdir?') from None
  except (json.JSONDecodeError, UnicodeDecodeError) as e:
    raise CheckpointError(f'{path} is corrupt: {e}') from None
