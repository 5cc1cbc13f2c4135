"""Test set-up: eight CPU devices, so data-parallel code paths run on one machine.

The flag must be set before jax is imported anywhere.
"""

import os

os.environ.setdefault('XLA_FLAGS', '--xla_force_host_platform_device_count=8')
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
