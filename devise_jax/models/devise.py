"""The full model: a SqueezeNet encoder with a softmax classifier and a DeViSE head.

One parameter tree serves every stage; each stage's optimiser decides which subtrees
move (see `train_step.make_optimizer`): stage 1 trains `encoder` + `classifier`, stage 2
trains `projection` (and optionally fine-tunes `encoder`).

With `center_features` the projection maps unit(f - c), the encoder features less
their mean over the seen classes' training images (`projection/center`, set when stage 2
starts and never trained), normalised to unit length: every image then weighs the same
in the hinge, whatever its activation level, and images unlike the training data (lower,
flatter activations) no longer collapse onto the direction of the projection's bias.
"""

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from devise_jax.models import squeezenet


class DeViSEModel(nn.Module):
  """Returns dict(features [B, F], logits [B, num_classes], embedding [B, embed_dim])."""
  num_classes: int
  embed_dim: int
  version: str = 'squeezenet1_1'
  use_bn: bool = False
  dropout: float = 0.5
  dtype: Any = jnp.float32
  freeze_encoder: bool = False  # Stop gradients at the features (a frozen encoder).
  center_features: bool = False  # Project unit(features - center) (module docstring).

  @nn.compact
  def __call__(self, x, train: bool = False):
    features = squeezenet.SqueezeNet(self.version, self.use_bn, self.dtype,
                                     name='encoder')(x, train)
    if self.freeze_encoder:
      features = jax.lax.stop_gradient(features)
    hidden = nn.Dropout(self.dropout, deterministic=not train)(features)
    logits = nn.Dense(self.num_classes, name='classifier')(hidden)
    embedding = Projection(self.embed_dim, self.center_features, name='projection')(
        features)
    return dict(features=features, logits=logits, embedding=embedding)


class Projection(nn.Module):
  """nn.Dense's params (and init), plus a fixed `center` when `center_features`."""
  embed_dim: int
  center_features: bool = False

  @nn.compact
  def __call__(self, features):
    width = features.shape[-1]
    p = {'kernel': self.param('kernel', nn.initializers.lecun_normal(),
                              (width, self.embed_dim)),
         'bias': self.param('bias', nn.initializers.zeros_init(), (self.embed_dim,))}
    if self.center_features:
      p['center'] = self.param('center', nn.initializers.zeros_init(), (width,))
    return project({'projection': p}, features)


def project(params, features):
  """DeViSE-space vectors (not normalised) of encoder features [N, F], from the
  `projection` of a model's params; the same map as the model's `embedding` output."""
  p = params['projection']
  if 'center' in p:  # Fixed: its gradient is zero, so no optimizer moves it.
    features = features - jax.lax.stop_gradient(p['center'])
    features = features / jnp.sqrt(jnp.sum(features * features, -1, keepdims=True) + 1e-12)
  return features @ p['kernel'] + p['bias']


def create_model(model_config, num_classes, embed_dim, freeze_encoder=False,
                 center_features=False):
  """Builds the model from `config.model`."""
  dtypes = {'float32': jnp.float32, 'bfloat16': jnp.bfloat16}
  if model_config.dtype not in dtypes:
    raise ValueError(f'config.model.dtype must be one of {sorted(dtypes)}, '
                     f'got {model_config.dtype!r}')
  return DeViSEModel(num_classes=num_classes, embed_dim=embed_dim,
                     version=model_config.name, use_bn=model_config.use_bn,
                     dropout=model_config.dropout, dtype=dtypes[model_config.dtype],
                     freeze_encoder=freeze_encoder, center_features=center_features)
