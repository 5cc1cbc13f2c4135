"""SqueezeNet shapes and parameter counts against the reference implementation."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from devise_jax.models import devise
from devise_jax.models import squeezenet


def _count(tree):
  return sum(int(np.prod(x.shape)) for x in jax.tree_util.tree_leaves(tree))


@pytest.mark.parametrize('version,expected', [('squeezenet1_0', 1_248_424),
                                              ('squeezenet1_1', 1_235_496)])
def test_parameter_count_matches_reference_at_1000_classes(version, expected):
  # torchvision's SqueezeNet 1.0 / 1.1 with 1000 classes; the 1x1 conv classifier has
  # the same parameters as our Dense classifier.
  model = devise.DeViSEModel(num_classes=1000, embed_dim=50, version=version)
  shapes = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, 224, 224, 3)))
  params = shapes['params']
  assert _count(params['encoder']) + _count(params['classifier']) == expected
  assert _count(params['projection']) == 512 * 50 + 50


@pytest.mark.parametrize('version', ['squeezenet1_0', 'squeezenet1_1'])
@pytest.mark.parametrize('size', [32, 33, 57, 128])
def test_any_input_size_from_32_gives_512_features(version, size):
  model = squeezenet.SqueezeNet(version)
  out = jax.eval_shape(lambda x: model.init_with_output(jax.random.key(0), x)[0],
                       jnp.zeros((2, size, size, 3)))
  assert out.shape == (2, 512)


def test_too_small_input_is_a_clear_error():
  with pytest.raises(ValueError, match='at least 32 px'):
    squeezenet.SqueezeNet().init(jax.random.key(0), jnp.zeros((1, 31, 31, 3)))


def test_ceil_mode_max_pool_against_a_loop():
  x = np.random.default_rng(0).normal(size=(1, 6, 8, 2)).astype(np.float32)
  out = np.asarray(squeezenet.max_pool_ceil(jnp.asarray(x)))
  # Ceil mode (torch formula ceil((n - 3) / 2) + 1): a partial last window counts.
  rows, cols = [0, 2, 4], [0, 2, 4, 6]
  assert out.shape == (1, len(rows), len(cols), 2)
  for i, r in enumerate(rows):
    for j, c in enumerate(cols):
      np.testing.assert_allclose(out[0, i, j], x[0, r:r + 3, c:c + 3].max(axis=(0, 1)))


@pytest.mark.parametrize('shape', [(1, 6, 8, 2), (2, 7, 7, 3), (1, 9, 4, 1)])
def test_max_pool_gradient_goes_to_each_windows_first_maximum(shape):
  rng = np.random.default_rng(1)
  # Values from a small set: ties within a window are common.
  x = rng.integers(0, 4, size=shape).astype(np.float32)
  out, vjp = jax.vjp(squeezenet.max_pool_ceil, jnp.asarray(x))
  g = rng.normal(size=out.shape).astype(np.float32)
  expected = np.zeros_like(x)
  for b in range(shape[0]):
    for i in range(out.shape[1]):
      for j in range(out.shape[2]):
        for c in range(shape[3]):
          window = x[b, 2 * i:2 * i + 3, 2 * j:2 * j + 3, c]  # Clipped at the edge.
          r, q = np.unravel_index(np.argmax(window), window.shape)  # First maximum.
          expected[b, 2 * i + r, 2 * j + q, c] += g[b, i, j, c]
  np.testing.assert_allclose(np.asarray(vjp(jnp.asarray(g))[0]), expected, atol=1e-6)


def test_1x1_conv_as_a_product_matches_flax_conv_in_params_and_output():
  x = jnp.asarray(np.random.default_rng(2).normal(size=(2, 5, 6, 7)), jnp.float32)
  mine, reference = squeezenet.Conv1x1(4), nn.Conv(4, (1, 1))
  params = mine.init(jax.random.key(3), x)
  same_init = reference.init(jax.random.key(3), x)
  jax.tree.map(np.testing.assert_array_equal, params, same_init)
  np.testing.assert_allclose(mine.apply(params, x), reference.apply(params, x), atol=1e-5)


def test_batchnorm_option_adds_running_stats_and_uses_them_in_eval():
  model = devise.DeViSEModel(num_classes=3, embed_dim=4, use_bn=True)
  x = jax.random.normal(jax.random.key(1), (4, 32, 32, 3))
  variables = jax.jit(model.init)(jax.random.key(0), x)
  assert 'batch_stats' in variables
  # Known running statistics and affine params for the stem's BatchNorm, unlike the
  # batch's own statistics (the stem convolution's outputs are not N(2, 1.5)).
  rng = np.random.default_rng(0)
  width = variables['batch_stats']['encoder']['BatchNorm_0']['mean'].shape
  mean, var = rng.normal(2.0, 1.0, width), rng.uniform(0.5, 2.5, width)
  scale, bias = rng.uniform(0.5, 1.5, width), rng.normal(0.0, 1.0, width)
  variables = jax.tree_util.tree_map(np.asarray, variables)
  variables['batch_stats']['encoder']['BatchNorm_0'] = dict(
      mean=mean.astype(np.float32), var=var.astype(np.float32))
  variables['params']['encoder']['BatchNorm_0'] = dict(
      scale=scale.astype(np.float32), bias=bias.astype(np.float32))

  def stem(intermediates):
    """(the stem convolution's output, its BatchNorm's output), float64."""
    encoder = intermediates['encoder']
    return (np.asarray(encoder['stem']['__call__'][0], np.float64),
            np.asarray(encoder['BatchNorm_0']['__call__'][0], np.float64))

  eps = 1e-5  # flax's default.
  # Eval mode: normalised with the running statistics, not the batch's.
  eval_apply = jax.jit(lambda v, x: model.apply(v, x, capture_intermediates=True,
                                                mutable=['intermediates']))
  out, state = eval_apply(variables, x)
  conv, normed = stem(state['intermediates'])
  np.testing.assert_allclose(normed, (conv - mean) / np.sqrt(var + eps) * scale + bias,
                             rtol=1e-4, atol=1e-4)
  batch_mean, batch_var = conv.mean(axis=(0, 1, 2)), conv.var(axis=(0, 1, 2))
  by_batch = (conv - batch_mean) / np.sqrt(batch_var + eps) * scale + bias
  assert np.abs(normed - by_batch).max() > 0.1
  # ... and deterministic (no dropout).
  np.testing.assert_array_equal(out['logits'], eval_apply(variables, x)[0]['logits'])
  # The eval-mode logits move when only the running statistics do.
  moved = jax.tree_util.tree_map(lambda a: a, variables)
  moved['batch_stats']['encoder']['BatchNorm_0'] = dict(
      mean=(mean + 1.0).astype(np.float32), var=var.astype(np.float32))
  assert not np.allclose(eval_apply(moved, x)[0]['logits'], out['logits'])

  # Train mode: normalised with the batch's statistics; the running ones move towards
  # them with momentum 0.9, in every BatchNorm layer.
  train_apply = jax.jit(lambda v, x: model.apply(
      v, x, train=True, capture_intermediates=True,
      mutable=['batch_stats', 'intermediates'], rngs={'dropout': jax.random.key(2)}))
  _, updates = train_apply(variables, x)
  conv, normed = stem(updates['intermediates'])
  batch_mean, batch_var = conv.mean(axis=(0, 1, 2)), conv.var(axis=(0, 1, 2))
  np.testing.assert_allclose(
      normed, (conv - batch_mean) / np.sqrt(batch_var + eps) * scale + bias,
      rtol=1e-3, atol=1e-3)
  new = updates['batch_stats']['encoder']['BatchNorm_0']
  np.testing.assert_allclose(new['mean'], 0.9 * mean + 0.1 * batch_mean, rtol=1e-5,
                             atol=1e-5)
  np.testing.assert_allclose(new['var'], 0.9 * var + 0.1 * batch_var, rtol=1e-4,
                             atol=1e-4)
  changed = jax.tree_util.tree_map(lambda a, b: not np.allclose(a, b),
                                   variables['batch_stats'], updates['batch_stats'])
  assert all(jax.tree_util.tree_leaves(changed))


def test_frozen_encoder_gets_no_gradient():
  model = devise.DeViSEModel(num_classes=3, embed_dim=4, freeze_encoder=True)
  x = jax.random.normal(jax.random.key(1), (2, 32, 32, 3))
  params = jax.jit(model.init)(jax.random.key(0), x)['params']
  grads = jax.jit(jax.grad(lambda p: model.apply({'params': p}, x)['embedding'].sum()))(
      params)
  assert all(not np.any(g) for g in jax.tree_util.tree_leaves(grads['encoder']))
  assert np.any(grads['projection']['kernel'])


def test_centered_projection_maps_unit_centred_features_and_never_moves_its_center():
  model = devise.DeViSEModel(num_classes=3, embed_dim=4, freeze_encoder=True,
                             center_features=True)
  x = jax.random.normal(jax.random.key(1), (3, 32, 32, 3))
  params = jax.jit(model.init)(jax.random.key(0), x)['params']
  plain = devise.DeViSEModel(num_classes=3, embed_dim=4)
  same_init = jax.jit(plain.init)(jax.random.key(0), x)['params']['projection']
  np.testing.assert_array_equal(params['projection']['kernel'], same_init['kernel'])
  center = np.linspace(-1.0, 1.0, 512).astype(np.float32)
  params['projection'] = dict(params['projection'], center=center)
  out = model.apply({'params': params}, x)
  f = np.asarray(out['features'], np.float64) - center
  p = params['projection']
  expected = [(f[i] / np.sqrt(f[i] @ f[i])) @ np.asarray(p['kernel']) + p['bias']
              for i in range(3)]
  np.testing.assert_allclose(out['embedding'], expected, rtol=1e-5, atol=1e-6)
  grads = jax.grad(lambda q: model.apply({'params': q}, x)['embedding'].sum())(params)
  assert not np.any(grads['projection']['center'])
  assert np.any(grads['projection']['kernel'])
