"""Evaluation of a workdir: zero-shot, generalized zero-shot, ConSE and flat hit@k.

Protocol (Xian et al., 2018 for the ZSL/GZSL parts): the eval split's images of unseen
classes are classified among the unseen classes only (ZSL) or among all classes (GZSL);
per-class accuracy is the mean over classes of each class's accuracy; H is the
harmonic mean of the GZSL per-class accuracies on seen and unseen classes. Every image
is counted exactly once: the last batch is padded and masked.
"""

import os

import jax
import numpy as np
import tqdm

from devise_jax import checkpoint
from devise_jax import input_pipeline
from devise_jax.models import devise


def topk_hit(scores, labels, k):
  """1.0 where `labels` [N] is among the `k` highest of `scores` [N, C], else 0.0."""
  topk = np.argsort(-scores, axis=1, kind='stable')[:, :k]
  return (topk == labels[:, None]).any(axis=1).astype(np.float64)


def per_class_mean(correct, labels):
  """Mean over the classes present in `labels` of each class's mean of `correct`."""
  classes = np.unique(labels)
  return float(np.mean([correct[labels == c].mean() for c in classes]))


def conse_embedding(probs, seen_vectors, top_t):
  """ConSE (Norouzi et al., 2014): the top-T seen labels' vectors weighted by probability."""
  top = np.argsort(-probs, axis=1, kind='stable')[:, :top_t]
  weights = np.take_along_axis(probs, top, axis=1)
  combined = np.einsum('nt,ntd->nd', weights, seen_vectors[top])
  return combined / weights.sum(axis=1, keepdims=True)


def zero_shot_metrics(labels, logits, embeddings, label_vectors, seen_ids, unseen_ids,
                      top_t=5, hit_k=(1, 2, 5)):
  """All metrics from the eval split's labels [N], stage-1 logits [N, S] over the seen
  classes, stage-2 embeddings [N, D], and every class's unit vector [C, D]."""
  seen_ids, unseen_ids = np.asarray(seen_ids), np.asarray(unseen_ids)
  is_unseen = np.isin(labels, unseen_ids)
  is_seen = np.isin(labels, seen_ids)
  if not is_unseen.any() or not is_seen.any():
    raise ValueError('the eval split needs images of both seen and unseen classes')
  scores = embeddings @ label_vectors.T  # [N, C]; ranks like cosine (unit label vectors).
  u_labels, s_labels = labels[is_unseen], labels[is_seen]

  zsl_pred = unseen_ids[np.argmax(scores[is_unseen][:, unseen_ids], axis=1)]
  zsl_correct = (zsl_pred == u_labels).astype(np.float64)
  gzsl_pred = np.argmax(scores, axis=1)
  gzsl_s = per_class_mean((gzsl_pred == labels)[is_seen].astype(float), s_labels)
  gzsl_u = per_class_mean((gzsl_pred == labels)[is_unseen].astype(float), u_labels)

  probs = _softmax(logits[is_unseen])
  conse = conse_embedding(probs, label_vectors[seen_ids], min(top_t, len(seen_ids)))
  conse_pred = unseen_ids[np.argmax(conse @ label_vectors[unseen_ids].T, axis=1)]
  conse_correct = (conse_pred == u_labels).astype(np.float64)

  seen_index = {c: i for i, c in enumerate(seen_ids)}
  s_targets = np.array([seen_index[c] for c in s_labels])
  metrics = dict(
      zsl_top1=float(zsl_correct.mean()),
      per_class_zsl_top1=per_class_mean(zsl_correct, u_labels),
      gzsl_seen=gzsl_s, gzsl_unseen=gzsl_u,
      gzsl_h=0.0 if gzsl_s + gzsl_u == 0 else 2 * gzsl_s * gzsl_u / (gzsl_s + gzsl_u),
      conse_zsl_top1=float(conse_correct.mean()),
      conse_per_class_zsl_top1=per_class_mean(conse_correct, u_labels),
      chance_zsl_top1=1.0 / len(unseen_ids),
      num_seen_images=int(is_seen.sum()), num_unseen_images=int(is_unseen.sum()))
  for k in hit_k:
    if k <= len(seen_ids):
      devise_seen = scores[is_seen][:, seen_ids]
      metrics[f'seen_hit@{k}'] = float(topk_hit(devise_seen, s_targets, k).mean())
      metrics[f'softmax_seen_hit@{k}'] = float(
          topk_hit(logits[is_seen], s_targets, k).mean())
  return metrics


def _softmax(x):
  x = x - x.max(axis=1, keepdims=True)
  e = np.exp(x)
  return e / e.sum(axis=1, keepdims=True)


def predict(config, model, variables, split):
  """Runs `model` over the whole split; returns (labels, outputs) with no padding."""
  apply = jax.jit(lambda v, x: model.apply(v, x, train=False))
  labels, outputs = [], []
  batches = input_pipeline.eval_iterator(config.data, split=split,
                                         batch_size=config.eval.batch_size)
  total = input_pipeline.num_examples(config.data, split)
  for batch in tqdm.tqdm(batches, total=-(-total // config.eval.batch_size),
                         desc='eval', dynamic_ncols=True, leave=False):
    out = jax.device_get(apply(variables, batch['image']))
    mask = batch['mask']
    labels.append(batch['label'][mask])
    outputs.append({k: v[mask] for k, v in out.items()})
  joined = {k: np.concatenate([o[k] for o in outputs]) for k in outputs[0]}
  return np.concatenate(labels), joined


def retrieval_evaluation(config, workdir, split, seen, unseen, label_vectors, names):
  """Gallery retrieval on `split`, seen and unseen classes apart, in three spaces.

  Raw encoder features, DeViSE space (stage 2) and Siamese space (stage 3): Recall@1,
  Recall@5 and MAP@R, leave-one-out within each class set; and precision@10 of each
  class name's word vector against the DeViSE vectors of all images (words -> images).
  """
  from devise_jax import retrieval, search, siamese  # siamese imports this module.
  features, labels = siamese.cached_features(config, workdir, split)
  v2, _ = checkpoint.load_variables(workdir, 'stage2')
  spaces = {'features': search.normalize(features),
            'devise': search.normalize(devise.project(v2['params'], features)),
            'siamese': siamese.embed(config, workdir, features)}
  metrics = {}
  for set_name, ids in (('seen', seen), ('unseen', unseen)):
    mask = np.isin(labels, ids)
    for space, x in spaces.items():
      for key, value in retrieval.retrieval_metrics(x[mask], labels[mask]).items():
        if key != 'num_queries':
          metrics[f'{space}_{set_name}_{key}'] = float(value)
  precision = retrieval.precision_at_k_per_query(
      label_vectors, spaces['devise'], labels, np.arange(len(label_vectors)), k=10)
  for set_name, ids in (('seen', seen), ('unseen', unseen)):
    metrics[f'words_to_images_{set_name}_precision@10'] = float(np.mean(precision[ids]))
  per_class = {names[i]: float(p) for i, p in enumerate(precision)}
  return metrics, per_class


def evaluate(workdir, split=None):
  """Evaluates the workdir's checkpoints (stage 3 when present); writes eval.json."""
  config = checkpoint.load_config(workdir)
  names, seen, unseen, label_space = checkpoint.load_classes(workdir)
  split = split or config.data.eval_split
  model = devise.create_model(config.model, len(seen), label_space.dim)
  v1, step1 = checkpoint.load_variables(workdir, 'stage1')
  v2, step2 = checkpoint.load_variables(workdir, 'stage2')
  labels, out1 = predict(config, model, v1, split)
  _, out2 = predict(config, model, v2, split)
  metrics = zero_shot_metrics(labels, out1['logits'], out2['embedding'],
                              label_space.vectors, seen, unseen, config.eval.conse_top_t,
                              tuple(config.eval.hit_k))
  result = dict(metrics=metrics, split=split, stage1_step=step1, stage2_step=step2,
                seen_classes=[names[i] for i in seen],
                unseen_classes=[names[i] for i in unseen])
  if os.path.isdir(os.path.join(workdir, 'checkpoints', 'stage3')):
    retrieval_metrics, per_class = retrieval_evaluation(
        config, workdir, split, seen, unseen, label_space.vectors, names)
    metrics.update(retrieval_metrics)
    result['words_to_images_precision@10'] = per_class
  checkpoint.write_json(os.path.join(workdir, 'eval.json'), result)
  return result


def format_table(result):
  """A markdown table of an `evaluate` result."""
  rows = ['| metric | value |', '|---|---|']
  for key, value in result['metrics'].items():
    rows.append(f'| {key} | {value:.4f} |' if isinstance(value, float) else
                f'| {key} | {value} |')
  return '\n'.join(rows)
