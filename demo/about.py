"""The About tab: the loaded checkpoints, data, word vectors and evaluation of the run."""

from devise_jax import checkpoint

STAGES = {'stage1': 'encoder + softmax on the seen classes',
          'stage2': 'DeViSE projection (used for labels and words)',
          'stage3': 'Siamese head (used for similar images)'}
MAIN_METRICS = ('zsl_top1', 'per_class_zsl_top1', 'gzsl_seen', 'gzsl_unseen', 'gzsl_h',
                'conse_zsl_top1', 'chance_zsl_top1', 'seen_hit@1', 'seen_hit@5',
                'softmax_seen_hit@1')


def markdown(backend):
  """The About panel of a `handlers.Backend`."""
  return '\n'.join(_checkpoints(backend) + _data(backend) + _word_vectors(backend)
                   + _evaluation(backend))


def _recorded_fingerprints(workdir):
  try:
    return checkpoint.read_fingerprints(workdir)
  except (OSError, ValueError, KeyError, TypeError):
    return {}


def _checkpoints(backend):
  run, cfg = backend.run, backend.run.config
  recorded = _recorded_fingerprints(backend.workdir)
  lines = ['### Checkpoint', '', f'- workdir: `{backend.workdir}`',
           f'- model: `{cfg.model.name}`, images {cfg.data.image_size}x'
           f'{cfg.data.image_size}', '',
           '| stage | what | step | params SHA-256 (loaded) | in fingerprints.jsonl |',
           '|---|---|---|---|---|']
  for stage, what in STAGES.items():
    if not run.has(stage):
      lines.append(f'| {stage} | {what} | - | not loaded | - |')
      continue
    step, sha = run.steps[stage], run.fingerprint(stage)
    saved = recorded.get(stage, {}).get(step)
    check = 'not recorded' if saved is None else (
        'matches' if saved == sha else f'**differs** (`{saved}`)')
    lines.append(f'| {stage} | {what} | {step} | `{sha}` | {check} |')
  return lines


def _data(backend):
  s, cfg = backend.searcher, backend.run.config
  seen = ', '.join(s.names[i] for i in backend.run.seen)
  unseen = ', '.join(s.names[i] for i in s.unseen) or 'none'
  lines = ['', '### Data', '',
           f'- dataset: `{cfg.data.name}`' + (f' (folder `{cfg.data.folder}`)'
                                              if cfg.data.folder else ''),
           f'- {len(s.names)} classes; seen in training: {seen}',
           f'- **unseen in training** (zero-shot): {unseen}']
  if s.gallery is not None:
    lines.append(f'- gallery: `{s.gallery_name}`, {backend.gallery_size():,} images of '
                 f'`{s.meta.get("source")}`')
  else:
    lines.append('- gallery: none (run `devise-jax embed`); only zero-shot on uploads '
                 'works')
  return lines


def _word_vectors(backend):
  kv = backend.searcher.kv
  return ['', '### Word vectors', '',
          f'- source: `{backend.run.config.word_vectors.source}`',
          f'- vocabulary: {len(kv.index_to_key):,} words, {kv.vector_size} dimensions']


def _evaluation(backend):
  lines = ['', '### Evaluation', '']
  try:
    result = checkpoint.load_eval(backend.workdir)
  except checkpoint.CheckpointError as e:
    return lines + [f'`eval.json` cannot be read: {str(e).splitlines()[0]}']
  if result is None:
    return lines + ['No `eval.json` in the workdir: run `devise-jax eval --workdir DIR`.']
  loaded = backend.run.steps.get('stage2')
  note = ''
  if result.get('stage2_step') not in (None, loaded):
    note = (f' **(evaluated at stage-2 step {result.get("stage2_step")}, the demo '
            f'loaded step {loaded})**')
  lines += [f'From `eval.json`: split `{result.get("split")}`, stage-1 step '
            f'{result.get("stage1_step")}, stage-2 step {result.get("stage2_step")}'
            f'{note}.', '', '| metric | value |', '|---|---|']
  metrics = result.get('metrics', {})
  first = [key for key in MAIN_METRICS if key in metrics]
  for key in first + sorted(set(metrics) - set(first)):
    value = metrics[key]
    lines.append(f'| `{key}` | {f"{value:.4f}" if isinstance(value, float) else value} |')
  return lines
