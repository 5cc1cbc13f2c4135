"""Calibrated stacking on a protocol's runs with the folds of two geometries.

  cd experiments/ablations && python fold_geometry.py --runs ../../workdirs/protocol

`calibration.class_folds` holds out one seen class per fold. Before 2026-12-03 its folds
had about the size of the split's unseen set (2 or 3 of 7 seen classes on the test
protocol). For every run this recomputes the fold gamma with both geometries (nothing
in the workdir is written) and prints calibrated H on the run's evaluation split at the
fold gamma (s = 1) and at `config.eval.gamma_scale` x it, so the two changes made
together on that day (these folds, and the validation images that the feature cache
had replaced by training images) can be told apart.
"""

import argparse
import os

import numpy as np

from devise_jax import calibration
from devise_jax import checkpoint
from devise_jax import evaluate
from devise_jax import run as run_lib


def size_folds(seen, num_unseen, num_classes, seed):
  """The earlier geometry: folds of about the size of a real unseen set."""
  size = calibration.num_validation_unseen(len(seen), num_unseen, num_classes)
  shuffled = np.random.default_rng(seed).permutation(np.asarray(seen))
  return [np.sort(f) for f in np.array_split(shuffled, max(2, len(seen) // size))]


def fold_gamma(run, geometry):
  """The unscaled DeViSE fold gamma of `run` with 'one_class' or 'unseen_size' folds."""
  real_folds, real_load, real_save = (calibration.class_folds, checkpoint.load_calibration,
                                      checkpoint.save_calibration)
  if geometry == 'unseen_size':
    calibration.class_folds = lambda seen, seed: size_folds(
        seen, len(run.unseen), len(run.seen) + len(run.unseen), seed)
  checkpoint.load_calibration = lambda workdir: None
  checkpoint.save_calibration = lambda workdir, record: None
  try:
    scale = run.config.eval.get('gamma_scale', 1.0)
    return evaluate.calibrate(run)['gamma_devise'] / scale
  finally:
    calibration.class_folds, checkpoint.load_calibration, checkpoint.save_calibration = (
        real_folds, real_load, real_save)


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--runs', required=True, help='a protocol directory (evaluated)')
  args = parser.parse_args()
  names = sorted(n for n in os.listdir(args.runs)
                 if os.path.exists(os.path.join(args.runs, n, 'eval.json')))
  rows = []
  for name in names:
    run = run_lib.Run.load(os.path.join(args.runs, name))
    out = run.outputs()
    keep = np.isin(out.labels, np.union1d(run.seen, run.unseen))
    scores, labels = out.devise[keep] @ run.label_space.vectors.T, out.labels[keep]
    scale = run.config.eval.get('gamma_scale', 1.0)
    row = {}
    for geometry in ('unseen_size', 'one_class'):
      gamma = fold_gamma(run, geometry)
      for s in (1.0, scale):
        row[geometry, s] = calibration.stacked_accuracy(scores, labels, run.seen, run.unseen,
                                                        s * gamma)[2]
    rows.append(row)
    print(name, {f'{g} s={s}': round(h, 3) for (g, s), h in row.items()}, flush=True)
  print(f'\n{len(rows)} runs: calibrated H, mean +- std\n')
  print('| folds | s = 1 | s = gamma_scale |')
  print('|---|---|---|')
  for geometry in ('unseen_size', 'one_class'):
    cells = []
    for key in sorted({k for k in rows[0] if k[0] == geometry}, key=lambda k: k[1]):
      h = [r[key] for r in rows]
      cells.append(f'{np.mean(h):.3f} +- {np.std(h):.3f}')
    print(f'| {geometry} | ' + ' | '.join(cells) + ' |')


if __name__ == '__main__':
  main()
