"""The functions behind the demo's four endpoints, and the backend they share.

`Backend` holds a restored `devise_jax.run.Run`, its `gallery.Searcher` and the
gallery's pictures by id; the handlers check their inputs (`checks`), decode uploads
(`images.decode`), embed them with the run and ask the searcher: every score the demo
shows is the library's.
"""

import os

import numpy as np
import pandas as pd

from devise_jax import gallery
from devise_jax import run as run_lib

from . import checks
from . import images

PICKS_PER_CLASS = 4  # Gallery images offered per class in the pickers.
MAX_PICKS = 48
MAX_ALGEBRA_WORDS = 10


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


# Queries.


def _query(backend, image, gallery_id, space, name=None):
  """(vector in `space`, decoded RGB array or None) of gallery image `gallery_id`
  (already checked) or else of the uploaded `image`."""
  if gallery_id is not None:
    return backend.searcher.gallery[space][gallery_id], None
  if image is None:
    raise checks.fail(f'{name}: upload an image or pick one from the gallery' if name
                      else 'no image: upload an image or pick one from the gallery')
  array = images.decode(image, name=name or 'the image')
  features = backend.run.encode_images([array])
  embed = backend.run.devise if space == 'devise' else backend.run.siamese
  return checks.finite_vector(embed(features)[0]), array


def _has_vector(searcher, word):
  try:
    searcher.word_vector(word)
  except ValueError:
    return False
  return True


def _require_vectors(searcher, words):
  for word in words:
    if not _has_vector(searcher, word):
      raise checks.fail(f'no word vector for {word!r}: try another word')


def _candidates(searcher, candidates, labels):
  """(what they are, `Searcher.labels` candidates, a note on skipped labels)."""
  if candidates == 'classes':
    return f'the {len(searcher.names)} classes of the dataset', 'classes', ''
  if candidates == 'vocab':
    count = len(searcher.vocabulary('vocab')[0])
    return f'the {count:,} WordNet nouns with a word vector', 'vocab', ''
  if candidates == 'tokens':
    return f'all {len(searcher.kv.index_to_key):,} tokens of the word vectors', 'tokens', ''
  if candidates != 'list':
    raise checks.fail(f"candidates must be 'classes', 'list', 'vocab' or 'tokens', got "
                      f'{candidates!r}')
  items = list(dict.fromkeys(checks.split_list(labels, 'the label list',
                                               checks.MAX_LABELS)))
  if not items:
    raise checks.fail('the label list is empty: type labels separated by commas')
  known = [t for t in items if _has_vector(searcher, t)]
  unknown = [t for t in items if t not in set(known)]
  if not known:
    raise checks.fail(f'none of the labels has a word vector: {_quoted(unknown)}')
  note = (f' Skipped {len(unknown)} label(s) with no word vector: {_quoted(unknown)}.'
          if unknown else '')
  return f'your {len(known)} label(s)', known, note


def _algebra_images(backend, slots, space):
  """Vectors, weights, gallery ids, shown pictures and terms of the filled slots."""
  vectors, weights, exclude, shown, terms = [], [], [], [], []
  for n, (image, gallery_id, sign, weight) in enumerate(slots, 1):
    gid = checks.gallery_id(backend.searcher, gallery_id, f'image {n} gallery id')
    if image is None and gid is None:
      continue
    w = checks.sign(sign, n) * checks.weight(weight, f'weight {n}')
    vector, array = _query(backend, image, gid, space, f'image {n}')
    vectors.append(vector)
    weights.append(w)
    if gid is not None:
      exclude.append(gid)
      picture, what = backend.picture(gid), f'#{gid} {backend.label(gid)}'
    else:
      picture, what = images.for_display(array), f'upload {n}'
    shown.append((picture, f'{w:+g} × {what}'))
    terms.append(f'{w:+g} × {what}')
  return vectors, weights, exclude, shown, terms


def _algebra_words(words, word_weights):
  """(words, weights) of the comma-separated algebra words and their weights."""
  word_list = [checks.word(w, 'a word')
               for w in checks.split_list(words, 'the words', MAX_ALGEBRA_WORDS)]
  word_list = [w for w in word_list if w]
  texts = checks.split_list(word_weights, 'the word weights', MAX_ALGEBRA_WORDS)
  if texts and len(texts) != len(word_list):
    raise checks.fail(f'{len(word_list)} word(s) but {len(texts)} word weight(s)')
  return word_list, [checks.weight(t, 'a word weight') for t in texts] or [1.0] * len(
      word_list)


def make_handlers(backend):
  """The four endpoint functions, bound to a backend (named as their API parameters)."""
  searcher = backend.searcher

  @checks.guard
  def zero_shot(image, gallery_id=None, candidates='classes', labels='', k=5):
    k = checks.k(k)
    gid = checks.gallery_id(searcher, gallery_id)
    vector, _ = _query(backend, image, gid, 'devise')
    what, candidate_labels, note = _candidates(searcher, candidates, labels)
    result = checks.finite_scores(searcher.labels(vector, candidate_labels, k))
    unseen = ', '.join(sorted(searcher.names[i] for i in searcher.unseen)) or 'none'
    status = (f'Top {len(result)} of {what} for {_describe(backend, gid)}. '
              f'Classes unseen in training: {unseen}.{note}')
    return label_table(result), status

  @checks.guard
  def search_words(word_1, weight_1=1.0, word_2='', weight_2=1.0, k=8):
    k = checks.k(k)
    words, weights = [], []
    for i, (word, weight) in enumerate(((word_1, weight_1), (word_2, weight_2)), 1):
      word = checks.word(word, f'word {i}')
      if word:
        words.append(word)
        weights.append(checks.weight(weight, f'weight {i}'))
    if not words:
      raise checks.fail('type a word (or two) to search for')
    checks.require_gallery(searcher)
    _require_vectors(searcher, words)
    result = checks.finite_scores(searcher.words_to_images(words, weights, k))
    query = ' '.join(f'{w:+g} × {word}' for word, w in zip(words, weights))
    status = f'The {len(result)} gallery images nearest to {query} (DeViSE space).'
    return _grid(backend, result), image_table(result), status

  @checks.guard
  def similar(image, gallery_id=None, space='siamese', k=8):
    k, space = checks.k(k), checks.space(space)
    checks.require_gallery(searcher)
    gid = checks.gallery_id(searcher, gallery_id)
    vector, _ = _query(backend, image, gid, space)
    exclude = [gid] if gid is not None else []
    result = checks.finite_scores(searcher.similar(vector, space, k, exclude_ids=exclude))
    status = (f'The {len(result)} gallery images nearest to {_describe(backend, gid)} in '
              f'{space} space.')
    return _grid(backend, result), image_table(result), status

  @checks.guard
  def algebra(image_1=None, gallery_id_1=None, sign_1='+', weight_1=1.0,
              image_2=None, gallery_id_2=None, sign_2='+', weight_2=1.0,
              image_3=None, gallery_id_3=None, sign_3='+', weight_3=1.0,
              image_4=None, gallery_id_4=None, sign_4='+', weight_4=1.0,
              words='', word_weights='', space='siamese', k=8):
    k, space = checks.k(k), checks.space(space)
    checks.require_gallery(searcher)
    slots = ((image_1, gallery_id_1, sign_1, weight_1),
             (image_2, gallery_id_2, sign_2, weight_2),
             (image_3, gallery_id_3, sign_3, weight_3),
             (image_4, gallery_id_4, sign_4, weight_4))
    vectors, weights, exclude, shown, terms = _algebra_images(backend, slots, space)
    word_list, word_weights = _algebra_words(words, word_weights)
    if not vectors:
      raise checks.fail('add at least one image (two to four for image algebra)')
    if len(vectors) < 2 and not word_list:
      raise checks.fail('add a second image, or words, to do algebra')
    if word_list and space != 'devise':
      raise checks.fail("words can only be added in the devise space: choose space "
                        "'devise'")
    _require_vectors(searcher, word_list)
    result = checks.finite_scores(searcher.algebra(
        vectors, weights, word_list, word_weights, space, k, exclude_ids=exclude))
    terms += [f'{w:+g} × "{word}"' for word, w in zip(word_list, word_weights)]
    status = (f'The {len(result)} gallery images nearest to {" ".join(terms)} in '
              f'{space} space (input images are never returned).')
    return shown, _grid(backend, result), image_table(result), status

  return dict(zero_shot=zero_shot, search_words=search_words, similar=similar,
              algebra=algebra)
