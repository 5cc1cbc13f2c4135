"""The functions behind the demo's four endpoints, and the backend they share.

`Backend` holds a restored `devise_jax.run.Run`, its `gallery.Searcher` and the
gallery's pictures by id. The handlers are translators: they build a request of the
query layer (`devise_jax.queries`, which checks it, decodes uploads and asks the
searcher: every score the demo shows is the library's) and lay its answer out as the
page shows it. `guard` turns every failure into a one-line `gr.Error`.
"""

import functools
import logging
import os

import gradio as gr
import numpy as np
import pandas as pd

from devise_jax import gallery
from devise_jax import queries
from devise_jax import run as run_lib

from . import images

log = logging.getLogger(__name__)

PICKS_PER_CLASS = 4  # Gallery images offered per class in the pickers.
MAX_PICKS = 48


class Backend:
  """The run, its searcher and the gallery's pictures, loaded once for every visitor."""

  def __init__(self, workdir=None, *, run=None):
    self.run = run or run_lib.Run.load(workdir)
    self.workdir = os.path.abspath(self.run.workdir)
    self.searcher = gallery.Searcher(self.run)
    self.images = None
    if self.searcher.gallery is not None:
      self.images = images.GalleryImages(self.run.config, self.searcher.meta['refs'],
                                         self.searcher.gallery.get('labels'))
    self._warm_up()

  def _warm_up(self):
    """Compiles the embedders and searches once: the first visitor waits no longer."""
    features = self.run.encode_images([np.zeros((28, 28, 3), np.uint8)])
    vector = self.run.devise(features)[0]
    self.searcher.labels(vector, 'classes', 5)
    self.searcher.labels(vector, 'vocab', 5)
    if self.run.has('stage3'):
      self.run.siamese(features)
    if self.searcher.gallery is not None:
      self.searcher.similar(self.searcher.gallery['siamese'][0], 'siamese', 8,
                            exclude_ids=[0])

  def gallery_size(self):
    return 0 if self.searcher.gallery is None else len(self.searcher.meta['refs'])

  def label(self, gallery_id):
    return self.searcher.meta['label_names'][gallery_id]

  def picture(self, gallery_id):
    return images.for_display(self.images.get(gallery_id))

  def pick_ids(self):
    """A few gallery ids of each class, for the pickers."""
    if self.searcher.gallery is None:
      return []
    by_label = {}
    for i, name in enumerate(self.searcher.meta['label_names']):
      ids = by_label.setdefault(name, [])
      if len(ids) < PICKS_PER_CLASS:
        ids.append(i)
    return [i for ids in by_label.values() for i in ids][:MAX_PICKS]


# What the page shows.


def label_table(rows):
  return pd.DataFrame([[r, x['label'], round(x['score'], 4), bool(x['unseen'])]
                       for r, x in enumerate(rows, 1)],
                      columns=['rank', 'label', 'score', 'unseen'])


def image_table(rows):
  return pd.DataFrame([[r, x['id'], x['label'], round(x['score'], 4)]
                       for r, x in enumerate(rows, 1)],
                      columns=['rank', 'id', 'label', 'score'])


def _grid(backend, rows):
  return [(backend.picture(x['id']), f"#{x['id']} {x['label']} · {x['score']:.3f}")
          for x in rows]


def _describe(backend, gallery_id):
  if gallery_id is None:
    return 'the uploaded image'
  return f'gallery image #{gallery_id} ({backend.label(gallery_id)})'


def _quoted(words, limit=10):
  return ', '.join(repr(w) for w in words[:limit]) + (' ...' if len(words) > limit else '')


# Failures as one line.


def fail(message):
  return gr.Error(message, print_exception=False)


def guard(fn):
  """Turns every failure of `fn` into a one-line gr.Error (the server logs the bugs)."""

  @functools.wraps(fn)
  def wrapper(*args, **kwargs):
    try:
      return fn(*args, **kwargs)
    except gr.Error:
      raise
    except Exception as e:  # pylint: disable=broad-except
      if queries.is_expected(e):
        raise fail(queries.one_line(e)) from None
      log.exception('demo: unexpected error in %s', fn.__name__)
      raise fail('internal error while answering this request (it was logged on the '
                 'server); try another input') from None

  return wrapper


# Requests from the page's inputs.


def _picked(value):
  """The page's gallery id: -1 (or nothing) means 'use the uploaded image'."""
  try:
    return None if value is None or float(value) < 0 else value
  except (TypeError, ValueError):
    return value  # The query layer names it.


def _image(image, gallery_id):
  gallery_id = _picked(gallery_id)
  return queries.QueryImage(gallery_id=gallery_id,
                            file=image if gallery_id is None else None)


def _candidates_text(searcher, answer):
  """What the candidates were, and a note on the labels left out."""
  if answer.candidates == 'classes':
    return f'the {len(searcher.names)} classes of the dataset'
  if answer.candidates == 'vocab':
    return f"the {len(searcher.vocabulary('vocab')[0]):,} WordNet nouns with a word vector"
  if answer.candidates == 'tokens':
    return f'all {len(searcher.kv.index_to_key):,} tokens of the word vectors'
  return f'your {len(answer.candidates)} label(s)'


def _skipped_note(skipped):
  if not skipped:
    return ''
  return (f' Skipped {len(skipped)} label(s) with no word vector: '
          f'{_quoted(skipped)}.')


def _inputs_shown(backend, answer, slots):
  """(pictures of the algebra's input images, their terms) for the page."""
  shown, terms = [], []
  filled = [n for n, (image, gid) in enumerate(slots, 1)
            if _picked(gid) is not None or image is not None]
  for n, gid, array, w in zip(filled, answer.gallery_ids, answer.arrays, answer.weights):
    if gid is not None:
      picture, what = backend.picture(gid), f'#{gid} {backend.label(gid)}'
    else:
      picture, what = images.for_display(array), f'upload {n}'
    shown.append((picture, f'{w:+g} × {what}'))
    terms.append(f'{w:+g} × {what}')
  return shown, terms


def make_handlers(backend):
  """The four endpoint functions, bound to a backend (named as their API parameters),
  and the page's upload preview."""
  searcher = backend.searcher

  @guard
  def zero_shot(image, gallery_id=None, candidates='classes', labels='', k=5):
    answer = queries.answer(searcher, queries.Labels(
        _image(image, gallery_id), candidates, labels, k))
    unseen = ', '.join(sorted(searcher.names[i] for i in searcher.unseen)) or 'none'
    status = (f'Top {len(answer.rows)} of {_candidates_text(searcher, answer)} for '
              f'{_describe(backend, answer.gallery_ids[0])}. Classes unseen in training: '
              f'{unseen}.{_skipped_note(answer.skipped)}')
    return label_table(answer.rows), status

  @guard
  def search_words(word_1, weight_1=1.0, word_2='', weight_2=1.0, k=8):
    pairs = [(w, x) for w, x in ((word_1, weight_1), (word_2, weight_2))
             if not (w is None or (isinstance(w, str) and not w.strip()))]
    answer = queries.answer(searcher, queries.ImagesByWords(
        [w for w, _ in pairs], [x for _, x in pairs], k))
    query = ' '.join(f'{w:+g} × {word}' for word, w in zip(answer.words,
                                                           answer.word_weights))
    status = f'The {len(answer.rows)} gallery images nearest to {query} (DeViSE space).'
    return _grid(backend, answer.rows), image_table(answer.rows), status

  @guard
  def similar(image, gallery_id=None, space='siamese', k=8):
    answer = queries.answer(searcher, queries.Similar(_image(image, gallery_id), space, k))
    status = (f'The {len(answer.rows)} gallery images nearest to '
              f'{_describe(backend, answer.gallery_ids[0])} in {space} space.')
    return _grid(backend, answer.rows), image_table(answer.rows), status

  @guard
  def algebra(image_1=None, gallery_id_1=None, sign_1='+', weight_1=1.0,
              image_2=None, gallery_id_2=None, sign_2='+', weight_2=1.0,
              image_3=None, gallery_id_3=None, sign_3='+', weight_3=1.0,
              image_4=None, gallery_id_4=None, sign_4='+', weight_4=1.0,
              words='', word_weights='', space='siamese', k=8):
    slots = ((image_1, gallery_id_1), (image_2, gallery_id_2), (image_3, gallery_id_3),
             (image_4, gallery_id_4))
    answer = queries.answer(searcher, queries.Algebra(
        [_image(image, gid) for image, gid in slots],
        [weight_1, weight_2, weight_3, weight_4], [sign_1, sign_2, sign_3, sign_4],
        words, word_weights, space, k))
    shown, terms = _inputs_shown(backend, answer, slots)
    terms += [f'{w:+g} × "{word}"' for word, w in zip(answer.words, answer.word_weights)]
    status = (f'The {len(answer.rows)} gallery images nearest to {" ".join(terms)} in '
              f'{space} space (input images are never returned).')
    return shown, _grid(backend, answer.rows), image_table(answer.rows), status

  @guard
  def preview(image):
    """An upload as the model sees it (decoded: EXIF-rotated, composited, shrunk), and
    -1 for the gallery id: the page shows this picture, made by the server, because
    uploads are never served back. Predicting on it gives the upload's answer (the
    decoder gives the same pixels back from this lossless PNG)."""
    return images.decode(image), -1

  return dict(zero_shot=zero_shot, search_words=search_words, similar=similar,
              algebra=algebra, preview=preview)
