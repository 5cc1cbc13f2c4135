"""Galleries and the queries on them, over a restored run.

A gallery holds, for every image of a split or a folder, its DeViSE-space vector
(stage 2, unit norm), its Siamese embedding (stage 3) and a reference to the image
(`tfds:<dataset>/<split>/<index>` or a file path), saved pickle-free in the workdir
(`checkpoint.save_gallery`). `Searcher` answers queries with the run's embedders and the
pure functions of `devise_jax.search`; `devise_jax.queries` (the layer the CLI, the demo
and the REST API share) checks each request before asking it.
"""

import os

import jax
import numpy as np

from devise_jax import checkpoint
from devise_jax import images
from devise_jax import search
from devise_jax import vocabulary
from devise_jax import wordvec
from devise_jax import workdir_lock
from devise_jax.evaluators import words_to_images as words_to_images_eval

IMAGE_SUFFIXES = ('.jpg', '.jpeg', '.png', '.gif', '.bmp', '.webp')
SPACES = ('devise', 'siamese')


def cosines(scores):
  """Cosine similarities clipped to [-1, 1]: float32 products of unit vectors can
  overshoot (1.0000001 for an image and its duplicate)."""
  return np.clip(scores, -1.0, 1.0)


def gallery_name(split=None, folder=None):
  raw = f'folder-{os.path.basename(os.path.normpath(folder))}' if folder else split
  return checkpoint.file_name(raw)


class Searcher:
  """A workdir's models, label space and gallery, for every kind of query."""

  def __init__(self, run, gallery=None):
    self.run = run
    self.workdir, self.config = run.workdir, run.config
    self.names, self.unseen, self.label_space = run.names, run.unseen, run.label_space
    self._vocab = {}
    self._kv = None
    self._word_keys = None
    self.gallery_name = gallery or gallery_name(self.config.data.eval_split)
    self.gallery = self.meta = None
    if checkpoint.gallery_exists(self.workdir, self.gallery_name):
      self.gallery, self.meta = checkpoint.load_gallery(self.workdir, self.gallery_name)

  # Embeddings.

  def embed_features(self, features):
    """(DeViSE unit vectors, Siamese embeddings) of encoder features [N, 512]."""
    return self.run.devise(features), self.run.siamese(features)

  def embed_images(self, images, batch_size=256):
    """(DeViSE vectors, Siamese embeddings) of a list of uint8 [H, W, C] arrays."""
    return self.embed_features(self.run.encode_images(images, batch_size))

  @property
  def kv(self):
    if self._kv is None:
      wv = self.config.word_vectors
      self._kv = wordvec.load_keyedvectors(wv.source, wv.format)
    return self._kv

  def word_vector(self, word):
    vector = wordvec.phrase_vector(self.kv, word)
    if vector is None:
      raise ValueError(f'no word vector for {word!r}')
    return vector

  # Queries.

  def _require_gallery(self):
    if self.gallery is None:
      raise FileNotFoundError(f'no gallery {self.gallery_name!r} in {self.workdir}: run '
                              f'`devise-jax embed --workdir {self.workdir}` first')
    return self.gallery

  def _results(self, scores, ids):
    return [dict(id=int(i), label=self.meta['label_names'][int(i)], score=float(s),
                 ref=self.meta['refs'][int(i)]) for s, i in zip(scores, ids) if i >= 0]

  def labels(self, devise_vector, candidates='classes', k=5):
    """Top-k labels of one DeViSE vector among 'classes', 'vocab' (WordNet nouns with a
    word vector; results add their `synset`), 'tokens' (every word-vector token) or a
    list of phrases. A label is `unseen` when it names an unseen class (compared
    case-insensitively, as word vectors are looked up); in 'vocab', when it is the
    synset of an unseen class that has one.

    Over the dataset's classes (seen and unseen competing: generalized zero-shot) the
    ranking uses calibrated stacking when the run has a gamma (`Run.gamma`): each seen
    class's score is lowered by gamma; `score` is then that calibrated score and
    `cosine` the plain one.
    """
    if isinstance(candidates, str) and candidates == 'classes':
      cosine = cosines(self.label_space.vectors @ np.asarray(devise_vector, np.float32))
      shift = np.zeros(len(cosine))
      if self.run.gamma is not None:
        shift[self.run.seen] = self.run.gamma
      order = np.argsort(-(cosine - shift), kind='stable')[:k]
      unseen = set(int(i) for i in self.unseen)
      return [dict(label=self.names[i], score=float(cosine[i] - shift[i]),
                   cosine=float(cosine[i]), unseen=int(i) in unseen) for i in order]
    if isinstance(candidates, str) and candidates in ('vocab', 'tokens'):
      vocab, vectors = self.vocabulary(candidates)
      scores, ids = search.topk(devise_vector, vectors, k)
      # A noun is its class's synset where the class has one (not the same name in
      # another sense); a token, or a noun of a class without a synset, its name.
      synsets = (self.config.data.get('synsets') or {}) if candidates == 'vocab' else {}
      unseen = {synsets.get(self.names[i]) or self.names[i].casefold() for i in self.unseen}
      return [dict(label=vocab.labels[int(i)], score=float(s),
                   unseen=(vocab.ids[int(i)] in unseen
                           or vocab.labels[int(i)].casefold() in unseen),
                   **({'synset': vocab.ids[int(i)]} if candidates == 'vocab' else {}))
              for s, i in zip(cosines(scores), ids)]
    names = list(dict.fromkeys(candidates))
    vectors = wordvec.build_label_space(self.kv, names).vectors
    unseen_names = {self.names[i].casefold() for i in self.unseen}
    scores, ids = search.topk(devise_vector, vectors, k)
    return [dict(label=names[int(i)], score=float(s),
                 unseen=names[int(i)].casefold() in unseen_names)
            for s, i in zip(cosines(scores), ids)]

  def vocabulary(self, kind='vocab'):
    """(the `vocabulary.Vocabulary`, its vectors on the device) of 'vocab' (WordNet nouns
    with a word vector) or 'tokens'; built once (the device copy: 80 MB of GloVe
    tokens not copied per query)."""
    if kind not in self._vocab:
      vocab = (vocabulary.for_word_vectors(self.config.word_vectors, self.kv)
               if kind == 'vocab' else vocabulary.tokens(self.kv))
      self._vocab[kind] = vocab, jax.device_put(vocab.vectors)
    return self._vocab[kind]

  def words_to_images(self, words, weights=None, k=5):
    query = search.combine([self.word_vector(w) for w in words],
                           weights if weights is not None else [1.0] * len(words))
    g = self._require_gallery()
    if self._word_keys is None:  # The ranking of config.eval.words_to_images.
      run, classes = self.run, np.union1d(self.run.seen, self.run.unseen)
      cfg = self.config.eval
      if words_to_images_eval.kind(cfg) == 'conse' and 'logits' not in g:
        raise ValueError(
            f"gallery {self.gallery_name!r} has no stage-1 logits, which "
            f"config.eval.words_to_images = 'conse' ranks by: "
            f'run `devise-jax embed --workdir {self.workdir}` again')
      keys = words_to_images_eval.image_keys(
          g['devise'], g.get('logits'), run.label_space.vectors[run.seen],
          cfg).astype(np.float32)
      penalty = words_to_images_eval.image_penalty(
          keys, run.label_space.vectors[classes], np.isin(classes, run.seen), run.gamma,
          self.config.eval)
      self._word_keys = (jax.device_put(keys), 1.0) if penalty is None else (
          jax.device_put(search.with_penalty(keys, penalty)), np.sqrt(2.0))
    keys, scale = self._word_keys
    if scale != 1.0:
      query = np.append(query, 1.0)
    scores, ids = search.topk(query, keys, k)
    # Cosines; with the penalty, cosine minus penalty (not bounded by 1).
    return self._results(cosines(scores) if scale == 1.0 else scores * scale, ids)

  def similar(self, vector, space='siamese', k=5, exclude_ids=()):
    g = self._require_gallery()
    exclude = [list(exclude_ids)] if exclude_ids else None
    scores, ids = search.topk(vector, g[space], k, exclude=exclude)
    return self._results(cosines(scores), ids)

  def algebra(self, image_vectors, image_weights, words=(), word_weights=(),
              space='siamese', k=5, exclude_ids=()):
    """Nearest gallery images to a weighted sum of images (and, in DeViSE space, words).

    The rules of such a query (`queries.check_algebra`) are checked by the query layer.
    """
    terms = list(image_vectors) + [self.word_vector(w) for w in words]
    weights = list(image_weights) + list(word_weights)
    g = self._require_gallery()
    scores, ids = search.algebra(terms, weights, g[space], k, exclude_ids=exclude_ids)
    return self._results(cosines(scores), ids)


def embed(run, split=None, folder=None):
  """Computes and saves a gallery of a split (default: the eval split) or a folder,
  holding the workdir's lock (`workdir_lock.hold`)."""
  with workdir_lock.hold(run.workdir):
    return _embed(run, split, folder)


def _embed(run, split, folder):
  searcher = Searcher(run)
  if folder:
    paths = sorted(os.path.join(root, f) for root, _, files in os.walk(folder)
                   for f in files if f.lower().endswith(IMAGE_SUFFIXES))
    if not paths:
      raise ValueError(f'no images ({", ".join(IMAGE_SUFFIXES)}) under {folder}')
    decoded = [images.decode(p, name=f'image {p}') for p in paths]
    features = run.encode_images(decoded)
    features1 = (features if run.shared_encoder else
                 run.encode_images(decoded, stage='stage1'))  # What stage 1's logits read.
    label_names = [os.path.basename(os.path.dirname(p)) for p in paths]
    labels = np.array([run.names.index(n) if n in run.names else -1 for n in label_names])
    refs = [os.path.abspath(p) for p in paths]
  else:
    split = split or run.config.data.eval_split
    features, labels = run.split_features(split)
    features1 = run.split_features(split, 'stage1')[0]  # The same when shared.
    label_names = [run.names[i] for i in labels]
    refs = [f'tfds:{run.config.data.name}/{split}/{i}' for i in range(len(labels))]
  devise_vectors, siamese_vectors = searcher.embed_features(features)
  name = gallery_name(split, folder)
  checkpoint.save_gallery(
      run.workdir, name, dict(devise=devise_vectors.astype(np.float32),
                              siamese=siamese_vectors.astype(np.float32), labels=labels,
                              logits=run.logits(features1).astype(np.float32)),
      dict(refs=refs, label_names=label_names, source=folder or split))
  return name, len(refs)
