"""Class vectors from WordNet, compared on the validation protocol (stage 2 refitted).

  python experiments/ablations/label_space_sweep.py --runs workdirs/ablation_val/baseline \
      --config experiments/configs/fashion_mnist_zsl.py

For each validation run (its stage 1 and cached features fixed) and each
`config.word_vectors.class_text` (devise_jax/vocabulary.py `class_texts`), builds the
label space, refits the stage-2 projection on the training features exactly as the
run's config says (`train.fit_on_features`, the run's seed) and scores the
pseudo-unseen zero-shot top-1 and the seen-class hit@1 of DeViSE on the validation
images. Prints a Markdown table: mean +- std over the runs, and every run.
"""

import argparse
import os

import numpy as np

import ablation
from devise_jax import run as run_lib
from devise_jax import train
from devise_jax import vocabulary
from devise_jax import wordvec


def _scores(run, kinds, synsets):
  config = run.config
  features, labels = run.split_features(config.data.train_split, 'stage1')
  keep = np.isin(labels, run.seen)
  val, val_labels = run.split_features(config.data.eval_split, 'stage1')
  kv = wordvec.load_keyedvectors(config.word_vectors.source, config.word_vectors.format)
  out = {}
  for kind in kinds:
    variant = config.copy_and_resolve_references()
    variant.data.synsets, variant.word_vectors.class_text = synsets, kind
    vectors = vocabulary.label_space(variant, run.names, kv).vectors
    p = train.fit_on_features(config, 'stage2', features[keep], labels[keep], run.seen,
                              vectors, run.names)['projection']
    projected = val @ p['kernel'] + p['bias']
    result = {}
    for name, ids in (('zsl_top1', run.unseen), ('seen_hit@1', run.seen)):
      rows = np.isin(val_labels, ids)
      predicted = ids[np.argmax(projected[rows] @ vectors[ids].T, axis=1)]
      result[name] = float(np.mean(predicted == val_labels[rows]))
    out[kind] = result
  return out


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--runs', required=True, help='a validation protocol directory')
  parser.add_argument('--config', required=True, help="the config whose data.synsets "
                      "name the classes' WordNet synsets")
  parser.add_argument('--kinds', default=','.join(vocabulary.CLASS_TEXTS))
  args = parser.parse_args()
  kinds = args.kinds.split(',')
  synsets = dict(ablation.load_config(args.config).data.synsets)
  names = sorted(n for n in os.listdir(args.runs)
                 if os.path.isdir(os.path.join(args.runs, n, 'checkpoints')))
  per_run = []
  for name in names:
    run = run_lib.Run.load(os.path.join(args.runs, name), stages=('stage1',))
    per_run.append(_scores(run, kinds, synsets))
  print(f'{len(names)} runs: {", ".join(names)}\n')
  print('| class_text | zsl_top1 | seen_hit@1 | zsl_top1 per run |')
  print('|---|---|---|---|')
  for kind in kinds:
    zsl = [r[kind]['zsl_top1'] for r in per_run]
    hit = [r[kind]['seen_hit@1'] for r in per_run]
    print(f'| {kind} | {np.mean(zsl):.3f} +- {np.std(zsl):.3f} | '
          f'{np.mean(hit):.3f} +- {np.std(hit):.3f} | {", ".join(f"{z:.3f}" for z in zsl)} |')


if __name__ == '__main__':
  main()
