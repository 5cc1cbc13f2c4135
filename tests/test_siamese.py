"""Stage 3: the batch sampler (seen classes only, P x K, a function of (seed, step)),
the heads, and the stage-3 config checks."""

import itertools
import re

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from devise_jax import config_checks
from devise_jax import losses
from devise_jax import siamese
from devise_jax.models import siamese as siamese_model
from conftest import load_config


def _data():
  labels = np.repeat(np.arange(10), 20)
  features = np.random.default_rng(0).normal(size=(200, 512)).astype(np.float32)
  return features, labels


@pytest.mark.parametrize('batch_size,per_batch', [(32, 8), (30, 7), (16, 20)])
def test_pk_batches_draw_only_the_given_classes_in_equal_groups(batch_size, per_batch):
  features, labels = _data()
  seen = np.array([0, 2, 3, 5, 6, 7, 8, 9])
  batches = siamese.pk_batches(features, labels, seen, batch_size=batch_size,
                               classes_per_batch=per_batch, seed=1)
  p = min(per_batch, len(seen))
  for batch in itertools.islice(batches, 20):
    assert batch['features'].shape == (batch_size, 512)
    assert set(batch['label']) <= set(seen)  # No unseen class, ever.
    counts = sorted(np.bincount(batch['label'])[np.unique(batch['label'])])
    assert len(counts) == p and counts[-1] - counts[0] <= 1 and sum(counts) == batch_size
    for f, y in zip(batch['features'], batch['label']):
      assert labels[np.flatnonzero((features == f).all(1))[0]] == y


def test_pk_batches_resume_exactly():
  features, labels = _data()
  seen = np.arange(8)
  run = lambda start: siamese.pk_batches(features, labels, seen, batch_size=16,
                                         classes_per_batch=4, seed=3, start_step=start)
  full = list(itertools.islice(run(0), 6))
  resumed = list(itertools.islice(run(4), 2))
  assert len(resumed) == 2
  for a, b in zip(full[4:], resumed):
    assert a.keys() == b.keys() == {'features', 'label'}
    np.testing.assert_array_equal(a['features'], b['features'])
    np.testing.assert_array_equal(a['label'], b['label'])
    # Each label is the label of its feature row in the data.
    rows = [np.flatnonzero((features == f).all(1))[0] for f in b['features']]
    np.testing.assert_array_equal(b['label'], labels[rows])
  # Consecutive steps draw different batches: resuming at step 4 is not the same as
  # restarting at step 0.
  for a, b in zip(full, full[1:]):
    assert not np.array_equal(a['features'], b['features'])
  assert not np.array_equal(resumed[0]['features'], full[0]['features'])


def test_too_small_batches_are_a_clear_error():
  features, labels = _data()
  with pytest.raises(ValueError, match='>= 2 classes with >= 2 images'):
    next(siamese.pk_batches(features, labels, np.arange(8), batch_size=10,
                            classes_per_batch=8, seed=0))


@pytest.mark.parametrize('widths', [(32, 16), ()])
def test_residual_head_starts_as_its_unit_features_and_learns(widths):
  head = siamese_model.create(ml_collections.ConfigDict(dict(head='residual',
                                                             widths=widths)))
  rng = np.random.default_rng(0)
  # Encoder features are non-negative (after a ReLU), of varied norms.
  x = np.abs(rng.normal(size=(12, 512))) * rng.uniform(0.1, 20, size=(12, 1))
  params = head.init(jax.random.key(0), jnp.zeros((1, 512)))['params']
  out = head.apply({'params': params}, jnp.asarray(x, jnp.float32))
  np.testing.assert_allclose(out, x / np.linalg.norm(x, axis=1, keepdims=True),
                             rtol=1e-6, atol=1e-7)
  labels = jnp.asarray(np.repeat(np.arange(4), 3))
  loss = lambda p: losses.triplet_semi_hard(
      head.apply({'params': p}, jnp.asarray(x, jnp.float32)), labels, 0.2).mean()
  assert float(loss(params)) > 0
  grads = jax.grad(loss)(params)
  last = f'Dense_{len(widths)}'  # The zero-initialised layer.
  assert float(jnp.abs(grads[last]['kernel']).max()) > 0


def test_stage3_choices_are_checked_before_a_run():
  config = load_config()
  config_checks.check(config)
  for key, value, message in [
      ('loss', 'proxy', "--config.stage3.loss='proxy': must be one of"),
      ('head', 'wide', "--config.stage3.head='wide': must be one of"),
      ('widths', (128, 0), '--config.stage3.widths=(128, 0): must be a tuple of positive'),
      ('ms_beta', 0.0, '--config.stage3.ms_beta=0.0: must be a finite number > 0')]:
    bad = config.copy_and_resolve_references()
    bad.stage3[key] = value
    with pytest.raises(ValueError, match=re.escape(message)):
      config_checks.check(bad)
  config.stage3.widths = ()
  with pytest.raises(ValueError, match='the mlp head needs at least one layer'):
    siamese_model.create(config.stage3)
