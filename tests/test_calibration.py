"""Calibrated stacking, its curve and AUSUC against a hand-computed toy case; gamma is
chosen on training data only."""

import os
import shutil

import ml_collections
import numpy as np
import pytest

from devise_jax import calibration
from devise_jax import checkpoint
from devise_jax import config_checks
from devise_jax import evaluate
from devise_jax import run as run_lib

# Classes 0, 1 seen, 2 unseen. Thresholds (best seen - best unseen): A .4, B .1, C .2,
# D .05. As gamma grows, D, B, C then A switch to the unseen class.
SCORES = np.array([[0.9, 0.1, 0.5],    # A, class 0
                   [0.2, 0.7, 0.6],    # B, class 1
                   [0.8, 0.1, 0.6],    # C, class 2
                   [0.3, 0.5, 0.45]])  # D, class 2
LABELS = np.array([0, 1, 2, 2])
SEEN, UNSEEN = np.array([0, 1]), np.array([2])


def test_curve_by_hand():
  gammas, s, u = calibration.curve(SCORES, LABELS, SEEN, UNSEEN)
  np.testing.assert_allclose(gammas, [-0.95, 0.075, 0.15, 0.3, 1.4])
  np.testing.assert_allclose(s, [1.0, 1.0, 0.5, 0.5, 0.0])
  np.testing.assert_allclose(u, [0.0, 0.5, 0.5, 1.0, 1.0])


def test_ausuc_by_hand():
  # (0, 1) -> (.5, 1): area .5; (.5, .5) -> (1, .5): area .25.
  _, s, u = calibration.curve(SCORES, LABELS, SEEN, UNSEEN)
  assert calibration.ausuc(s, u) == pytest.approx(0.75)
  assert calibration.ausuc([1.0, 0.0], [0.0, 1.0]) == pytest.approx(0.5)


def test_stacked_accuracy_by_hand():
  assert calibration.stacked_accuracy(SCORES, LABELS, SEEN, UNSEEN, 0.0) == (1.0, 0.0, 0.0)
  s, u, h = calibration.stacked_accuracy(SCORES, LABELS, SEEN, UNSEEN, 0.3)
  assert (s, u) == (0.5, 1.0) and h == pytest.approx(2 / 3)
  # H is 2/3 at gamma .075 and .3; the smaller wins.
  assert calibration.best_gamma(SCORES, LABELS, SEEN, UNSEEN) == pytest.approx(0.075)


def test_curve_matches_stacking_at_every_gamma():
  rng = np.random.default_rng(0)
  scores, labels = rng.normal(size=(200, 6)), rng.integers(0, 6, 200)
  seen, unseen = np.array([0, 2, 3, 5]), np.array([1, 4])
  for g, s, u in zip(*calibration.curve(scores, labels, seen, unseen)):
    want = calibration.stacked_accuracy(scores, labels, seen, unseen, g)
    assert (s, u) == pytest.approx(want[:2])


def test_folds_hold_out_one_class_each_up_to_max_folds():
  folds = calibration.class_folds(np.arange(7), seed=0)
  assert sorted(np.concatenate(folds).tolist()) == list(range(7))
  assert [len(f) for f in folds] == [1] * 7
  assert all(np.array_equal(a, b) for a, b in
             zip(folds, calibration.class_folds(np.arange(7), seed=0)))
  many = calibration.class_folds(np.arange(23), seed=1, max_folds=10)
  assert sorted(np.concatenate(many).tolist()) == list(range(23))
  assert sorted(len(f) for f in many) == [2] * 7 + [3] * 3


def test_a_saved_calibration_for_other_folds_is_not_reused():
  key = calibration.saved_key({'stage1': 6, 'stage2': 6}, [0, 2, 5], seed=0)
  assert sorted(key['folds']) == [[0], [2], [5]]
  saved = dict(key, gammas={'gamma_devise': 0.1, 'gamma_conse': 0.2})
  assert calibration.matches(saved, key)
  assert not calibration.matches(None, key)
  assert not calibration.matches({'steps': key['steps'], 'gammas': {}}, key)  # Older file.
  other = dict(saved, folds=[[0, 2], [5]])
  assert not calibration.matches(other, key)
  assert not calibration.matches(dict(saved, steps={'stage1': 6, 'stage2': 7}), key)
  # The Siamese head (stage 3) is no input of the calibration.
  assert calibration.saved_key({'stage1': 6, 'stage2': 6, 'stage3': 9}, [0, 2, 5], 0) == key


def test_gamma_ignores_the_test_labels(evaluated_run, tmp_path, monkeypatch):
  workdir = str(tmp_path / 'run')  # A copy: its calibration is fitted again here.
  shutil.copytree(evaluated_run.workdir, workdir)
  first = checkpoint.load_calibration(workdir)['gammas']  # The shared evaluation's.
  assert set(first) == {'gamma_devise', 'gamma_conse'}
  os.remove(os.path.join(workdir, 'calibration.json'))
  run = run_lib.Run.load(workdir)
  test_split = run.config.data.eval_split
  real = run.split_features
  test_labels = real(test_split)[1]
  shuffled_reads = []

  def shuffled(split, stage='stage2'):
    features, labels = real(split, stage)
    if split == test_split:
      labels = np.random.default_rng(1).permutation(labels)
      shuffled_reads.append(stage)
    return features, labels

  monkeypatch.setattr(run, 'split_features', shuffled)
  # What evaluation computes, the test split's labels shuffled under it: the shuffle
  # reaches the evaluators' labels, and gamma is fitted again to the same values.
  data = evaluate.evaluation_data(run, test_split)
  assert shuffled_reads
  kept = np.isin(test_labels, np.union1d(run.seen, run.unseen))
  assert len(data.labels) == kept.sum()
  assert not np.array_equal(data.labels, test_labels[kept])
  assert sorted(data.labels) == sorted(test_labels[kept])
  assert checkpoint.load_calibration(workdir)['gammas'] == first  # Saved again.
  got = dict(gamma_devise=data.gamma_devise, gamma_conse=data.gamma_conse)
  assert got == pytest.approx(calibration.scaled(first, run.config.eval))


def test_gamma_scale_multiplies_the_saved_fold_gammas(evaluated_run, monkeypatch):
  workdir = evaluated_run.workdir  # Read only: its calibration.json is saved already.
  fold = checkpoint.load_calibration(workdir)['gammas']
  real = checkpoint.load_config

  def with_scales(path):
    config = real(path)
    config.eval.gamma_scale, config.eval.conse_gamma_scale = 0.5, 2.0
    return config

  monkeypatch.setattr(checkpoint, 'load_config', with_scales)
  run = run_lib.Run.load(workdir)
  assert run.gamma == pytest.approx(0.5 * fold['gamma_devise'])
  assert evaluate.calibrate(run) == pytest.approx(
      {'gamma_devise': 0.5 * fold['gamma_devise'], 'gamma_conse': 2.0 * fold['gamma_conse']})
  assert checkpoint.load_calibration(workdir)['gammas'] == fold  # Saved unscaled.


def test_a_negative_gamma_scale_is_refused_by_name():
  config = ml_collections.ConfigDict({'eval': {'gamma_scale': -0.5}})
  with pytest.raises(ValueError, match=r'^--config.eval.gamma_scale=-0.5: must be a finite '
                                       r'number >= 0$'):
    config_checks.check(config)
