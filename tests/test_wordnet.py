"""WordNet reader, k-hop label sets and hierarchical-precision rings, on a hand-written
data.noun in the real format and on Debian's real WordNet 3.0 files; the label-sets
command on the real files."""

import os
import subprocess
import sys

import numpy as np
import pytest

from devise_jax import vocabulary
from devise_jax import wordnet
from devise_jax import wordvec

REAL = os.path.join(wordnet.DEFAULT_DIR, 'data.noun')
needs_real = pytest.mark.skipif(not os.path.exists(REAL),
                                reason='Debian wordnet-base is not installed')

# A toy hierarchy in data.noun's format (a licence line, offsets, hex lemma counts,
# pointers with pos and source/target). Links are stated one way only for animal ->
# entity (the child's '@') and shoe -> sandal (the parent's '~'); the '%p' meronyms and
# '+' verb links are not hops.
#
#   entity -- clothing -- shoe -- sandal          shoe -%p- shirt (ignored)
#          |           |      `-- sneaker
#          |           `- shirt
#          `- animal -- dog -- Rex (instance)
TOY = """\
  1 This software and database is being provided to you, the LICENSEE, by  
00000100 03 n 01 entity 0 002 ~ 00000200 n 0000 + 00000001 v 0000 | that which exists  
00000200 06 n 02 clothing 0 wear 0 004 @ 00000100 n 0000 ~ 00000400 n 0000 \
~ 00000500 n 0000 %p 00000900 n 0000 | a covering for the body  
00000300 05 n 01 animal 0 002 @ 00000100 n 0000 ~ 00000800 n 0000 | a living organism  
00000400 06 n 01 shoe 0 005 @ 00000200 n 0000 ~ 00000600 n 0000 ~ 00000700 n 0000 \
%p 00000500 n 0000 + 00049770 v 0101 | footwear  
00000500 06 n 01 shirt 0 001 @ 00000200 n 0000 | a garment  
00000600 06 n 01 sandal 0 000 | a shoe of straps  
00000700 06 n 03 gym_shoe 0 sneaker 0 tennis_shoe 0 001 @ 00000400 n 0000 | a canvas shoe  
00000800 05 n 01 dog 0 002 @ 00000300 n 0000 ~i 00000900 n 0000 | a canine  
00000900 18 n 01 Rex 0 001 @i 00000800 n 0000 | a famous dog  
"""
ENTITY, CLOTHING, ANIMAL, SHOE, SHIRT, SANDAL, SNEAKER, DOG, REX = (
    f'n00000{i}00' for i in range(1, 10))


@pytest.fixture
def toy(tmp_path):
  (tmp_path / 'data.noun').write_text(TOY)
  return wordnet.load(str(tmp_path))


def test_reader_on_the_toy_file(toy):
  assert toy.ids == (ENTITY, CLOTHING, ANIMAL, SHOE, SHIRT, SANDAL, SNEAKER, DOG, REX)
  assert toy.lemmas[toy.row(SNEAKER)] == ('gym shoe', 'sneaker', 'tennis shoe')
  assert toy.label(CLOTHING) == 'clothing, wear'
  hypernyms = lambda s: {toy.ids[i] for i in toy.hypernyms[toy.row(s)]}
  assert hypernyms(ANIMAL) == {ENTITY}  # Stated by the child only.
  assert hypernyms(SANDAL) == {SHOE}  # Stated by the parent only.
  assert hypernyms(REX) == {DOG}  # An instance hypernym.
  assert hypernyms(SHOE) == {CLOTHING}  # Not shirt: '%p' is no hypernym.
  neighbours = lambda s: {toy.ids[i] for i in toy.neighbours[toy.row(s)]}
  assert neighbours(SHOE) == {CLOTHING, SANDAL, SNEAKER}
  assert neighbours(ENTITY) == {CLOTHING, ANIMAL}


def test_a_malformed_line_names_the_file_and_line(tmp_path):
  (tmp_path / 'data.noun').write_text(TOY + '00001000 03 n zz broken\n')
  with pytest.raises(ValueError, match=r'data.noun:11: not a line'):
    wordnet.load(str(tmp_path))
  with pytest.raises(FileNotFoundError, match='wordnet-base'):
    wordnet.load(str(tmp_path / 'nowhere'))


def test_khop_sets_walk_both_directions_and_exclude_the_base(toy):
  # Hand-computed hops from {sandal}: shoe 1; sneaker, clothing 2; shirt, entity 3.
  sets = wordnet.khop_sets(toy, [SANDAL], 4)
  assert sets[1] == [SHOE]
  assert sets[2] == sorted([SHOE, SNEAKER, CLOTHING])
  assert sets[3] == sorted([SHOE, SNEAKER, CLOTHING, SHIRT, ENTITY])
  assert sets[4] == sorted([SHOE, SNEAKER, CLOTHING, SHIRT, ENTITY, ANIMAL])
  # Two bases; one base within reach of the other stays out.
  assert wordnet.khop_sets(toy, [SHOE, DOG], 1)[1] == sorted(
      [CLOTHING, SANDAL, SNEAKER, ANIMAL, REX])
  assert wordnet.khop_sets(toy, [SHOE, SANDAL], 1)[1] == sorted([CLOTHING, SNEAKER])
  # A restriction filters the result; the walk still goes through everything.
  assert wordnet.khop_sets(toy, [SANDAL], 3, restrict={SHIRT, DOG})[3] == [SHIRT]


def test_rings_grow_until_they_hold_k_candidates(toy):
  candidates = {SANDAL, SNEAKER, SHIRT, DOG, REX}
  # Around sandal: itself (ring 0); shoe (1, no candidate); sneaker (2); shirt (3);
  # animal (4, none); dog (5); Rex (6).
  got = wordnet.rings(toy, SANDAL, candidates, (1, 2, 3, 4, 5, 9))
  assert got[1] == {SANDAL}
  assert got[2] == {SANDAL, SNEAKER}
  assert got[3] == got[4 - 1] == {SANDAL, SNEAKER, SHIRT}
  assert got[4] == {SANDAL, SNEAKER, SHIRT, DOG}
  assert got[5] == got[9] == candidates  # The graph runs out: every candidate.
  # A true label that is no candidate is not in its own set; a whole ring joins at once.
  assert wordnet.rings(toy, SHOE, candidates, (1,))[1] == {SANDAL, SNEAKER}


def test_open_vocabulary_vectors_average_lemmas_and_words(toy):
  rng = np.random.default_rng(0)
  words = ['gym', 'shoe', 'sneaker', 'tennis', 'dog', 'rex', 'entity', 'wear']
  kv = wordvec.Vectors(words, rng.normal(size=(len(words), 6)).astype(np.float32))
  unit = lambda v: v / np.linalg.norm(v)
  w = {word: unit(kv[word].astype(np.float64)) for word in words}
  vocab = vocabulary.wordnet_nouns(kv, toy)
  # No vector for 'clothing' but one for 'wear'; none at all for animal, shirt, sandal.
  assert vocab.ids == (ENTITY, CLOTHING, SHOE, SNEAKER, DOG, REX)
  assert vocab.labels == ('entity', 'wear', 'shoe', 'gym shoe', 'dog', 'Rex')
  # sneaker: the mean of 'gym shoe' (the mean of its words), 'sneaker', 'tennis shoe'.
  expected = unit(np.mean([unit((w['gym'] + w['shoe']) / 2), w['sneaker'],
                           unit((w['tennis'] + w['shoe']) / 2)], axis=0))
  np.testing.assert_allclose(vocab.vectors[vocab.index[SNEAKER]], expected, atol=1e-6)
  np.testing.assert_allclose(vocab.vectors[vocab.index[CLOTHING]], w['wear'], atol=1e-6)


def test_open_vocabulary_cache_round_trips(toy, tmp_path):
  kv = wordvec.Vectors(['shoe', 'dog'], np.eye(2, dtype=np.float32))
  built = vocabulary.wordnet_nouns(kv, toy, cache_dir=str(tmp_path / 'cache'))
  cached = vocabulary.wordnet_nouns(None, toy, cache_dir=str(tmp_path / 'cache'))
  assert cached.ids == built.ids == (SHOE, DOG)
  np.testing.assert_array_equal(cached.vectors, np.eye(2))


@needs_real
def test_real_wordnet_files():
  wn = wordnet.load()
  assert len(wn) == 82115  # Noun synsets of WordNet 3.0.
  assert wn.lemmas[wn.row('n02119789')] == ('kit fox', 'Vulpes macrotis')
  assert [wn.ids[i] for i in wn.hypernyms[wn.row('n02119789')]] == ['n02118333']
  assert wn.label('n02118333') == 'fox'
  assert wn.lemmas[wn.row('n00074790')][0] == 'blunder'  # 11 lemmas: count '0b'.
  assert len(wn.lemmas[wn.row('n00074790')]) == 11
  ids = wordnet.imagenet1k_ids()
  assert len(ids) == 1000 and ids[0] == 'n01440764' and all(s in wn for s in ids)


@needs_real
def test_label_sets_command_on_the_real_files(tmp_path):
  # The reference: a plain breadth-first walk over the hypernym/hyponym links.
  wn = wordnet.load()
  base = {wn.row(s) for s in wordnet.imagenet1k_ids()}
  dist, frontier = {b: 0 for b in base}, list(base)
  for hop in (1, 2):
    frontier = [o for n in frontier for o in wn.neighbours[n] if o not in dist]
    dist.update((o, hop) for o in frontier)
  counts = {k: sum(1 for d in dist.values() if 0 < d <= k) for k in (1, 2)}
  restrict = tmp_path / 'list.txt'
  some = sorted(wn.ids[r] for r, d in dist.items() if d == 2)[:5]
  restrict.write_text('\n'.join(f'{s}\tsome words' for s in some + ['n01440764']) + '\n')
  run = lambda *args: subprocess.run(
      [sys.executable, '-c', 'from devise_jax import cli; cli.run()', 'label-sets', *args],
      capture_output=True, text=True, check=True, timeout=300).stdout
  assert run('--hops', '2') == f'1-hop: {counts[1]}\n2-hop: {counts[2]}\n'
  out = tmp_path / 'sets.tsv'
  assert run('--hops', '2', '--restrict', str(restrict), '--out', str(out)) == (
      '1-hop: 0\n2-hop: 5\n')
  rows = [line.split('\t') for line in out.read_text().splitlines()]
  assert rows == [[s, '2', wn.label(s)] for s in some]


def test_class_texts_add_synonyms_and_hypernyms(toy):
  names = ('Sneaker', 'Sandal', 'Dog', 'Bag')
  synsets = {'Sneaker': SNEAKER, 'Sandal': SANDAL, 'Dog': DOG}  # Bag has none.
  overrides = {'Dog': 'hound'}
  assert vocabulary.class_texts(names, overrides, synsets, 'name', toy) == overrides
  assert vocabulary.class_texts(names, overrides, synsets, 'synset', toy) == {
      'Sneaker': 'Sneaker, gym shoe, sneaker, tennis shoe', 'Sandal': 'Sandal, sandal',
      'Dog': 'hound'}
  assert vocabulary.class_texts(names, {}, synsets, 'synset_hypernyms', toy) == {
      'Sneaker': 'Sneaker, gym shoe, sneaker, tennis shoe, shoe',
      'Sandal': 'Sandal, sandal, shoe', 'Dog': 'Dog, dog, animal'}
  with pytest.raises(ValueError, match='config.word_vectors.class_text'):
    vocabulary.class_texts(names, {}, synsets, 'gloss', toy)
