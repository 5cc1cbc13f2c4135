"""devise_jax: DeViSE zero-shot classification and Siamese image embeddings in JAX/Flax."""

import os

# XLA options the project's models train faster with, added to XLA_FLAGS unless the
# user sets the same option there. They act when JAX starts its backends, so import
# devise_jax before running anything in JAX. Measured in experiments/bench/README.md:
# leaving convolutions out of YNNPACK's one-convolution fusions (XLA:CPU's own kernels
# run them) made the stage-1 step 1.03-1.18x faster on a 2-core CPU; no effect on GPU.
XLA_DEFAULTS = ('--xla_cpu_experimental_ynn_fusion_type=-individual_convolution',)


def _add_xla_defaults():
  flags = os.environ.get('XLA_FLAGS', '')
  for flag in XLA_DEFAULTS:
    if flag.split('=')[0] not in flags:
      flags = f'{flags} {flag}'.strip()
  os.environ['XLA_FLAGS'] = flags


_add_xla_defaults()
