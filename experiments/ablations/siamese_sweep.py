"""Stage-3 variants on the validation protocol: does the Siamese head beat its features?

  python experiments/ablations/siamese_sweep.py \
      --config experiments/configs/fashion_mnist_zsl.py \
      --base workdirs/base_val_s12 --out workdirs/siamese_val --splits 5 --seeds 2

Each variant is a validation protocol (`protocol.run_protocol(..., validation=True)`:
the split's unseen classes removed, seen classes drawn as pseudo-unseen, images from
`config.data.val_split`) whose runs reuse stages 1 and 2 of the same runs in `--base`
(`reuse_stages`, hard links), so a variant trains only the Siamese head and evaluates
image retrieval. `--base` is built first where it lacks runs (stages 1 and 2, the
config without the variants' overrides; the same as `devise-jax protocol --validation
--stages stage1,stage2 --out BASE ...`), and reused as it is after that.

The table: MAP@R (leave-one-out, within the seen and within the pseudo-unseen classes)
of the Siamese embeddings and of the encoder features they are computed from, mean +-
std over the runs; the unseen gain (Siamese - features) and the runs where it is > 0.
Written to OUT/siamese_sweep.md; every run is in OUT/<variant>/protocol.json.

Expected time on the 2-core CPU (shared), 5 splits x 2 seeds: about 6 min a base run
(stage 1 dominates: 1 h for the 10), then 20-45 s a variant run (1,500 head steps of
128 on cached features, and retrieval; stages 1 and 2 and the calibration are reused),
about 5 min a variant: 40 min for the 8 below, under 2 h in all. Measured on one run
(split 0, seed 0): base 359 s; baseline 43 s, residual 36 s, multi_similarity 18 s.

  python experiments/ablations/siamese_sweep.py --tiny --out /tmp/siamese_tiny

is a smoke run: the config's `tiny` variant (6 steps a stage), 1 split, 1 seed, every
variant, in about 5 minutes. Its numbers mean nothing.
"""

import argparse
import os
import time

import numpy as np

import ablation
from devise_jax import files
from devise_jax import protocol

CONFIG = os.path.join(os.path.dirname(__file__), '..', 'configs', 'fashion_mnist_zsl.py')
# name -> (what it changes, config overrides). Applied in this order.
VARIANTS = {
    'baseline': ('the default: MLP (256, 128), triplet semi-hard, margin 0.2', {}),
    'residual': ('residual head, branch (256,): starts as the features',
                 {'stage3.head': 'residual', 'stage3.widths': (256,)}),
    'linear_identity': ('a linear map initialised to the identity (residual, no hidden '
                        'layer)', {'stage3.head': 'residual', 'stage3.widths': ()}),
    'multi_similarity': ('MLP (256, 128), multi-similarity loss and mining',
                         {'stage3.loss': 'multi_similarity'}),
    'residual_ms': ('residual head (256,), multi-similarity',
                    {'stage3.head': 'residual', 'stage3.widths': (256,),
                     'stage3.loss': 'multi_similarity'}),
    'contrastive_m0.5': ('MLP (256, 128), contrastive, margin 0.5',
                         {'stage3.loss': 'contrastive', 'stage3.margin': 0.5}),
    'contrastive_m1.0': ('MLP (256, 128), contrastive, margin 1.0',
                         {'stage3.loss': 'contrastive', 'stage3.margin': 1.0}),
    'wide': ('MLP (512, 512): wider, a 512-d output', {'stage3.widths': (512, 512)}),
}
COLUMNS = ('siamese_seen_map@r', 'siamese_unseen_map@r', 'features_seen_map@r',
           'features_unseen_map@r')


def _mean_std(values):
  return f'{np.mean(values):.3f} +- {np.std(values):.3f}'


def row(name, result, seconds):
  """A Markdown row of a variant's protocol result."""
  runs = [r['metrics'] for r in result['runs']]
  cells = [_mean_std([m[c] for m in runs]) for c in COLUMNS]
  gain = [m['siamese_unseen_map@r'] - m['features_unseen_map@r'] for m in runs]
  wins = sum(g > 0 for g in gain)
  return (f'| {name} | {VARIANTS[name][0]} | ' + ' | '.join(cells) +
          f' | {_mean_std(gain)} | {wins}/{len(runs)} | {seconds:.0f} |')


def build_base(config, base, protocol_args):
  """Stages 1 and 2 of every validation run in `base`, unless all are there."""
  path = os.path.join(base, 'protocol.json')
  wanted = protocol_args['num_splits'] * len(protocol_args['seeds'])
  if os.path.exists(path) and len(protocol.load(path)['runs']) >= wanted:
    return
  protocol.run_protocol(config, base, stages=('stage1', 'stage2'), **protocol_args)


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--config', default=CONFIG, help='FILE[:VARIANT]')
  parser.add_argument('--base', help='validation runs with stages 1 and 2 (default: '
                      'OUT/base); built where missing')
  parser.add_argument('--out', required=True)
  parser.add_argument('--splits', type=int, default=5)
  parser.add_argument('--seeds', type=int, default=2)
  parser.add_argument('--unseen', type=int, default=3)
  parser.add_argument('--variants', default=','.join(VARIANTS))
  parser.add_argument('--tiny', action='store_true', help="smoke run: the config's tiny "
                      'variant, 1 split, 1 seed')
  args = parser.parse_args()
  if args.tiny:
    args.config, args.splits, args.seeds = args.config.split(':')[0] + ':tiny', 1, 1
  base_dir = args.base or os.path.join(args.out, 'base')
  config = ablation.load_config(args.config)
  protocol_args = dict(num_splits=args.splits, seeds=range(args.seeds),
                       num_unseen=args.unseen, validation=True, log=print)
  build_base(config, base_dir, protocol_args)
  rows = ['| variant | change | ' + ' | '.join(COLUMNS) +
          ' | unseen gain | runs won | s |', '|---|---|' + '---|' * (len(COLUMNS) + 3)]
  for name in args.variants.split(','):
    # Only the head changes; evaluation is image retrieval alone.
    overrides = dict(VARIANTS[name][1], evals=('retrieval',))
    tick = time.time()
    result = protocol.run_protocol(
        ablation._override(config, overrides),  # pylint: disable=protected-access
        os.path.join(args.out, name),
        reuse_from=base_dir, reuse_stages=('stage1', 'stage2'), **protocol_args)
    rows.append(row(name, result, time.time() - tick))
    print(rows[-1], flush=True)
    files.write_text(os.path.join(args.out, 'siamese_sweep.md'), '\n'.join(rows) + '\n')
  print('\n'.join(rows))


if __name__ == '__main__':
  main()
