"""Evaluation metrics against plain loops and toy cases whose answer is known."""

import math

import ml_collections
import numpy as np
import pytest

from devise_jax import evaluators
from devise_jax import search
from devise_jax.evaluators import common
from devise_jax.evaluators import conse
from devise_jax.evaluators import words_to_images


def _metrics(labels, logits, emb, vecs, seen, unseen, top_t=5, hit_k=(1, 2, 5)):
  data = evaluators.Data(labels=np.asarray(labels), logits=logits, devise=emb,
                         label_vectors=vecs, seen=np.asarray(seen),
                         unseen=np.asarray(unseen))
  cfg = ml_collections.ConfigDict(dict(conse_top_t=top_t, hit_k=hit_k))
  return evaluators.run_all(('zero_shot', 'gzsl', 'conse', 'seen_hit'), data, cfg)


def _unit(x):
  return x / np.linalg.norm(x, axis=-1, keepdims=True)


def _reference(labels, logits, emb, vecs, seen, unseen, top_t):
  """The same protocol written as plain loops, one image at a time."""
  seen, unseen = list(seen), list(unseen)
  zsl, conse, gzsl = {}, {}, {}
  for y, lg, e in zip(labels, logits, emb):
    scores = [float(e @ v) for v in vecs]
    gzsl.setdefault(y, []).append(max(range(len(vecs)), key=lambda c: scores[c]) == y)
    if y in unseen:
      zsl.setdefault(y, []).append(max(unseen, key=lambda c: scores[c]) == y)
      p = np.exp(lg - lg.max())
      p /= p.sum()
      order = sorted(range(len(seen)), key=lambda i: -p[i])[:top_t]
      f = sum(p[i] * vecs[seen[i]] for i in order) / sum(p[i] for i in order)
      conse.setdefault(y, []).append(max(unseen, key=lambda c: float(f @ vecs[c])) == y)
  flat = lambda d: np.mean([x for v in d.values() for x in v])
  per_class = lambda d, cs: np.mean([np.mean(d[c]) for c in cs if c in d])
  s, u = per_class(gzsl, seen), per_class(gzsl, unseen)
  return dict(zsl_top1=flat(zsl), per_class_zsl_top1=per_class(zsl, unseen),
              gzsl_seen=s, gzsl_unseen=u, gzsl_h=2 * s * u / (s + u),
              conse_zsl_top1=flat(conse), chance_zsl_top1=1 / len(unseen))


def test_metrics_match_plain_loops_on_random_predictions():
  rng = np.random.default_rng(0)
  vecs = _unit(rng.normal(size=(7, 5)))
  seen, unseen = np.array([0, 2, 3, 5]), np.array([1, 4, 6])
  labels = rng.integers(0, 7, size=300)
  logits = rng.normal(size=(300, 4)) * 3
  emb = vecs[labels] + rng.normal(size=(300, 5)) * 0.8
  got = _metrics(labels, logits, emb, vecs, seen, unseen, top_t=2)
  for key, value in _reference(labels, logits, emb, vecs, seen, unseen, 2).items():
    assert got[key] == pytest.approx(value), key


def test_toy_model_with_known_answers():
  # Classes 0, 1 seen; 2 sits next to 0 and 3 next to 1 in word-vector space.
  vecs = _unit(np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 0.3], [0.3, 1.0]]))
  seen, unseen = np.array([0, 1]), np.array([2, 3])
  labels = np.array([0, 1, 2, 3, 3])
  emb = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 0.35], [0.3, 1.0], [1.0, 0.0]])
  # Stage-1 softmax: the class-3 images look like seen class 1, except the last one.
  logits = np.array([[5.0, 0.0], [0.0, 5.0], [5.0, 0.0], [0.0, 5.0], [5.0, 0.0]])
  m = _metrics(labels, logits, emb, vecs, seen, unseen, top_t=1,
                                 hit_k=(1, 2))
  assert m['zsl_top1'] == pytest.approx(2 / 3)  # The last image goes to class 2.
  assert m['per_class_zsl_top1'] == pytest.approx((1.0 + 0.5) / 2)
  assert m['conse_zsl_top1'] == pytest.approx(2 / 3)
  assert m['chance_zsl_top1'] == 0.5
  assert m['gzsl_seen'] == 1.0
  # GZSL: image 2 -> class 2 (score .99 > .95); image 3 -> class 3; image 4 -> class 0.
  assert m['gzsl_unseen'] == pytest.approx((1.0 + 0.5) / 2)
  assert m['gzsl_h'] == pytest.approx(2 * 1.0 * 0.75 / 1.75)
  assert m['seen_hit@1'] == 1.0 and m['seen_hit@2'] == 1.0
  assert m['softmax_seen_hit@1'] == 1.0


def test_topk_hit_and_per_class_mean_by_hand():
  scores = np.array([[0.1, 0.9, 0.5], [0.8, 0.1, 0.2]])
  np.testing.assert_array_equal(common.topk_hit(scores, np.array([2, 2]), 1), [0, 0])
  np.testing.assert_array_equal(common.topk_hit(scores, np.array([2, 2]), 2), [1, 1])
  correct = np.array([1.0, 0.0, 0.0, 1.0])
  assert common.per_class_mean(correct, np.array([0, 0, 0, 1])) == pytest.approx(
      (1 / 3 + 1) / 2)


def test_conse_embedding_by_hand():
  probs = np.array([[0.6, 0.3, 0.1]])
  seen_vecs = np.eye(3)
  np.testing.assert_allclose(conse.conse_embedding(probs, seen_vecs, 2),
                             [[0.6 / 0.9, 0.3 / 0.9, 0.0]])


def test_missing_unseen_images_is_an_error():
  vecs = np.eye(3)
  with pytest.raises(ValueError, match='both seen and unseen'):
    _metrics(np.array([0, 1]), np.zeros((2, 2)), np.eye(3)[:2], vecs,
                               [0, 1], [2])


def test_unknown_evaluator_is_an_error_naming_the_choices():
  data = evaluators.Data(labels=np.array([0, 1]), logits=np.zeros((2, 1)),
                         devise=np.eye(2), label_vectors=np.eye(2), seen=np.array([0]),
                         unseen=np.array([1]))
  with pytest.raises(ValueError, match="unknown evaluators \\['zsl'\\].*zero_shot"):
    evaluators.run_all(('zsl',), data, ml_collections.ConfigDict())


def test_words_to_images_by_hand():
  # Two classes on the axes; class 0's word vector's 10 nearest images: 6 of class 0.
  vecs = np.eye(2)
  emb = np.array([[1.0, 0.1 * i] for i in range(6)] + [[1.0, 0.9 + 0.01 * i] for i in range(4)]
                 + [[0.0, 1.0]] * 10)
  labels = np.array([0] * 6 + [1] * 14)
  data = evaluators.Data(labels=labels, logits=np.zeros((20, 1)), devise=emb,
                         label_vectors=vecs, seen=np.array([0]), unseen=np.array([1]),
                         names=('a', 'b'))
  got = dict(evaluators.EVALUATORS['words_to_images'](data, None))
  assert got['words_to_images_seen_precision@10'] == pytest.approx(0.6)
  assert got['words_to_images_precision@10/a'] == pytest.approx(0.6)
  assert got['words_to_images_unseen_precision@10'] == pytest.approx(1.0)


def test_words_to_images_conse_keys_by_hand():
  # Seen a, b on the axes, unseen c = unit(1, 1, 0.2). The DeViSE vectors all point at c,
  # so cosine ranking cannot tell the images apart (ties: gallery order, the a images
  # first). The classifier is sure of a and b images and split evenly on c images, whose
  # ConSE key is then unit(a + b): cosine 2 / (sqrt 2 sqrt 2.04) = 0.990 with c, against
  # 0.700 for the a images' key (nearly a itself).
  words = _unit(np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [1.0, 1.0, 0.2]]))
  labels = np.array([0] * 10 + [1] * 10 + [2] * 10)
  logits = np.array([[9.0, 0.0]] * 10 + [[0.0, 9.0]] * 10 + [[0.0, 0.0]] * 10)
  data = evaluators.Data(labels=labels, logits=logits, devise=np.tile(words[2], (30, 1)),
                         label_vectors=words, seen=np.array([0, 1]), unseen=np.array([2]),
                         names=('a', 'b', 'c'))
  cfg = ml_collections.ConfigDict(dict(words_to_images='conse', conse_top_t=2))
  keys = words_to_images.image_keys(data.devise, logits, words[:2], cfg)
  p = 1 / (1 + np.exp(-9.0))  # An a image's probability of a.
  np.testing.assert_allclose(keys[0], np.array([p, 1 - p, 0.0]) / np.hypot(p, 1 - p))
  np.testing.assert_allclose(keys[20], [2 ** -0.5, 2 ** -0.5, 0.0])
  assert keys[20] @ words[2] == pytest.approx(2 / np.sqrt(2 * 2.04))
  got = dict(evaluators.EVALUATORS['words_to_images'](data, cfg))
  assert got['words_to_images_seen_precision@10'] == 1.0
  assert got['words_to_images_unseen_precision@10'] == 1.0
  cosine = dict(evaluators.EVALUATORS['words_to_images'](data, None))
  assert cosine['words_to_images_seen_precision@10'] == 0.5  # a: 1, b: 0.
  assert cosine['words_to_images_unseen_precision@10'] == 0.0


def test_csls_penalty_by_hand():
  labels = np.array([[1.0, 0.0], [0.0, 1.0]])
  reference = _unit(np.array([[1.0, 0.0], [1.0, 1.0], [0.0, 1.0], [1.0, 0.1]]))
  got = common.csls_penalty(reference, labels, k=2)
  # Class 0's two nearest: cos 1.0 and 0.995; class 1's: 1.0 and 0.707.
  np.testing.assert_allclose(got, [(1 + 1 / np.sqrt(1.01)) / 2, (1 + 1 / np.sqrt(2)) / 2])


def test_penalty_shifts_zero_shot_scores():
  # Two unseen classes; every image is a little nearer class 2, the hub: a penalty on
  # class 2 larger than the gap hands class 3 its images back.
  vecs = _unit(np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.7, 0.7], [0.0, 0.6, 0.8]]))
  emb = np.array([[0.0, 1.0, 0.2], [0.0, 0.69, 0.72], [1.0, 0.0, 0.0]])
  labels = np.array([2, 3, 0])
  kw = dict(labels=labels, logits=np.zeros((3, 2)), devise=emb, label_vectors=vecs,
            seen=np.array([0, 1]), unseen=np.array([2, 3]))
  cfg = ml_collections.ConfigDict(dict(conse_top_t=1, hit_k=(1,)))
  plain = dict(evaluators.EVALUATORS['zero_shot'](evaluators.Data(**kw), cfg))
  penalty = np.array([0.0, 0.0, 0.05, 0.0])
  fixed = dict(evaluators.EVALUATORS['zero_shot'](
      evaluators.Data(class_penalty=penalty, **kw), cfg))
  assert plain['zsl_top1'] == 0.5 and fixed['zsl_top1'] == 1.0


def test_label_softmax_penalty_against_a_loop():
  rng = np.random.default_rng(0)
  keys, labels = _unit(rng.normal(size=(7, 4))), _unit(rng.normal(size=(3, 4)))
  shift = np.array([0.2, 0.0, 0.0])
  got = search.label_softmax_penalty(keys, labels, beta=5.0, shift=shift, chunk=3)
  for key, value in zip(keys, got):
    total = sum(math.exp(5.0 * (float(key @ label) - s)) for label, s in zip(labels, shift))
    assert value == pytest.approx(math.log(total) / 5.0, abs=1e-6)
  # Through topk: scores (times sqrt 2) are query . key - penalty, best first.
  query = labels[1]
  scores, ids = search.topk(np.append(query, 1.0), search.with_penalty(keys, got), 7)
  want = keys @ query - got
  np.testing.assert_array_equal(ids, np.argsort(-want))
  np.testing.assert_allclose(scores * np.sqrt(2.0), want[ids], atol=1e-5)


def test_words_to_images_label_softmax_demotes_hubs():
  # Words a and b share their third axis. Ten 'hub' images of class b lie on that axis
  # (cosine 0.707 with both words); ten class-a images at [1, 0.5, 0] (cosine <= 0.632
  # with a, 0.316 with b). By cosine, a's top 10 are the hubs (precision 0); by the label
  # softmax at beta 10 a hub scores -ln(2)/10 = -0.069 and a class-a image
  # -ln(1 + e^-3.16)/10 = -0.004, so a's top 10 are its own images (precision 1).
  words = _unit(np.array([[1.0, 0.0, 1.0], [0.0, 1.0, 1.0]]))
  class_a = [[1.0, 0.5 + 0.01 * i, 0.0] for i in range(10)]
  hubs = [[0.001 * i, 0.0, 1.0] for i in range(10)]
  class_b = [[0.0, 1.0, 0.2 + 0.01 * i] for i in range(10)]
  data = evaluators.Data(labels=np.array([0] * 10 + [1] * 20), logits=np.zeros((30, 1)),
                         devise=np.array(class_a + hubs + class_b), label_vectors=words,
                         seen=np.array([0]), unseen=np.array([1]), names=('a', 'b'))
  cosine = dict(evaluators.EVALUATORS['words_to_images'](data, None))
  assert cosine['words_to_images_seen_precision@10'] == 0.0
  cfg = ml_collections.ConfigDict(dict(words_to_images='label_softmax',
                                       label_softmax_beta=10.0))
  softmax = dict(evaluators.EVALUATORS['words_to_images'](data, cfg))
  assert softmax['words_to_images_seen_precision@10'] == 1.0
  assert softmax['words_to_images_unseen_precision@10'] == 1.0
  with pytest.raises(ValueError, match='config.eval.words_to_images'):
    dict(evaluators.EVALUATORS['words_to_images'](
        data, ml_collections.ConfigDict(dict(words_to_images='csls'))))
