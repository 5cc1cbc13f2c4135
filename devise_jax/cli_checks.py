"""What `devise-jax` checks before it acts, and its `--help` summary.

Every expected failure of a command is one line naming the flag, config key or file at
fault and what would be valid; the checks here run before anything is read at length or
written, so a refused command leaves the workdir byte for byte as it was.
"""

import re

from devise_jax import checkpoint

SUMMARY = {
    'train': 'train a run (stages 1-3) in --workdir from --config, then evaluate it',
    'eval': 'evaluate a trained --workdir on --split; writes eval.json',
    'embed': 'make a search gallery of a split (--split) or an image folder (--images)',
    'search': 'query a gallery by --words, --images or --gallery_ids; prints JSON',
    'demo': 'serve the Gradio demo of a trained --workdir on 127.0.0.1:7860',
    'protocol': 'train and evaluate every (split, seed) into --out: headline numbers',
    'label-sets': 'WordNet nouns within --hops hops of the ImageNet-1k classes',
}
EXAMPLES = (
    'devise-jax train --config experiments/configs/fashion_mnist_zsl.py --workdir workdirs/fmnist',
    'devise-jax embed --workdir workdirs/fmnist',
    'devise-jax search --workdir workdirs/fmnist --words boot,sandal --word_weights 1,-1',
    'devise-jax search --workdir workdirs/fmnist --images shoe.png --labels classes',
    'devise-jax demo --workdir workdirs/fmnist',
)


def help_text(commands):
  """The top of `devise-jax --help`: one line per command, then examples."""
  width = max(len(c) for c in commands)
  lines = ['devise-jax COMMAND [flags]: DeViSE zero-shot labels and image search.', '',
           'Commands:']
  lines += [f'  {c.ljust(width)}  {SUMMARY.get(c, "")}'.rstrip() for c in commands]
  lines += ['', 'Examples:'] + [f'  {e}' for e in EXAMPLES]
  lines += ['', 'Every flag: devise-jax --helpfull. Errors are one line naming the flag, '
            'key or file at fault; DEVISE_JAX_DEBUG=1 shows the traceback.']
  return '\n'.join(lines).replace('%', '%%')


def require_run(workdir):
  """Raises unless `workdir` holds a trained run (eval, embed, search, demo)."""
  if checkpoint.workdir_state(workdir) == 'new':
    raise ValueError(f'--workdir {workdir}: holds no devise-jax run (missing or empty); '
                     f'train one first: devise-jax train --config FILE --workdir {workdir}')


def gallery_ids(searcher, values):
  """The ints of --gallery_ids, each an id of the searcher's gallery."""
  if values and searcher.gallery is None:
    raise ValueError(f'--gallery_ids: {searcher.workdir} has no gallery '
                     f'{searcher.gallery_name!r}; run devise-jax embed --workdir '
                     f'{searcher.workdir} first')
  size = len(searcher.meta['refs']) if values else 0
  for value in values:
    if not value.isdigit() or int(value) >= size:
      raise ValueError(f'--gallery_ids {value}: not an id of the gallery '
                       f'(ids 0 to {size - 1})')
  return [int(v) for v in values]


def words(searcher, values, flag):
  """Checks that every word or phrase of `flag` has a word vector."""
  from devise_jax import wordvec  # pylint: disable=import-outside-toplevel
  unknown = [w for w in values if wordvec.phrase_vector(searcher.kv, w) is None]
  if unknown:
    source = searcher.config.word_vectors.source
    raise ValueError(f'--{flag} {",".join(unknown)}: not in the word vectors ({source}); '
                     'try another word')


def k(value):
  if value < 1:
    raise ValueError(f'--k {value}: must be a positive integer')
  return value


def query_error(error):
  """A library error of a search query, said in terms of its flags."""
  message = re.sub(r'^(combine|normalize): ', '', str(error))
  if 'cancel' in message:
    return ValueError(f'--word_weights/--image_weights: {message}; change a weight')
  return ValueError(message)
