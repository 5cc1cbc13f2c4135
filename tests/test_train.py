"""End to end on a slice of the real Fashion-MNIST + GloVe: train, interrupt, resume,
evaluate; and the errors a user meets with bad input."""

import json
import os
import pathlib
import shutil
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from devise_jax import checkpoint
from devise_jax import evaluate
from devise_jax import input_pipeline
from devise_jax import run as run_lib
from devise_jax import train


class Interrupted(Exception):
  pass


def _interrupt_at(step):
  def after_step(done):
    if done == step:
      raise Interrupted
  return after_step


def _assert_same_params(workdir_a, workdir_b, stage):
  a, step_a = checkpoint.load_variables(workdir_a, stage)
  b, step_b = checkpoint.load_variables(workdir_b, stage)
  assert step_a == step_b
  for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)):
    np.testing.assert_array_equal(x, y)  # Bitwise: CPU XLA is deterministic.


def test_interrupted_run_resumes_to_the_same_params_and_evaluates(reference_run,
                                                                  evaluated_run, tmp_path):
  config, reference, reference_fingerprint = reference_run
  workdir = str(tmp_path / 'run')
  # Dies after step 3 (the first call of three steps), once step 3 is saved.
  with pytest.raises(Interrupted):
    train.train_stage(config, workdir, 'stage1', after_step=_interrupt_at(3))
  assert checkpoint.manager(workdir, 'stage1').all_steps() == [3]
  messages = []
  fingerprint = train.train(config, workdir, log=messages.append)
  assert fingerprint == reference_fingerprint
  assert messages[-1] == f'params fingerprint: {fingerprint}'
  assert 'stage1: resuming from step 3' in messages
  assert any(m.startswith('stage2: starting from stage1 step 6') for m in messages)
  _assert_same_params(reference, workdir, 'stage1')
  _assert_same_params(reference, workdir, 'stage2')
  _assert_same_params(reference, workdir, 'stage3')

  result = evaluate.evaluate(workdir)
  metrics = json.loads((tmp_path / 'run' / 'eval.json').read_text())['metrics']
  assert metrics == result['metrics']
  # The same numbers as the evaluation of the uninterrupted run.
  assert metrics == evaluated_run.result['metrics']
  for key in ('zsl_top1', 'per_class_zsl_top1', 'gzsl_seen', 'gzsl_unseen', 'gzsl_h',
              'conse_zsl_top1', 'chance_zsl_top1', 'seen_hit@1', 'seen_hit@5'):
    assert 0.0 <= metrics[key] <= 1.0, key
  assert metrics['chance_zsl_top1'] == pytest.approx(1 / 3)  # Three unseen classes.
  assert metrics['num_seen_images'] + metrics['num_unseen_images'] == 256
  records = [json.loads(line) for line in open(os.path.join(workdir, 'metrics.jsonl'))]
  assert {r['stage'] for r in records} == {'stage1', 'stage2', 'stage3'}
  assert all(np.isfinite(r['loss']) and r['images_per_sec'] > 0 for r in records)


def test_unreadable_latest_checkpoint_falls_back_and_is_kept_aside(reference_run, tmp_path):
  config, reference, _ = reference_run
  workdir = tmp_path / 'run'
  shutil.copytree(reference, workdir)
  shutil.rmtree(workdir / 'checkpoints' / 'stage2')
  latest = workdir / 'checkpoints' / 'stage1' / '6'
  for f in latest.rglob('*'):  # Truncate every file: a half-written checkpoint.
    if f.is_file() and f.name not in ('_CHECKPOINT_METADATA', 'commit_success.txt'):
      f.write_bytes(f.read_bytes()[:len(f.read_bytes()) // 3])
  messages = []
  train.train(config, str(workdir), log=messages.append)
  assert any('checkpoint' in m and 'unreadable' in m for m in messages), messages
  assert 'stage1: resuming from step 3' in messages
  quarantined = list((workdir / 'quarantine').iterdir())
  assert [q.name.split('-')[:2] for q in quarantined] == [['stage1', 'step6']]
  _assert_same_params(reference, str(workdir), 'stage1')
  _assert_same_params(reference, str(workdir), 'stage2')


def test_a_different_config_on_the_same_workdir_is_refused(reference_run, tmp_path):
  config, reference, _ = reference_run
  workdir = tmp_path / 'run'
  shutil.copytree(reference, workdir)
  before = (workdir / 'config.json').read_text()
  changed = config.copy_and_resolve_references()
  changed.stage1.learning_rate = 0.5
  with pytest.raises(checkpoint.CheckpointError, match='stage1.learning_rate'):
    train.train(changed, str(workdir))
  assert (workdir / 'config.json').read_text() == before


@pytest.mark.parametrize('field,value,message', [
    ('data.name', 'no_such_dataset', "unknown dataset 'no_such_dataset'"),
    ('data.unseen_classes', ('Sandal', 'Gumboot', 'Wellie'), 'Gumboot'),
    ('data.unseen_classes', (), 'unseen_fraction'),
    ('word_vectors.source', '/nonexistent/vectors.vec', '/nonexistent/vectors.vec'),
])
def test_bad_config_values_are_clear_errors(tiny_config, tmp_path, field, value, message):
  section, key = field.split('.')
  tiny_config[section][key] = value
  with pytest.raises((ValueError, FileNotFoundError), match=message):
    train.prepare_workdir(tiny_config, str(tmp_path / 'run'))
  assert not (tmp_path / 'run' / 'classes.json').exists()


def test_truncated_word_vector_file_is_a_clear_error(tiny_config, tmp_path):
  good = tmp_path / 'good.txt'
  good.write_text('3 2\nshirt 0.1 0.2\ncoat 0.3 0.4\nbag 0.5 0.6\n')
  bad = tmp_path / 'bad.txt'
  bad.write_text('3 2\nshirt 0.1 0.2\ncoat 0.')
  tiny_config.word_vectors.source = str(bad)
  with pytest.raises(ValueError, match='bad.txt'):
    train.prepare_workdir(tiny_config, str(tmp_path / 'run'))


def test_batch_that_does_not_divide_over_devices_is_a_clear_error(tiny_config, tmp_path):
  tiny_config.stage1.batch_size = jax.device_count() + 1
  with pytest.raises(ValueError, match='does not divide over'):
    train.train_stage(tiny_config, str(tmp_path / 'run'), 'stage1')


def _cli(*args):
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='3')
  return subprocess.run([sys.executable, '-c', 'from devise_jax import cli; cli.run()', *args],
                        capture_output=True, text=True, env=env, timeout=300)


def test_cli_errors_are_one_line(tmp_path):
  config = str(pathlib.Path(__file__).parent.parent / 'experiments/configs/fashion_mnist_zsl.py')
  proc = _cli('train', '--config', f'{config}:tiny', '--workdir', str(tmp_path),
              '--config.stage1.no_such_key=3')
  assert proc.returncode == 2
  assert proc.stderr.strip().splitlines()[-1] == (
      "devise-jax: error: unknown config key 'stage1.no_such_key'")
  proc = _cli('eval', '--workdir', str(tmp_path / 'empty'))
  assert proc.returncode == 1
  last = proc.stderr.strip().splitlines()[-1]
  assert last.startswith('devise-jax: error:') and 'holds no devise-jax run' in last


def test_nan_loss_stops_training_naming_the_step_and_saves_nothing(tiny_config, tmp_path,
                                                                   monkeypatch):
  # Images that are not numbers: the loss is NaN from the first step. (Through the data
  # rather than a huge learning rate, which is a constant of the compiled step: this way
  # the step is the tiny run's own, compiled once for the session.)
  real = input_pipeline.train_iterator

  def poisoned(*args, **kwargs):
    for batch in real(*args, **kwargs):
      yield dict(batch, image=np.full_like(batch['image'], np.nan))

  monkeypatch.setattr(input_pipeline, 'train_iterator', poisoned)
  with pytest.raises(train.TrainingError, match='non-finite metrics at step 3'):
    train.train_stage(tiny_config, str(tmp_path / 'run'), 'stage1')
  assert checkpoint.manager(str(tmp_path / 'run'), 'stage1').all_steps() == []


def test_bfloat16_compute_keeps_float32_params(tiny_config, tmp_path):
  tiny_config.model.dtype = 'bfloat16'
  tiny_config.stage1.num_steps = 2
  state = train.train_stage(tiny_config, str(tmp_path / 'run'), 'stage1')
  dtypes = {str(x.dtype) for x in jax.tree_util.tree_leaves(state.params)}
  assert dtypes == {'float32'}
  opt_dtypes = {str(x.dtype) for x in jax.tree_util.tree_leaves(state.opt_state)
                if hasattr(x, 'dtype') and x.ndim > 0}
  assert opt_dtypes == {'float32'}
  records = [json.loads(l) for l in open(tmp_path / 'run' / 'metrics.jsonl')]
  assert np.isfinite(records[-1]['loss'])


def test_leftover_temporary_checkpoint_dir_is_cleaned_up(reference_run, tmp_path):
  config, reference, _ = reference_run
  workdir = tmp_path / 'run'
  shutil.copytree(reference, workdir)
  leftover = workdir / 'checkpoints' / 'stage1' / '9.orbax-checkpoint-tmp-1234567'
  (leftover / 'default').mkdir(parents=True)
  (leftover / 'default' / 'half').write_bytes(b'\0' * 10)
  messages = []
  train.train_stage(config, str(workdir), 'stage1', log=messages.append)
  assert messages == ['stage1: resuming from step 6', 'stage1: already trained (6 steps)']
  assert not leftover.exists()
  assert checkpoint.manager(str(workdir), 'stage1').all_steps() == [3, 6]


def test_vocabulary_negatives_are_frequent_words_that_are_not_targets(tiny_config):
  from devise_jax import wordvec
  kv = wordvec.load_keyedvectors(tiny_config.word_vectors.source)
  got = train.vocabulary_negatives(tiny_config, ['T-shirt/top', 'Sneaker'], 40)
  want = []
  for word in kv.index_to_key:  # Frequency order, as GloVe lists its words.
    if len(word) >= 3 and word.isalpha() and word not in ('shirt', 'top', 'sneaker'):
      want.append(word)
    if len(want) == 40:
      break
  expected = np.stack([kv[w] / np.linalg.norm(kv[w]) for w in want])
  np.testing.assert_allclose(got, expected, atol=1e-6)
  assert 'the' in want and 'top' not in want


def test_calls_are_cut_where_the_loop_logs_and_saves():
  # Hand-computed: 4-step calls on the grid of 4, cut at every multiple of 6.
  assert list(train.calls(0, 10, 4, (6,))) == [(0, 4), (4, 2), (6, 2), (8, 2)]
  # Resumed at a saved step, a run makes the calls the uninterrupted one made there.
  assert list(train.calls(6, 10, 4, (6,))) == [(6, 2), (8, 2)]
  assert list(train.calls(0, 3, 1)) == [(0, 1), (1, 1), (2, 1)]
  assert list(train.calls(5, 5, 4)) == []


def test_multi_step_equals_a_loop_of_single_steps():
  def step(state, batch, rng):  # A toy pure step with state-dependent updates.
    new = state * 0.5 + jnp.sum(batch['x']) + jax.random.uniform(jax.random.fold_in(rng, 7))
    return new, {'loss': new * 2.0}
  batches = {'x': jnp.arange(12.0).reshape(3, 2, 2)}
  rng = jax.random.key(0)
  state, loop_losses = jnp.float32(1.0), []
  for i in range(3):
    state, metrics = step(state, {'x': batches['x'][i]}, rng)
    loop_losses.append(metrics['loss'])
  multi_state, multi_metrics = jax.jit(train.multi_step(step, 3))(jnp.float32(1.0),
                                                                 batches, rng)
  np.testing.assert_allclose(multi_state, state, rtol=1e-6)
  np.testing.assert_allclose(multi_metrics['loss'], loop_losses[-1], rtol=1e-6)


def test_steps_per_call_does_not_change_what_is_trained(tiny_config, tmp_path):
  params = {}
  for per_call in (1, 3):
    config = tiny_config
    config.steps_per_call = per_call
    # Two SGD steps, as in tests/test_distributed.py: Adam and BatchNorm on these tiny
    # batches amplify float rounding over more steps.
    config.stage1.optimizer = 'sgd'
    config.stage1.num_steps = config.log_every = config.checkpoint_every = 2
    workdir = str(tmp_path / str(per_call))
    train.train_stage(config, workdir, 'stage1', log=lambda m: None)
    params[per_call], step = checkpoint.load_variables(workdir, 'stage1')
    assert step == config.stage1.num_steps
  # Same steps on the same batches (one call of two steps, or two calls); the programs
  # may round floats differently (fusion), so equal to float32 rounding.
  for a, b in zip(jax.tree_util.tree_leaves(params[1]), jax.tree_util.tree_leaves(params[3])):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def test_stage2_center_is_the_seen_classes_training_mean_and_stays(tiny_config, tmp_path):
  config = tiny_config
  config.stage2.center_features = True
  workdir = str(tmp_path / 'run')
  for stage in ('stage1', 'stage2'):
    train.train_stage(config, workdir, stage, log=lambda m: None)
  run = run_lib.Run.load(workdir)
  features, labels = run.split_features(config.data.train_split, 'stage1')
  seen_rows = [i for i in range(len(labels)) if labels[i] in set(run.seen)]
  expected = np.mean(np.asarray(features, np.float64)[seen_rows], axis=0)
  center = run.variables['stage2']['params']['projection']['center']
  np.testing.assert_allclose(center, expected, rtol=1e-5, atol=1e-6)  # After 6 steps.
  # Evaluation and search use the same map: unit(f - center) W + b, normalised.
  p = run.variables['stage2']['params']['projection']
  f = np.asarray(features[:4], np.float64) - center
  v = (f / np.linalg.norm(f, axis=1, keepdims=True)) @ p['kernel'] + p['bias']
  np.testing.assert_allclose(run.devise(features[:4]),
                             v / np.linalg.norm(v, axis=1, keepdims=True), atol=1e-5)
