"""Galleries and queries on a tiny trained workdir, against numpy references."""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import PIL.Image
import pytest
import tensorflow_datasets as tfds

from devise_jax import checkpoint
from devise_jax import gallery
from devise_jax import queries
from devise_jax import run as run_lib
from devise_jax import search
from devise_jax import vocabulary


@pytest.fixture(scope='module')
def workdir(reference_run, tmp_path_factory):
  _, reference, _ = reference_run
  path = tmp_path_factory.mktemp('gallery') / 'run'
  shutil.copytree(reference, path)
  name, count = gallery.embed(run_lib.Run.load(str(path)))
  assert count == 256 and name == gallery.gallery_name('test[:256]')
  return str(path)


def test_gallery_round_trip_matches_embedding_the_raw_images(workdir, reference_run):
  config = reference_run[0]
  arrays, meta = checkpoint.load_gallery(workdir, gallery.gallery_name('test[:256]'))
  raw = tfds.data_source(config.data.name, split='test[:256]',
                         data_dir=config.data.data_dir)
  images, labels = zip(*[(x['image'], x['label']) for x in raw])
  searcher = gallery.Searcher(run_lib.Run.load(workdir))
  devise_vectors, siamese_vectors = searcher.embed_images(list(images[:20]))
  np.testing.assert_allclose(arrays['devise'][:20], devise_vectors, atol=1e-4)
  np.testing.assert_allclose(arrays['siamese'][:20], siamese_vectors, atol=1e-4)
  np.testing.assert_array_equal(arrays['labels'], labels)
  run = run_lib.Run.load(workdir)
  stage1 = run.encode_images(list(images[:20]), stage='stage1')
  np.testing.assert_allclose(arrays['logits'][:20], run.logits(stage1), atol=1e-3)
  assert meta['refs'][5] == f'tfds:{config.data.name}/test[:256]/5'
  np.testing.assert_allclose(np.linalg.norm(arrays['devise'], axis=1), 1.0, atol=1e-5)
  np.testing.assert_allclose(np.linalg.norm(arrays['siamese'], axis=1), 1.0, atol=1e-5)


def test_words_to_images_cli_matches_numpy(workdir):
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='3')
  proc = subprocess.run(
      [sys.executable, '-c', 'from devise_jax import cli; cli.run()', 'search',
       '--workdir', workdir, '--words', 'trouser', '--k', '4'],
      capture_output=True, text=True, env=env, timeout=300)
  assert proc.returncode == 0, proc.stderr[-2000:]
  result = json.loads(proc.stdout)
  searcher = gallery.Searcher(run_lib.Run.load(workdir))
  assert searcher.config.eval.words_to_images == 'conse'  # The default ranking.
  query = searcher.word_vector('trouser')
  scores = _conse_keys_by_loop(searcher) @ query
  expected = np.argsort(-scores, kind='stable')[:4]
  assert [r['id'] for r in result] == list(expected)
  for r in result:
    assert r['label'] == searcher.names[searcher.gallery['labels'][r['id']]]
    assert r['score'] == pytest.approx(scores[r['id']], abs=1e-5)
    assert r['ref'].endswith(f"/{r['id']}")


def _conse_keys_by_loop(searcher):
  """Each gallery image's unit ConSE vector, one image at a time."""
  run, top_t = searcher.run, searcher.config.eval.conse_top_t
  keys = []
  for logits in searcher.gallery['logits'].astype(np.float64):
    probs = np.exp(logits - logits.max())
    probs /= probs.sum()
    best = sorted(range(len(probs)), key=lambda j: -probs[j])[:top_t]
    v = sum(probs[j] * run.label_space.vectors[run.seen[j]] for j in best)
    keys.append(v / np.linalg.norm(v))
  return np.array(keys)


def test_words_to_images_by_devise_cosine_and_old_galleries(workdir, tmp_path):
  run = run_lib.Run.load(workdir)
  run.config.eval.words_to_images = 'cosine'
  searcher = gallery.Searcher(run)
  query = searcher.word_vector('boot')
  scores = searcher.gallery['devise'] @ query
  result = searcher.words_to_images(['boot'], k=5)
  assert [r['id'] for r in result] == list(np.argsort(-scores, kind='stable')[:5])
  # A gallery saved before galleries kept the stage-1 logits: 'cosine' still ranks it,
  # 'conse' asks for it to be made again.
  old = tmp_path / 'old'
  shutil.copytree(workdir, old)
  name = searcher.gallery_name
  arrays, meta = checkpoint.load_gallery(str(old), name)
  del arrays['logits']
  checkpoint.save_gallery(str(old), name, arrays, meta)
  old_run = run_lib.Run.load(str(old))
  old_run.config.eval.words_to_images = 'cosine'
  assert gallery.Searcher(old_run).words_to_images(['boot'], k=5) == result
  old_run.config.eval.words_to_images = 'conse'
  with pytest.raises(ValueError, match=r"has no stage-1 logits.*run `devise-jax embed "):
    gallery.Searcher(old_run).words_to_images(['boot'], k=5)


def test_words_to_images_label_softmax_ranking_matches_a_loop(workdir):
  run = run_lib.Run.load(workdir)
  run.config.eval.words_to_images = 'label_softmax'
  run.config.eval.label_softmax_beta = 10.0
  run.config.eval.label_softmax_calibrated = True
  run.gamma = 0.05  # Seen classes' scores lowered by 0.05 in the penalty.
  searcher = gallery.Searcher(run)
  result = searcher.words_to_images(['trouser'], k=6)
  query = searcher.word_vector('trouser')
  keys = searcher.gallery['devise'].astype(np.float64)
  keys /= np.linalg.norm(keys, axis=1, keepdims=True)
  classes = sorted(set(run.seen) | set(run.unseen))
  want = []
  for x in keys:
    total = sum(np.exp(10.0 * (x @ run.label_space.vectors[c] - 0.05 * (c in run.seen)))
                for c in classes)
    want.append(x @ query - np.log(total) / 10.0)
  want = np.array(want)
  assert [r['id'] for r in result] == list(np.argsort(-want, kind='stable')[:6])
  np.testing.assert_allclose([r['score'] for r in result], np.sort(want)[::-1][:6],
                             atol=1e-5)


def test_algebra_never_returns_its_inputs(workdir):
  searcher = gallery.Searcher(run_lib.Run.load(workdir))
  emb = searcher.gallery['siamese']
  a, b = 3, 40
  result = searcher.algebra([emb[a], emb[b]], [1.0, 1.0], space='siamese', k=5,
                            exclude_ids=[a, b])
  ids = [r['id'] for r in result]
  assert a not in ids and b not in ids
  query = search.normalize(emb[a] + emb[b])
  scores = emb @ query
  scores[[a, b]] = -np.inf
  assert ids == list(np.argsort(-scores, kind='stable')[:5])


def test_image_to_labels_marks_unseen_and_vocab_works(workdir):
  searcher = gallery.Searcher(run_lib.Run.load(workdir))
  vector = searcher.gallery['devise'][0]
  by_class = searcher.labels(vector, 'classes', k=10)
  assert sorted(r['label'] for r in by_class) == sorted(searcher.names)
  assert {r['label'] for r in by_class if r['unseen']} == {'Sandal', 'Shirt', 'Ankle boot'}
  scores = searcher.label_space.vectors @ vector
  if searcher.run.gamma is not None:  # Calibrated stacking lowers the seen classes.
    scores[searcher.run.seen] -= searcher.run.gamma
  assert by_class[0]['label'] == searcher.names[int(np.argmax(scores))]
  tokens = searcher.labels(vector, 'tokens', k=3)
  kv_scores = searcher.kv.get_normed_vectors() @ vector
  assert tokens[0]['label'] == searcher.kv.index_to_key[int(np.argmax(kv_scores))]
  # 'vocab': WordNet nouns with a vector (their vectors: tests/test_wordnet.py).
  nouns = vocabulary.for_word_vectors(searcher.config.word_vectors)
  best = int(np.argmax(nouns.vectors @ vector))
  vocab = searcher.labels(vector, 'vocab', k=3)
  assert (vocab[0]['synset'], vocab[0]['label']) == (nouns.ids[best], nouns.labels[best])
  listed = searcher.labels(vector, ['boot', 'shirt'], k=2)
  assert {r['label'] for r in listed} == {'boot', 'shirt'}


def test_bad_queries_are_clear_errors(workdir):
  searcher = gallery.Searcher(run_lib.Run.load(workdir))
  with pytest.raises(ValueError, match="no word vector for 'qwxzzy'"):
    searcher.words_to_images(['qwxzzy'])
  v = searcher.gallery['siamese'][7]
  with pytest.raises(ValueError, match='cancel'):
    searcher.algebra([v, v], [1.0, -1.0])
  # The query layer's checks (tests/test_queries.py has the table of them).
  with pytest.raises(queries.QueryError, match='words is empty'):
    queries.answer(searcher, queries.ImagesByWords([' ']))
  with pytest.raises(queries.QueryError, match='label list is empty'):
    queries.answer(searcher, queries.Labels(queries.QueryImage(0), 'list', [' ']))
  with pytest.raises(queries.QueryError, match='devise space'):
    queries.answer(searcher, queries.Algebra([queries.QueryImage(7)], words=['boot']))


def test_embed_an_image_folder(workdir, tmp_path):
  rng = np.random.default_rng(0)
  for cls, mode in (('Bag', 'L'), ('Coat', 'RGB'), ('unknown', 'RGBA')):
    (tmp_path / 'pics' / cls).mkdir(parents=True)
    for i in range(2):
      array = rng.integers(0, 255, size=(40 + i, 30, 4), dtype=np.uint8)
      PIL.Image.fromarray(array, 'RGBA').convert(mode).save(tmp_path / 'pics' / cls / f'{i}.png')
  name, count = gallery.embed(run_lib.Run.load(workdir), folder=str(tmp_path / 'pics'))
  arrays, meta = checkpoint.load_gallery(workdir, name)
  assert count == 6 and name == 'folder-pics'
  assert meta['label_names'] == ['Bag', 'Bag', 'Coat', 'Coat', 'unknown', 'unknown']
  names = gallery.Searcher(run_lib.Run.load(workdir)).names
  assert list(arrays['labels']) == [names.index('Bag')] * 2 + [names.index('Coat')] * 2 + [-1] * 2
  assert all(os.path.isfile(ref) for ref in meta['refs'])
  with pytest.raises(ValueError, match='no images'):
    gallery.embed(run_lib.Run.load(workdir), folder=str(tmp_path / 'pics' / 'nothing'))


def test_classes_ranking_uses_calibrated_stacking(workdir):
  searcher = gallery.Searcher(run_lib.Run.load(workdir))
  vector = searcher.gallery['devise'][0]
  cosine = searcher.label_space.vectors @ vector
  unseen = {searcher.names[i] for i in searcher.unseen}
  for gamma, want_unseen in ((10.0, True), (-10.0, False)):
    searcher.run.gamma = gamma
    rows = searcher.labels(vector, 'classes', k=len(searcher.names))
    assert rows[0]['unseen'] is want_unseen
    # Within each group the order is the cosine's; scores are cosine - gamma x seen.
    for r in rows:
      i = searcher.names.index(r['label'])
      assert r['cosine'] == pytest.approx(cosine[i], abs=1e-6)
      assert r['score'] == pytest.approx(cosine[i] - (0 if r['label'] in unseen else gamma),
                                         abs=1e-6)
    assert [r['score'] for r in rows] == sorted((r['score'] for r in rows), reverse=True)
