"""Words -> images on the validation protocol: which image vectors a class word ranks.

  cd experiments/ablations && python w2i_sweep.py --runs ../../workdirs/base_val \
      --config ../configs/fashion_mnist_zsl.py

Words -> images ranks every validation image (the run's seen and pseudo-unseen classes)
by the cosine of a key vector with the class word, and scores precision@10 per class
word, seen and unseen apart. Keys (all in the word space, so any word or sum of words
can query them):

  devise     the image's unit DeViSE vector (the package's 'cosine' ranking);
  conse      its ConSE vector: the top-T seen labels' word vectors weighted by the
             stage-1 classifier's probabilities (Norouzi et al., 2014);
  sum        unit(unit(conse) + devise);
  blend_msp  unit(m unit(conse) + (1 - m) devise), m the classifier's maximum
             probability (how sure it is that the image is of a seen class).

`classifier` (seen words only: images ranked by the stage-1 classifier's probability of
the word's class) is a reference for seen words, not a candidate: it has no answer for
other words. Stage 2 is the config's default, refitted on each run's cached features as
`stage2_sweep.py` does. Prints one line per run and a Markdown table.
"""

import argparse
import collections
import os

import numpy as np

import stage2_sweep
from devise_jax import run as run_lib
from devise_jax.evaluators import common
from devise_jax.evaluators import conse

KEYS = ('devise', 'conse', 'sum', 'blend_msp')


def _unit(x):
  return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def keys(devise_vectors, probs, seen_vectors, top_t):
  """{name: [N, D] unit key vectors} of every ranking in KEYS."""
  c = _unit(conse.conse_embedding(probs, seen_vectors, min(top_t, len(seen_vectors))))
  m = probs.max(axis=1, keepdims=True)
  return dict(devise=devise_vectors, conse=c, sum=_unit(c + devise_vectors),
              blend_msp=_unit(m * c + (1 - m) * devise_vectors))


def precision_at_10(scores, labels, classes):
  """[C] precision@10 of each column of `scores` [N, C] for its class in `classes`."""
  top = np.argsort(-scores, axis=0, kind='stable')[:10]
  return (labels[top] == np.asarray(classes)[None, :]).mean(axis=0)


def evaluate_run(run, variant):
  config = run.config
  seen, unseen = np.asarray(run.seen), np.asarray(run.unseen)
  embs, labels, vectors = stage2_sweep._embeddings(run, [variant])  # pylint: disable=protected-access
  f_val, y_val = run.split_features(config.data.eval_split, 'stage1')
  f_val = f_val[np.isin(y_val, np.union1d(seen, unseen))]
  probs = common.softmax(run.logits(f_val))  # Columns in `seen` order.
  classes = np.union1d(seen, unseen)
  out = {}
  for name, k in keys(embs[variant], probs, vectors[seen], config.eval.conse_top_t).items():
    p = precision_at_10(k @ vectors[classes].T, labels, classes)
    out[name] = (float(p[np.isin(classes, seen)].mean()),
                 float(p[np.isin(classes, unseen)].mean()))
  out['classifier'] = (float(precision_at_10(probs, labels, seen).mean()), float('nan'))
  return out


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--runs', required=True, help='a protocol directory')
  parser.add_argument('--config', required=True, help='unused; the runs carry theirs')
  parser.add_argument('--variant', default='center_l2_label_softmax',
                      help='stage-2 variant of stage2_sweep.py (the default config\'s)')
  args = parser.parse_args()
  names = sorted(n for n in os.listdir(args.runs)
                 if os.path.isdir(os.path.join(args.runs, n, 'checkpoints', 'stage1')))
  by_split = collections.defaultdict(lambda: collections.defaultdict(list))
  for name in names:
    run = run_lib.Run.load(os.path.join(args.runs, name), stages=('stage1',))
    result = evaluate_run(run, args.variant)
    print(name, {k: (round(s, 3), round(u, 3)) for k, (s, u) in result.items()}, flush=True)
    for k, v in result.items():
      by_split[k][name.split('_')[0]].append(v)
  # Per split, the mean over its seeds; the splits weigh the same.
  split_means = {k: {s: np.mean(v, axis=0) for s, v in splits.items()}
                 for k, splits in by_split.items()}
  base = split_means['devise']
  print(f'\n{len(names)} runs, {len(base)} splits\n')
  print('| key | seen precision@10 | unseen precision@10 | mean of both | splits above '
        'devise (mean of both) |')
  print('|---|---|---|---|---|')
  for k, per_split in split_means.items():
    both = {s: np.nanmean(v) for s, v in per_split.items()}
    seen_p = np.mean([v[0] for v in per_split.values()])
    unseen_p = np.mean([v[1] for v in per_split.values()])
    above = sum(both[s] > np.mean(base[s]) for s in both)
    print(f'| {k} | {seen_p:.3f} | {unseen_p:.3f} | {np.mean(list(both.values())):.3f} | '
          f'{above} of {len(both)} |')


if __name__ == '__main__':
  main()
