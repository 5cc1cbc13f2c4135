"""The `devise-jax` command: a thin layer of flags over the library.

  devise-jax train --config experiments/configs/NAME.py[:VARIANT] --workdir DIR \
      [--config.KEY=VALUE ...] [--stages stage1,stage2]
  devise-jax eval --workdir DIR [--split test] [--all]
  devise-jax embed --workdir DIR [--split test | --images FOLDER]
  devise-jax demo --workdir DIR [--host 127.0.0.1] [--port 7860] [--share] [--auth USER:PASS]
      [--public_url https://demo.example.org] [--trusted_proxy ADDR]
  devise-jax protocol --config FILE --out DIR [--splits 5] [--seeds 3] [--unseen 3] \
      [--validation] [--stages stage1,stage2]
  devise-jax search --workdir DIR [--gallery NAME] [--k 5] QUERY, QUERY one of:
      --words w1,w2 [--word_weights 1,-1]              words -> images (DeViSE space)
      --images a.png | --gallery_ids 7  --labels classes|vocab|tokens|w1,w2   image -> labels
      --images a.png | --gallery_ids 7  [--space siamese|devise]       similar images
      --gallery_ids 7,9 [--images ...] [--image_weights 1,1]
          [--words boot,sandal --word_weights 1,-1] --space devise     algebra
  devise-jax label-sets [--hops 3] [--restrict IDS_FILE] [--out FILE]
      WordNet nouns within 1..hops hops of the ImageNet-1k classes: '<k>-hop: <count>'

`devise-jax COMMAND --help` lists that command's flags. train, eval, embed and protocol
write their workdir (protocol: --out) and hold its lock: a second writer is refused at
once, naming the first (devise_jax/workdir_lock.py). Expected errors end in one line
on stderr (a search's are the query layer's, `devise_jax.queries`, shared with the demo);
DEVISE_JAX_DEBUG=1 shows the traceback. Heavy modules are imported inside the commands
that use them: a search of words or gallery ids never imports TensorFlow.
"""

import contextlib
import os
import sys

from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

COMMANDS = ('train', 'eval', 'embed', 'search', 'demo', 'protocol', 'label-sets')
WRITERS = ('train', 'eval', 'embed', 'protocol')  # They hold the workdir's lock.

_CONFIG = config_flags.DEFINE_config_file(
    'config', None, 'Config file, e.g. experiments/configs/fashion_mnist_zsl.py:tiny.',
    lock_config=True)
_WORKDIR = flags.DEFINE_string('workdir', None, 'Directory of the run (checkpoints, logs).')
_STAGES = flags.DEFINE_list('stages', 'stage1,stage2,stage3',
                            'Training stages to run, in order.')
_SPLIT = flags.DEFINE_string('split', None, 'Eval split (default: config.data.eval_split).')
_IMAGES = flags.DEFINE_list('images', [], 'embed: a folder; search: image files.')
_GALLERY = flags.DEFINE_string('gallery', None, 'search: gallery name (default: eval split).')
_WORDS = flags.DEFINE_list('words', [], 'search: query words or phrases.')
_WORD_WEIGHTS = flags.DEFINE_list('word_weights', [], 'search: a weight per word.')
_GALLERY_IDS = flags.DEFINE_list('gallery_ids', [], 'search: gallery images as queries.')
_IMAGE_WEIGHTS = flags.DEFINE_list('image_weights', [], 'search: a weight per image.')
_SPACE = flags.DEFINE_string('space', 'siamese',
                             "search: embedding space of image queries, 'siamese' or 'devise'.")
_LABELS = flags.DEFINE_list(
    'labels', [], "search: 'classes', 'vocab' (WordNet nouns with a word vector), "
    "'tokens' (every word-vector token) or a list of labels.")
_K = flags.DEFINE_integer('k', 5, 'search: number of results (1 to 50).')
_ALL = flags.DEFINE_bool('all', False, 'eval, train: print every metric of eval.json, '
                         'not the summary tables.')
_OUT = flags.DEFINE_string('out', None, 'protocol: directory of its runs and summary; '
                           'label-sets: a file for the ids, hops and labels.')
_HOPS = flags.DEFINE_integer('hops', 3, 'label-sets: the largest number of hops.')
_RESTRICT = flags.DEFINE_string(
    'restrict', None, 'label-sets: only the synsets listed in this file (first field of '
    'each line), e.g. the ImageNet-21K ids.')
_SPLITS = flags.DEFINE_integer('splits', 5, 'protocol: number of seen/unseen splits.')
_SEEDS = flags.DEFINE_integer('seeds', 3, 'protocol: training seeds per split (0..N-1).')
_UNSEEN = flags.DEFINE_integer('unseen', 3, 'protocol: unseen classes per split.')
_SPLIT_SEED = flags.DEFINE_integer('split_seed', 0, "protocol: the split sampler's seed.")
_VALIDATION = flags.DEFINE_bool(
    'validation', False, 'protocol: pseudo-unseen classes drawn from the seen ones, '
    'evaluated on config.data.val_split (for choices; never the test split).')
_REUSE = flags.DEFINE_string(
    'reuse_from', None, "protocol: an earlier protocol directory whose runs' stage 1 "
    'the new runs start from (stage-2 variants in seconds).')
_HOST = flags.DEFINE_string('host', '127.0.0.1',
                            'demo: address to listen on (0.0.0.0: every interface).')
_PORT = flags.DEFINE_integer('port', 7860, 'demo: TCP port.')
_SHARE = flags.DEFINE_bool('share', False, 'demo: also open a public *.gradio.live link.')
_AUTH = flags.DEFINE_string(
    'auth', None, 'demo: USER:PASS log-in (or $DEVISE_JAX_DEMO_AUTH, kept out of `ps`).')
_PUBLIC_URL = flags.DEFINE_string(
    'public_url', '', 'demo: the base URL clients reach the demo at (behind a proxy); '
    'result URLs are built from it, never from the Host header.')
_TRUSTED_PROXY = flags.DEFINE_string(
    'trusted_proxy', None, 'demo: address(es) of the reverse proxy whose X-Forwarded-* '
    'headers are believed (comma-separated; default: none).')
_COORDINATOR = flags.DEFINE_string(
    'coordinator_address', os.environ.get('DEVISE_JAX_COORDINATOR'),
    'Multi-host: host:port of process 0 (or $DEVISE_JAX_COORDINATOR).')
_NUM_PROCESSES = flags.DEFINE_integer(
    'num_processes', int(os.environ.get('DEVISE_JAX_NUM_PROCESSES', 1)),
    'Multi-host: number of processes (or $DEVISE_JAX_NUM_PROCESSES).')
_PROCESS_ID = flags.DEFINE_integer(
    'process_id', int(os.environ.get('DEVISE_JAX_PROCESS_ID', 0)),
    "Multi-host: this process's index (or $DEVISE_JAX_PROCESS_ID).")


class UsageError(Exception):
  pass


def _train():
  from devise_jax import train  # Imported late: `--help` stays fast.
  if _CONFIG.value is None:
    raise UsageError('train needs --config')
  unknown = sorted(set(_STAGES.value) - set(train.STAGES))
  if unknown:
    raise UsageError(f'unknown --stages {unknown}; expected some of {list(train.STAGES)}')
  train.train(_CONFIG.value, _WORKDIR.value, _STAGES.value)
  import jax
  if jax.process_count() > 1 or 'stage2' not in _STAGES.value:
    return  # Evaluation needs both stages, in one process: `devise-jax eval` does it.
  _eval_and_print()


def _protocol():
  from devise_jax import protocol
  if _CONFIG.value is None or not _OUT.value:
    raise UsageError('protocol needs --config and --out')
  if os.path.exists(_OUT.value) and not os.path.isdir(_OUT.value):
    raise UsageError(f'--out {_OUT.value}: is a regular file, not a directory')
  result = protocol.run_protocol(
      _CONFIG.value, _OUT.value, num_splits=_SPLITS.value, seeds=range(_SEEDS.value),
      num_unseen=_UNSEEN.value, validation=_VALIDATION.value,
      stages=_STAGES.value,
      split_seed=_SPLIT_SEED.value, reuse_from=_REUSE.value)
  if result is None:
    return
  print(f"\n{os.path.join(_OUT.value, 'protocol.json')} ({result['wall_seconds']:.0f} s):\n")
  print(protocol.markdown(result))


def _eval_and_print():
  from devise_jax import eval_table, evaluate
  result = evaluate.evaluate(_WORKDIR.value, _SPLIT.value)
  print(f"\n{os.path.join(_WORKDIR.value, 'eval.json')}:\n")
  print(evaluate.format_table(result) if _ALL.value else eval_table.summary(
      result['metrics']))


def _embed():
  from devise_jax import gallery, run
  if len(_IMAGES.value) > 1:
    raise UsageError('embed takes one --images folder')
  folder = _IMAGES.value[0] if _IMAGES.value else None
  if folder and not os.path.isdir(folder):
    raise UsageError(f'--images {folder}: not a folder (embed takes a folder of images)')
  name, count = gallery.embed(run.Run.load(_WORKDIR.value), split=_SPLIT.value,
                              folder=folder)
  print(f'gallery {name!r}: {count} images in {_WORKDIR.value}/gallery/{name}.npz')


def _search():
  """A query of the gallery, built from the flags and answered by `queries`."""
  import json
  from devise_jax import gallery, queries, run
  searcher = gallery.Searcher(run.Run.load(_WORKDIR.value), _GALLERY.value)
  answer = queries.answer(searcher, _search_request(queries))
  if answer.skipped:
    print(f'devise-jax: note: no word vector for {", ".join(map(repr, answer.skipped))}; '
          'left out', file=sys.stderr)
  print(json.dumps(answer.rows, indent=1))


def _search_request(queries):
  """The request the search flags ask for: gallery ids first, then --images."""
  image_list = ([queries.QueryImage(gallery_id=i) for i in _GALLERY_IDS.value]
                + [queries.QueryImage(file=p) for p in _IMAGES.value])
  if _LABELS.value:
    if len(image_list) != 1 or _WORDS.value:
      raise UsageError('--labels takes exactly one query image (--images or --gallery_ids)')
    named = len(_LABELS.value) == 1 and _LABELS.value[0] in queries.CANDIDATE_SETS
    return queries.Labels(image_list[0], _LABELS.value[0] if named else 'list',
                          () if named else _LABELS.value, _K.value)
  if len(image_list) == 1 and not _WORDS.value and not _IMAGE_WEIGHTS.value:
    return queries.Similar(image_list[0], _SPACE.value, _K.value)
  if image_list:
    return queries.Algebra(image_list, _IMAGE_WEIGHTS.value, (), _WORDS.value,
                           _WORD_WEIGHTS.value, _SPACE.value, _K.value)
  if _WORDS.value:
    return queries.ImagesByWords(_WORDS.value, _WORD_WEIGHTS.value, _K.value)
  raise UsageError('search needs a query: --words, --images or --gallery_ids')


def _demo():
  """Serves the Gradio demo of the workdir (demo/, installed as devise_jax.demo)."""
  try:
    from devise_jax.demo import app
  except ImportError as e:
    raise UsageError(f'the demo cannot be imported ({e}): reinstall the package with '
                     "`pip install -e '.[dev]'`") from None
  auth = _AUTH.value or os.environ.get('DEVISE_JAX_DEMO_AUTH') or None
  try:
    app.check_options(_PUBLIC_URL.value, _TRUSTED_PROXY.value)
  except ValueError as e:
    raise UsageError(str(e)) from None
  try:
    app.launch(_WORKDIR.value, host=_HOST.value, port=_PORT.value, share=_SHARE.value,
               auth=auth, public_url=_PUBLIC_URL.value, trusted_proxy=_TRUSTED_PROXY.value)
  except OSError as e:  # Port taken, or the address cannot be bound.
    raise UsageError(f'cannot serve on {_HOST.value}:{_PORT.value}: {e}') from None


def _label_sets():
  """Prints '<k>-hop: <count>' for k = 1..--hops around the ImageNet-1k synsets; --out
  writes 'id<TAB>hops<TAB>lemmas' lines, nearest first."""
  from devise_jax import wordnet
  if _HOPS.value < 1:
    raise UsageError(f'--hops must be at least 1, got {_HOPS.value}')
  wn = wordnet.load()
  base = wordnet.imagenet1k_ids()
  restrict = wordnet.read_ids(_RESTRICT.value) if _RESTRICT.value else None
  sets = wordnet.khop_sets(wn, base, _HOPS.value, restrict)
  for k, ids in sets.items():
    print(f'{k}-hop: {len(ids)}')
  if _OUT.value:
    hops = wordnet.hop_distances(wn, base, _HOPS.value)
    rows = sorted((hops[s], s) for s in sets[_HOPS.value])
    with open(_OUT.value, 'w', encoding='utf-8') as f:
      f.writelines(f'{s}\t{d}\t{wn.label(s)}\n' for d, s in rows)


def main(argv):
  if len(argv) != 2 or argv[1] not in COMMANDS:
    raise UsageError(f'usage: devise-jax {{{",".join(COMMANDS)}}} --workdir DIR ...; '
                     f'got {" ".join(argv[1:]) or "no command"} (devise-jax --help)')
  if not _WORKDIR.value and argv[1] not in ('protocol', 'label-sets'):
    raise UsageError('--workdir is required')
  if argv[1] in ('eval', 'embed', 'search', 'demo'):
    from devise_jax import cli_checks
    cli_checks.require_run(_WORKDIR.value)
  with _writing(argv[1]):
    _enable_compilation_cache()
    _initialize_distributed()
    if argv[1] != 'label-sets' and (argv[1] != 'search' or _IMAGES.value):
      _import_tensorflow_quietly()  # A search of words or gallery ids reads no data.
    {'train': _train, 'eval': _eval_and_print, 'embed': _embed, 'search': _search,
     'demo': _demo, 'protocol': _protocol, 'label-sets': _label_sets}[argv[1]]()


def _writing(command):
  """The lock of the workdir (protocol: the --out directory) a writing command holds,
  taken before anything heavy is imported, so a second writer is refused at once
  (`devise_jax.workdir_lock`; the library takes it again, re-entrantly). Only process
  0 of a multi-process run takes it."""
  from devise_jax import workdir_lock
  if command not in WRITERS or _PROCESS_ID.value != 0:
    return contextlib.nullcontext()
  return workdir_lock.hold(_OUT.value if command == 'protocol' else _WORKDIR.value,
                          ' '.join(['devise-jax'] + sys.argv[1:]))


def _import_tensorflow_quietly():
  """TensorFlow's C++ prints notices when it loads (the absl::InitializeLog warning,
  oneDNN's), whatever TF_CPP_MIN_LOG_LEVEL says: the commands that read data (and so
  import it) import it first with stderr's descriptor pointed at /dev/null."""
  if 'tensorflow' in sys.modules or os.environ.get('DEVISE_JAX_DEBUG'):
    return
  os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
  sys.stderr.flush()
  saved = os.dup(2)
  try:
    with open(os.devnull, 'w', encoding='utf-8') as null:
      os.dup2(null.fileno(), 2)
      import tensorflow  # pylint: disable=import-outside-toplevel,unused-import
  finally:
    os.dup2(saved, 2)
    os.close(saved)


def _enable_compilation_cache():
  """XLA's persistent cache: a rerun (resume, eval) skips recompiling the model."""
  import jax
  from devise_jax import files
  if not jax.config.jax_compilation_cache_dir:
    jax.config.update('jax_compilation_cache_dir', os.path.join(files.cache_root(), 'xla'))


def _initialize_distributed():
  """Joins a multi-process run when a coordinator is given; one process otherwise."""
  if not _COORDINATOR.value:
    return
  import jax
  # CPU processes need gloo for cross-process collectives; accelerators ignore this.
  jax.config.update('jax_cpu_collectives_implementation', 'gloo')
  jax.distributed.initialize(_COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value)


def _main_with_clean_errors(argv):
  """Expected errors end in one line on stderr and exit status 1 (no traceback)."""
  logging.set_verbosity(logging.WARNING)  # Orbax and TFDS log every step at INFO.
  try:
    main(argv)
  except Exception as e:  # pylint: disable=broad-except
    from devise_jax import queries
    if os.environ.get('DEVISE_JAX_DEBUG') or not (
        queries.is_expected(e) or isinstance(e, OSError)):
      raise
    print(f'devise-jax: error: {queries.one_line(e)}', file=sys.stderr)
    sys.exit(1)


def _parse_flags(argv):
  """absl's parser, with its errors (often multi-line tracebacks) cut to one line."""
  if any(a in ('-h', '--help', '--helpshort', '-?') for a in argv[1:]):
    from devise_jax import cli_checks
    command = next((a for a in argv[1:] if a in COMMANDS), None)
    if command:  # That command's flags.
      print(cli_checks.command_help(command, flags.FLAGS))
      sys.exit(0)
    app.usage(shorthelp=True, writeto_stdout=True, exitcode=0)  # absl's own exits 1.
  try:
    return flags.FLAGS(argv)
  except Exception as e:  # absl and ml_collections raise many types for bad flags.
    lines = [line.strip() for line in str(e).splitlines() if line.strip()]
    message = lines[-1] if lines else type(e).__name__
    leaf = message.strip('"\' ')
    keys = [a[len('--config.'):].split('=')[0] for a in argv if a.startswith('--config.')]
    unknown = [k for k in keys if k.split('.')[-1] == leaf or f"'config.{k}'" in message]
    if unknown:
      message = f'unknown config key {unknown[0]!r}'
    print(f'devise-jax: error: {message}', file=sys.stderr)
    sys.exit(2)


def run():
  """Console-script entry point."""
  from devise_jax import cli_checks  # `--help` prints __main__'s docstring first.
  sys.modules['__main__'].__doc__ = cli_checks.help_text(COMMANDS)
  app.run(_main_with_clean_errors, flags_parser=_parse_flags)
