"""The zero-shot protocol: the only source of headline numbers.

Seen/unseen splits are drawn by a seeded sampler from the data set's own class list
(never by looking at word vectors or results); every (split, seed) is trained and
evaluated in its own workdir; the summary is the mean and standard deviation over all
runs, and every run is listed.

Validation (`validation=True`) is how choices are made without the test split: each
run's real unseen classes are excluded altogether (no image, no candidate), a few of
its seen classes are drawn as pseudo-unseen, and the run is evaluated on
`config.data.val_split`, images carved from the training data.
"""

import json
import os
import time

import numpy as np

from devise_jax import calibration
from devise_jax import checkpoint
from devise_jax import evaluate
from devise_jax import files
from devise_jax import input_pipeline
from devise_jax import stages as stages_lib
from devise_jax import train
from devise_jax import workdir_lock

DEFAULT_METRICS = ('zsl_top1', 'conse_zsl_top1', 'chance_zsl_top1', 'gzsl_h',
                   'gzsl_calibrated_h', 'conse_gzsl_calibrated_h', 'ausuc', 'seen_hit@1',
                   'words_to_images_seen_precision@10',
                   'words_to_images_unseen_precision@10')


def draw_splits(num_classes, num_unseen, num_splits, seed=0):
  """`num_splits` distinct sorted tuples of `num_unseen` class ids out of `num_classes`.

  A pure function of its arguments: split i comes from `default_rng([seed, i, try])`,
  redrawn (next `try`) while it repeats an earlier split.
  """
  if not 0 < num_unseen < num_classes:
    raise ValueError(f'--unseen must be in [1, {num_classes - 1}], got {num_unseen}')
  possible = _binomial(num_classes, num_unseen)
  if not 0 < num_splits <= possible:
    raise ValueError(f'--splits must be in [1, {possible}] for {num_unseen} of '
                     f'{num_classes} classes, got {num_splits}')
  splits = []
  for i in range(num_splits):
    for attempt in range(10_000):
      rng = np.random.default_rng([seed, i, attempt])
      split = tuple(sorted(int(c) for c in rng.choice(num_classes, num_unseen,
                                                      replace=False)))
      if split not in splits:
        break
    splits.append(split)
  return splits


def _binomial(n, k):
  out = 1
  for i in range(k):
    out = out * (n - i) // (i + 1)
  return out


def validation_config(config, names, seed=0):
  """The run's validation twin: real unseen classes excluded, pseudo-unseen ones drawn
  from the seen classes (a function of `seed`), evaluated on the validation split."""
  if not config.data.get('val_split'):
    raise ValueError('config.data.val_split is empty: validation needs images carved '
                     'from the training data (e.g. train[90%:])')
  unseen = [names.index(n) for n in config.data.unseen_classes]
  seen = [i for i in range(len(names)) if i not in unseen]
  count = calibration.num_validation_unseen(len(seen), len(unseen), len(names))
  pick = draw_splits(len(seen), count, 1, seed=seed)[0]
  val = config.copy_and_resolve_references()
  val.data.exclude_classes = tuple(names[i] for i in unseen)
  val.data.unseen_classes = tuple(names[seen[j]] for j in pick)
  val.data.eval_split = config.data.val_split
  return val


def run_protocol(config, out_dir, *, num_splits, seeds, num_unseen, validation=False,
                 stages=stages_lib.REQUIRED_STAGES, split_seed=0, reuse_from=None, log=print):
  """Trains and evaluates every (split, seed); writes protocol.json and protocol.md.

  `reuse_from`: an earlier protocol directory whose runs' stage 1 (checkpoints, cached
  features, classes) each new run starts from, so stage-2 variants cost seconds. The
  workdir's config check still refuses a stage 1, data or model config that differs.
  Without the DeViSE stage (stage2) in `stages` the runs are trained only (no
  evaluation, no summary).
  The runs evaluate `config.evals` without image retrieval (slow, and not summarized).
  `out_dir` is locked while it runs (`workdir_lock.hold`), as each run's workdir is.
  """
  names = input_pipeline.class_names(config.data)
  splits = draw_splits(len(names), num_unseen, num_splits, split_seed)
  os.makedirs(out_dir, exist_ok=True)
  with workdir_lock.hold(out_dir):
    runs, total, started = [], len(splits) * len(seeds), time.time()
    for i, split in enumerate(splits):
      for j, seed in enumerate(seeds):
        cfg = config.copy_and_resolve_references()
        cfg.seed = seed
        # Image retrieval is slow on a whole split and no part of the summary.
        cfg.evals = tuple(e for e in cfg.evals if e != 'retrieval')
        cfg.data.unseen_classes = tuple(names[c] for c in split)
        if validation:
          cfg = validation_config(cfg, names, seed=split_seed * 1000 + i)
        workdir = os.path.join(out_dir, f'split{i}_seed{seed}')
        if reuse_from and not os.path.exists(workdir):
          checkpoint.link_stage(os.path.join(reuse_from, f'split{i}_seed{seed}'), workdir,
                                stages_lib.STAGE_TABLE[stages_lib.DEVISE_STAGE].init_from)
        tick = time.time()
        train.train(cfg, workdir, stages, log=lambda m: None)
        if stages_lib.DEVISE_STAGE not in stages:
          log(f'[{i * len(seeds) + j + 1}/{total}] split {i} seed {seed}: trained')
          continue
        result = evaluate.evaluate(workdir)
        runs.append(dict(split=i, unseen=list(cfg.data.unseen_classes), seed=seed,
                         excluded=list(cfg.data.get('exclude_classes', ())),
                         workdir=workdir, seconds=round(time.time() - tick, 1),
                         metrics=result['metrics']))
        m = result['metrics']
        log(f'[{len(runs)}/{total}] split {i} {list(cfg.data.unseen_classes)} seed {seed}: '
            f'zsl_top1 {m["zsl_top1"]:.3f} conse {m["conse_zsl_top1"]:.3f} '
            f'({runs[-1]["seconds"]:.0f} s)')
        _write(out_dir, runs, time.time() - started, validation)
    return _write(out_dir, runs, time.time() - started, validation) if runs else None


def summarize(runs, metrics=None):
  """{metric: {mean, std, min, max, n}} over runs, and per split {metric: mean, std}."""
  keys = metrics or [k for k in DEFAULT_METRICS if all(k in r['metrics'] for r in runs)]
  stats = lambda xs: dict(mean=float(np.mean(xs)), std=float(np.std(xs)),
                          min=float(np.min(xs)), max=float(np.max(xs)), n=len(xs))
  overall = {k: stats([r['metrics'][k] for r in runs]) for k in keys}
  per_split = {}
  for split in sorted({r['split'] for r in runs}):
    chosen = [r for r in runs if r['split'] == split]
    per_split[split] = dict(unseen=chosen[0]['unseen'], **{
        k: stats([r['metrics'][k] for r in chosen]) for k in keys})
  return dict(overall=overall, per_split=per_split)


def _write(out_dir, runs, seconds, validation):
  summary = summarize(runs)
  result = dict(runs=runs, summary=summary, validation=validation,
                wall_seconds=round(seconds, 1))
  files.write_json(os.path.join(out_dir, 'protocol.json'), result)
  files.write_text(os.path.join(out_dir, 'protocol.md'), markdown(result))
  return result


def markdown(result):
  """Mean +- std over all runs, per split, and every run."""
  summary = result['summary']
  keys = list(summary['overall'])
  lines = ['| metric | mean +- std | min | max | runs |', '|---|---|---|---|---|']
  for k, s in summary['overall'].items():
    lines.append(f"| {k} | {s['mean']:.3f} +- {s['std']:.3f} | {s['min']:.3f} | "
                 f"{s['max']:.3f} | {s['n']} |")
  short = [k for k in keys if k != 'chance_zsl_top1']
  lines += ['', '| split | unseen | ' + ' | '.join(short) + ' |',
            '|---|---|' + '---|' * len(short)]
  for split, s in summary['per_split'].items():
    cells = [f"{s[k]['mean']:.3f} +- {s[k]['std']:.3f}" for k in short]
    lines.append(f"| {split} | {', '.join(s['unseen'])} | " + ' | '.join(cells) + ' |')
  lines += ['', '| split | seed | unseen | ' + ' | '.join(short) + ' |',
            '|---|---|---|' + '---|' * len(short)]
  for r in result['runs']:
    cells = [f"{r['metrics'][k]:.3f}" for k in short]
    lines.append(f"| {r['split']} | {r['seed']} | {', '.join(r['unseen'])} | "
                 + ' | '.join(cells) + ' |')
  return '\n'.join(lines) + '\n'


def load(path):
  with open(path, encoding='utf-8') as f:
    return json.load(f)
