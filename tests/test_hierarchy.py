"""Flat hit@k and hierarchical precision@k (evaluators/hierarchy.py) against values
computed by hand on the toy hierarchy of test_wordnet.py, and the open-vocabulary keys
of the embedded default's eval.json on a tiny run."""

import json
import os

import ml_collections
import numpy as np
import pytest

from devise_jax import evaluate
from devise_jax import evaluators
from devise_jax import run as run_lib
from devise_jax import vocabulary
from devise_jax import wordnet
from test_wordnet import DOG, REX, SANDAL, SHIRT, SHOE, SNEAKER, TOY

# Classes 0 Sandal and 2 Sneaker are unseen; 1 Shoe and 3 Dog are seen (logit columns
# in that order). The vocabulary is six synsets with one-hot vectors, so an image's
# DeViSE vector lists its score for each: [shoe, sandal, sneaker, shirt, dog, Rex].
VOCAB_IDS = (SHOE, SANDAL, SNEAKER, SHIRT, DOG, REX)
DEVISE = [[.9, .7, .8, .05, .1, .02],  # A sandal: shoe, sneaker, sandal, dog, shirt.
          [.6, .05, .7, .02, .9, .8],  # A sneaker: dog, Rex, sneaker, shoe, sandal.
          [.5, .01, .02, .03, .6, .04],  # A shoe: dog, shoe, Rex, shirt, sneaker.
          [.1, .01, .02, .03, .9, .8]]  # A dog: dog, Rex, shoe, shirt, sneaker.
LOGITS = [[2., 1.], [0., 3.], [1., 0.], [0., 2.]]  # Softmax: shoe, dog, shoe, dog first.


@pytest.fixture
def data(tmp_path):
  (tmp_path / 'data.noun').write_text(TOY)
  eye = np.eye(6, dtype=np.float32)
  return evaluators.Data(
      labels=np.array([0, 2, 1, 3]), logits=np.array(LOGITS), devise=np.array(DEVISE),
      label_vectors=eye[[1, 0, 2, 4]], seen=np.array([1, 3]), unseen=np.array([0, 2]),
      names=('Sandal', 'Shoe', 'Sneaker', 'Dog'), synsets=(SANDAL, SHOE, SNEAKER, DOG),
      wordnet=wordnet.load(str(tmp_path)),
      vocabulary=vocabulary.Vocabulary(VOCAB_IDS, VOCAB_IDS, eye))


def config(**kwargs):
  return ml_collections.ConfigDict(dict(conse_top_t=2, **kwargs))


def test_open_vocab_by_hand(data):
  m = evaluators.run_all(('open_vocab',), data, config(open_vocab_k=(1, 2, 5)))
  # Unseen images. Correct sets, ring by ring: sandal {sandal} (k=1), + shoe (k=2),
  # + sneaker, shirt, then dog (k=5); sneaker {sneaker}, + shoe, + sandal, shirt, dog.
  assert m['open_vocab_num_labels'] == 6 and m['open_vocab_num_images'] == 2
  assert [m[f'open_vocab_hit@{k}'] for k in (1, 2, 5)] == [0.0, 0.0, 1.0]
  assert m['open_vocab_hp@1'] == 0.0
  assert m['open_vocab_hp@2'] == pytest.approx((1 / 2 + 0 / 2) / 2)  # {shoe} ; {}
  assert m['open_vocab_hp@5'] == pytest.approx((5 / 5 + 4 / 5) / 2)  # Rex is out.
  # The softmax names shoe, dog / dog, shoe: one of two in each correct set at k=2.
  assert m['softmax_open_vocab_hit@1'] == 0.0 and m['softmax_open_vocab_hp@1'] == 0.0
  assert m['softmax_open_vocab_hp@2'] == pytest.approx(0.5)
  assert 'softmax_open_vocab_hp@5' not in m  # It has two labels only.
  # ConSE's vector mixes shoe's and dog's: the same two first.
  assert m['conse_open_vocab_hp@1'] == 0.0
  assert m['conse_open_vocab_hp@2'] == pytest.approx(0.5)
  # Seen images. shoe: {shoe}, + sandal, sneaker, + shirt, + dog; dog: {dog}, + Rex, ...
  assert [m[f'open_vocab_seen_hit@{k}'] for k in (1, 2, 5)] == [0.5, 1.0, 1.0]
  assert m['open_vocab_seen_hp@1'] == pytest.approx(0.5)
  assert m['open_vocab_seen_hp@2'] == pytest.approx((1 / 2 + 2 / 2) / 2)
  assert m['open_vocab_seen_hp@5'] == pytest.approx((4 / 5 + 5 / 5) / 2)
  assert m['softmax_open_vocab_seen_hit@1'] == 1.0
  assert m['softmax_open_vocab_seen_hp@2'] == pytest.approx(0.5)


def test_khop_label_sets_and_class_sets_by_hand(data):
  cfg = config(hierarchy_k=(1, 2, 3), label_sets=('2-hop', '2-hop+seen', 'seen'))
  m = evaluators.run_all(('hierarchy',), data, cfg)
  # 2 hops from {shoe, dog}, with a vector: sandal, sneaker, shirt, Rex. Its images are
  # the sandal (ranking sneaker, sandal, shirt, Rex) and the sneaker (Rex, sneaker,
  # sandal, shirt); correct sets: {sandal}, + sneaker, + shirt (and the same for sneaker).
  assert m['2-hop_num_labels'] == 4 and m['2-hop_num_images'] == 2
  assert [m[f'2-hop_hit@{k}'] for k in (1, 2, 3)] == [0.0, 1.0, 1.0]
  assert m['2-hop_hp@1'] == 0.0
  assert m['2-hop_hp@2'] == pytest.approx((2 / 2 + 1 / 2) / 2)
  assert m['2-hop_hp@3'] == pytest.approx((3 / 3 + 2 / 3) / 2)
  assert 'softmax_2-hop_hp@1' not in m  # Its labels are no candidates.
  # Plus the seen synsets: the open vocabulary's six, the same images.
  assert m['2-hop+seen_num_labels'] == 6 and m['2-hop+seen_num_images'] == 2
  assert m['2-hop+seen_hp@2'] == pytest.approx(0.25)
  assert m['softmax_2-hop+seen_hp@2'] == pytest.approx(0.5)
  # The seen classes, scored by the class vectors: shoe ranks dog, shoe; dog ranks dog,
  # shoe. Around shoe the second candidate (dog) is 4 hops away.
  assert m['seen_classes_hit@1'] == 0.5 and m['seen_classes_hit@2'] == 1.0
  assert m['seen_classes_hp@2'] == 1.0
  assert m['softmax_seen_classes_hit@1'] == 1.0
  assert 'seen_classes_hp@3' not in m  # Only two candidates.


def test_hit_and_hp_against_a_plain_loop():
  rng = np.random.default_rng(0)
  top = rng.integers(0, 20, size=(50, 5)).astype(str).astype(object)
  true = list(rng.integers(0, 20, size=50).astype(str))
  sets = [frozenset(rng.integers(0, 20, size=8).astype(str)) for _ in range(50)]
  hit, hp = evaluators.hierarchy.hit_and_hp(top, true, sets)
  assert hit == pytest.approx(np.mean([t in list(r) for r, t in zip(top, true)]))
  assert hp == pytest.approx(np.mean([np.mean([p in s for p in r]) for r, s in
                                      zip(top, sets)]))


def test_bad_label_sets_and_synsets_are_one_line_errors(data):
  with pytest.raises(ValueError, match="unknown set '2hop'"):
    evaluators.run_all(('hierarchy',), data, config(label_sets=('2hop',)))
  bad = evaluators.Data(**{**data.__dict__, 'synsets': (SANDAL, 'n99999999', None, DOG)})
  with pytest.raises(ValueError, match=r"config.data.synsets: 'n99999999' \(for 'Shoe'\)"):
    evaluators.run_all(('open_vocab',), bad, config())


def test_embedded_default_reports_open_vocabulary_keys(evaluated_run):
  workdir, result = evaluated_run.workdir, evaluated_run.result
  metrics = json.loads(open(os.path.join(workdir, 'eval.json')).read())['metrics']
  for k in (1, 5, 10):
    for key in (f'open_vocab_hit@{k}', f'open_vocab_hp@{k}', f'conse_open_vocab_hit@{k}'):
      assert 0.0 <= metrics[key] <= 1.0, key
    assert metrics[f'open_vocab_hp@{k}'] >= metrics[f'open_vocab_hit@{k}'] / k
  assert metrics['open_vocab_hp@1'] == metrics['open_vocab_hit@1']
  # Flat hits against numpy: every unseen image against every WordNet noun.
  run = run_lib.Run.load(workdir)
  vocab = vocabulary.for_word_vectors(run.config.word_vectors)
  synsets = dict(run.config.data.synsets)
  data = evaluate.evaluation_data(run, result['split'])
  unseen = np.isin(data.labels, data.unseen)
  truth = np.array([vocab.index[synsets[run.names[c]]] for c in data.labels[unseen]])
  devise = data.devise[unseen] / np.linalg.norm(data.devise[unseen], axis=1, keepdims=True)
  ranks = (devise @ vocab.vectors.T > (devise * vocab.vectors[truth]).sum(1)[:, None]).sum(1)
  for k in (1, 5, 10):
    assert metrics[f'open_vocab_hit@{k}'] == pytest.approx(np.mean(ranks < k), abs=1e-9)
  assert metrics['open_vocab_num_labels'] == len(vocab) > 70_000
