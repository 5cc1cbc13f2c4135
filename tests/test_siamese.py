"""The stage-3 batch sampler: seen classes only, P x K, a function of (seed, step)."""

import itertools

import numpy as np
import pytest

from devise_jax import siamese


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
