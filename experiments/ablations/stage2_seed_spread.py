"""How much of DeViSE's spread comes from stage 2's own seed? (validation only)

  python experiments/ablations/stage2_seed_spread.py --runs workdirs/ablation_val/baseline \
      --steps 600 --batch 128

For each validation run (its stage 1 fixed), refits the stage-2 projection on the cached
training features with 4 stage-2 seeds (init and batch order) and prints the
pseudo-unseen zero-shot accuracy of each on the validation images.
"""

import argparse
import os

import numpy as np

from devise_jax import run as run_lib
from devise_jax import train


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--runs', required=True, help='a validation protocol directory')
  parser.add_argument('--steps', type=int, required=True)
  parser.add_argument('--batch', type=int, required=True)
  parser.add_argument('--seeds', type=int, default=4)
  args = parser.parse_args()
  stds = []
  for name in sorted(os.listdir(args.runs)):
    if not os.path.isdir(os.path.join(args.runs, name, 'checkpoints')):
      continue
    run = run_lib.Run.load(os.path.join(args.runs, name))
    config = run.config
    features, labels = run.split_features(config.data.train_split, 'stage1')
    keep = np.isin(labels, run.seen)
    val, val_labels = run.split_features(config.data.eval_split, 'stage1')
    unseen = np.isin(val_labels, run.unseen)
    accuracies = []
    for seed in range(args.seeds):
      cfg = config.copy_and_resolve_references()
      cfg.seed, cfg.stage2.num_steps, cfg.stage2.batch_size = 100 + seed, args.steps, args.batch
      p = train.fit_on_features(cfg, 'stage2', features[keep], labels[keep], run.seen,
                                run.label_space.vectors, run.names)['projection']
      scores = (val[unseen] @ p['kernel'] + p['bias']) @ run.label_space.vectors[run.unseen].T
      accuracies.append(float(np.mean(run.unseen[np.argmax(scores, 1)] == val_labels[unseen])))
    stds.append(np.std(accuracies))
    print(f'{name} {[run.names[u] for u in run.unseen]}: '
          f'{" ".join(f"{a:.3f}" for a in accuracies)} (mean {np.mean(accuracies):.3f}, '
          f'std {np.std(accuracies):.3f})', flush=True)
  print(f'mean std over runs: {np.mean(stds):.3f}')


if __name__ == '__main__':
  main()
