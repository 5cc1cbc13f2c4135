"""The values of a request, checked: the limits every front-end shares, and the checks
of numbers, spaces, signs and lists (`devise_jax.queries` re-exports them all).
Every refusal is a `QueryError`: its str is the line a front-end shows and its
`status` the HTTP status a web front-end answers with.
"""

import math
import re

# Limits of every request, whatever the front-end.
MAX_K = 50  # Results per query.
MAX_WEIGHT = 1e6  # Largest weight, in size.
MAX_WORD_CHARS = 200  # Characters of one word or phrase.
MAX_WORDS = 10  # Words of a words query or of an algebra query.
MAX_LABELS = 1000  # Candidate labels of one labels query.
MAX_LIST_TEXT = 100_000  # Characters of a list typed as text.
MAX_ALGEBRA_IMAGES = 4  # Images of an algebra query.

CANDIDATE_SETS = ('classes', 'vocab', 'tokens')  # `Searcher.labels`'s named sets.
SPACES = ('devise', 'siamese')  # A gallery's spaces (`gallery.SPACES`).
SIGNS = ('+', '-')


class QueryError(ValueError):
  """A refused request; str() is the one line to show, `status` its HTTP status."""

  def __init__(self, message, status=400):
    super().__init__(message)
    self.status = status


def is_blank(value):
  return value is None or (isinstance(value, str) and not value.strip())


def whole(value):
  """`value` as an int when it is a whole number (as a number or text), else None."""
  try:
    number = float(value)
  except (TypeError, ValueError):
    return None
  ok = not isinstance(value, bool) and math.isfinite(number) and number == int(number)
  return int(number) if ok else None


def check_k(value):
  """A whole number from 1 to MAX_K."""
  number = whole(value)
  if number is None or not 1 <= number <= MAX_K:
    raise QueryError(f'k must be a whole number from 1 to {MAX_K}, got {value!r}')
  return number


def check_weight(value, name):
  """A finite number of size at most MAX_WEIGHT (1 when left empty)."""
  if is_blank(value):
    return 1.0
  try:
    number = float(value)
  except (TypeError, ValueError):
    raise QueryError(f'{name} must be a number, got {value!r}') from None
  if isinstance(value, bool) or not math.isfinite(number):
    raise QueryError(f'{name} must be a finite number, got {value!r}')
  if abs(number) > MAX_WEIGHT:
    raise QueryError(f'{name} must be at most {MAX_WEIGHT:g} in size, got {value!r}')
  return number


def check_space(value):
  if value not in SPACES:
    raise QueryError(f'space must be one of {", ".join(SPACES)}, got {value!r}')
  return value


def check_sign(value, n):
  if value not in SIGNS:
    raise QueryError(f"sign {n} must be '+' or '-', got {value!r}")
  return 1.0 if value == '+' else -1.0


def items(value, what, limit):
  """The non-empty, stripped entries of a list, or of comma- or line-separated text."""
  if value is None:
    value = ()
  if isinstance(value, str):
    if len(value) > MAX_LIST_TEXT:
      raise QueryError(f'{what} is longer than {MAX_LIST_TEXT:,} characters')
    value = re.split(r'[,\n]', value)
  if not isinstance(value, (list, tuple)):
    raise QueryError(f'{what} must be text or a list')
  if len(value) > MAX_LIST_TEXT:
    raise QueryError(f'{what} has {len(value):,} entries; the limit is {limit:,}')
  out = []
  for entry in value:
    if not isinstance(entry, (str, int, float)) or isinstance(entry, bool):
      raise QueryError(f'{what} must hold text, got {entry!r}')
    text = str(entry).strip()
    if len(text) > MAX_WORD_CHARS:
      raise QueryError(f'an entry of {what} is longer than {MAX_WORD_CHARS} characters')
    if text:
      out.append(text)
  if len(out) > limit:
    raise QueryError(f'{what} has {len(out):,} entries; the limit is {limit:,}')
  return out


def one_each(values, count, what, name, check):
  """`check(value, n)` of one value per item, n from 1 (1.0 each when none are given)."""
  values = items(values, f'the {name}s', MAX_WORDS) if isinstance(values, str) else list(
      values or ())
  if not values:
    return [1.0] * count
  if len(values) != count:
    raise QueryError(f'{count} {what}(s) but {len(values)} {name}(s)')
  return [check(v, n) for n, v in enumerate(values, 1)]


def numbered_weight(name):
  return lambda value, n: check_weight(value, f'{name} {n}')


def unique(labels):
  """The labels, each once: the first spelling of those equal but for case (a word's
  vector is looked up case-insensitively, so 'Bag' and 'bag' are one label)."""
  first = {}
  for label in labels:
    first.setdefault(label.casefold(), label)
  return list(first.values())
