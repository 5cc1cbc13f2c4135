"""Flat hit@k and hierarchical precision@k over WordNet label sets (DeViSE's Table 2).

A label set is a set of candidates and the test images whose true label is one of them
(`config.eval.label_sets`, names below). For DeViSE, ConSE and, where its labels are
candidates, the stage-1 softmax, each image's top-k candidates give:

  hit@k  1 if the true label is among them (flat; the paper's "flat hit@k");
  hp@k   the share of them inside the correct set of `wordnet.rings`: the true label,
         grown ring by ring in WordNet (hypernym and hyponym links, both ways) until it
         holds at least k candidates (Frome et al., 2013, appendix). hp@1 = hit@1.

Labels are WordNet noun synsets (`config.data.synsets` maps classes to them; images of
a class without one are left out). Sets:

  'seen', 'unseen'  the dataset's classes, scored as the other evaluators score them
                    (`Data.scores()`, the class names' vectors);
  'all'             every WordNet noun with a word vector (`devise_jax.vocabulary`),
                    the open vocabulary; its images are the unseen classes' (the
                    `open_vocab` evaluator adds the seen classes' as `open_vocab_seen`);
  'N-hop'           the nouns within N hops of the seen classes' synsets, the seen
                    excluded (`wordnet.khop_sets`), that have a vector, and that are
                    listed in `config.eval.restrict` when given (e.g. ImageNet-21K ids);
  'X+seen'          set X plus the seen classes' synsets (the paper's "+1K" rows).

Synset candidates are scored against their vocabulary vectors with the exact chunked
top-k of `devise_jax.search` (never a full [images, candidates] matrix). Keys:
`[conse_|softmax_]{set}_{hit,hp}@k` ('seen' and 'unseen' are named `seen_classes` and
`unseen_classes`; `open_vocab` names 'all' `open_vocab`), plus `{set}_num_labels` and
`{set}_num_images`.
"""

import re

import numpy as np

from devise_jax import search
from devise_jax import wordnet
from devise_jax.evaluators import common
from devise_jax.evaluators import conse

_SET = re.compile(r'(seen|unseen|all|[1-9]\d*-hop)(\+seen)?')
_CHUNK = 1024  # Queries per top-k call: [chunk, window] scores at a time.


def open_vocab(data, cfg):
  """hit@k and hp@k over every WordNet noun with a vector (`config.eval.open_vocab_k`):
  unseen-class images as `open_vocab_*`, seen-class images as `open_vocab_seen_*`."""
  ks = tuple(cfg.get('open_vocab_k', (1, 5, 10)))
  yield from label_set(data, cfg, 'all', ks, name='open_vocab')
  yield from label_set(data, cfg, 'all', ks, name='open_vocab_seen', images=data.seen)


def hierarchy(data, cfg):
  """The sets of `config.eval.label_sets` at `config.eval.hierarchy_k`."""
  ks = tuple(cfg.get('hierarchy_k', (1, 2, 5, 10, 20)))
  for set_name in cfg.get('label_sets', ('2-hop', '3-hop')):
    yield from label_set(data, cfg, set_name, ks)


def label_set(data, cfg, set_name, ks, name=None, images=None):
  """Metrics of one label set; `images` (class ids) overrides the set's own images."""
  name = name or (f'{set_name}_classes' if set_name in ('seen', 'unseen') else set_name)
  synsets = _class_synsets(data)
  cand_ids, vectors, classes, own = candidates(data, cfg, set_name, synsets)
  cand_set = frozenset(cand_ids) - {None}
  if images is None:
    images = data.unseen if set_name.startswith('all') else [
        c for c, s in enumerate(synsets) if s in own]
  targets = [int(c) for c in images if synsets[int(c)] in cand_set]
  mask = np.isin(data.labels, targets)
  ks = [k for k in ks if k <= len(cand_ids)]
  yield f'{name}_num_labels', len(cand_ids)
  yield f'{name}_num_images', int(mask.sum())
  if not mask.any() or not ks:
    return
  true = [synsets[int(c)] for c in data.labels[mask]]
  rings = {s: wordnet.rings(data.wordnet, s, cand_set, ks) for s in set(true)}
  seen = np.asarray(data.seen)
  cand_ids = np.asarray(cand_ids, dtype=object)
  probs = common.softmax(data.logits[mask])
  conse_vectors = conse.conse_embedding(probs, data.label_vectors[seen],
                                        min(cfg.conse_top_t, len(seen)))
  if classes is not None:  # Class candidates: the evaluators' own scores.
    cols = np.asarray(classes)
    top = lambda scores: np.argsort(-scores, axis=1, kind='stable')[:, :max(ks)]
    predictions = {'': top(data.scores()[mask][:, cols]),
                   'conse_': top(conse_vectors @ data.label_vectors[cols].T)}
  else:
    predictions = {'': _top(data.devise[mask], vectors, max(ks)),
                   'conse_': _top(conse_vectors, vectors, max(ks))}
  predictions = {p: cand_ids[top] for p, top in predictions.items()}
  seen_synsets = [synsets[c] for c in seen]
  if all(s is None or s in cand_set for s in seen_synsets):  # It names seen labels only.
    order = np.argsort(-probs, axis=1, kind='stable')
    predictions['softmax_'] = np.asarray(seen_synsets, dtype=object)[order]
  for prefix, top in predictions.items():
    for k in ks:
      if k > top.shape[1]:
        continue
      hit, hp = hit_and_hp(top[:, :k], true, [rings[s][k] for s in true])
      yield f'{prefix}{name}_hit@{k}', hit
      yield f'{prefix}{name}_hp@{k}', hp


def hit_and_hp(top, true, correct_sets):
  """(flat hit@k, hierarchical precision@k) of predictions `top` [N, k] (ids), given
  each image's true id and its correct set (`wordnet.rings`)."""
  k = top.shape[1]
  hits = [t in row for row, t in zip(top.tolist(), true)]
  precision = [sum(p in correct for p in row) / k
               for row, correct in zip(top.tolist(), correct_sets)]
  return float(np.mean(hits)), float(np.mean(precision))


def candidates(data, cfg, set_name, synsets):
  """(candidate ids, their unit vectors or None, class ids or None, the set's own
  labels: those without '+seen') of a set name."""
  match = _SET.fullmatch(set_name)
  if not match or set_name == 'seen+seen':
    raise ValueError(f"config.eval.label_sets: unknown set {set_name!r}; expected 'seen', "
                     "'unseen', 'all' or 'N-hop', each optionally with '+seen'")
  base, plus_seen = match.groups()
  if base in ('seen', 'unseen') and not plus_seen:
    classes = [int(c) for c in (data.seen if base == 'seen' else data.unseen)]
    ids = [synsets[c] for c in classes]
    return ids, None, classes, frozenset(ids) - {None}
  vocab = _require(data.vocabulary, 'the WordNet noun vocabulary')
  seen_synsets = [synsets[int(c)] for c in data.seen if synsets[int(c)]]
  if base == 'all':
    ids = list(vocab.ids)
  elif base == 'unseen':
    ids = [synsets[int(c)] for c in data.unseen]
  else:
    restrict = cfg.get('restrict', '')
    hops = int(base.split('-')[0])
    ids = wordnet.khop_sets(data.wordnet, seen_synsets, hops,
                            wordnet.read_ids(restrict) if restrict else None)[hops]
  own = frozenset(ids)
  if plus_seen:
    ids = list(dict.fromkeys(list(ids) + seen_synsets))
  ids = [s for s in ids if s in vocab.index]
  return ids, vocab.vectors[[vocab.index[s] for s in ids]], None, own


def _class_synsets(data):
  """Each class's synset id (None: no synset), checked against WordNet."""
  wn = _require(data.wordnet, 'WordNet')
  if len(data.synsets) != len(data.names):
    raise ValueError('config.data.synsets: the hierarchy evaluators need a WordNet synset '
                     'id (or None) for every class name')
  for name, synset in zip(data.names, data.synsets):
    if synset is not None and synset not in wn:
      raise ValueError(f'config.data.synsets: {synset!r} (for {name!r}) is not a '
                       'WordNet 3.0 noun synset id')
  return list(data.synsets)


def _require(value, what):
  if value is None:
    raise ValueError(f'the hierarchy evaluators need {what} (evaluate.evaluate loads it)')
  return value


def _top(queries, keys, k):
  """Indices [N, k] of each query's top-k keys by cosine, `_CHUNK` queries at a time
  (the last chunk padded with its first row, so every call has one shape)."""
  out = []
  for start in range(0, len(queries), _CHUNK):
    chunk = np.asarray(queries[start:start + _CHUNK], np.float32)
    pad = _CHUNK - len(chunk) if len(queries) > _CHUNK else 0
    chunk = np.concatenate([chunk, np.repeat(chunk[:1], pad, axis=0)])
    out.append(search.topk(chunk, keys, k)[1][:_CHUNK - pad])
  return np.concatenate(out)
