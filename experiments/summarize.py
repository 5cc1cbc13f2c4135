"""Mean +- std of eval.json metrics over several workdirs (one per seed), as markdown.

  python experiments/summarize.py workdirs/seed0 workdirs/seed1 workdirs/seed2
"""

import json
import os
import sys

import numpy as np


def summarize(workdirs):
  results = []
  for workdir in workdirs:
    with open(os.path.join(workdir, 'eval.json'), encoding='utf-8') as f:
      results.append(json.load(f)['metrics'])
  rows = [f'| metric | mean +- std over {len(results)} seeds | per seed |', '|---|---|---|']
  for key in results[0]:
    values = np.array([r[key] for r in results], dtype=float)
    per_seed = ', '.join(f'{v:.4f}' for v in values)
    rows.append(f'| {key} | {values.mean():.4f} +- {values.std(ddof=1):.4f} | {per_seed} |')
  return '\n'.join(rows)


if __name__ == '__main__':
  if len(sys.argv) < 2:
    sys.exit('usage: python experiments/summarize.py WORKDIR [WORKDIR ...]')
  print(summarize(sys.argv[1:]))
