"""Evaluation of a run: the evaluators of `config.evals` over one split's outputs.

Every image of the split is counted exactly once (the eval iterator pads the last batch
and masks it). The result, written to eval.json, holds the metrics, the split, the
stages' steps and the class lists; per-class metrics are grouped by family. Evaluation
also draws its plots (devise_jax/plots.py) and writes TensorBoard events
(devise_jax/metric_writer.py).
"""

import numpy as np

from devise_jax import artefacts
from devise_jax import calibration
from devise_jax import evaluators
from devise_jax import metric_writer
from devise_jax import plots
from devise_jax import refit
from devise_jax import run as run_lib
from devise_jax import stages as stages_lib
from devise_jax import vocabulary
from devise_jax import wordnet
from devise_jax import workdir_lock
from devise_jax.evaluators import common
from devise_jax.models import devise as devise_model


def evaluate(run, split=None):
  """Evaluates `run` (a `Run` or a workdir) on `split`; writes and returns eval.json.
  Holds the workdir's lock (`workdir_lock.hold`) while it runs."""
  with workdir_lock.hold(run if isinstance(run, str) else run.workdir):
    return _evaluate(run_lib.Run.load(run) if isinstance(run, str) else run, split)


def _evaluate(run, split):
  config = run.config
  split = split or config.data.eval_split
  data = evaluation_data(run, split)
  names = tuple(config.get('evals', evaluators.DEFAULT))
  metrics, per_class = {}, {}
  for key, value in evaluators.run_all(names, data, config.eval).items():
    family, _, name = key.partition('/')
    if name:
      per_class.setdefault(family, {})[name] = value
    else:
      metrics[key] = value
  result = dict(metrics=metrics, split=split, seen_classes=[run.names[i] for i in run.seen],
                unseen_classes=[run.names[i] for i in run.unseen], **per_class,
                **{f'{stage}_step': step for stage, step in run.steps.items()})
  artefacts.save_eval(run.workdir, result)
  # Pictures in WORKDIR/plots/, and everything as TensorBoard events at stage 2's step.
  paths = plots.write_all(run, data, split)
  metric_writer.write_eval(run.workdir, result, run.steps[stages_lib.DEVISE_STAGE], paths)
  return result


def evaluation_data(run, split):
  """The evaluators' `Data` of `run` on `split` (excluded classes' images dropped)."""
  out = run.outputs(split)
  keep = np.isin(out.labels, np.union1d(run.seen, run.unseen))
  rows = lambda x: None if x is None else x[keep]
  return evaluators.Data(labels=out.labels[keep], logits=out.logits[keep],
                         devise=out.devise[keep], label_vectors=run.label_space.vectors,
                         seen=run.seen, unseen=run.unseen, names=tuple(run.names),
                         features=out.features[keep], siamese=rows(out.siamese),
                         class_penalty=class_penalty(run), **calibrate(run),
                         **wordnet_inputs(run))


def wordnet_inputs(run):
  """{synsets, wordnet, vocabulary} when an evaluator of `config.evals` needs them,
  else {}: each class's `config.data.synsets` entry (None when absent), WordNet 3.0 and
  the open vocabulary of the run's word vectors (devise_jax/vocabulary.py)."""
  config = run.config
  if not set(config.get('evals', evaluators.DEFAULT)) & set(evaluators.NEEDS_WORDNET):
    return {}
  mapping = dict(config.data.get('synsets') or {})
  unknown = sorted(set(mapping) - set(run.names))
  if unknown:
    raise ValueError(f'config.data.synsets: unknown class names {unknown}')
  synsets = tuple(mapping.get(name) for name in run.names)
  wordnet.check_ids([s for s in synsets if s is not None], 'config.data.synsets')
  return dict(synsets=synsets, wordnet=wordnet.load(),
              vocabulary=vocabulary.for_word_vectors(config.word_vectors))


def calibrate(run):
  """{gamma_devise, gamma_conse} of calibrated stacking: chosen on the training data by
  class-wise folds (devise_jax/calibration.py; the fold gammas are saved in the
  workdir), times the config's correction (`calibration.scaled`); {} when the config
  has no validation split."""
  config = run.config
  if not config.data.get('val_split'):
    return {}
  saved = artefacts.load_calibration(run.workdir)
  key = calibration.saved_key(run.steps, run.seen, config.seed)
  if calibration.matches(saved, key):
    return calibration.scaled(saved['gammas'], config.eval)
  seen_only = lambda split: _rows(
      run.split_features(split, stages_lib.CLASSIFIER_STAGE), run.seen)
  label_vectors = run.label_space.vectors
  fit = lambda stage, f, y, ids: refit.fit_on_features(config, stage, f, y, ids,
                                                       label_vectors, run.names)

  def fit_devise(f, y, ids):
    projection = fit(stages_lib.DEVISE_STAGE, f, y, ids)['projection']
    return lambda x: _unit(devise_model.project({'projection': projection}, x))

  def fit_logits(f, y, ids):
    classifier = fit(stages_lib.CLASSIFIER_STAGE, f, y, ids)['classifier']
    return lambda x: x @ classifier['kernel'] + classifier['bias']

  devise, conse = calibration.fold_gammas(
      fit_devise, fit_logits, seen_only(config.data.train_split),
      seen_only(config.data.val_split), run.seen, label_vectors,
      top_t=config.eval.conse_top_t, seed=config.seed, hubness_k=_hubness_k(config))
  gammas = dict(gamma_devise=devise, gamma_conse=conse)
  artefacts.save_calibration(run.workdir, dict(key, gammas=gammas))
  return calibration.scaled(gammas, config.eval)


def _hubness_k(config):
  kind = config.eval.get('hubness', 'none')
  if kind not in ('none', 'csls'):
    raise ValueError(f"config.eval.hubness must be 'none' or 'csls', got {kind!r}")
  return config.eval.get('csls_k', 10) if kind == 'csls' else 0


def class_penalty(run):
  """[C] CSLS hubness penalty of each class word, from up to 10,000 training images of
  the seen classes; None unless `config.eval.hubness == 'csls'`."""
  k = _hubness_k(run.config)
  if not k:
    return None
  features, _ = _rows(run.split_features(run.config.data.train_split,
                                         stages_lib.CLASSIFIER_STAGE), run.seen)
  reference = run.devise(features[::max(1, len(features) // 10_000)])
  return common.csls_penalty(reference, run.label_space.vectors, k)


def _rows(pair, class_ids):
  features, labels = pair
  keep = np.isin(labels, class_ids)
  return features[keep], labels[keep]


def _unit(x):
  return x / np.linalg.norm(x, axis=1, keepdims=True)


def format_table(result):
  """A markdown table of an `evaluate` result."""
  rows = ['| metric | value |', '|---|---|']
  for key, value in result['metrics'].items():
    rows.append(f'| {key} | {value:.4f} |' if isinstance(value, float) else
                f'| {key} | {value} |')
  return '\n'.join(rows)
