"""The Siamese head (the second seed's model): dense layers on the encoder's features,
with an L2-normalised output, so cosine similarity means visual similarity."""

from typing import Sequence

import flax.linen as nn
import jax.numpy as jnp


class SiameseHead(nn.Module):
  widths: Sequence[int] = (256, 128)

  @nn.compact
  def __call__(self, features, train: bool = False):
    x = features
    for width in self.widths[:-1]:
      x = nn.relu(nn.Dense(width)(x))
    x = nn.Dense(self.widths[-1])(x)
    return x / jnp.sqrt(jnp.sum(x**2, axis=-1, keepdims=True) + 1e-12)
