"""A correction of calibrated stacking's fold gamma, chosen on the validation protocol.

  cd experiments/ablations && python gzsl_sweep.py --runs ../../workdirs/base_val \
      --out val_gzsl.json --curves val_curves.json
  python gamma_scale.py --results val_gzsl.json --curves val_curves.json

For each method (DeViSE and ConSE with calibrated stacking) and each scale s in
{0.50, 0.55, ..., 1.50}, the harmonic mean H of every validation run at gamma = s x its
fold gamma, read off the run's seen/unseen curve (the operating point whose gamma is
nearest; the worst gap between the curve's H at s = 1 and the exact H the sweep printed
is shown: it is 0 where the validation images are those of the run's seen and unseen
classes only).
Runs of one split are averaged; splits weigh the same. Prints, per method: mean H per
s, the chosen s (the highest mean), and its leave-one-split-out estimate (for each
split, s chosen on the other splits and scored on it) against s = 1, with the number
of splits above s = 1's H. The adoption rule is in
experiments/results/fashion_mnist_zsl_ablation.md.
"""

import argparse
import collections
import json

import numpy as np

SCALES = np.round(np.arange(0.5, 1.5001, 0.05), 2)


def h_at(curve, gamma):
  """H of the curve's operating point whose gamma is nearest to `gamma`."""
  gammas, seen, unseen = (np.asarray(a) for a in curve)
  i = int(np.argmin(np.abs(gammas - gamma)))
  s, u = seen[i], unseen[i]
  return 0.0 if s + u == 0 else float(2 * s * u / (s + u))


def split_table(results, curves, method):
  """{split: [H at each scale]} (mean over the split's runs), and the worst gap between
  the curve's H at s = 1 and the sweep's exact H."""
  per_split, gap = collections.defaultdict(list), 0.0
  for run, metrics in results[method].items():
    row = [h_at(curves[run][method], s * metrics['threshold']) for s in SCALES]
    gap = max(gap, abs(row[list(SCALES).index(1.0)] - metrics['h']))
    per_split[run.split('_')[0]].append(row)
  return {k: np.mean(v, axis=0) for k, v in sorted(per_split.items())}, gap


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--results', required=True)
  parser.add_argument('--curves', required=True)
  args = parser.parse_args()
  with open(args.results, encoding='utf-8') as f:
    results = json.load(f)
  with open(args.curves, encoding='utf-8') as f:
    curves = json.load(f)
  one = list(SCALES).index(1.0)
  for method in ('stacking', 'conse_stacking'):
    table, gap = split_table(results, curves, method)
    h = np.array(list(table.values()))  # [splits, scales]
    best = int(np.argmax(h.mean(0)))
    loso = []
    for i in range(len(h)):
      rest = np.delete(h, i, axis=0)
      loso.append(h[i, int(np.argmax(rest.mean(0)))])
    loso = np.array(loso)
    print(f'\n## {method} ({len(h)} splits; curve vs exact H at s = 1: at most {gap:.4f})\n')
    print('| s | ' + ' | '.join(f'{s:.2f}' for s in SCALES) + ' |')
    print('|---|' + '---|' * len(SCALES))
    print('| mean H | ' + ' | '.join(f'{x:.3f}' for x in h.mean(0)) + ' |')
    print(f'\nchosen s = {SCALES[best]:.2f}: mean H {h[:, best].mean():.3f} against '
          f'{h[:, one].mean():.3f} at s = 1')
    print(f'leave-one-split-out: mean H {loso.mean():.3f} against {h[:, one].mean():.3f}; '
          f'above s = 1 on {int(np.sum(loso > h[:, one]))} of {len(h)} splits '
          f'(equal on {int(np.sum(loso == h[:, one]))})')
    print('per split (s = 1 -> held-out choice): ' + ', '.join(
        f'{k} {h[i, one]:.3f} -> {loso[i]:.3f}' for i, k in enumerate(table)))
  if 'gating' in results:  # Gating against stacking, each at its fold threshold.
    gate, _ = split_table(results, curves, 'gating')
    stack, _ = split_table(results, curves, 'stacking')
    g = np.array([v[one] for v in gate.values()])
    s = np.array([v[one] for v in stack.values()])
    print(f'\n## gating ({len(g)} splits), at the fold threshold\n\nmean H {g.mean():.3f} '
          f'against calibrated stacking {s.mean():.3f}; above on {int(np.sum(g > s))} of '
          f'{len(g)} splits: ' + ', '.join(f'{k} {a:.3f}/{b:.3f}'
                                          for k, a, b in zip(gate, g, s)))


if __name__ == '__main__':
  main()
