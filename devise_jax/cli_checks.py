"""What `devise-jax` checks before it acts, and its `--help` texts.

Every expected failure of a command is one line naming the flag, config key or file at
fault and what would be valid; the checks here run before anything is read at length or
written, so a refused command leaves the workdir byte for byte as it was. A search's
own checks are the query layer's (`devise_jax.queries`), shared with the demo.
"""

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


# The flags each command reads, for `devise-jax COMMAND --help`.
MULTI_HOST = ('coordinator_address', 'num_processes', 'process_id')
COMMAND_FLAGS = {
    'train': ('config', 'workdir', 'stages', 'all') + MULTI_HOST,
    'eval': ('workdir', 'split', 'all'),
    'embed': ('workdir', 'split', 'images'),
    'search': ('workdir', 'gallery', 'k', 'words', 'word_weights', 'images', 'gallery_ids',
               'image_weights', 'space', 'labels'),
    'demo': ('workdir', 'host', 'port', 'share', 'auth'),
    'protocol': ('config', 'out', 'splits', 'seeds', 'unseen', 'split_seed', 'validation',
                 'stages', 'reuse_from'),
    'label-sets': ('hops', 'restrict', 'out'),
}


def command_help(command, flag_values):
  """`devise-jax COMMAND --help`: what the command does and the flags it reads."""
  lines = [f'devise-jax {command} [flags]: {SUMMARY[command]}', '', 'Flags:']
  for name in COMMAND_FLAGS[command]:
    flag = flag_values[name]
    value = ','.join(flag.default) if isinstance(flag.default, list) else flag.default
    default = '' if value in (None, '') else f' (default: {value})'
    lines.append(f'  --{name}: {flag.help}{default}')
  lines += ['', 'Every command and flag: devise-jax --helpfull']
  return '\n'.join(lines)


def require_run(workdir):
  """Raises unless `workdir` holds a trained run (eval, embed, search, demo)."""
  from devise_jax import checkpoint  # pylint: disable=import-outside-toplevel
  if checkpoint.workdir_state(workdir) == 'new':
    raise ValueError(f'--workdir {workdir}: holds no devise-jax run (missing or empty); '
                     f'train one first: devise-jax train --config FILE --workdir {workdir}')
