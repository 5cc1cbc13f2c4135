"""What `devise-jax eval` prints: the comparisons the project exists to show, side by side.

Two markdown tables of an eval.json's metrics: the label side (DeViSE, ConSE and the
stage-1 softmax on the same images) and image retrieval (the encoder's raw features,
the DeViSE space and the Siamese head). A row appears only when one of its keys is in
the metrics, a column only when one of its rows has it; every metric stays in eval.json
(`devise-jax eval --all` prints them all).
"""

METHODS = ('DeViSE', 'ConSE', 'softmax')
LABEL_ROWS = (  # (row, {column: eval.json key})
    ('zero-shot top-1', dict(DeViSE='zsl_top1', ConSE='conse_zsl_top1')),
    ('GZSL H, calibrated', dict(DeViSE='gzsl_calibrated_h', ConSE='conse_gzsl_calibrated_h')),
    ('AUSUC', dict(DeViSE='ausuc', ConSE='conse_ausuc')),
    ('seen hit@1', dict(DeViSE='seen_hit@1', softmax='softmax_seen_hit@1')),
    ('words -> images p@10, seen', dict(DeViSE='words_to_images_seen_precision@10')),
    ('words -> images p@10, unseen', dict(DeViSE='words_to_images_unseen_precision@10')),
    ('open vocabulary hit@5', dict(DeViSE='open_vocab_hit@5', ConSE='conse_open_vocab_hit@5',
                                   softmax='softmax_open_vocab_hit@5')),
    ('open vocabulary hp@5', dict(DeViSE='open_vocab_hp@5', ConSE='conse_open_vocab_hp@5',
                                  softmax='softmax_open_vocab_hp@5')),
)
SPACES = (('raw features', 'features'), ('DeViSE', 'devise'), ('Siamese', 'siamese'))
RETRIEVAL_ROWS = tuple(
    (f'{title}, {classes}', {column: f'{space}_{classes}_{metric}' for column, space in SPACES})
    for title, metric in (('MAP@R', 'map@r'), ('recall@1', 'recall@1'))
    for classes in ('seen', 'unseen'))


def table(metrics, rows, columns, corner):
  """A markdown table of `rows` (title, {column: key}) over `metrics`; '' if empty."""
  rows = [(title, keys) for title, keys in rows if any(k in metrics for k in keys.values())]
  columns = [c for c in columns if any(c in keys and keys[c] in metrics for _, keys in rows)]
  if not rows:
    return ''
  lines = [f'| {corner} | ' + ' | '.join(columns) + ' |',
           '|---|' + '---:|' * len(columns)]
  for title, keys in rows:
    cells = [_cell(metrics.get(keys.get(c))) for c in columns]
    lines.append(f'| {title} | ' + ' | '.join(cells) + ' |')
  return '\n'.join(lines)


def _cell(value):
  return '-' if value is None else f'{value:.3f}' if isinstance(value, float) else str(value)


def summary(metrics):
  """The two tables of an evaluation's `metrics`, and what the chance level is."""
  parts = [table(metrics, LABEL_ROWS, METHODS, 'labels'),
           table(metrics, RETRIEVAL_ROWS, [c for c, _ in SPACES], 'retrieval')]
  if 'chance_zsl_top1' in metrics:
    parts.append(f"Chance zero-shot top-1: {metrics['chance_zsl_top1']:.3f}. "
                 'Every metric: eval.json (devise-jax eval --all).')
  return '\n\n'.join(p for p in parts if p)
