"""Heads refitted on cached encoder features, and the targets a stage trains against.

`fit_on_features` trains a fresh stage-1 classifier or stage-2 projection on the
features of some classes with the stage's own recipe (calibration's folds and the
sweeps in experiments/ use it); `targets` gives a stage's target word vectors, with
the DeViSE loss's vocabulary negatives when the config asks for them.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from devise_jax import input_pipeline
from devise_jax import stages as stages_lib
from devise_jax import train_step
from devise_jax import wordvec


def feature_center(features, labels, class_ids):
  """The projection's fixed `center`: the mean feature of the images of `class_ids`."""
  return np.asarray(features[np.isin(labels, class_ids)].mean(0), np.float32)


def fit_on_features(config, stage, features, labels, class_ids, label_vectors, names):
  """The params of a fresh head trained on cached features of `class_ids` only, with
  the stage's own recipe (optimizer, steps, batch, loss): stage1 gives
  {'classifier'}, stage2 {'projection'}. Calibration folds use it."""
  spec, stage_config = stages_lib.STAGE_TABLE[stage], config[stage]
  head, width = (('classifier', len(class_ids)) if spec.loss == 'softmax' else
                 ('projection', label_vectors.shape[1]))
  rng = jax.random.fold_in(jax.random.key(config.seed), stages_lib.STAGES.index(stage))
  params = {head: nn.Dense(width).init(rng, jnp.zeros((1, features.shape[1])))['params']}
  if stages_lib.centered(config, stage):
    params[head] = dict(params[head], center=feature_center(features, labels, class_ids))
  state = train_step.TrainState.create(
      apply_fn=None, params=params,
      tx=train_step.make_optimizer(stage, stage_config, params))
  step = jax.jit(train_step.make_train_step(
      None, spec.loss, stage_config,
      *targets(config, stage, names, class_ids, label_vectors), bn_train=False,
      on_features=True), donate_argnums=0)
  batches = input_pipeline.feature_batches(features, labels, class_ids,
                                           batch_size=stage_config.batch_size,
                                           seed=config.seed + stages_lib.STAGES.index(stage))
  for _ in range(stage_config.num_steps):
    state, _ = step(state, next(batches), rng)
  return jax.device_get(state.params)


def targets(config, stage, names, class_ids, label_vectors):
  """(target vectors, label id -> target row lookup) of a stage trained on `class_ids`:
  their unit vectors, then any vocabulary negatives of the DeViSE loss."""
  lookup = np.full(len(names), -1, np.int32)
  lookup[class_ids] = np.arange(len(class_ids))
  vectors = label_vectors[class_ids]
  stage_config = config[stage]
  if stages_lib.STAGE_TABLE[stage].loss == 'devise' and stage_config.get(
      'vocab_negatives', 0):
    vectors = np.concatenate([vectors, vocabulary_negatives(
        config, [names[i] for i in class_ids], stage_config.vocab_negatives)])
  return vectors, lookup


def vocabulary_negatives(config, seen_names, count):
  """Unit vectors of the `count` most frequent alphabetic words of the word vectors
  (3+ letters), leaving out the words of the seen class names (they are targets)."""
  wv = config.word_vectors
  kv = wordvec.load_keyedvectors(wv.source, wv.format)
  own = {w for n in seen_names for w in wordvec.name_words(n)}
  words = [w for w in kv.index_to_key if len(w) >= 3 and w.isalpha() and w not in own]
  vectors = np.asarray(kv.get_normed_vectors())[[kv.key_to_index[w] for w in words[:count]]]
  return vectors.astype(np.float32)
