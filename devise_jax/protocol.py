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
# Image retrieval in each space (the 'retrieval' evaluator), side by side: encoder
# features, DeViSE vectors (stage 2) and Siamese embeddings (stage 3).
RETRIEVAL_SPACES = ('features', 'devise', 'siamese')
RETRIEVAL_METRICS = tuple(f'{space}_{images}_{metric}' for metric in ('map@r', 'recall@1')
                          for images in ('seen', 'unseen') for space in RETRIEVAL_SPACES)
# Shown in each run's line of the log, where the run has them.
_LOGGED = ('zsl_top1', 'conse_zsl_top1', 'features_unseen_map@r', 'siamese_unseen_map@r')


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
                 stages=stages_lib.STAGES, split_seed=0, reuse_from=None,
                 reuse_stages=(stages_lib.CLASSIFIER_STAGE,), log=print):
  """Trains and evaluates every (split, seed); writes protocol.json and protocol.md.

  `reuse_from`: an earlier protocol directory whose runs' `reuse_stages` (checkpoints,
  cached features, classes; a stage and those it starts from) each new run starts
  from: stage 1 for stage-2 variants, stages 1 and 2 for stage-3 variants, so a
  variant trains only what it changes. The workdir's config check still refuses a
  reused stage, data or model config that differs.
  A stage a run has finished is kept as it is (not restored, not retrained).
  Without the DeViSE stage (stage2) in `stages` the runs are trained only (no
  evaluation, no summary). The runs evaluate `config.evals`; image retrieval in every
  space (`RETRIEVAL_METRICS`) is summarised beside the zero-shot metrics.
  `out_dir` is locked while it runs (`workdir_lock.hold`), as each run's workdir is.
  """
  reuse_stages = tuple(reuse_stages)
  if reuse_from and (not reuse_stages or
                     reuse_stages != stages_lib.lineage(reuse_stages[-1])):
    raise ValueError(f'reuse_stages={reuse_stages}: must be a stage and the stages it '
                     'starts from, e.g. (stage1,) or (stage1, stage2)')
  names = input_pipeline.class_names(config.data)
  splits = draw_splits(len(names), num_unseen, num_splits, split_seed)
  os.makedirs(out_dir, exist_ok=True)
  with workdir_lock.hold(out_dir):
    runs, total, started = [], len(splits) * len(seeds), time.time()
    for i, split in enumerate(splits):
      for j, seed in enumerate(seeds):
        cfg = config.copy_and_resolve_references()
        cfg.seed = seed
        cfg.data.unseen_classes = tuple(names[c] for c in split)
        if validation:
          cfg = validation_config(cfg, names, seed=split_seed * 1000 + i)
        workdir = os.path.join(out_dir, f'split{i}_seed{seed}')
        if reuse_from and not os.path.exists(workdir):
          checkpoint.link_stages(os.path.join(reuse_from, f'split{i}_seed{seed}'), workdir,
                                 reuse_stages)
        tick = time.time()
        _train(cfg, workdir, stages)
        if stages_lib.DEVISE_STAGE not in stages:
          log(f'[{i * len(seeds) + j + 1}/{total}] split {i} seed {seed}: trained')
          continue
        result = evaluate.evaluate(workdir)
        runs.append(dict(split=i, unseen=list(cfg.data.unseen_classes), seed=seed,
                         excluded=list(cfg.data.get('exclude_classes', ())),
                         workdir=workdir, seconds=round(time.time() - tick, 1),
                         metrics=result['metrics']))
        shown = ', '.join(f'{k} {result["metrics"][k]:.3f}' for k in _LOGGED
                          if k in result['metrics'])
        log(f'[{len(runs)}/{total}] split {i} {list(cfg.data.unseen_classes)} seed {seed}: '
            f'{shown} ({runs[-1]["seconds"]:.0f} s)')
        _write(out_dir, runs, time.time() - started, validation)
    return _write(out_dir, runs, time.time() - started, validation) if runs else None


def _train(config, workdir, stages):
  """Trains the `stages` not yet finished in `workdir` (a finished one is not even
  restored: it costs a compile and a restore, more than a stage-3 variant's training);
  with none left, still refuses a config that contradicts the workdir's."""
  todo = [s for s in stages if not _finished(workdir, s, config)]
  if todo:
    train.train(config, workdir, todo, log=lambda m: None)
  else:
    with train.writing(workdir):
      train.prepare_workdir(config, workdir)


def _finished(workdir, stage, config):
  try:
    return checkpoint.latest_step(workdir, stage) >= config[stage].num_steps
  except checkpoint.CheckpointError:
    return False


def summarize(runs, metrics=None):
  """{metric: {mean, std, min, max, n}} over runs, and per split {metric: mean, std}."""
  keys = metrics or [k for k in DEFAULT_METRICS + RETRIEVAL_METRICS
                     if all(k in r['metrics'] for r in runs)]
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
  """Mean +- std over all runs, the retrieval spaces side by side, then per split and
  every run (the zero-shot and the retrieval metrics in tables of their own)."""
  overall = result['summary']['overall']
  lines = ['| metric | mean +- std | min | max | runs |', '|---|---|---|---|---|']
  for k, s in overall.items():
    lines.append(f"| {k} | {_cell(s)} | {s['min']:.3f} | {s['max']:.3f} | {s['n']} |")
  lines += _spaces(overall)
  keys = [k for k in overall if k != 'chance_zsl_top1']
  for group in ([k for k in keys if k not in RETRIEVAL_METRICS],
                [k for k in keys if k in RETRIEVAL_METRICS]):
    if group:
      lines += _details(result, group)
  return '\n'.join(lines) + '\n'


def _cell(stats):
  return f"{stats['mean']:.3f} +- {stats['std']:.3f}" if stats else '-'


def _spaces(overall):
  """Image retrieval: a row per embedding space, a column per class set and metric."""
  columns = [(images, metric) for metric in ('map@r', 'recall@1')
             for images in ('seen', 'unseen')]
  spaces = [s for s in RETRIEVAL_SPACES if f'{s}_seen_map@r' in overall]
  if not spaces:
    return []
  lines = ['', '| space | ' + ' | '.join(f'{i} {m}' for i, m in columns) + ' |',
           '|---|' + '---|' * len(columns)]
  for space in spaces:
    cells = [_cell(overall.get(f'{space}_{i}_{m}')) for i, m in columns]
    lines.append(f'| {space} | ' + ' | '.join(cells) + ' |')
  return lines


def _details(result, keys):
  """Per split (mean +- std over its seeds) and every run, for `keys`."""
  lines = ['', '| split | unseen | ' + ' | '.join(keys) + ' |',
           '|---|---|' + '---|' * len(keys)]
  for split, s in result['summary']['per_split'].items():
    cells = [_cell(s[k]) for k in keys]
    lines.append(f"| {split} | {', '.join(s['unseen'])} | " + ' | '.join(cells) + ' |')
  lines += ['', '| split | seed | unseen | ' + ' | '.join(keys) + ' |',
            '|---|---|---|' + '---|' * len(keys)]
  for r in result['runs']:
    cells = [f"{r['metrics'][k]:.3f}" for k in keys]
    lines.append(f"| {r['split']} | {r['seed']} | {', '.join(r['unseen'])} | "
                 + ' | '.join(cells) + ' |')
  return lines


def load(path):
  with open(path, encoding='utf-8') as f:
    return json.load(f)
