"""ImageNet-2012 (TFDS `imagenet2012`): readable class names from WordNet ids.

TFDS names the 1,000 classes by their WordNet 3.0 noun ids (`n01440764`, from
its `imagenet2012/labels.txt`) and ships no readable names. A word vector
needs words, so a class's readable name is its synset's lemmas in WordNet 3.0
(`devise_jax.wordnet`, over the database of Debian's `wordnet-base`):
`n01440764` -> 'tench, Tinca tinca', a comma-separated synonym list, which
`wordvec` turns into the mean of its covered synonyms (the same form as
ILSVRC's own `LOC_synset_mapping.txt`).

Two ImageNet classes share all their lemmas ('crane' the bird, 'crane' the
machine). A class whose lemmas repeat another's gets its direct hypernym's
first lemma appended as one more synonym ('crane, wading bird' and 'crane,
lifting device'): names stay unique and readable, and the two word vectors
differ by their hypernyms instead of being equal.

The same lookup names any dataset whose label names start with a WordNet id
(Stanford Dogs: 'n02085620-chihuahua'); other names are returned unchanged.

The data itself: the ILSVRC-2012 tar files are a manual download (register at
image-net.org); put `ILSVRC2012_img_train.tar` and `ILSVRC2012_img_val.tar` in
`config.data.manual_dir` (or TFDS's default `<data_dir>/downloads/manual`) and
the first run prepares the TFDS dataset (hours, ~150 GB).
"""

import collections
import re
from typing import Sequence

from devise_jax import wordnet

_WNID = re.compile(r'^(n\d{8})(?:$|-)')


def wnid(name: str) -> str | None:
  """The WordNet id at the start of a label name ('n02085620-chihuahua'), or None."""
  match = _WNID.match(name)
  return match.group(1) if match else None


def readable_names(names: Sequence[str]) -> list[str]:
  """Label names with every WordNet-id name replaced by its synset's lemmas."""
  ids = [wnid(n) for n in names]
  if not any(ids):
    return list(names)
  wn = wordnet.load()
  out = [wn.label(i) if i else n for n, i in zip(names, ids)]
  counts = collections.Counter(out)
  for k, i in enumerate(ids):
    hypernyms = wn.hypernyms[wn.row(i)] if i else ()
    if counts[out[k]] > 1 and hypernyms:
      out[k] += ', ' + wn.lemmas[hypernyms[0]][0]
  return out


def synsets(names: Sequence[str]) -> dict[str, str]:
  """{readable name: WordNet id} of the WordNet-id names among `names`: what
  `config.data.synsets` holds for the hierarchy evaluators."""
  return {readable: i for readable, i in zip(readable_names(names), map(wnid, names))
          if i}


# The 15 ImageNet-1k classes whose names GloVe 6B (the embedded default vectors)
# lacks, each mapped to the lemmas of its nearest hypernym up the WordNet tree
# that GloVe covers: a rule computed with devise_jax.wordnet, not a choice per
# class. Recipes using GloVe 6B pass them as `config.word_vectors.overrides`.
GLOVE_6B_FALLBACKS = {
    'n01530575': 'finch',  # brambling, Fringilla montifringilla
    'n02033041': 'snipe',  # dowitcher
    'n02088632': 'hound, hound dog',  # bluetick
    'n02104029': 'watchdog, guard dog',  # kuvasz
    'n02104365': 'watchdog, guard dog',  # schipperke
    'n02105056': 'Belgian sheepdog, Belgian shepherd',  # groenendael
    'n02105505': 'shepherd dog, sheepdog, sheep dog',  # komondor
    'n02108000': 'working dog',  # EntleBucher
    'n02112350': 'spitz',  # keeshond
    'n02112706': 'griffon, Brussels griffon, Belgian griffon',  # Brabancon griffon
    'n02877765': 'cap',  # bottlecap
    'n03590841': 'lantern',  # jack-o'-lantern
    'n03866082': 'skirt',  # overskirt
    'n03929855': 'helmet',  # pickelhaube
    'n03992509': 'wheel',  # potter's wheel
}


def glove_6b_overrides(wnid_names: Sequence[str]) -> dict[str, str]:
  """{readable name: fallback text} of the GLOVE_6B_FALLBACKS among `wnid_names`."""
  readable = dict(zip(map(wnid, wnid_names), readable_names(wnid_names)))
  return {readable[i]: text for i, text in GLOVE_6B_FALLBACKS.items() if i in readable}
