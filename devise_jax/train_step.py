"""The train step and its optimiser: a pure function `(state, batch, rng) -> (state,
metrics)` for stages 1 and 2, built from the stage table (devise_jax/stages.py).

The step is written for the global batch; `train_loop.jit_step` shards it over the
devices (BatchNorm statistics are then computed over the global batch).
"""

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax.training import train_state

from devise_jax import losses
from devise_jax import siamese
from devise_jax import stages as stages_lib
from devise_jax.models import devise


class TrainState(train_state.TrainState):
  batch_stats: Any = None


def learning_rate_schedule(stage_config):
  """step -> learning rate: linear warm-up, then cosine decay to 0 at num_steps."""
  return optax.warmup_cosine_decay_schedule(
      0.0, stage_config.learning_rate, stage_config.warmup_steps,
      max(stage_config.num_steps, stage_config.warmup_steps + 1))


def make_optimizer(stage, stage_config, params):
  schedule = learning_rate_schedule(stage_config)
  decay_mask = lambda tree: jax.tree_util.tree_map(lambda p: p.ndim > 1, tree)
  optimizers = {
      'adamw': lambda lr: optax.adamw(lr, weight_decay=stage_config.weight_decay,
                                      mask=decay_mask),
      # Plain SGD does not amplify float noise in near-zero gradients as Adam's
      # normalisation does, so runs on different device counts stay within ~1e-6.
      'sgd': lambda lr: optax.chain(
          optax.add_decayed_weights(stage_config.weight_decay, decay_mask),
          optax.sgd(lr, momentum=0.9, nesterov=True)),
  }
  if stage_config.optimizer not in optimizers:
    raise ValueError(f'config.{stage}.optimizer must be one of {sorted(optimizers)}, '
                     f'got {stage_config.optimizer!r}')
  make = optimizers[stage_config.optimizer]
  scale = getattr(stage_config, 'encoder_lr_scale', 0.0)
  transforms = {'train': make(schedule), 'freeze': optax.set_to_zero(),
                'finetune': make(lambda step: scale * schedule(step))}
  labels = stages_lib.STAGE_TABLE[stage].trainable(stage_config)
  return optax.multi_transform(transforms, {k: labels[k] for k in params})


def create_train_state(config, model, stage, rng):
  size = config.data.image_size
  dummy = (jnp.zeros((1, siamese.FEATURE_DIM))
           if stages_lib.STAGE_TABLE[stage].model == 'siamese'
           else jnp.zeros((1, size, size, 3), jnp.float32))
  variables = jax.jit(model.init, static_argnames='train')({'params': rng}, dummy,
                                                           train=False)
  params = variables['params']
  tx = make_optimizer(stage, config[stage], params)
  return TrainState.create(apply_fn=model.apply, params=params, tx=tx,
                           batch_stats=variables.get('batch_stats'))


def make_train_step(model, loss_kind, stage_config, label_vectors, seen_lookup,
                    bn_train=True, on_features=False):
  """Returns the pure step `(state, batch, rng) -> (state, metrics)`.

  `loss_kind` is 'softmax' (the classifier's logits) or 'devise' (the projection's
  embedding, with `stage_config.loss`). `label_vectors` [S, D] are the seen classes'
  unit word vectors and `seen_lookup` maps a dataset label id to its index among the
  seen classes (-1 for unseen); rows of `label_vectors` past the seen classes are
  extra negatives of the DeViSE loss. `bn_train` updates BatchNorm statistics (a
  trained encoder) or keeps them (a frozen one). `on_features`: batches hold a frozen
  encoder's `features` instead of images, and only the projection is applied.
  """
  if loss_kind == 'devise' and stage_config.loss not in losses.DEVISE_LOSSES:
    raise ValueError(f'--config.stage2.loss={stage_config.loss!r}: must be one of '
                     f'{sorted(losses.DEVISE_LOSSES)}')
  label_vectors = jnp.asarray(label_vectors)
  seen_lookup = jnp.asarray(seen_lookup)

  num_seen = int(np.sum(np.asarray(seen_lookup) >= 0))

  def apply(params, state, batch, rng):
    if on_features:  # A frozen encoder: only the heads (no dropout) see its features.
      f, out = batch['features'], {}
      if 'projection' in params:
        out['embedding'] = devise.project(params, f)
      if 'classifier' in params:
        out['logits'] = f @ params['classifier']['kernel'] + params['classifier']['bias']
      return out, {}
    variables = {'params': params}
    if state.batch_stats is not None:
      variables['batch_stats'] = state.batch_stats
    return model.apply(
        variables, batch['image'], train=bn_train, rngs={'dropout': rng},
        mutable=['batch_stats'] if (bn_train and state.batch_stats is not None) else [])

  def loss_fn(params, state, batch, rng):
    out, updates = apply(params, state, batch, rng)
    labels = seen_lookup[batch['label']]
    if loss_kind == 'softmax':
      per_example = losses.softmax_cross_entropy(out['logits'], labels)
      accuracy = jnp.mean(jnp.argmax(out['logits'], -1) == labels)
    else:
      loss = losses.DEVISE_LOSSES[stage_config.loss]
      kwargs = {'margin': stage_config.margin} if stage_config.loss == 'hinge_rank' else {}
      per_example = loss(out['embedding'], label_vectors, labels, **kwargs)
      weight = stage_config.get('image_ranking_weight', 0.0)
      if weight:  # Images ranked for each label word too (words -> images).
        per_example += weight * losses.label_to_image_hinge(
            out['embedding'], label_vectors[:num_seen], labels, stage_config.margin)
      scores = out['embedding'] @ label_vectors[:num_seen].T
      accuracy = jnp.mean(jnp.argmax(scores, -1) == labels)
    return jnp.mean(per_example), (updates.get('batch_stats'), accuracy)

  def train_step(state, batch, rng):
    rng = jax.random.fold_in(rng, state.step)
    grad_fn = jax.value_and_grad(loss_fn, has_aux=True)
    (loss, (batch_stats, accuracy)), grads = grad_fn(state.params, state, batch, rng)
    new_state = state.apply_gradients(grads=grads)
    if batch_stats is not None:
      new_state = new_state.replace(batch_stats=batch_stats)
    metrics = dict(loss=loss, accuracy=accuracy, l2_grads=optax.global_norm(grads),
                   l2_params=optax.global_norm(new_state.params))
    return new_state, metrics

  return train_step
