"""Stage-2 ablation over the protocol: every variant on the same stage-1 runs.

  python experiments/ablations/ablation.py --config experiments/configs/fashion_mnist_zsl.py \
      --base workdirs/base_val --out workdirs/ablation_val --validation --splits 5 --seeds 1

`--base` is a protocol directory whose runs have stage 1 trained (e.g. `devise-jax
protocol ... --stages stage1`); each variant is a protocol run started from it
(`reuse_from`), so a variant costs seconds a run. Choices are made with `--validation`
(pseudo-unseen classes, validation images); the same variants on the test protocol
are reported, never chosen from. Prints and writes `OUT/ablation.md`.
"""

import argparse
import os
import time

from devise_jax import checkpoint
from devise_jax import config_checks
from devise_jax import protocol
from devise_jax import run as run_lib

# name -> (what it changes, config overrides). Applied in this order.
VARIANTS = {
    'baseline': ('hinge rank over the seen labels, weight decay 3.0', {}),
    'weak_decay': ('weight decay 0.01 instead of 3.0', {'stage2.weight_decay': 0.01}),
    'vocab_1k': ('+ 1,000 vocabulary negatives', {'stage2.vocab_negatives': 1000}),
    'vocab_10k': ('+ 10,000 vocabulary negatives', {'stage2.vocab_negatives': 10000}),
    'both_ways': ('+ label -> images ranking (weight 1)', {'stage2.image_ranking_weight': 1.0}),
    'vocab_10k_both_ways': ('+ 10,000 vocabulary negatives + label -> images ranking',
                            {'stage2.vocab_negatives': 10000,
                             'stage2.image_ranking_weight': 1.0}),
    'converged': ('stage 2 to convergence: 3,000 steps of 512 (was 600 of 128)',
                  {'stage2.num_steps': 3000, 'stage2.batch_size': 512}),
    'csls': ('+ CSLS hubness penalty when scoring', {'eval.hubness': 'csls'}),
    'csls_all': ('+ CSLS over all (up to 10,000) training images, not the 10 nearest',
                 {'eval.hubness': 'csls', 'eval.csls_k': 10_000}),
    'both_ways_csls': ('+ label -> images ranking + CSLS',
                       {'stage2.image_ranking_weight': 1.0, 'eval.hubness': 'csls'}),
}
COLUMNS = ('zsl_top1', 'conse_zsl_top1', 'gzsl_calibrated_h', 'conse_gzsl_calibrated_h',
           'ausuc', 'seen_hit@1', 'words_to_images_seen_precision@10',
           'words_to_images_unseen_precision@10')


def load_config(path):
  """The config of `FILE[:VARIANT]`."""
  file, _, variant = path.partition(':')
  return config_checks.load_config_file(file, variant or None)


def _override(config, overrides):
  config = config.copy_and_resolve_references()
  for key, value in overrides.items():
    node = config
    *parents, leaf = key.split('.')
    for p in parents:
      node = node[p]
    node[leaf] = value
  return config


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--config', required=True)
  parser.add_argument('--base', required=True)
  parser.add_argument('--out', required=True)
  parser.add_argument('--splits', type=int, default=5)
  parser.add_argument('--seeds', type=int, default=1)
  parser.add_argument('--unseen', type=int, default=3)
  parser.add_argument('--validation', action='store_true')
  parser.add_argument('--variants', default=','.join(VARIANTS))
  args = parser.parse_args()
  base = load_config(args.config)
  for name in sorted(os.listdir(args.base)):  # Stage-1 features once, hard-linked after.
    if os.path.isdir(os.path.join(args.base, name, 'checkpoints', 'stage1')):
      run = run_lib.Run.load(os.path.join(args.base, name), stages=('stage1',))
      for split in (run.config.data.train_split, run.config.data.eval_split):
        run.split_features(split, 'stage1')
  rows = ['| variant | change | ' + ' | '.join(COLUMNS) + ' | s |',
          '|---|---|' + '---|' * (len(COLUMNS) + 1)]
  for name in args.variants.split(','):
    change, overrides = VARIANTS[name]
    tick = time.time()
    result = protocol.run_protocol(
        _override(base, overrides), os.path.join(args.out, name), num_splits=args.splits,
        seeds=range(args.seeds), num_unseen=args.unseen, validation=args.validation,
        stages=('stage1', 'stage2'), reuse_from=args.base, log=print)
    overall = result['summary']['overall']
    cells = [f"{overall[c]['mean']:.3f} +- {overall[c]['std']:.3f}" if c in overall else '-'
             for c in COLUMNS]
    rows.append(f'| {name} | {change} | ' + ' | '.join(cells) +
                f' | {time.time() - tick:.0f} |')
    print(rows[-1], flush=True)
    checkpoint.atomic_write_text(os.path.join(args.out, 'ablation.md'),
                                 '\n'.join(rows) + '\n')
  print('\n'.join(rows))


if __name__ == '__main__':
  main()
