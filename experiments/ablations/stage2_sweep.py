"""Stage-2 variants on the validation protocol, refitted in memory on cached features.

  python experiments/ablations/stage2_sweep.py --runs workdirs/base_val \
      --config experiments/configs/fashion_mnist_zsl.py [--variants a,b,...]

For each run of a protocol directory (stage 1 trained: `devise-jax protocol [--validation]
--stages stage1`; validation runs to choose, test runs only to report a choice already
made) and each variant (a transform of the encoder features and config overrides),
refits the stage-2 projection on the run's training features (`train.fit_on_features`,
the run's seed) and scores it on the validation images: pseudo-unseen zero-shot top-1,
seen hit@1, AUSUC, the best harmonic mean on the calibrated-stacking curve, and words
-> images precision@10 (cosine) for seen and unseen class names. Runs of several seeds
of one split also give the per-split seed spread, and `ensemble` rows average the unit
DeViSE vectors of a split's seeds. Prints Markdown tables.
"""

import argparse
import collections
import os

import numpy as np

import ablation
from devise_jax import calibration
from devise_jax import run as run_lib
from devise_jax import train
from devise_jax.models import devise


def _identity(train_f, f):
  del train_f
  return f


def _l2(train_f, f):
  del train_f
  return f / np.maximum(np.linalg.norm(f, axis=1, keepdims=True), 1e-12)


def _standardize(train_f, f):
  return (f - train_f.mean(0)) / (train_f.std(0) + 1e-6)


# The paper's stage 2, the default before this sweep: every variant starts from it, so
# the table means the same whatever the config's current default.
PAPER = {'stage2.loss': 'hinge_rank', 'stage2.center_features': False}
SOFTMAX = {'stage2.loss': 'label_softmax'}
CENTER = {'stage2.center_features': True}

# name -> (feature transform, config overrides on top of PAPER)
VARIANTS = {
    'baseline': (_identity, {}),
    'label_softmax': (_identity, SOFTMAX),
    'label_softmax_wd0.3': (_identity, {**SOFTMAX, 'stage2.weight_decay': 0.3}),
    'l2': (_l2, {}),
    'l2_wd0.3': (_l2, {'stage2.weight_decay': 0.3}),
    'standardize': (_standardize, {}),
    # stage2.center_features: the package's unit(f - training mean) projection.
    'center_l2': (_identity, CENTER),
    'center_l2_wd0.3': (_identity, {**CENTER, 'stage2.weight_decay': 0.3}),
    'center_l2_wd10': (_identity, {**CENTER, 'stage2.weight_decay': 10.0}),
    'l2_label_softmax': (_l2, SOFTMAX),
    'center_l2_label_softmax': (_identity, {**CENTER, **SOFTMAX}),
}


def _unit(x):
  return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def _metrics(emb, labels, vectors, seen, unseen):
  scores = emb @ vectors.T
  out = {}
  for name, ids in (('zsl_top1', unseen), ('seen_hit@1', seen)):
    rows = np.isin(labels, ids)
    out[name] = float(np.mean(ids[np.argmax(scores[rows][:, ids], 1)] == labels[rows]))
  _, s, u = calibration.curve(scores, labels, seen, unseen)
  out['ausuc'] = calibration.ausuc(s, u)
  out['best_h'] = float(np.max(np.where(s + u > 0, 2 * s * u / np.maximum(s + u, 1e-12), 0)))
  classes = np.union1d(seen, unseen)
  top = np.argsort(-scores[:, classes], axis=0, kind='stable')[:10]
  precision = (labels[top] == classes[None, :]).mean(0)
  out['w2i_seen'] = float(precision[np.isin(classes, seen)].mean())
  out['w2i_unseen'] = float(precision[np.isin(classes, unseen)].mean())
  return out


def _embeddings(run, variants):
  config = run.config
  features, labels = run.split_features(config.data.train_split, 'stage1')
  keep = np.isin(labels, run.seen)
  val, val_labels = run.split_features(config.data.eval_split, 'stage1')
  # As evaluation does: the excluded classes' images are dropped (no image, no candidate).
  # (Tables recorded before 2026-12-03 kept them, which lowered only their w2i columns.)
  rows = np.isin(val_labels, np.union1d(run.seen, run.unseen))
  val, val_labels = val[rows], val_labels[rows]
  vectors = run.label_space.vectors
  out = {}
  for name in variants:
    transform, overrides = VARIANTS[name]
    cfg = ablation._override(config, {**PAPER, **overrides})  # pylint: disable=protected-access
    f_train = transform(features[keep], features[keep])
    p = train.fit_on_features(cfg, 'stage2', f_train, labels[keep], run.seen, vectors,
                              run.names)['projection']
    out[name] = _unit(devise.project({'projection': p}, transform(features[keep], val)))
  return out, val_labels, vectors


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--runs', required=True, help='a protocol directory')
  parser.add_argument('--config', required=True)
  parser.add_argument('--variants', default=','.join(VARIANTS))
  args = parser.parse_args()
  variants = args.variants.split(',')
  names = sorted(n for n in os.listdir(args.runs)
                 if os.path.isdir(os.path.join(args.runs, n, 'checkpoints', 'stage1')))
  results = collections.defaultdict(dict)  # variant -> run name -> metrics
  by_split = collections.defaultdict(list)  # split -> [(embeddings, ...)]
  for name in names:
    run = run_lib.Run.load(os.path.join(args.runs, name), stages=('stage1',))
    seen, unseen = np.asarray(run.seen), np.asarray(run.unseen)
    embs, labels, vectors = _embeddings(run, variants)
    for v in variants:
      results[v][name] = _metrics(embs[v], labels, vectors, seen, unseen)
      print(name, v, {k: round(x, 3) for k, x in results[v][name].items()}, flush=True)
    by_split[name.split('_')[0]].append((embs, labels, vectors, seen, unseen))
  for split, members in by_split.items():
    if len(members) > 1:
      _, labels, vectors, seen, unseen = members[0]
      for v in variants:
        mean = _unit(sum(m[0][v] for m in members))
        results[f'{v} ensemble'][split] = _metrics(mean, labels, vectors, seen, unseen)
  keys = ('zsl_top1', 'seen_hit@1', 'ausuc', 'best_h', 'w2i_seen', 'w2i_unseen')
  print(f'\n{len(names)} runs: {", ".join(names)}\n')
  print('| variant | ' + ' | '.join(keys) + ' | zsl_top1 per split (mean +- std over seeds) |')
  print('|---|' + '---|' * (len(keys) + 1))
  for v, per_run in results.items():
    cells = [f'{np.mean([m[k] for m in per_run.values()]):.3f} +- '
             f'{np.std([m[k] for m in per_run.values()]):.3f}' for k in keys]
    splits = collections.defaultdict(list)
    for run_name, m in per_run.items():
      splits[run_name.split('_')[0]].append(m['zsl_top1'])
    spread = ', '.join(f'{np.mean(z):.3f}+-{np.std(z):.3f}' for _, z in sorted(splits.items()))
    print(f'| {v} | ' + ' | '.join(cells) + f' | {spread} |')


if __name__ == '__main__':
  main()
