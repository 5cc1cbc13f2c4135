"""Evaluation's plots: the numbers behind them against plain loops, and every picture a
valid, non-blank PNG of a sane size (drawn from toy outputs; tests/test_metric_writer.py
checks the plots of a real evaluation)."""

import os
import shutil

import numpy as np
import PIL.Image
import pytest

from devise_jax import checkpoint
from devise_jax import evaluators
from devise_jax import plots


def toy_data(seed=0, n=120, num_classes=6, dim=8):
  rng = np.random.default_rng(seed)
  label_vectors = rng.normal(size=(num_classes, dim))
  label_vectors /= np.linalg.norm(label_vectors, axis=1, keepdims=True)
  labels = rng.integers(0, num_classes, n)
  devise = label_vectors[labels] + 0.8 * rng.normal(size=(n, dim))
  seen, unseen = np.array([0, 2, 3, 5]), np.array([1, 4])
  return evaluators.Data(labels=labels, logits=rng.normal(size=(n, len(seen))),
                         devise=devise, label_vectors=label_vectors, seen=seen,
                         unseen=unseen, names=tuple(f'class{c}' for c in range(num_classes)),
                         gamma_devise=0.1)


def check_png(path, min_side=200):
  with PIL.Image.open(path) as image:
    assert image.format == 'PNG'
    assert min_side <= image.width <= 4000 and min_side <= image.height <= 4000
    pixels = np.asarray(image.convert('L'))
  assert pixels.std() > 5  # Something is drawn.


def test_per_class_accuracy_matches_a_loop():
  data = toy_data()
  scores = data.scores()
  for gamma in (0.0, 0.1, 0.5):
    zsl, gzsl = plots.per_class_accuracy(scores, data.labels, data.seen, data.unseen, gamma)
    for c in range(len(data.names)):
      rows = [i for i in range(len(data.labels)) if data.labels[i] == c]
      zsl_hits, gzsl_hits = 0, 0
      for i in rows:
        best_unseen = max(data.unseen, key=lambda u: scores[i, u])
        zsl_hits += best_unseen == c
        shifted = {k: scores[i, k] - (gamma if k in data.seen else 0.0)
                   for k in range(len(data.names))}
        gzsl_hits += max(shifted, key=shifted.get) == c
      assert gzsl[c] == pytest.approx(gzsl_hits / len(rows))
      if c in data.unseen:
        assert zsl[c] == pytest.approx(zsl_hits / len(rows))
      else:
        assert c not in zsl


def test_confusion_matches_a_loop():
  rng = np.random.default_rng(1)
  labels, pred = rng.integers(0, 7, 300), rng.integers(0, 7, 300)
  classes = np.array([0, 2, 3, 5, 6])  # 1 and 4 excluded: not counted.
  counts = plots.confusion(labels, pred, classes)
  want = np.zeros((5, 5), int)
  for t, p in zip(labels, pred):
    if t in classes and p in classes:
      want[list(classes).index(t), list(classes).index(p)] += 1
  np.testing.assert_array_equal(counts, want)


def test_pca_2d_matches_the_covariance_eigenvectors():
  rng = np.random.default_rng(2)
  points = rng.normal(size=(200, 5)) * np.array([5.0, 3.0, 1.0, 0.5, 0.1]) + 7.0
  xy = plots.pca_2d(points)
  centred = points - points.mean(axis=0)
  _, vectors = np.linalg.eigh(np.cov(centred.T))
  want = centred @ vectors[:, ::-1][:, :2]
  for axis in range(2):  # The same up to the sign of each axis.
    sign = np.sign(xy[:, axis] @ want[:, axis])
    np.testing.assert_allclose(sign * xy[:, axis], want[:, axis], atol=1e-8)


def test_every_figure_is_a_valid_png(tmp_path):
  data = toy_data()
  figures = {'per_class': plots.per_class_figure(data, 0.1),
             'confusion': plots.confusion_figure(data, 0.1),
             'curve': plots.curve_figure(data, 0.1),
             'map': plots.embedding_figure(data),
             'grid': plots.labelled_grid(np.random.default_rng(0).normal(size=(10, 8, 8, 3)),
                                         [f'n{i}' for i in range(10)])}
  for name, fig in figures.items():
    check_png(plots._save(fig, str(tmp_path / f'{name}.png')))  # pylint: disable=protected-access
  array = plots.figure_array(plots.labelled_grid(np.zeros((2, 4, 4, 3)), ['a', 'b']))
  assert array.dtype == np.uint8 and array.ndim == 3 and array.shape[2] == 3


def test_training_curves_of_every_stage(reference_run, tmp_path):
  _, reference, _ = reference_run
  shutil.copy(os.path.join(reference, 'metrics.jsonl'), tmp_path / 'metrics.jsonl')
  paths = plots.write_training_curves(str(tmp_path))
  stages = sorted({r['stage'] for r in checkpoint.read_metrics(reference)})
  assert stages == ['stage1', 'stage2', 'stage3']
  assert [os.path.basename(p) for p in paths] == [f'training_{s}.png' for s in stages]
  for path in paths:
    assert os.path.dirname(path) == checkpoint.plots_dir(str(tmp_path))
    check_png(path)
