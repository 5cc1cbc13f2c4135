"""What `devise-jax eval` prints (devise_jax/eval_table.py), against a hand-written eval."""

from devise_jax import eval_table

METRICS = {
    'zsl_top1': 0.6125, 'conse_zsl_top1': 0.5, 'chance_zsl_top1': 1 / 3,
    'gzsl_calibrated_h': 0.25, 'conse_gzsl_calibrated_h': 0.125,
    'ausuc': 0.3, 'conse_ausuc': 0.2,
    'seen_hit@1': 0.75, 'softmax_seen_hit@1': 0.8,
    'words_to_images_seen_precision@10': 0.9, 'words_to_images_unseen_precision@10': 0.4,
    'open_vocab_hit@5': 0.1, 'conse_open_vocab_hit@5': 0.05, 'softmax_open_vocab_hit@5': 0.0,
    'features_seen_map@r': 0.1, 'devise_seen_map@r': 0.2, 'siamese_seen_map@r': 0.3,
    'features_unseen_recall@1': 0.4, 'devise_unseen_recall@1': 0.5,
    'num_seen_images': 170, 'gzsl_h': 0.01,  # Not in the summary.
}


def test_label_and_retrieval_tables_side_by_side():
  assert eval_table.summary(METRICS).split('\n') == [
      '| labels | DeViSE | ConSE | softmax |',
      '|---|---:|---:|---:|',
      '| zero-shot top-1 | 0.613 | 0.500 | - |',
      '| GZSL H, calibrated | 0.250 | 0.125 | - |',
      '| AUSUC | 0.300 | 0.200 | - |',
      '| seen hit@1 | 0.750 | - | 0.800 |',
      '| words -> images p@10, seen | 0.900 | - | - |',
      '| words -> images p@10, unseen | 0.400 | - | - |',
      '| open vocabulary hit@5 | 0.100 | 0.050 | 0.000 |',
      '',
      '| retrieval | raw features | DeViSE | Siamese |',
      '|---|---:|---:|---:|',
      '| MAP@R, seen | 0.100 | 0.200 | 0.300 |',
      '| recall@1, unseen | 0.400 | 0.500 | - |',
      '',
      'Chance zero-shot top-1: 0.333. Every metric: eval.json (devise-jax eval --all).',
  ]


def test_only_the_columns_and_rows_that_exist():
  text = eval_table.summary({'zsl_top1': 0.5, 'devise_seen_map@r': 0.25})
  assert text.split('\n') == [
      '| labels | DeViSE |', '|---|---:|', '| zero-shot top-1 | 0.500 |', '',
      '| retrieval | DeViSE |', '|---|---:|', '| MAP@R, seen | 0.250 |']
  assert eval_table.summary({'num_seen_images': 3}) == ''
