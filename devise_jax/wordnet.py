"""WordNet 3.0 nouns from the database files of Debian's `wordnet-base`.

ImageNet's ids are WordNet 3.0 noun offsets (`n02119789` is line offset 02119789 of
`data.noun`), so label sets around ImageNet and the hierarchy of hierarchical
precision@k come from `/usr/share/wordnet/data.noun` alone.

Why a reader of our own, not nltk: nltk's `WordNetCorpusReader` (3.10) refuses to open
these files. It reads `lexnames` at start-up, which `wordnet-base` does not ship
(`OSError: No such file or directory: '/usr/share/wordnet/lexnames'`), and by default it
also refuses any directory outside its own data path ("Security Violation ...
Unauthorized path"). Making it work would mean copying the database into an nltk data
directory and writing the missing file ourselves, for a dependency that pulls in regex,
click and joblib. The `wn` package needs its own downloaded LMF files. What we need is
small: each line of `data.noun` is

  offset lex_filenum ss_type w_cnt(2 hex digits) {word lex_id} p_cnt(3 digits)
      {pointer_symbol offset pos source/target} | gloss

(wndb(5WN) in the WordNet documentation). We keep the lemmas (underscores become
spaces) and four pointers: hypernym `@`, instance hypernym `@i`, hyponym `~` and
instance hyponym `~i`, all between nouns. The whole file (82,115 synsets) is parsed
once per process in about a second and kept (`load` is cached).

Hops are shortest-path lengths in the undirected graph of those links: a synset's
neighbours are its hypernyms and its hyponyms (instance links included), whichever
direction the file states a link in.
"""

import collections
import dataclasses
import functools
import importlib.util
import os
import re

DEFAULT_DIR = '/usr/share/wordnet'  # Debian's wordnet-base; $DEVISE_JAX_WORDNET overrides.
LINKS = ('@', '@i', '~', '~i')  # Hypernym, instance hypernym, hyponym, instance hyponym.
_UP = ('@', '@i')
_ID = re.compile(r'n\d{8}')
_INSTALL_HINT = 'install the Debian package wordnet-base (`make install`)'


@dataclasses.dataclass(frozen=True, eq=False)
class WordNet:
  """The noun synsets: ids ('n02119789'), lemma phrases, and the hop graph."""
  ids: tuple  # Synset ids in file order.
  lemmas: tuple  # Per synset, its lemma phrases ('kit fox', 'Vulpes macrotis').
  hypernyms: tuple  # Per synset, the indices of its hypernyms (`@` and `@i`).
  neighbours: tuple  # Per synset, the indices one hop away (up or down).

  @functools.cached_property
  def index(self):
    """{synset id: row}."""
    return {s: i for i, s in enumerate(self.ids)}

  def __len__(self):
    return len(self.ids)

  def __contains__(self, synset):
    return synset in self.index

  def row(self, synset):
    try:
      return self.index[synset]
    except KeyError:
      raise ValueError(f'{synset!r} is not a WordNet 3.0 noun synset id') from None

  def label(self, synset):
    """The synset's lemmas as one comma-separated phrase ('kit fox, Vulpes macrotis')."""
    return ', '.join(self.lemmas[self.row(synset)])

  def distances(self, sources, max_hops):
    """{row: hops} of every synset within `max_hops` of any of the rows `sources`."""
    dist = {int(s): 0 for s in sources}
    frontier = list(dist)
    for hop in range(1, max_hops + 1):
      nxt = []
      for node in frontier:
        for other in self.neighbours[node]:
          if other not in dist:
            dist[other] = hop
            nxt.append(other)
      if not nxt:
        break
      frontier = nxt
    return dist


def parse(lines, source='data.noun'):
  """A `WordNet` from the lines of a data.noun file (`source` names it in errors)."""
  ids, lemmas, links = [], [], []
  for number, line in enumerate(lines, 1):
    if not line.strip() or line.startswith('  '):  # Blank, or the licence header.
      continue
    try:
      fields = line.split(' | ', 1)[0].split()
      count = int(fields[3], 16)
      words = fields[4:4 + 2 * count:2]
      pos = 4 + 2 * count
      pointers = fields[pos + 1:pos + 1 + 4 * int(fields[pos])]
      if fields[2] != 'n' or len(words) != count or len(pointers) % 4:
        raise ValueError('not a noun synset line')
    except (IndexError, ValueError):
      raise ValueError(f'{source}:{number}: not a line of the WordNet data.noun '
                       'format') from None
    ids.append(f'n{fields[0]}')
    lemmas.append(tuple(w.replace('_', ' ') for w in words))
    links.append([(pointers[i], f'n{pointers[i + 1]}') for i in range(0, len(pointers), 4)
                  if pointers[i] in LINKS and pointers[i + 2] == 'n'])
  index = {s: i for i, s in enumerate(ids)}
  up, near = [set() for _ in ids], [set() for _ in ids]
  for i, synset_links in enumerate(links):
    for symbol, target in synset_links:
      j = index.get(target)
      if j is None:
        raise ValueError(f'{source}: {ids[i]} points to {target}, which is not in the file')
      near[i].add(j)
      near[j].add(i)
      if symbol in _UP:
        up[i].add(j)
      else:
        up[j].add(i)
  return WordNet(tuple(ids), tuple(lemmas), tuple(tuple(sorted(s)) for s in up),
                 tuple(tuple(sorted(s)) for s in near))


def load(directory=None):
  """The WordNet of `directory` (default $DEVISE_JAX_WORDNET or /usr/share/wordnet)."""
  directory = directory or os.environ.get('DEVISE_JAX_WORDNET') or DEFAULT_DIR
  path = os.path.join(directory, 'data.noun')
  try:
    st = os.stat(path)
  except OSError:
    raise FileNotFoundError(f'WordNet 3.0 not found: no {path} ({_INSTALL_HINT})') from None
  return _load(os.path.abspath(path), st.st_size, st.st_mtime_ns)


@functools.lru_cache(maxsize=2)
def _load(path, size, mtime_ns):
  del size, mtime_ns  # Cache keys: a changed file is read again.
  with open(path, encoding='utf-8') as f:
    return parse(f, path)


def check_ids(ids, source):
  """`ids` as a tuple, each checked to look like 'n02119789' (errors name `source`)."""
  ids = tuple(str(s).strip() for s in ids)
  bad = [s for s in ids if not _ID.fullmatch(s)]
  if bad:
    raise ValueError(f"{source}: {bad[0]!r} is not a WordNet noun id like 'n02119789'")
  return ids


def read_ids(path):
  """Synset ids from a text file: the first field of every non-blank line (a plain
  list, or ImageNet's `words.txt`: 'n00004475<TAB>organism, being')."""
  try:
    with open(path, encoding='utf-8') as f:
      lines = [line.split()[0] for line in f if line.strip()]
  except (OSError, UnicodeDecodeError) as e:
    raise FileNotFoundError(f'cannot read synset list {path}: {e}') from None
  return check_ids(lines, path)


def imagenet1k_ids():
  """The 1,000 ImageNet-2012 synset ids, in label order, from the labels.txt TFDS ships
  (found without importing tensorflow_datasets, which takes seconds)."""
  spec = importlib.util.find_spec('tensorflow_datasets')
  roots = list(spec.submodule_search_locations or []) if spec else []
  for root in roots:
    path = os.path.join(root, 'datasets', 'imagenet2012', 'labels.txt')
    if os.path.isfile(path):
      return read_ids(path)
  raise FileNotFoundError('tensorflow_datasets/datasets/imagenet2012/labels.txt not found: '
                          'is tensorflow-datasets installed?')


def khop_sets(wn, base, hops, restrict=None):
  """{k: ids} for k = 1..hops: the synsets within k hops of any of `base` (ids), the
  base itself excluded, sorted by id; only ids in `restrict` when given (the walk still
  goes through every synset: hops are WordNet's, the restriction filters the result)."""
  dist = wn.distances([wn.row(s) for s in base], hops)
  keep = None if restrict is None else set(restrict)
  out = {}
  for k in range(1, hops + 1):
    ids = (wn.ids[row] for row, d in dist.items() if 0 < d <= k)
    out[k] = sorted(s for s in ids if keep is None or s in keep)
  return out


def hop_distances(wn, base, hops):
  """{id: hops} of the synsets within `hops` of `base`, the base excluded."""
  return {wn.ids[row]: d for row, d in wn.distances([wn.row(s) for s in base], hops).items()
          if d > 0}


def rings(wn, synset, candidates, ks):
  """{k: the correct set of hierarchical precision@k} around `synset`.

  As in DeViSE (Frome et al., 2013, appendix): the set starts as the true label and
  grows ring by ring (every synset one more hop away) until it holds at least k of the
  `candidates` (a set of ids); it is then those candidates, the whole last ring
  included (so it may hold more than k). If the graph runs out first, it is every
  reachable candidate.
  """
  ks = sorted(set(ks))
  start = wn.row(synset)
  seen, frontier = {start}, [start]
  found = {synset} & candidates
  out = {}
  while True:
    while ks and len(found) >= ks[0]:
      out[ks.pop(0)] = frozenset(found)
    if not ks or not frontier:
      break
    nxt = []
    for node in frontier:
      for other in wn.neighbours[node]:
        if other not in seen:
          seen.add(other)
          nxt.append(other)
    found |= {wn.ids[n] for n in nxt} & candidates
    frontier = nxt
  return {**out, **{k: frozenset(found) for k in ks}}
