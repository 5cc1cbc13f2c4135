"""Stage 3: train the Siamese head on the frozen encoder's features.

The encoder is frozen after stage 2, so each image's 512-d features are computed once
per split from the latest stage-2 checkpoint and cached in the workdir
(`Run.split_features`, pickle-free). Measured on the 2-core CPU for the
default experiment: extracting all 60,000 training features takes about 14 s (~4,300
images/s, encoder forward only), then 1,500 head steps of 128 take about 24 s. On the
fly, every step would add an encoder forward of its 128 images (~30 ms), about 45 s
over the same 1,500 steps, and more with every extra step or epoch.
The price is no augmentation in stage 3, as in the seed project.

Batches are P x K: `classes_per_batch` seen classes, `batch_size / P` images each (the
first classes get one more when P does not divide the batch), so every anchor has
positives and negatives to mine. The draw for step s is a function
of (seed, s), so a resumed run replays the same batches.

The head is `config.stage3.head` (devise_jax/models/siamese.py), the loss
`config.stage3.loss` with its options (`loss_function`; devise_jax/losses.py).
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax

from devise_jax import losses
from devise_jax.models import siamese as siamese_model

FEATURE_DIM = 512


def create_head(config):
  return siamese_model.create(config.stage3)


def pk_batches(features, labels, class_ids, *, batch_size, classes_per_batch, seed,
               start_step=0):
  """Infinite P x K batches of the given classes' features; batch s from (seed, s)."""
  by_class = [np.flatnonzero(labels == c) for c in class_ids]
  by_class = [ids for ids in by_class if len(ids)]
  p = min(classes_per_batch, len(by_class))
  if p < 2 or batch_size < 2 * p:
    raise ValueError(f'stage 3 needs batches of >= 2 classes with >= 2 images each; got '
                     f'batch_size={batch_size} over {p} classes')
  # K images per class; when P does not divide the batch, the first classes get one more.
  sizes = [batch_size // p + (i < batch_size % p) for i in range(p)]
  step = start_step
  while True:
    rng = np.random.default_rng([seed, step])
    chosen = rng.choice(len(by_class), size=p, replace=False)
    ids = np.concatenate([rng.choice(by_class[c], size=k, replace=len(by_class[c]) < k)
                          for c, k in zip(chosen, sizes)])
    yield {'features': features[ids], 'label': labels[ids].astype(np.int32)}
    step += 1


def loss_function(stage_config):
  """`fn(embeddings, labels) -> [B]`: the loss `stage_config.loss` with its options."""
  name = stage_config.loss
  if name not in losses.SIAMESE_LOSSES:
    raise ValueError(f'--config.stage3.loss={name!r}: must be one of '
                     f'{sorted(losses.SIAMESE_LOSSES)}')
  if name == 'multi_similarity':
    return functools.partial(
        losses.multi_similarity, alpha=stage_config.ms_alpha, beta=stage_config.ms_beta,
        base=stage_config.ms_base, epsilon=stage_config.ms_epsilon)
  return functools.partial(losses.SIAMESE_LOSSES[name], margin=stage_config.margin)


def make_train_step(head, stage_config):
  """The pure step `(state, batch, rng) -> (state, metrics)` of the Siamese head."""
  loss_fn = loss_function(stage_config)

  def objective(params, batch):
    embeddings = head.apply({'params': params}, batch['features'])
    per_anchor = loss_fn(embeddings, batch['label'])
    d = losses.pairwise_distances(embeddings)
    pos, neg, _ = losses.batch_hard_triplets(d, batch['label'])
    rows = jnp.arange(len(pos))
    # Fraction of anchors whose hardest positive is nearer than the hardest negative.
    accuracy = jnp.mean(d[rows, pos] < d[rows, neg])
    return jnp.mean(per_anchor), accuracy

  def train_step(state, batch, rng):
    del rng  # The head has no dropout.
    (loss, accuracy), grads = jax.value_and_grad(objective, has_aux=True)(
        state.params, batch)
    state = state.apply_gradients(grads=grads)
    return state, dict(loss=loss, accuracy=accuracy, l2_grads=optax.global_norm(grads),
                       l2_params=optax.global_norm(state.params))

  return train_step
