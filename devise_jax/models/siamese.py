"""The Siamese heads: layers on the encoder's features with an L2-normalised output,
so cosine similarity means visual similarity (`config.stage3.head`).

  mlp       dense layers of `widths`, the last the embedding size (the second seed's
            head);
  residual  unit(u + branch(u)), u = unit(features), the branch dense layers of
            `widths` (hidden) back to the feature size, its last layer zero at
            initialisation: the head starts as the features' own cosine geometry and
            can only add to it; weight decay on the branch pulls it back toward it.
"""

from typing import Sequence

import flax.linen as nn
import jax.numpy as jnp


def _unit(x):
  return x / jnp.sqrt(jnp.sum(x**2, axis=-1, keepdims=True) + 1e-12)


class SiameseHead(nn.Module):
  widths: Sequence[int] = (256, 128)

  @nn.compact
  def __call__(self, features, train: bool = False):
    x = features
    for width in self.widths[:-1]:
      x = nn.relu(nn.Dense(width)(x))
    return _unit(nn.Dense(self.widths[-1])(x))


class ResidualHead(nn.Module):
  widths: Sequence[int] = (256,)  # The branch's hidden layers.

  @nn.compact
  def __call__(self, features, train: bool = False):
    u = _unit(features)
    x = u
    for width in self.widths:
      x = nn.relu(nn.Dense(width)(x))
    x = nn.Dense(features.shape[-1], kernel_init=nn.initializers.zeros)(x)
    return _unit(u + x)


HEADS = {'mlp': SiameseHead, 'residual': ResidualHead}


def create(stage_config):
  """The head `stage_config.head` (default 'mlp') of `stage_config.widths`."""
  kind = stage_config.get('head', 'mlp')
  if kind not in HEADS:
    raise ValueError(f'--config.stage3.head={kind!r}: must be one of {sorted(HEADS)}')
  if kind == 'mlp' and not stage_config.widths:
    raise ValueError('--config.stage3.widths=(): the mlp head needs at least one layer')
  return HEADS[kind](tuple(stage_config.widths))
