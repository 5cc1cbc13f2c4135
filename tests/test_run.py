"""The restored run: one restore per stage, one compile per shape, the same numbers as
the whole model, and a library whose modules import each other one way only."""

import ast
import pathlib
import shutil

import chex
import jax
import numpy as np
import pytest

from devise_jax import checkpoint
from devise_jax import input_pipeline
from devise_jax import run as run_lib
from devise_jax import train
from devise_jax import train_step
from devise_jax.models import devise

PACKAGE = pathlib.Path(run_lib.__file__).parent


def test_outputs_match_the_whole_model(reference_run, tmp_path):
  config, reference, _ = reference_run
  workdir = str(tmp_path / 'run')  # A copy: the features it reads are cached there.
  shutil.copytree(reference, workdir)
  run = run_lib.Run.load(workdir)
  out = run.outputs('test[:64]')
  model1, model2 = (devise.create_model(config.model, len(run.seen), run.label_space.dim,
                                        center_features=centred)
                     for centred in (False, config.stage2.center_features))
  batch = next(input_pipeline.eval_iterator(config.data, split='test[:64]', batch_size=64))
  v1, _ = checkpoint.load_variables(workdir, 'stage1')
  v2, _ = checkpoint.load_variables(workdir, 'stage2')
  want1, want2 = model1.apply(v1, batch['image']), model2.apply(v2, batch['image'])
  emb = np.asarray(want2['embedding'])
  np.testing.assert_array_equal(out.labels, batch['label'])
  np.testing.assert_allclose(out.logits, want1['logits'], atol=1e-4)
  np.testing.assert_allclose(out.features, want2['features'], atol=1e-4)
  np.testing.assert_allclose(out.devise, emb / np.linalg.norm(emb, axis=1, keepdims=True),
                             atol=1e-4)
  # The projection by hand: unit(features - center) @ kernel + bias.
  p = jax.tree.map(np.asarray, v2['params']['projection'])
  centred = out.features - p['center']
  by_hand = centred / np.linalg.norm(centred, axis=1, keepdims=True) @ p['kernel'] + p['bias']
  np.testing.assert_allclose(out.devise, by_hand / np.linalg.norm(by_hand, axis=1,
                                                                  keepdims=True), atol=1e-4)
  assert out.siamese.shape == (64, config.stage3.widths[-1])


def test_each_embedder_compiles_once_per_shape(reference_run):
  _, workdir, _ = reference_run
  run = run_lib.Run.load(workdir)
  images = np.zeros((8, 32, 32, 3), np.float32)
  for _ in range(3):
    features = run.encode(images)
    run.devise(features), run.siamese(features), run.logits(features)
  assert run.traces == {'encode': 1, 'devise': 1, 'siamese': 1, 'logits': 1}
  raw = [np.zeros((28, 28, 1), np.uint8)] * 5
  run.encode_images(raw)  # Padded to 8 images: the shape compiled above.
  run.encode_images(raw[:3])  # Padded to 4: one new shape.
  run.encode_images(raw[:4])
  assert run.traces['encode'] == 2


def test_one_evaluation_restores_each_stage_once(evaluated_run):
  # The shared evaluation counted its calls to checkpoint.load_variables.
  assert sorted(evaluated_run.restores) == ['stage1', 'stage2', 'stage3']
  result = evaluated_run.result
  assert 'features_seen_recall@1' in result['metrics']
  assert set(result['words_to_images_precision@10']) == set(result['seen_classes']) | set(
      result['unseen_classes'])


def test_slices_whose_names_read_alike_are_cached_apart(reference_run, tmp_path):
  # 'test[:1%]' and 'test[:1]' once both became the cache file test_1_.npz, so the
  # second read returned the first's rows (as train[90%:] returned train[:90%]'s).
  _, reference, _ = reference_run
  workdir = str(tmp_path / 'run')  # A copy: the features are cached there.
  shutil.copytree(reference, workdir)
  run = run_lib.Run.load(workdir)
  percent = run.split_features('test[:1%]', 'stage1')
  one = run.split_features('test[:1]', 'stage1')
  assert len(percent[1]) == 100 and len(one[1]) == 1  # Fashion-MNIST: 10,000 test images.
  np.testing.assert_array_equal(one[1], percent[1][:1])
  np.testing.assert_allclose(one[0], percent[0][:1], atol=1e-5)
  names = {checkpoint.file_name(n) for n in ('train[:90%]', 'train[90%:]', 'train_90_')}
  assert len(names) == 3 and checkpoint.file_name('test') == 'test'


def test_train_step_compiles_once(tiny_config, tmp_path, monkeypatch):
  # One compiled call holds steps_per_call copies of the step (`train_loop.multi_step`
  # writes them out), and the tiny run's calls all have that many steps: traced that
  # often once, never again per call.
  real = train_step.make_train_step
  monkeypatch.setattr(train_step, 'make_train_step', lambda *a, **k: chex.assert_max_traces(
      real(*a, **k), n=tiny_config.steps_per_call))
  chex.clear_trace_counter()
  train.train_stage(tiny_config, str(tmp_path / 'run'), 'stage1', log=lambda m: None)


def test_no_stages_is_a_clear_error(tiny_config, tmp_path):
  with pytest.raises(ValueError, match='no stages to train'):
    train.train(tiny_config, str(tmp_path / 'run'), stages=[])


def _imports(path):
  """devise_jax modules that the module at `path` imports (anywhere in the file)."""
  out = set()
  for node in ast.walk(ast.parse(path.read_text())):
    if isinstance(node, ast.Import):
      out |= {a.name for a in node.names}
    elif isinstance(node, ast.ImportFrom) and node.module:
      for alias in node.names:  # `from pkg import module` imports pkg.module.
        sub = f'{node.module}.{alias.name}'
        out.add(sub if _module_path(sub) else node.module)
  return {m for m in out if m.startswith('devise_jax')}


def _module_path(name):
  rel = pathlib.Path(*name.split('.')[1:])
  for candidate in (PACKAGE / rel.with_suffix('.py'), PACKAGE / rel / '__init__.py'):
    if candidate.exists():
      return candidate
  return None


def test_devise_jax_has_no_import_cycle():
  modules = {}
  for path in PACKAGE.rglob('*.py'):
    parts = path.relative_to(PACKAGE.parent).with_suffix('').parts
    name = '.'.join(parts[:-1] if parts[-1] == '__init__' else parts)
    modules[name] = _imports(path) - {name}
  assert len(modules) > 15
  state = {}

  def visit(name, stack):
    state[name] = 'open'
    for dep in sorted(modules.get(name, ())):
      if state.get(dep) == 'open':
        pytest.fail('import cycle: ' + ' -> '.join(stack + [name, dep]))
      if dep not in state:
        visit(dep, stack + [name])
    state[name] = 'done'

  for name in sorted(modules):
    if name not in state:
      visit(name, [])
