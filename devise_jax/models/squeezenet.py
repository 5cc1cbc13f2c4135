"""SqueezeNet 1.0 and 1.1 (Iandola et al., 2016) as Flax linen modules.

The layer layout follows the reference implementation (torchvision), with two
deliberate choices:
  * max pooling uses ceil mode, as the reference does, which is what lets inputs as
    small as 32 px reach the last Fire module with a 1x1 map;
  * the classifier is a Dense layer on the globally pooled features instead of a 1x1
    convolution followed by pooling. Both are the same linear map of the pooled
    features (averaging commutes with a linear map) and have the same parameter count;
    the reference's ReLU on the logits is dropped, since logits feed a softmax.
"""

import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

# (squeeze, expand) channels of each Fire module, and where max pools sit (after the
# module with that index; -1 means right after the stem).
_FIRES = {
    'squeezenet1_0': dict(
        stem=(96, 7), pools=(-1, 2, 6),
        fires=((16, 64), (16, 64), (32, 128), (32, 128), (48, 192), (48, 192),
               (64, 256), (64, 256))),
    'squeezenet1_1': dict(
        stem=(64, 3), pools=(-1, 1, 3),
        fires=((16, 64), (16, 64), (32, 128), (32, 128), (48, 192), (48, 192),
               (64, 256), (64, 256))),
}
MIN_IMAGE_SIZE = 32


def _ceil_pads(x, window, stride):
  """(low, high) padding of H and W that gives ceil-mode output sizes."""
  pads = []
  for n in x.shape[1:3]:
    out = -(-(n - window) // stride) + 1
    pads.append((0, max(0, (out - 1) * stride + window - n)))
  return pads


@functools.partial(jax.custom_vjp, nondiff_argnums=(1, 2))
def max_pool_ceil(x, window=3, stride=2):
  """Max pooling [B, H, W, C] with ceil-mode output size: the trailing edge is padded
  with -inf.

  Its gradient goes to the first maximum of each window in row-major order, as
  PyTorch's does. Written out (one strided slice per window offset) because XLA:CPU
  lowers the generic gradient of `reduce_window` to a scatter over index tensors the
  size of the input, which took about 40% of a 128 px training step.
  """
  return nn.max_pool(x, (window, window), (stride, stride),
                     padding=_ceil_pads(x, window, stride))


def _max_pool_fwd(x, window, stride):
  y = max_pool_ceil(x, window, stride)
  return y, (x, y)


def _max_pool_bwd(window, stride, residuals, g):
  x, y = residuals
  (_, pad_h), (_, pad_w) = _ceil_pads(x, window, stride)
  padded = jnp.pad(x, ((0, 0), (0, pad_h), (0, pad_w), (0, 0)), constant_values=-jnp.inf)
  (height, width), (out_h, out_w) = padded.shape[1:3], y.shape[1:3]
  span_h, span_w = (out_h - 1) * stride + 1, (out_w - 1) * stride + 1
  zero = jnp.zeros((), g.dtype)
  taken = jnp.zeros(y.shape, bool)  # Windows whose maximum already has the gradient.
  grad = jnp.zeros_like(padded)
  for i in range(window):
    for j in range(window):
      first = (padded[:, i:i + span_h:stride, j:j + span_w:stride] == y) & ~taken
      taken = taken | first
      # Back onto the input grid: stride - 1 zeros between values, shifted by (i, j).
      grad = grad + jax.lax.pad(jnp.where(first, g, zero), zero, (
          (0, 0, 0), (i, height - i - span_h, stride - 1),
          (j, width - j - span_w, stride - 1), (0, 0, 0)))
  return (grad[:, :x.shape[1], :x.shape[2]],)


max_pool_ceil.defvjp(_max_pool_fwd, _max_pool_bwd)


class Conv1x1(nn.Module):
  """`nn.Conv(features, (1, 1))` written as a matrix product over channels.

  Same parameters (kernel [1, 1, C, features], bias), initialisation and output. XLA:CPU
  compiles the weight gradient of a 1x1 convolution to a spatial-window convolution
  over transposed activations; the product's gradient is a plain dot.
  """
  features: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    kernel = self.param('kernel', nn.initializers.lecun_normal(),
                        (1, 1, x.shape[-1], self.features))
    bias = self.param('bias', nn.initializers.zeros_init(), (self.features,))
    x, kernel, bias = nn.dtypes.promote_dtype(x, kernel, bias, dtype=self.dtype)
    return jnp.einsum('nhwc,cd->nhwd', x, kernel[0, 0]) + bias


class Fire(nn.Module):
  """Squeeze (1x1) then expand (1x1 and 3x3, concatenated)."""
  squeeze: int
  expand: int
  norm: Any = None
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    act = lambda y: nn.relu(self.norm()(y) if self.norm else y)
    x = act(Conv1x1(self.squeeze, self.dtype, name='squeeze')(x))
    e1 = act(Conv1x1(self.expand, self.dtype, name='expand1x1')(x))
    e3 = act(nn.Conv(self.expand, (3, 3), padding=1, dtype=self.dtype,
                     name='expand3x3')(x))
    return jnp.concatenate([e1, e3], axis=-1)


class SqueezeNet(nn.Module):
  """SqueezeNet trunk; returns the globally average-pooled features [B, 512]."""
  version: str = 'squeezenet1_1'
  use_bn: bool = False
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool = False):
    if self.version not in _FIRES:
      raise ValueError(f'unknown model {self.version!r}; expected one of {sorted(_FIRES)}')
    if min(x.shape[1:3]) < MIN_IMAGE_SIZE:
      raise ValueError(f'images must be at least {MIN_IMAGE_SIZE} px, got {x.shape[1:3]}')
    spec = _FIRES[self.version]
    norm = None
    if self.use_bn:
      norm = functools.partial(nn.BatchNorm, use_running_average=not train,
                               momentum=0.9, dtype=self.dtype)
    x = x.astype(self.dtype)
    width, kernel = spec['stem']
    x = nn.Conv(width, (kernel, kernel), strides=2, padding='VALID', dtype=self.dtype,
                name='stem')(x)
    x = nn.relu(norm()(x) if norm else x)
    if -1 in spec['pools']:
      x = max_pool_ceil(x)
    for i, (squeeze, expand) in enumerate(spec['fires']):
      x = Fire(squeeze, expand, norm=norm, dtype=self.dtype, name=f'fire{i + 2}')(x)
      if i in spec['pools']:
        x = max_pool_ceil(x)
    return jnp.mean(x.astype(jnp.float32), axis=(1, 2))
