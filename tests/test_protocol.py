"""The protocol's split sampler, its validation twin, and a tiny protocol end to end."""

import json
import os

import numpy as np
import pytest

from devise_jax import checkpoint
from devise_jax import input_pipeline
from devise_jax import protocol
from devise_jax import run as run_lib
from devise_jax import train
from conftest import load_config


def test_splits_are_a_pure_function_of_the_seed():
  a = protocol.draw_splits(10, 3, 5, seed=0)
  assert a == protocol.draw_splits(10, 3, 5, seed=0)
  assert a != protocol.draw_splits(10, 3, 5, seed=1)
  assert len(set(a)) == 5 and all(len(s) == 3 and list(s) == sorted(set(s)) for s in a)
  assert protocol.draw_splits(10, 3, 2, seed=0) == a[:2]  # A prefix, not a re-draw.
  assert len(set(protocol.draw_splits(4, 2, 6, seed=0))) == 6  # Every pair of 4.


def test_bad_protocol_sizes_are_clear_errors():
  with pytest.raises(ValueError, match=r'--unseen must be in \[1, 9\]'):
    protocol.draw_splits(10, 10, 1)
  with pytest.raises(ValueError, match=r'--splits must be in \[1, 6\]'):
    protocol.draw_splits(4, 2, 7)


def test_default_config_split_is_split_zero(fmnist_data_dir):
  config = load_config()
  config.data.data_dir = fmnist_data_dir
  names = input_pipeline.class_names(config.data)
  split0 = protocol.draw_splits(len(names), 3, 1, seed=0)[0]
  assert tuple(config.data.unseen_classes) == tuple(names[i] for i in split0)


def test_validation_twin_hides_the_unseen_classes():
  config = load_config()
  names = ['a', 'b', 'c', 'd', 'e', 'f', 'g', 'h', 'i', 'j']
  config.data.unseen_classes = ('b', 'e', 'j')
  val = protocol.validation_config(config, names, seed=0)
  assert val.data.exclude_classes == ('b', 'e', 'j')
  assert len(val.data.unseen_classes) == 2  # 7 seen x 3/10.
  assert not set(val.data.unseen_classes) & {'b', 'e', 'j'}
  assert val.data.eval_split == config.data.val_split != config.data.eval_split
  assert config.data.unseen_classes == ('b', 'e', 'j')  # The original is unchanged.


def _checkpoint_file(out_dir, stage):
  """A file of split 0 seed 0's `stage` checkpoint in the protocol directory `out_dir`."""
  return next((out_dir / 'split0_seed0' / 'checkpoints' / stage).rglob(
      '_CHECKPOINT_METADATA'))


def test_tiny_protocol_end_to_end(tiny_config, tmp_path):
  result = protocol.run_protocol(tiny_config, str(tmp_path), num_splits=2, seeds=[0],
                                 num_unseen=3, log=lambda m: None)
  saved = json.loads((tmp_path / 'protocol.json').read_text())
  assert saved['runs'] == json.loads(json.dumps(result['runs']))
  assert [r['unseen'] for r in saved['runs']] == [
      ['Sandal', 'Shirt', 'Ankle boot'], ['Coat', 'Bag', 'Ankle boot']]
  zsl = [r['metrics']['zsl_top1'] for r in saved['runs']]
  summary = saved['summary']['overall']['zsl_top1']
  assert summary['mean'] == pytest.approx(np.mean(zsl))
  assert summary['std'] == pytest.approx(np.std(zsl))
  assert 'gzsl_calibrated_h' in saved['runs'][0]['metrics']
  table = (tmp_path / 'protocol.md').read_text()
  assert 'Coat, Bag, Ankle boot' in table and f"{summary['mean']:.3f}" in table
  # Stage 3 is trained and image retrieval summarised in its three spaces.
  for key in protocol.RETRIEVAL_METRICS:
    values = [r['metrics'][key] for r in saved['runs']]
    assert all(0 <= v <= 1 for v in values), key
    assert saved['summary']['overall'][key]['mean'] == pytest.approx(np.mean(values))
    assert f'| {key} |' in table
  siamese = saved['summary']['overall']['siamese_unseen_map@r']
  assert f"| siamese | {saved['summary']['overall']['siamese_seen_map@r']['mean']:.3f}" in table
  assert f"{siamese['mean']:.3f} +- {siamese['std']:.3f}" in table


def test_tiny_validation_protocol_and_a_stage3_variant(tiny_config, tmp_path):
  # Validation: the real unseen classes never evaluated.
  val = protocol.run_protocol(tiny_config, str(tmp_path / 'val'), num_splits=1, seeds=[0],
                              num_unseen=3, validation=True, log=lambda m: None)
  run = val['runs'][0]
  assert run['excluded'] == ['Sandal', 'Shirt', 'Ankle boot']
  assert not set(run['unseen']) & set(run['excluded'])
  assert set(protocol.RETRIEVAL_METRICS) <= set(run['metrics'])
  # A stage-3 variant reuses stages 1 and 2 (hard links) and trains only stage 3: its
  # features and DeViSE retrieval are the base run's, its Siamese space its own.
  variant = tiny_config.copy_and_resolve_references()
  variant.stage3.head, variant.stage3.loss = 'residual', 'multi_similarity'
  out = tmp_path / 'val_residual'
  again = protocol.run_protocol(variant, str(out), num_splits=1, seeds=[0], num_unseen=3,
                                validation=True, reuse_from=str(tmp_path / 'val'),
                                reuse_stages=('stage1', 'stage2'), log=lambda m: None)
  new = again['runs'][0]['metrics']
  for stage in ('stage1', 'stage2'):
    assert os.path.samefile(_checkpoint_file(tmp_path / 'val', stage),
                            _checkpoint_file(out, stage))
  for key in protocol.RETRIEVAL_METRICS + ('zsl_top1', 'gzsl_calibrated_h'):
    if not key.startswith('siamese'):
      assert new[key] == run['metrics'][key], key
  # Calibration reads only stages 1 and 2: the base run's is reused, not computed again.
  assert os.path.samefile(tmp_path / 'val' / 'split0_seed0' / 'calibration.json',
                          out / 'split0_seed0' / 'calibration.json')
  assert new['siamese_seen_map@r'] != run['metrics']['siamese_seen_map@r']
  # Finished stages are not trained again, yet a config that contradicts them is refused.
  changed = variant.copy_and_resolve_references()
  changed.stage2.learning_rate = 0.5
  with pytest.raises(checkpoint.CheckpointError, match='changed: stage2.learning_rate'):
    protocol.run_protocol(changed, str(out), num_splits=1, seeds=[0], num_unseen=3,
                          validation=True, log=lambda m: None)
  with pytest.raises(ValueError, match='reuse_stages'):
    protocol.run_protocol(variant, str(out), num_splits=1, seeds=[0], num_unseen=3,
                          reuse_from=str(tmp_path / 'val'), reuse_stages=('stage2',))


def test_label_space_variant_reuses_stage_one(tiny_config, tmp_path):
  from devise_jax import wordvec  # pylint: disable=g-import-not-at-top
  base = tmp_path / 'base'
  config = tiny_config.copy_and_resolve_references()
  config.word_vectors.class_text = 'name'
  protocol.run_protocol(config, str(base), num_splits=1, seeds=[0], num_unseen=3,
                        stages=('stage1',), log=lambda m: None)
  before = (base / 'split0_seed0' / 'label_space.npz').read_bytes()
  config.word_vectors.class_text = 'synset'
  result = protocol.run_protocol(config, str(tmp_path / 'variant'), num_splits=1,
                                 seeds=[0], num_unseen=3, reuse_from=str(base),
                                 log=lambda m: None)
  assert 'siamese_unseen_map@r' in result['runs'][0]['metrics']  # Stages 2 and 3 trained.
  run = run_lib.Run.load(str(tmp_path / 'variant' / 'split0_seed0'))
  kv = wordvec.load_keyedvectors(config.word_vectors.source)
  # Bag's synset is {bag, handbag, pocketbook, purse}: the class vector is the unit mean
  # of the unit vectors of its name and those lemmas.
  units = [kv[w] / np.linalg.norm(kv[w]) for w in ('bag', 'bag', 'handbag', 'pocketbook',
                                                 'purse')]
  want = np.mean(units, axis=0)
  np.testing.assert_allclose(run.label_space.vectors[run.names.index('Bag')],
                             want / np.linalg.norm(want), atol=1e-5)
  assert (base / 'split0_seed0' / 'label_space.npz').read_bytes() == before
  # Stage 1 itself is the base's (hard links), not retrained.
  assert os.path.samefile(_checkpoint_file(base, 'stage1'),
                          _checkpoint_file(tmp_path / 'variant', 'stage1'))
  # Once stage 2 has trained against it, the label space is fixed.
  config.word_vectors.class_text = 'synset_hypernyms'
  with pytest.raises(Exception, match='word_vectors.class_text'):
    train.prepare_workdir(config, str(tmp_path / 'variant' / 'split0_seed0'))
