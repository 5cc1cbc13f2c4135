"""Input checks of the demo's endpoints: every bad input becomes a one-line `gr.Error`.

Each check takes what a visitor (or an API client) sent and returns the clean value, or
raises `gr.Error` with a message naming the problem. `guard` wraps a handler so that
anything else that goes wrong (a library `ValueError`, an unreadable image, a bug)
also reaches the visitor as one line, never as a traceback.
"""

import functools
import logging
import math
import re

import gradio as gr
import numpy as np

from devise_jax import checkpoint
from devise_jax import gallery

from . import images

log = logging.getLogger(__name__)

MAX_LABELS = 1000  # Most candidate labels a visitor may type.
MAX_LABEL_TEXT = 100_000  # Characters of the typed label list.
MAX_WORD_CHARS = 200  # Characters of one query word or phrase.
MAX_WEIGHT = 1e6
MAX_K = 50
SIGNS = ('+', '-')


def fail(message):
  return gr.Error(message, print_exception=False)


def k(value):
  """A whole number from 1 to MAX_K."""
  message = f'k must be a whole number from 1 to {MAX_K}, got {value!r}'
  try:
    number = float(value)
  except (TypeError, ValueError):
    raise fail(message) from None
  if not math.isfinite(number) or number != int(number) or not 1 <= number <= MAX_K:
    raise fail(message)
  return int(number)


def weight(value, name):
  """A finite number (1 when left empty)."""
  if value is None or (isinstance(value, str) and not value.strip()):
    return 1.0
  try:
    number = float(value)
  except (TypeError, ValueError):
    raise fail(f'{name} must be a number, got {value!r}') from None
  if not math.isfinite(number) or abs(number) > MAX_WEIGHT:
    raise fail(f'{name} must be a finite number (at most 1e6 in size), got {value!r}')
  return number


def sign(value, n):
  if value not in SIGNS:
    raise fail(f"sign {n} must be '+' or '-', got {value!r}")
  return 1.0 if value == '+' else -1.0


def word(value, name):
  """A stripped word or phrase ('' when empty)."""
  if value is None:
    return ''
  if not isinstance(value, str):
    raise fail(f'{name} must be text')
  text = value.strip()
  if len(text) > MAX_WORD_CHARS:
    raise fail(f'{name} is longer than {MAX_WORD_CHARS} characters')
  return text


def space(value):
  if value not in gallery.SPACES:
    raise fail(f'space must be one of {", ".join(gallery.SPACES)}, got {value!r}')
  return value


def require_gallery(searcher):
  """The gallery's size; an error when the workdir has none."""
  if searcher.gallery is None:
    raise fail(f'this workdir has no gallery: run `devise-jax embed --workdir '
               f'{searcher.workdir}` and restart the demo')
  return len(searcher.meta['refs'])


def gallery_id(searcher, value, name='gallery_id'):
  """None (use the uploaded image: None, '' or a negative number) or a gallery id."""
  if value is None or (isinstance(value, str) and not value.strip()):
    return None
  try:
    number = float(value)
  except (TypeError, ValueError):
    raise fail(f'{name} must be a whole number, got {value!r}') from None
  if not math.isfinite(number) or number != int(number):
    raise fail(f'{name} must be a whole number, got {value!r}')
  if number < 0:
    return None
  size = require_gallery(searcher)
  if number >= size:
    raise fail(f'{name} {int(number)} is not in the gallery (ids 0 to {size - 1})')
  return int(number)


def split_list(text, what, limit):
  """The non-empty entries of a comma- or line-separated list, at most `limit`."""
  if text is None:
    text = ''
  if not isinstance(text, str):
    raise fail(f'{what} must be text')
  if len(text) > MAX_LABEL_TEXT:
    raise fail(f'{what} is longer than {MAX_LABEL_TEXT:,} characters')
  items = [t.strip() for t in re.split(r'[,\n]', text)]
  items = [t for t in items if t]
  if len(items) > limit:
    raise fail(f'{what} has {len(items):,} entries; the limit is {limit:,}')
  return items


def finite_vector(vector):
  if not np.isfinite(vector).all():
    raise fail('the model gave a non-finite embedding for this image')
  return vector


def finite_scores(rows):
  for row in rows:
    if not math.isfinite(row['score']):
      raise fail('the search gave a non-finite score for this input')
  return rows


# Failures that are the input's fault (a one-line message, no traceback logged).
EXPECTED_ERRORS = (images.ImageError, ValueError, KeyError, FileNotFoundError,
                   checkpoint.CheckpointError)


def one_line(error):
  message = str(error.args[0] if isinstance(error, KeyError) and error.args else error)
  message = message.splitlines()[0] if message else type(error).__name__
  return re.sub(r'^(combine|normalize): ', '', message)


def guard(fn):
  """Turns every failure of `fn` into a one-line gr.Error (the server logs the bugs)."""

  @functools.wraps(fn)
  def wrapper(*args, **kwargs):
    try:
      return fn(*args, **kwargs)
    except gr.Error:
      raise
    except EXPECTED_ERRORS as e:
      raise fail(one_line(e)) from None
    except Exception:  # pylint: disable=broad-except
      log.exception('demo: unexpected error in %s', fn.__name__)
      raise fail('internal error while answering this request (it was logged on the '
                 'server); try another input') from None

  return wrapper
