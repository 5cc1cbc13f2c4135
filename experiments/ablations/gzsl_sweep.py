"""Generalized zero-shot on the validation protocol: calibrated stacking against gating.

  cd experiments/ablations && python gzsl_sweep.py --runs ../../workdirs/base_val \
      [--stage2 center_l2_label_softmax]

Calibrated stacking (Chao et al., 2016; the package's GZSL) predicts the argmax of the
DeViSE cosines less gamma on the seen classes: an image goes to an unseen class when its
best seen cosine beats its best unseen one by less than gamma. Gating (Socher et al.,
2013; Atzmon and Chechik, 2019) asks a novelty detector instead: an image whose seen
softmax classifier is unsure (maximum probability below tau) is named among the unseen
classes by DeViSE, every other one among the seen classes by the classifier. Both are
the same computation on a composite score matrix (seen columns: the classifier's
probabilities; unseen columns: DeViSE cosines less their row maximum, so the best unseen
score is 0 and an image switches to unseen when tau > its maximum probability), so one
curve, AUSUC and threshold choice serve both (`devise_jax/calibration.py`).

Thresholds are chosen as the package chooses gamma: class-wise folds of the run's seen
classes act as unseen, heads refitted on the other seen classes' training features, the
best-H threshold on validation images, averaged over folds. Each run's (validation)
pseudo-unseen classes are then scored on the validation images. Prints one line per
run and a Markdown table.
"""

import argparse
import collections
import json
import os

import numpy as np

import ablation
import stage2_sweep
from devise_jax import calibration
from devise_jax import run as run_lib
from devise_jax import train
from devise_jax.evaluators import common
from devise_jax.evaluators import conse
from devise_jax.models import devise


def _unit(x):
  return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def _heads(config, features, labels, ids, vectors, names, gating):
  """(features -> DeViSE cosines over every class, features -> seen probabilities or
  None without `gating`)."""
  p = train.fit_on_features(config, 'stage2', features, labels, ids, vectors,
                            names)['projection']
  cosines = lambda x: _unit(devise.project({'projection': p}, x)) @ vectors.T
  if not gating:
    return cosines, lambda x: None
  c = train.fit_on_features(config, 'stage1', features, labels, ids, vectors,
                            names)['classifier']
  probs = lambda x: common.softmax(x @ c['kernel'] + c['bias'])
  return cosines, probs


def gated_scores(cosines, probs, seen, unseen, num_classes):
  """[N, C] scores whose calibrated stacking at gamma = tau is gating at tau.

  Seen columns hold the classifier's probabilities (in `seen` order), unseen columns
  the DeViSE cosines less their maximum over `unseen`; other columns -inf.
  """
  out = np.full((len(cosines), num_classes), -np.inf)
  out[:, seen] = probs
  u = cosines[:, unseen]
  out[:, unseen] = u - u.max(axis=1, keepdims=True)
  return out


def _methods(cosines, probs, seen, unseen, num_classes, vectors, top_t):
  """Scores of each method: DeViSE with calibrated stacking, and with a classifier
  present also gating and ConSE (with calibrated stacking, as the package scores it)."""
  out = {'stacking': cosines}
  if probs is not None:
    out['gating'] = gated_scores(cosines, probs, seen, unseen, num_classes)
    conse_vectors = conse.conse_embedding(probs, vectors[seen], min(top_t, len(seen)))
    out['conse_stacking'] = conse_vectors @ vectors.T
  return out


def _score(scores, labels, seen, unseen, threshold):
  _, s, u = calibration.curve(scores, labels, seen, unseen)
  h = np.where(s + u > 0, 2 * s * u / np.maximum(s + u, 1e-12), 0.0)
  cs, cu, ch = calibration.stacked_accuracy(scores, labels, seen, unseen, threshold)
  return dict(h=ch, seen=cs, unseen=cu, ausuc=calibration.ausuc(s, u),
              best_h=float(h.max()), threshold=threshold,
              best_threshold=calibration.best_gamma(scores, labels, seen, unseen))


def curve_points(scores, labels, seen, unseen):
  """The calibrated-stacking curve as lists (gammas, seen, unseen), for --curves."""
  return [a.tolist() for a in calibration.curve(scores, labels, seen, unseen)]


def evaluate_run(run, overrides, gating=True):
  config = ablation._override(run.config, overrides)  # pylint: disable=protected-access
  seen, unseen = np.asarray(run.seen), np.asarray(run.unseen)
  vectors, names, num_classes = run.label_space.vectors, run.names, len(run.names)
  f_train, y_train = run.split_features(config.data.train_split, 'stage1')
  f_val, y_val = run.split_features(config.data.eval_split, 'stage1')
  # As evaluation does: the excluded classes' images are dropped (no image, no candidate).
  rows = np.isin(y_val, np.union1d(seen, unseen))
  f_val, y_val = f_val[rows], y_val[rows]
  keep = np.isin(y_train, seen)
  f_train, y_train = f_train[keep], y_train[keep]
  val_seen = np.isin(y_val, seen)
  # Thresholds on class-wise folds of the seen classes, as calibration.fold_gammas.
  chosen = collections.defaultdict(list)
  for fold in calibration.class_folds(seen, config.seed):
    rest = np.setdiff1d(seen, fold)
    rows = np.isin(y_train, rest)
    cos_fn, prob_fn = _heads(config, f_train[rows], y_train[rows], rest, vectors, names,
                             gating)
    x, y = f_val[val_seen], y_val[val_seen]
    for name, scores in _methods(cos_fn(x), prob_fn(x), rest, fold, num_classes, vectors,
                                  config.eval.conse_top_t).items():
      chosen[name].append(calibration.best_gamma(scores, y, rest, fold))
  cos_fn, prob_fn = _heads(config, f_train, y_train, seen, vectors, names, gating)
  methods = _methods(cos_fn(f_val), prob_fn(f_val), seen, unseen, num_classes, vectors,
                     config.eval.conse_top_t)
  return ({name: _score(scores, y_val, seen, unseen, float(np.mean(chosen[name])))
           for name, scores in methods.items()},
          {name: curve_points(scores, y_val, seen, unseen) for name, scores in methods.items()})


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--runs', required=True, help='a protocol directory (stage 1 trained)')
  parser.add_argument('--stage2', default='center_l2_label_softmax',
                      help=f'a stage-2 variant of stage2_sweep: {", ".join(stage2_sweep.VARIANTS)}')
  parser.add_argument('--no_gating', action='store_true', help='calibrated stacking only')
  parser.add_argument('--out', help='also write every run\'s numbers to this JSON file')
  parser.add_argument('--curves', help='also write every run\'s curves to this JSON file')
  args = parser.parse_args()
  transform, overrides = stage2_sweep.VARIANTS[args.stage2]
  if transform is not stage2_sweep._identity:  # pylint: disable=protected-access
    raise SystemExit(f'--stage2 {args.stage2}: only variants that are config overrides')
  overrides = {**stage2_sweep.PAPER, **overrides}
  names = sorted(n for n in os.listdir(args.runs)
                 if os.path.isdir(os.path.join(args.runs, n, 'checkpoints', 'stage1')))
  results, curves = collections.defaultdict(dict), {}
  for name in names:
    run = run_lib.Run.load(os.path.join(args.runs, name), stages=('stage1',))
    scored, curves[name] = evaluate_run(run, overrides, not args.no_gating)
    for method, m in scored.items():
      results[method][name] = m
      print(name, [run.names[i] for i in run.unseen], method,
            {k: round(v, 3) for k, v in m.items()}, flush=True)
  for path, value in ((args.out, results), (args.curves, curves)):
    if path:
      with open(path, 'w', encoding='utf-8') as f:
        json.dump(value, f, indent=1)
  keys = ('h', 'seen', 'unseen', 'ausuc', 'best_h')
  print(f'\n{len(names)} runs, stage 2 {args.stage2}\n')
  print('| method | ' + ' | '.join(keys) + ' | h per run |')
  print('|---|' + '---|' * (len(keys) + 1))
  for method, per_run in results.items():
    cells = [f'{np.mean([m[k] for m in per_run.values()]):.3f} +- '
             f'{np.std([m[k] for m in per_run.values()]):.3f}' for k in keys]
    runs = ', '.join(f'{m["h"]:.3f}' for m in per_run.values())
    print(f'| {method} | ' + ' | '.join(cells) + f' | {runs} |')
  if 'gating' in results:
    wins = sum(results['gating'][n]['h'] > results['stacking'][n]['h'] for n in names)
    print(f'\ngating H above stacking H on {wins} of {len(names)} runs')


if __name__ == '__main__':
  main()
