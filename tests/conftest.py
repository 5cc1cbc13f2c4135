"""Test set-up: eight CPU devices, so data-parallel code paths run on one machine.

The flag must be set before jax is imported anywhere.
"""

import os

os.environ.setdefault('XLA_FLAGS', '--xla_force_host_platform_device_count=8')
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
# Compiling the SqueezeNet train step takes ~20 s on 2 cores; the tests compile the same
# programs many times (and in subprocesses), so they share XLA's persistent cache.
os.environ.setdefault('JAX_COMPILATION_CACHE_DIR', os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))), '.cache', 'jax'))
os.environ.setdefault('JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS', '0')

import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
FMNIST_CONFIG = ROOT / 'experiments' / 'configs' / 'fashion_mnist_zsl.py'


def load_config(path=FMNIST_CONFIG, variant=None):
  """`get_config(variant)` of a config file, as `devise-jax --config` loads it."""
  from devise_jax import config_checks
  return config_checks.load_config_file(path, variant)


@pytest.fixture(scope='session')
def fmnist_data_dir(tmp_path_factory):
  """A TFDS data_dir with the real Fashion-MNIST prepared once (about 15 s)."""
  from devise_jax import input_pipeline
  path = tmp_path_factory.mktemp('tfds')
  dcfg = load_config().data
  dcfg.data_dir = str(path)
  input_pipeline.get_builder(dcfg)
  return str(path)


@pytest.fixture(autouse=True, scope='session')
def _word_vector_cache(tmp_path_factory):
  """Tests never touch the user's cache."""
  os.environ['DEVISE_JAX_CACHE'] = str(tmp_path_factory.mktemp('cache'))


@pytest.fixture
def tiny_config(fmnist_data_dir):
  config = load_config(variant='tiny')
  config.data.data_dir = fmnist_data_dir
  return config


@pytest.fixture(scope='session')
def reference_run(tmp_path_factory, fmnist_data_dir):
  """An uninterrupted tiny run of both stages: (config, workdir, params fingerprint)."""
  from devise_jax import train
  config = load_config(variant='tiny')
  config.data.data_dir = fmnist_data_dir
  workdir = str(tmp_path_factory.mktemp('reference'))
  fingerprint = train.train(config, workdir, log=lambda message: None)
  return config, workdir, fingerprint
