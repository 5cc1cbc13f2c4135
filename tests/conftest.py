"""Test set-up: eight CPU devices, so data-parallel code paths run on one machine; and
the session's shared, read-only fixtures: Fashion-MNIST prepared once, one tiny trained
run, one evaluation of it, and one demo server on a copy of it.

The flag must be set before jax is imported anywhere.
"""

import os

# XLA's backend optimisations off: the suite compiles about a hundred programs and runs
# each for a few tiny steps; unoptimised code compiles in about two thirds of the time.
# Numbers differ from optimised code by float rounding only (tests compare like with
# like, or within 1e-4).
TEST_XLA_FLAGS = '--xla_backend_optimization_level=0'
os.environ.setdefault('XLA_FLAGS',
                      f'--xla_force_host_platform_device_count=8 {TEST_XLA_FLAGS}')
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
# Compiling the SqueezeNet train step takes ~20 s on 2 cores; the tests compile the same
# programs many times (and in subprocesses, which inherit these variables), so they
# share XLA's persistent cache.
os.environ.setdefault('JAX_COMPILATION_CACHE_DIR', os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))), '.cache', 'jax'))
os.environ.setdefault('JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS', '0')

import pathlib
import shutil
import types

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
FMNIST_CONFIG = ROOT / 'experiments' / 'configs' / 'fashion_mnist_zsl.py'


def load_config(path=FMNIST_CONFIG, variant=None):
  """`get_config(variant)` of a config file, as `devise-jax --config` loads it."""
  from devise_jax import config_checks
  return config_checks.load_config_file(path, variant)


@pytest.hookimpl(tryfirst=True)  # Before pytest-xdist reads the groups.
def pytest_collection_modifyitems(items):
  """With pytest-xdist (`make test`: `--dist loadgroup`), the tests that use the shared
  reference run go to one worker, which builds it once; the others spread as usual."""
  for item in items:
    if 'reference_run' in getattr(item, 'fixturenames', ()):
      item.add_marker(pytest.mark.xdist_group('reference_run'))


@pytest.fixture(scope='session')
def fmnist_data_dir(tmp_path_factory):
  """A TFDS data_dir with the real Fashion-MNIST prepared once (about 15 s); every
  test that reads Fashion-MNIST reads it here."""
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


def _files(path):
  """{relative path: (size, mtime)} of every file under `path`."""
  out = {}
  for root, _, names in os.walk(path):
    for name in names:
      full = os.path.join(root, name)
      stat = os.stat(full)
      out[os.path.relpath(full, path)] = (stat.st_size, stat.st_mtime_ns)
  return out


def _unchanged(path, before):
  changed = sorted(set(before.items()) ^ set(_files(path).items()))
  assert not changed, f'a test wrote into the shared run {path}: {changed[:5]}'


@pytest.fixture(scope='session')
def reference_run(tmp_path_factory, fmnist_data_dir):
  """An uninterrupted tiny run of all stages: (config, workdir, params fingerprint).

  Shared by the session, so tests only read it: a test that trains, evaluates, embeds
  a gallery or reads a split's features (`Run.split_features` caches them in the
  workdir) works on a copy (`shutil.copytree`). At the end of the session the workdir
  must hold the same files as when it was trained.
  """
  from devise_jax import train
  config = load_config(variant='tiny')
  config.data.data_dir = fmnist_data_dir
  workdir = str(tmp_path_factory.mktemp('reference'))
  fingerprint = train.train(config, workdir, log=lambda message: None)
  trained = _files(workdir)
  yield config, workdir, fingerprint
  _unchanged(workdir, trained)


@pytest.fixture(scope='session')
def evaluated_run(reference_run, tmp_path_factory):
  """A copy of the reference run evaluated once by `evaluate.evaluate` (eval.json,
  calibration.json, plots/, TensorBoard events, cached features), for the tests that
  read an evaluation: namespace(config, workdir, result, restores), `restores` the
  stages the evaluation restored from checkpoints, in order. Read-only, as the reference
  is, and checked the same way."""
  from devise_jax import checkpoint
  from devise_jax import evaluate
  config, reference, _ = reference_run
  workdir = str(tmp_path_factory.mktemp('evaluated') / 'run')
  shutil.copytree(reference, workdir)
  restores, real = [], checkpoint.load_variables

  def counting(path, stage, *args):
    restores.append(stage)
    return real(path, stage, *args)

  with pytest.MonkeyPatch.context() as patch:
    patch.setattr(checkpoint, 'load_variables', counting)
    result = evaluate.evaluate(workdir)
  evaluated = _files(workdir)
  yield types.SimpleNamespace(config=config, workdir=workdir, result=result,
                              restores=restores)
  _unchanged(workdir, evaluated)


# The demo (tests/test_demo*.py, tests/test_api.py): one server for the session, on a
# copy of the evaluated run with its gallery. Its tests only read the server's state;
# those that need a server of their own (auth) start one on the same backend.


@pytest.fixture(scope='session')
def demo_workdir(evaluated_run, tmp_path_factory):
  """The demo's workdir; no request writes into it (checked at the end of the session)."""
  import demo_support  # pylint: disable=import-outside-toplevel
  workdir = demo_support.make_demo_workdir(evaluated_run.workdir,
                                           tmp_path_factory.mktemp('demo') / 'run')
  served = _files(workdir)
  yield workdir
  _unchanged(workdir, served)


@pytest.fixture(scope='session')
def library(demo_workdir):
  """The library's answers: a Run and a Searcher of the workdir, apart from the demo's."""
  import demo_support  # pylint: disable=import-outside-toplevel
  return demo_support.load_library(demo_workdir)


@pytest.fixture(scope='session')
def server(demo_workdir):
  """The running demo (url, backend, demo), until the session's tests are done."""
  import demo_support  # pylint: disable=import-outside-toplevel
  with demo_support.serve(demo_workdir) as running:
    yield running


@pytest.fixture(scope='session')
def client(server):
  import demo_support  # pylint: disable=import-outside-toplevel
  return demo_support.Client(server.url, verbose=False, download_files=False)


@pytest.fixture(scope='session')
def pictures(tmp_path_factory, server):
  """Image files for uploads: gallery images, and every awkward kind of image."""
  import demo_support  # pylint: disable=import-outside-toplevel
  return demo_support.make_pictures(tmp_path_factory.mktemp('pictures'), server.backend)
