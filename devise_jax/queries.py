"""The one query layer: the requests of the CLI, the demo and the REST API, checked
once here and answered by a `gallery.Searcher`.

  Labels(image, candidates, labels, k)            an image -> its top-k labels
  ImagesByWords(words, weights, k)                words -> gallery images (DeViSE space)
  Similar(image, space, k)                        an image -> gallery images
  Algebra(images, weights, signs, words, word_weights, space, k)   image algebra

An image is a `QueryImage`: a gallery id, or a file to embed (a path, bytes, a file
object or an RGB array; decoded by `devise_jax.images.decode`). Fields take values as a
front-end received them (numbers or text; lists, or comma- or line-separated text):
parsing and checks are here (the values' in `devise_jax.query_values`), so every
front-end gives a bad request the same line. A typed label list is deduplicated
case-insensitively (the first spelling kept: 'Bag' and 'bag' have one word vector).

`answer(searcher, request)` returns an `Answer` (the searcher's rows and the checked
request). Every refusal is a `QueryError`: its str is the line a front-end shows and
its `status` the HTTP status a web front-end answers with. `is_expected(error)` says
whether a failure is the input's fault and `one_line(error)` is the line shown for it:
the CLI, the Gradio handlers and the REST routes turn errors into messages with these.
"""

import dataclasses
import math
import re
from typing import Any, Sequence

import numpy as np

from devise_jax import images as images_lib
# Re-exported: the front-ends and tests find the limits and checks here.
# pylint: disable=unused-import
from devise_jax.query_values import (
    CANDIDATE_SETS, MAX_ALGEBRA_IMAGES, MAX_K, MAX_LABELS, MAX_LIST_TEXT, MAX_WEIGHT,
    MAX_WORD_CHARS, MAX_WORDS, SIGNS, SPACES, QueryError, check_k, check_sign,
    check_space, check_weight, is_blank, items, numbered_weight, one_each, unique,
    whole)
# pylint: enable=unused-import

# Requests.


@dataclasses.dataclass(frozen=True)
class QueryImage:
  """A gallery image (`gallery_id`) or an image `file` to embed; both None: no image."""
  gallery_id: Any = None
  file: Any = None


@dataclasses.dataclass(frozen=True)
class Labels:
  """Top-k labels of one image among 'classes', 'vocab', 'tokens', or 'list': `labels`."""
  image: QueryImage
  candidates: str = 'classes'
  labels: Any = ()
  k: Any = 5


@dataclasses.dataclass(frozen=True)
class ImagesByWords:
  """The gallery images nearest to the weighted words (weights: 1 each if none)."""
  words: Any
  weights: Any = ()
  k: Any = 5


@dataclasses.dataclass(frozen=True)
class Similar:
  """The gallery images nearest to one image in `space` (never the image itself)."""
  image: QueryImage
  space: str = 'siamese'
  k: Any = 5


@dataclasses.dataclass(frozen=True)
class Algebra:
  """The gallery images nearest to the weighted sum of images (empty ones skipped; their
  numbers are kept in messages) and, in the devise space, words; never an input image."""
  images: Sequence[QueryImage]
  weights: Any = ()
  signs: Any = ()
  words: Any = ()
  word_weights: Any = ()
  space: str = 'siamese'
  k: Any = 5


@dataclasses.dataclass
class Answer:
  """The rows, and the request as checked (what the front-ends describe)."""
  rows: list
  k: int
  space: str = 'devise'
  gallery_ids: list = dataclasses.field(default_factory=list)  # Per image; None: a file.
  arrays: list = dataclasses.field(default_factory=list)  # Per image: decoded file or None.
  weights: list = dataclasses.field(default_factory=list)  # Per image, sign included.
  words: list = dataclasses.field(default_factory=list)
  word_weights: list = dataclasses.field(default_factory=list)
  candidates: Any = None  # Labels: a set's name, or the labels that have a vector.
  skipped: list = dataclasses.field(default_factory=list)  # Labels with no vector.


# The searcher's gallery, words and images.


def require_gallery(searcher):
  """The gallery's size; a 404 QueryError when the workdir has none."""
  if searcher.gallery is None:
    raise QueryError(f'{searcher.workdir} has no gallery {searcher.gallery_name!r}: run '
                     f'`devise-jax embed --workdir {searcher.workdir}` first', status=404)
  return len(searcher.meta['refs'])


def check_gallery_id(searcher, value, name='gallery id'):
  """An id of the searcher's gallery (None when `value` is empty)."""
  if is_blank(value):
    return None
  number = whole(value)
  if number is None:
    raise QueryError(f'{name} must be a whole number, got {value!r}')
  size = require_gallery(searcher)
  if not 0 <= number < size:
    raise QueryError(f'{name} {number} is not in the gallery (ids 0 to {size - 1})')
  return number


def without_vector(searcher, words):
  """The words (or phrases) of `words` that have no word vector."""
  missing = []
  for word in words:
    try:
      searcher.word_vector(word)
    except ValueError:
      missing.append(word)
  return missing


def _require_vectors(searcher, words):
  missing = without_vector(searcher, words)
  if missing:
    raise QueryError(f'no word vector for {missing[0]!r}: try another word')


def _quoted(words, limit=10):
  return ', '.join(map(repr, words[:limit])) + (' ...' if len(words) > limit else '')


def _image(searcher, image, space, name):
  """(vector in `space`, gallery id or None, decoded array or None) of one image."""
  gid = check_gallery_id(searcher, image.gallery_id,
                         'gallery id' if name == 'the image' else f'{name} gallery id')
  if gid is not None:
    return require_finite(searcher.gallery[space][gid]), gid, None
  if image.file is None:
    raise QueryError('no image: upload an image or pick one from the gallery')
  array = image.file if isinstance(image.file, np.ndarray) else images_lib.decode(
      image.file, name=name)
  devise, siamese = searcher.embed_images([array])
  vector = devise[0] if space == 'devise' else siamese[0]
  return require_finite(vector), None, array


def require_finite(vector):
  if not np.isfinite(vector).all():
    raise QueryError('the model gave a non-finite embedding for this image')
  return vector


def _finite_rows(rows):
  for row in rows:
    if not math.isfinite(row['score']):
      raise QueryError('the search gave a non-finite score for this input')
  return rows


# The four requests.


def _labels(searcher, request):
  k = check_k(request.k)
  candidates, skipped = _candidates(searcher, request.candidates, request.labels)
  vector, gid, array = _image(searcher, request.image, 'devise', 'the image')
  rows = searcher.labels(vector, candidates, k)
  return Answer(_finite_rows(rows), k, gallery_ids=[gid], arrays=[array],
                candidates=candidates, skipped=skipped)


def _candidates(searcher, candidates, labels):
  """(`Searcher.labels` candidates, the listed labels skipped for want of a vector)."""
  if candidates in CANDIDATE_SETS:
    return candidates, []
  if candidates != 'list':
    raise QueryError(f"candidates must be one of {', '.join(CANDIDATE_SETS)} or list, "
                     f'got {candidates!r}')
  listed = unique(items(labels, 'the label list', MAX_LABELS))
  if not listed:
    raise QueryError('the label list is empty: type labels separated by commas')
  skipped = without_vector(searcher, listed)
  if len(skipped) == len(listed):
    raise QueryError(f'none of the labels has a word vector: {_quoted(listed)}')
  return [t for t in listed if t not in set(skipped)], skipped


def _images_by_words(searcher, request):
  k = check_k(request.k)
  words = items(request.words, 'words', MAX_WORDS)
  if not words:
    raise QueryError('words is empty: give one or more words')
  weights = one_each(request.weights, len(words), 'word', 'weight',
                     numbered_weight('weight'))
  require_gallery(searcher)
  _require_vectors(searcher, words)
  rows = searcher.words_to_images(words, weights, k)
  return Answer(_finite_rows(rows), k, words=words, word_weights=weights)


def _similar(searcher, request):
  k, space = check_k(request.k), check_space(request.space)
  require_gallery(searcher)
  vector, gid, array = _image(searcher, request.image, space, 'the image')
  exclude = [gid] if gid is not None else []
  rows = searcher.similar(vector, space, k, exclude_ids=exclude)
  return Answer(_finite_rows(rows), k, space, gallery_ids=[gid], arrays=[array])


def _algebra(searcher, request):
  k, space = check_k(request.k), check_space(request.space)
  require_gallery(searcher)
  slots = list(request.images)
  weights = one_each(request.weights, len(slots), 'image', 'weight',
                     numbered_weight('weight'))
  signs = one_each(request.signs, len(slots), 'image', 'sign', check_sign)
  words = items(request.words, 'words', MAX_WORDS)
  word_weights = one_each(request.word_weights, len(words), 'word', 'word weight',
                           numbered_weight('word weight'))
  filled = [n for n, image in enumerate(slots, 1)
            if not (is_blank(image.gallery_id) and image.file is None)]
  check_algebra(len(filled), len(words), space)
  vectors, answer = [], Answer([], k, space, words=words, word_weights=word_weights)
  for n in filled:
    vector, gid, array = _image(searcher, slots[n - 1], space, f'image {n}')
    vectors.append(vector)
    answer.gallery_ids.append(gid)
    answer.arrays.append(array)
    answer.weights.append(signs[n - 1] * weights[n - 1])
  _require_vectors(searcher, words)
  exclude = sorted({g for g in answer.gallery_ids if g is not None})
  answer.rows = _finite_rows(searcher.algebra(vectors, answer.weights, words,
                                              word_weights, space, k, exclude_ids=exclude))
  return answer


def check_algebra(num_images, num_words, space):
  """The rules of image algebra: 1 to MAX_ALGEBRA_IMAGES images, two terms at least,
  words only in the devise space (where words and images share one space)."""
  if not 1 <= num_images <= MAX_ALGEBRA_IMAGES:
    raise QueryError(f'give 1 to {MAX_ALGEBRA_IMAGES} images (uploads or gallery ids), '
                     f'got {num_images}')
  if num_images < 2 and not num_words:
    raise QueryError('add a second image, or words, to do algebra')
  if num_words and space != 'devise':
    raise QueryError("words can only be added in the devise space: choose space 'devise'")


_ANSWER = {Labels: _labels, ImagesByWords: _images_by_words, Similar: _similar,
           Algebra: _algebra}


def answer(searcher, request):
  """The `Answer` to `request`, or a `QueryError` naming what is wrong with it."""
  try:
    return _ANSWER[type(request)](searcher, request)
  except QueryError:
    raise
  except ValueError as e:  # An ImageError, or the library's words (weights that cancel).
    message = one_line(e)
    raise QueryError(f'{message}; change a weight' if 'weights cancel' in message
                     else message) from None


def is_expected(error):
  """Whether `error` is the input's fault (shown as one line, no traceback) rather than
  a bug: a ValueError (QueryError, ImageError, ...), KeyError or FileNotFoundError, or
  an error class of devise_jax's own (CheckpointError, TrainingError, ...)."""
  return (isinstance(error, (ValueError, KeyError, FileNotFoundError))
          or type(error).__module__.split('.')[0] == 'devise_jax')


def one_line(error):
  """The one line a front-end shows for `error`."""
  message = str(error.args[0] if isinstance(error, KeyError) and error.args else error)
  message = message.strip().splitlines()[0] if message.strip() else type(error).__name__
  return re.sub(r'^(combine|normalize): ', '', message)
