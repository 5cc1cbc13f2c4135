"""Mean +- std of eval.json metrics over several workdirs (one per seed), as markdown.

  python experiments/summarize.py workdirs/seed0 workdirs/seed1 workdirs/seed2
  python experiments/summarize.py --allow_differ stage2.weight_decay workdirs/wd*

An average means something only over runs that differ in nothing but their seed: the
runs' configs (config.json) are compared key by key, and their evaluations must be of
the same split. Any other difference is refused, naming the keys and two workdirs that
differ, unless `--allow_differ` lists those keys (or their sections, e.g. `stage2`).
For averages over seen/unseen splits use the protocol (`devise-jax protocol`).
"""

import json
import os

from absl import app
from absl import flags
import numpy as np

_ALLOW = flags.DEFINE_list('allow_differ', [], 'Config keys (or sections) that may differ '
                           'between the runs besides the seed, e.g. stage2.weight_decay.')


def _read(path, what):
  try:
    with open(path, encoding='utf-8') as f:
      return json.load(f)
  except FileNotFoundError:
    raise ValueError(f'{path} is missing: is {os.path.dirname(path)} a {what}?') from None
  except json.JSONDecodeError as e:
    raise ValueError(f'{path} is corrupt: {e}') from None


def _flat(tree, prefix=''):
  out = {}
  for key, value in tree.items():
    if isinstance(value, dict):
      out.update(_flat(value, f'{prefix}{key}.'))
    else:
      out[f'{prefix}{key}'] = value
  return out


def _allowed(key, allow):
  return key == 'seed' or any(key == a or key.startswith(a + '.') for a in allow)


def check_comparable(workdirs, configs, evals, allow=()):
  """Raises ValueError when the runs differ in more than the seed and `allow`."""
  first = configs[0]
  for workdir, config, result in zip(workdirs[1:], configs[1:], evals[1:]):
    keys = sorted(k for k in set(first) | set(config)
                  if first.get(k) != config.get(k) and not _allowed(k, allow))
    if keys:
      shown = ', '.join(keys[:5]) + (', ...' if len(keys) > 5 else '')
      raise ValueError(f'{workdirs[0]} and {workdir} have different configs ({shown}): '
                       f'their average would mix runs; pass --allow_differ '
                       f'{",".join(keys)} to average them anyway')
    if result.get('split') != evals[0].get('split') and 'split' not in allow:
      raise ValueError(f'{workdirs[0]} and {workdir} were evaluated on different splits '
                       f'({evals[0].get("split")!r}, {result.get("split")!r}); evaluate '
                       'them on one, or pass --allow_differ split')


def summarize(workdirs, allow=()):
  """The markdown table of every metric's mean +- std (ddof 1) and per-seed values."""
  if not workdirs:
    raise ValueError('give at least one workdir')
  configs = [_flat(_read(os.path.join(w, 'config.json'), 'devise-jax workdir'))
             for w in workdirs]
  evals = [_read(os.path.join(w, 'eval.json'), 'evaluated workdir (devise-jax eval)')
           for w in workdirs]
  check_comparable(workdirs, configs, evals, allow)
  results = [e['metrics'] for e in evals]
  keys = [k for k in results[0] if all(k in r for r in results)]
  rows = [f'| metric | mean +- std over {len(results)} seeds | per seed |', '|---|---|---|']
  for key in keys:
    values = np.array([r[key] for r in results], dtype=float)
    std = values.std(ddof=1) if len(values) > 1 else 0.0
    per_seed = ', '.join(f'{v:.4f}' for v in values)
    rows.append(f'| {key} | {values.mean():.4f} +- {std:.4f} | {per_seed} |')
  return '\n'.join(rows)


def main(argv):
  if len(argv) < 2:
    raise app.UsageError('usage: python experiments/summarize.py [--allow_differ KEYS] '
                         'WORKDIR [WORKDIR ...]')
  try:
    print(summarize(argv[1:], _ALLOW.value))
  except ValueError as e:
    raise SystemExit(f'summarize: error: {e}') from None


if __name__ == '__main__':
  app.run(main)
