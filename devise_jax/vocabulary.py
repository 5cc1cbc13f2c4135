"""The open vocabulary: WordNet nouns with word vectors, or the raw word-vector tokens.

The first seed project named images among the WordNet nouns that have a word vector
(~49k with fastText); so do we (`wordnet_nouns`), in the CLI (`search --labels vocab`),
the demo and the evaluators (`open_vocab`, `hierarchy`). Its entries are noun synsets,
not strings: hits and hierarchical precision are then judged on WordNet itself, and the
four senses of 'boot' are four entries, not one.

A synset's vector is built the way `wordvec.build_label_space` builds an ImageNet
class's ('tench, Tinca tinca'): the unit mean of its lemmas' unit vectors, a multi-word
lemma ('kit fox') being the unit mean of its words' vectors (`wordvec.phrase_vector`:
the whole phrase is tried as one token first); lemmas without a vector are skipped, and
a synset none of whose lemmas has one is left out. Its label is its first covered lemma.

The raw tokens (`tokens`: 400,000 for GloVe 6B) stay available as an option
(`search --labels tokens`, the demo's "raw tokens" choice).

Building the WordNet vocabulary takes a few seconds, so it is cached pickle-free beside
the word vectors' own cache (`wordvec.cache_path`), keyed by the data.noun file.
"""

import dataclasses
import functools
import hashlib
import json
import logging
import os

import numpy as np

from devise_jax import files
from devise_jax import wordnet
from devise_jax import wordvec

_log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True, eq=False)
class Vocabulary:
  """Candidate labels: ids (synset ids, or the tokens), display labels, unit vectors."""
  ids: tuple
  labels: tuple
  vectors: np.ndarray  # [V, D] float32, unit rows.

  @functools.cached_property
  def index(self):
    """{id: row}."""
    return {s: i for i, s in enumerate(self.ids)}

  def __len__(self):
    return len(self.ids)


def synset_vectors(kv, wn):
  """(synset ids, labels, [V, D] unit vectors) of the synsets of `wn` that have one."""
  ids, labels, vectors = [], [], []
  for synset, lemmas in zip(wn.ids, wn.lemmas):
    units = [(lemma, wordvec.phrase_vector(kv, lemma)) for lemma in lemmas]
    units = [(lemma, u) for lemma, u in units if u is not None]
    if not units:
      continue
    mean = np.mean([u for _, u in units], axis=0, dtype=np.float64)
    norm = np.linalg.norm(mean)
    if not np.isfinite(norm) or norm == 0:
      continue
    ids.append(synset)
    labels.append(units[0][0])
    vectors.append((mean / norm).astype(np.float32))
  if not ids:
    raise ValueError('no WordNet noun has a word vector')
  return tuple(ids), tuple(labels), np.stack(vectors)


def wordnet_nouns(kv, wn=None, cache_dir=None):
  """The `Vocabulary` of WordNet nouns with vectors in `kv`; cached in `cache_dir`
  (normally `wordvec.cache_path(...)` of the vectors; None: not cached)."""
  wn = wn or wordnet.load()
  if cache_dir is None:
    return Vocabulary(*synset_vectors(kv, wn))
  stamp = hashlib.sha1('\n'.join(wn.ids).encode() + repr(wn.lemmas).encode()).hexdigest()
  directory = os.path.join(cache_dir, f'wordnet-nouns-{stamp[:16]}')
  try:
    with open(os.path.join(directory, 'labels.json'), encoding='utf-8') as f:
      ids, labels = json.load(f)
    vectors = np.load(os.path.join(directory, 'vectors.npy'), allow_pickle=False)
    if vectors.shape[0] == len(ids) == len(labels):
      return Vocabulary(tuple(ids), tuple(labels), vectors)
  except (OSError, ValueError, EOFError):  # Missing or damaged: rebuild.
    pass
  ids, labels, vectors = synset_vectors(kv, wn)
  try:
    os.makedirs(directory, exist_ok=True)
    files.write_atomic(os.path.join(directory, 'vectors.npy'),
                       lambda f: np.save(f, vectors))
    files.write_bytes(os.path.join(directory, 'labels.json'),
                      json.dumps([ids, labels]).encode('utf-8'))
  except OSError as e:
    _log.warning('could not cache the WordNet vocabulary in %s: %s', directory, e)
  return Vocabulary(ids, labels, vectors)


def tokens(kv):
  """The `Vocabulary` of every raw token of the word vectors."""
  words = tuple(kv.index_to_key)
  return Vocabulary(words, words, kv.get_normed_vectors())


def for_word_vectors(word_vectors, kv=None):
  """The WordNet noun vocabulary of a `config.word_vectors` (its vectors loaded unless
  `kv` is given), cached beside them."""
  kv = kv if kv is not None else wordvec.load_keyedvectors(word_vectors.source,
                                                           word_vectors.format)
  return wordnet_nouns(kv, cache_dir=wordvec.cache_path(word_vectors.source,
                                                        word_vectors.format))


CLASS_TEXTS = ('name', 'synset', 'synset_hypernyms')


def class_texts(names, overrides, synsets, kind, wn=None):
  """{class name: text} of the label space (`wordvec.build_label_space` overrides).

  'name': the class name alone (or its override). 'synset': the name and its WordNet
  synset's lemmas ('Bag' -> 'Bag, bag, handbag, pocketbook, purse'), so a class vector
  averages its synonyms; 'synset_hypernyms': those and the lemmas of the synset's
  direct hypernyms. An explicit override always wins; a class without a synset keeps
  its name. `synsets` maps class names to WordNet 3.0 noun ids (`config.data.synsets`).
  """
  if kind not in CLASS_TEXTS:
    raise ValueError(f'config.word_vectors.class_text must be one of {CLASS_TEXTS}, '
                     f'got {kind!r}')
  texts = dict(overrides)
  if kind == 'name':
    return texts
  wn = wn or wordnet.load()
  for name in names:
    synset = (synsets or {}).get(name)
    if name in texts or synset is None:
      continue
    row = wn.row(synset)
    rows = [row] + (list(wn.hypernyms[row]) if kind == 'synset_hypernyms' else [])
    lemmas = [lemma for r in rows for lemma in wn.lemmas[r] if ',' not in lemma]
    texts[name] = ', '.join([name] + list(dict.fromkeys(lemmas)))
  return texts


def label_space(config, names, kv=None):
  """The run's `wordvec.LabelSpace` of `names`: the config's word vectors, overrides,
  `word_vectors.class_text` and `data.synsets`."""
  wv = config.word_vectors
  kv = kv or wordvec.load_keyedvectors(wv.source, wv.format)
  texts = class_texts(names, dict(wv.overrides), dict(config.data.get('synsets') or {}),
                      wv.get('class_text', 'name'))
  return wordvec.build_label_space(kv, names, texts)
