"""Words -> images rankings compared on trained runs, without retraining.

  python experiments/ablations/scoring_sweep.py --runs workdirs/ablation_val/baseline

Every run directory under `--runs` (a protocol directory) is restored once and each
ranking of `config.eval.words_to_images` (devise_jax/evaluators/words_to_images.py) is
scored on the run's own eval split: for validation-protocol runs that is
`config.data.val_split`, so a ranking is chosen without the test split. Prints a
Markdown table of mean +- std over the runs and each run's values.
"""

import argparse
import os

import numpy as np

from devise_jax import evaluate
from devise_jax import run as run_lib
from devise_jax.evaluators import words_to_images

SETTINGS = {'cosine': dict(words_to_images='cosine')}
for _beta in (3.0, 10.0, 30.0, 100.0, 300.0, 1000.0):
  for _calibrated in (False, True):
    SETTINGS[f'label_softmax beta={_beta:g}{" calibrated" if _calibrated else ""}'] = dict(
        words_to_images='label_softmax', label_softmax_beta=_beta,
        label_softmax_calibrated=_calibrated)
KEYS = ('words_to_images_seen_precision@10', 'words_to_images_unseen_precision@10')


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--runs', required=True)
  args = parser.parse_args()
  names = sorted(n for n in os.listdir(args.runs)
                 if os.path.isdir(os.path.join(args.runs, n, 'checkpoints')))
  values = {s: {k: [] for k in KEYS} for s in SETTINGS}
  for name in names:
    run = run_lib.Run.load(os.path.join(args.runs, name))
    data = evaluate.evaluation_data(run, run.config.data.eval_split)
    for setting, overrides in SETTINGS.items():
      cfg = run.config.eval.copy_and_resolve_references()
      cfg.update(overrides)
      got = dict(words_to_images.words_to_images(data, cfg))
      for k in KEYS:
        values[setting][k].append(got[k])
  print(f'{len(names)} runs: {", ".join(names)}\n')
  print('| ranking | ' + ' | '.join(KEYS) + ' | per run (seen / unseen) |')
  print('|---|' + '---|' * (len(KEYS) + 1))
  for setting, by_key in values.items():
    cells = [f'{np.mean(v):.3f} +- {np.std(v):.3f}' for v in by_key.values()]
    runs = ', '.join(f'{a:.2f}/{b:.2f}' for a, b in zip(*by_key.values()))
    print(f'| {setting} | ' + ' | '.join(cells) + f' | {runs} |')


if __name__ == '__main__':
  main()
