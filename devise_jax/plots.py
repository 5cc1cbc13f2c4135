"""Evaluation's pictures, drawn with matplotlib (Agg: no display) into WORKDIR/plots/.

`write_all(run, data)` (called by `evaluate.evaluate`) writes:

  training_<stage>.png    loss, accuracy, learning rate, l2 of grads and params, img/s
                          of each trained stage, from metrics.jsonl
  per_class_accuracy.png  zero-shot accuracy of each unseen class (among the unseen),
                          and generalized zero-shot accuracy of every class (all
                          classes compete, calibrated stacking), seen and unseen apart
  confusion_gzsl.png      the generalized zero-shot confusion matrix (same predictions)
  seen_unseen_curve.png   calibrated stacking's seen/unseen accuracy curve as gamma
                          sweeps, its area (AUSUC) and the run's gamma
  embedding_map.png       a 2-D PCA map of the DeViSE space: a sample of the split's
                          images and every class's word vector together
  zero_shot_examples.png  unseen-class images with their zero-shot prediction

The numbers behind the pictures come from small pure functions (`per_class_accuracy`,
`confusion`, `pca_2d`) over the evaluators' `Data`, so they are tested against plain
loops; the pictures themselves are only drawn. PCA is a numpy SVD: no extra package.
"""

import os

import matplotlib

matplotlib.use('Agg')  # Before pyplot: files only, never a window.
import matplotlib.pyplot as plt  # pylint: disable=wrong-import-position
import numpy as np  # pylint: disable=wrong-import-position

from devise_jax import artefacts  # pylint: disable=wrong-import-position
from devise_jax import calibration  # pylint: disable=wrong-import-position
from devise_jax import input_pipeline  # pylint: disable=wrong-import-position

TRAINING_PANELS = (('loss', 'loss'), ('accuracy', 'accuracy (batch, seen classes)'),
                   ('learning_rate', 'learning rate'), ('l2_grads', 'l2 of grads'),
                   ('l2_params', 'l2 of params'), ('images_per_sec', 'images / s'))
MAX_INCHES = 24  # Largest figure side; classes beyond MAX_LABELLED get no tick labels.
MAX_LABELLED = 40
EVAL_PLOTS = ('per_class_accuracy.png', 'confusion_gzsl.png', 'seen_unseen_curve.png',
              'embedding_map.png', 'zero_shot_examples.png')
TITLES = {
    'per_class_accuracy.png': 'Per-class zero-shot and generalized zero-shot accuracy',
    'confusion_gzsl.png': 'Generalized zero-shot confusion matrix',
    'seen_unseen_curve.png': 'Seen/unseen accuracy curve of calibrated stacking (AUSUC)',
    'embedding_map.png': 'The DeViSE space: test images and class word vectors (PCA)',
    'zero_shot_examples.png': 'Unseen-class test images and their zero-shot labels',
}
MAP_POINTS = 1500  # Images drawn on the embedding map (a seeded sample).
EXAMPLES = 16  # Unseen-class images shown with their zero-shot prediction.
SEEN_COLOR, UNSEEN_COLOR = '#4c72b0', '#dd8452'


def existing(workdir):
  """[(path, title)] of the workdir's plots: the eval plots, then training curves."""
  folder = artefacts.plots_dir(workdir)
  names = sorted(os.listdir(folder)) if os.path.isdir(folder) else []
  training = [n for n in names if n.startswith('training_') and n.endswith('.png')]
  return ([(os.path.join(folder, n), TITLES[n]) for n in EVAL_PLOTS if n in names]
          + [(os.path.join(folder, n), f'Training curves: {n[9:-4]}') for n in training])


# The numbers.


def per_class_accuracy(scores, labels, seen, unseen, gamma):
  """({unseen id: ZSL accuracy}, {id: GZSL accuracy}) per class present in `labels`.

  ZSL: an unseen-class image is classified among the unseen classes; GZSL: among the
  seen and unseen classes, with calibrated stacking's `gamma` (0: uncalibrated).
  """
  unseen = np.asarray(unseen)
  zsl_pred = unseen[np.argmax(scores[:, unseen], axis=1)]
  gzsl_pred = calibration.stacked_predictions(scores, seen, unseen, gamma)
  present = [int(c) for c in np.union1d(seen, unseen) if np.any(labels == c)]
  zsl = {c: float(np.mean(zsl_pred[labels == c] == c)) for c in present if c in unseen}
  gzsl = {c: float(np.mean(gzsl_pred[labels == c] == c)) for c in present}
  return zsl, gzsl


def confusion(labels, pred, classes):
  """[C, C] counts: row = true class, column = predicted class, both in `classes` order
  (images whose true or predicted class is not in `classes` are not counted)."""
  index = np.full(max(np.max(classes), np.max(labels), np.max(pred)) + 1, -1)
  index[np.asarray(classes)] = np.arange(len(classes))
  t, p = index[labels], index[pred]
  keep = (t >= 0) & (p >= 0)
  counts = np.zeros((len(classes), len(classes)), np.int64)
  np.add.at(counts, (t[keep], p[keep]), 1)
  return counts


def pca_2d(points):
  """[N, 2] coordinates of `points` [N, D] on their two principal axes (centred SVD)."""
  centred = points - points.mean(axis=0)
  _, _, vt = np.linalg.svd(centred, full_matrices=False)
  return centred @ vt[:2].T


# Drawing helpers.


def _save(fig, path):
  fig.savefig(path, dpi=100, bbox_inches='tight')
  plt.close(fig)
  return path


def figure_array(fig):
  """The figure as an RGB uint8 array [H, W, 3] (for TensorBoard's image summaries)."""
  fig.canvas.draw()
  array = np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()
  plt.close(fig)
  return array


def _display(image):
  """A preprocessed (normalised) image [H, W, C] scaled to [0, 1] for display."""
  lo, hi = float(image.min()), float(image.max())
  return (image - lo) / (hi - lo) if hi > lo else np.zeros_like(image)


def labelled_grid(images, titles, columns=8):
  """A figure of `images` (any range; each scaled to [0, 1]) with a title each."""
  rows = max(1, -(-len(images) // columns))
  fig, axes = plt.subplots(rows, columns, figsize=(1.5 * columns, 2.0 * rows),
                           squeeze=False)
  for ax in axes.flat:
    ax.axis('off')
  for ax, image, title in zip(axes.flat, images, titles):
    ax.imshow(_display(np.asarray(image, np.float32)), interpolation='nearest')
    ax.set_title(title, fontsize=7)
  fig.tight_layout()
  return fig


def _class_names(names, ids, unseen):
  unseen = set(int(u) for u in unseen)
  return [f'{names[c]}*' if int(c) in unseen else names[c] for c in ids]


# The plots.


def training_curves(records, stage):
  """Training metrics of one stage (records of metrics.jsonl; the last one per step)."""
  by_step = {r['step']: r for r in records if r.get('stage') == stage}
  steps = sorted(by_step)
  panels = [(k, t) for k, t in TRAINING_PANELS if any(k in by_step[s] for s in steps)]
  fig, axes = plt.subplots(2, 3, figsize=(12, 6), squeeze=False)
  for ax in axes.flat:
    ax.set_visible(False)
  for ax, (key, title) in zip(axes.flat, panels):
    xs = [s for s in steps if key in by_step[s]]
    ax.set_visible(True)
    ax.plot(xs, [by_step[s][key] for s in xs], marker='.' if len(xs) < 30 else None)
    ax.set_title(title)
    ax.set_xlabel('step')
    ax.grid(alpha=0.3)
  fig.suptitle(f'{stage}: training')
  fig.tight_layout()
  return fig


def per_class_figure(data, gamma):
  zsl, gzsl = per_class_accuracy(data.scores(), data.labels, data.seen, data.unseen, gamma)
  # Sizes are capped: at ImageNet's 1,000 classes an uncapped figure would be gigabytes.
  width = min(MAX_INCHES, max(6, 0.7 * len(gzsl) + 2))
  fig, (top, bottom) = plt.subplots(2, 1, figsize=(width, 7))
  ids = list(zsl)
  bars = top.bar(range(len(ids)), [zsl[c] for c in ids], color=UNSEEN_COLOR)
  top.axhline(1 / len(data.unseen), color='gray', ls='--', lw=1, label='chance')
  if len(ids) <= MAX_LABELLED:
    top.bar_label(bars, fmt='%.2f', fontsize=8)
    top.set_xticks(range(len(ids)), [data.names[c] for c in ids], rotation=30, ha='right')
  top.set_title('zero-shot: unseen-class images among the unseen classes')
  top.legend(loc='upper right')
  ids = list(gzsl)
  colors = [UNSEEN_COLOR if c in zsl else SEEN_COLOR for c in ids]
  bars = bottom.bar(range(len(ids)), [gzsl[c] for c in ids], color=colors)
  if len(ids) <= MAX_LABELLED:
    bottom.bar_label(bars, fmt='%.2f', fontsize=8)
    bottom.set_xticks(range(len(ids)), _class_names(data.names, ids, data.unseen),
                      rotation=30, ha='right')
  bottom.set_title(f'generalized zero-shot: all classes compete (gamma = {gamma:.3f}); '
                   f'blue seen, orange unseen (*)')
  for ax in (top, bottom):
    ax.set_ylim(0, 1.05)
    ax.set_ylabel('accuracy')
    ax.grid(axis='y', alpha=0.3)
  fig.tight_layout()
  return fig


def confusion_figure(data, gamma):
  classes = np.union1d(data.seen, data.unseen)
  pred = calibration.stacked_predictions(data.scores(), data.seen, data.unseen, gamma)
  counts = confusion(data.labels, pred, classes)
  size = min(MAX_INCHES, max(5, 0.55 * len(classes) + 2))
  fig, ax = plt.subplots(figsize=(size + 1, size))
  image = ax.imshow(counts, cmap='Blues')
  fig.colorbar(image, ax=ax, fraction=0.046)
  if len(classes) <= MAX_LABELLED:
    names = _class_names(data.names, classes, data.unseen)
    ax.set_xticks(range(len(classes)), names, rotation=45, ha='right')
    ax.set_yticks(range(len(classes)), names)
  ax.set_xlabel('predicted')
  ax.set_ylabel('true')
  if len(classes) <= 20:
    for (i, j), n in np.ndenumerate(counts):
      ax.text(j, i, str(n), ha='center', va='center', fontsize=7,
              color='white' if n > counts.max() / 2 else 'black')
  ax.set_title(f'generalized zero-shot confusion (gamma = {gamma:.3f}; * unseen)')
  fig.tight_layout()
  return fig


def curve_figure(data, gamma):
  gammas, acc_seen, acc_unseen = calibration.curve(data.scores(), data.labels, data.seen,
                                                   data.unseen)
  area = calibration.ausuc(acc_seen, acc_unseen)
  fig, ax = plt.subplots(figsize=(6, 5))
  ax.plot(acc_unseen, acc_seen, label=f'seen/unseen curve, AUSUC = {area:.3f}')
  s, u, h = calibration.stacked_accuracy(data.scores(), data.labels, data.seen,
                                         data.unseen, gamma)
  ax.plot([u], [s], 'o', color=UNSEEN_COLOR,
          label=f'gamma = {gamma:.3f} (H = {h:.3f})')
  s0, u0, _ = calibration.stacked_accuracy(data.scores(), data.labels, data.seen,
                                           data.unseen, 0.0)
  ax.plot([u0], [s0], 's', color='gray', label='uncalibrated (gamma = 0)')
  ax.set_xlabel('unseen-class accuracy (per class)')
  ax.set_ylabel('seen-class accuracy (per class)')
  ax.set_xlim(-0.02, 1.02)
  ax.set_ylim(-0.02, 1.02)
  ax.grid(alpha=0.3)
  ax.legend(loc='upper right')
  ax.set_title(f'calibrated stacking: {len(gammas)} operating points')
  fig.tight_layout()
  return fig


def embedding_figure(data, seed=0):
  rng = np.random.default_rng(seed)
  sample = np.sort(rng.permutation(len(data.labels))[:MAP_POINTS])
  classes = np.union1d(data.seen, data.unseen)
  images = data.devise[sample] / np.linalg.norm(data.devise[sample], axis=1,
                                                keepdims=True)
  xy = pca_2d(np.concatenate([images, data.label_vectors[classes]]))
  image_xy, word_xy = xy[:len(sample)], xy[len(sample):]
  cmap = plt.get_cmap('tab10' if len(classes) <= 10 else 'tab20')
  fig, ax = plt.subplots(figsize=(9, 8))
  unseen = set(int(u) for u in data.unseen)
  for n, c in enumerate(classes):
    color = cmap(n % cmap.N)
    mine = data.labels[sample] == c
    ax.scatter(image_xy[mine, 0], image_xy[mine, 1], s=6, alpha=0.5, color=color,
               marker='^' if int(c) in unseen else 'o')
    ax.scatter(*word_xy[n], s=220, marker='*', color=color, edgecolor='black', zorder=3)
    ax.annotate(data.names[c] + (' (unseen)' if int(c) in unseen else ''), word_xy[n],
                xytext=(5, 5), textcoords='offset points', fontsize=9,
                fontweight='bold' if int(c) in unseen else 'normal')
  ax.set_title(f'DeViSE space, PCA: {len(sample)} images (dots; triangles unseen) and '
               f'class word vectors (stars)')
  ax.grid(alpha=0.3)
  fig.tight_layout()
  return fig


def zero_shot_examples(run, data, split, count=EXAMPLES):
  """(images [n, S, S, 3], titles) of the first `count` unseen-class images of `split`
  in file order, each titled with its zero-shot prediction among the unseen classes.
  Rows of the split's outputs are the eval iterator's unmasked images, in order."""
  unseen = np.asarray(run.unseen)
  out = run.outputs(split)
  scores = out.devise @ run.label_space.vectors.T
  if data.class_penalty is not None:
    scores = scores - data.class_penalty
  images, titles, row = [], [], 0
  for batch in input_pipeline.eval_iterator(run.config.data, split=split,
                                            batch_size=run.config.eval.batch_size):
    for image, label in zip(batch['image'][batch['mask']], batch['label'][batch['mask']]):
      if label in unseen and len(images) < count:
        pred = unseen[np.argmax(scores[row, unseen])]
        images.append(image)
        mark = 'ok' if pred == label else 'x'
        titles.append(f'{run.names[pred]} [{mark}]\n(true: {run.names[label]})')
      row += 1
    if len(images) >= count:
      break
  return np.asarray(images), titles


def write_training_curves(workdir):
  """training_<stage>.png of every stage in metrics.jsonl; returns the paths."""
  records = artefacts.read_metrics(workdir)
  out = artefacts.plots_dir(workdir)
  os.makedirs(out, exist_ok=True)
  stages = sorted({r['stage'] for r in records})
  return [_save(training_curves(records, s), os.path.join(out, f'training_{s}.png'))
          for s in stages]


def write_all(run, data, split=None):
  """Every plot of the module for `run` evaluated on `data`; returns the paths."""
  gamma = data.gamma_devise if data.gamma_devise is not None else 0.0
  out = artefacts.plots_dir(run.workdir)
  os.makedirs(out, exist_ok=True)
  paths = write_training_curves(run.workdir)
  figures = [per_class_figure(data, gamma), confusion_figure(data, gamma),
             curve_figure(data, gamma), embedding_figure(data, run.config.seed)]
  images, titles = zero_shot_examples(run, data, split or run.config.data.eval_split)
  figures.append(labelled_grid(images, titles))
  paths += [_save(fig, os.path.join(out, name)) for fig, name in zip(figures, EVAL_PLOTS)]
  return paths
