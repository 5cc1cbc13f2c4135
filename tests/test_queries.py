"""The query layer (devise_jax/queries.py): one table of bad requests, and the same one-line
message from each front-end.

Every case of `CASES` is one bad request said three ways: `devise-jax search` flags
(the CLI's parser and main, in this process), a call of a Gradio handler function
(demo/handlers.py, without the page's own component checks) and a REST request
(demo/api.py through FastAPI's TestClient). All three must refuse it with exactly the
same line. Then: the layer's answers are the searcher's (a label list deduplicated
case-insensitively, one unseen flag per label, the same from every front-end; scores
clipped to the cosines' range), and `devise-jax search` is quiet and leaves TensorFlow
unimported.
"""

import io
import json
import os
import shutil
import subprocess
import sys

import fastapi
import gradio as gr
from fastapi.testclient import TestClient
import numpy as np
import PIL.Image
import pytest

from devise_jax import cli
from devise_jax import gallery
from devise_jax import images as images_lib
from devise_jax import queries
from devise_jax import run as run_lib
from devise_jax import search
from devise_jax.demo import api
from devise_jax.demo import handlers


@pytest.fixture(scope='module')
def workdir(reference_run, tmp_path_factory):
  _, reference, _ = reference_run
  path = tmp_path_factory.mktemp('queries') / 'run'
  shutil.copytree(reference, path)
  gallery.embed(run_lib.Run.load(str(path)))
  return str(path)


@pytest.fixture(scope='module')
def backend(workdir):
  return handlers.Backend(workdir)


@pytest.fixture(scope='module')
def files(tmp_path_factory, backend):
  root = tmp_path_factory.mktemp('query_files')
  (root / 'text.png').write_text('this is not an image\n')
  buffer = io.BytesIO()
  PIL.Image.fromarray(backend.images.get(5)[..., 0], 'L').save(buffer, 'PNG')
  (root / 'picture.png').write_bytes(buffer.getvalue())
  return {name: str(root / name) for name in ('text.png', 'picture.png')}


def _many(n):
  return ','.join(f'w{i}' for i in range(n))


# (name, CLI flags after `search --workdir W`, Gradio handler and its arguments,
#  REST method, route and arguments ('file' names an upload), the message).
CASES = [
    ('unknown word', ['--words', 'qwxzzy'],
     ('search_words', dict(word_1='qwxzzy')),
     ('get', '/api/images', dict(params={'words': 'qwxzzy'})),
     "no word vector for 'qwxzzy': try another word"),
    ('k of 0', ['--words', 'boot', '--k', '0'],
     ('search_words', dict(word_1='boot', k=0)),
     ('get', '/api/images', dict(params={'words': 'boot', 'k': 0})),
     'k must be a whole number from 1 to 50, got 0'),
    ('k over the limit', ['--gallery_ids', '7,9', '--k', '51'],
     ('algebra', dict(gallery_id_1=7, gallery_id_2=9, k=51)),
     ('post', '/api/algebra', dict(json={'ids': [7, 9], 'k': 51})),
     'k must be a whole number from 1 to 50, got 51'),
    ('weights that cancel', ['--words', 'boot,boot', '--word_weights', '1,-1'],
     ('search_words', dict(word_1='boot', weight_1=1, word_2='boot', weight_2=-1)),
     ('get', '/api/images', dict(params={'words': 'boot,boot', 'weights': '1,-1'})),
     'the weights cancel to a zero vector; change a weight'),
    ('images that cancel', ['--gallery_ids', '7,7', '--image_weights', '1,-1'],
     ('algebra', dict(gallery_id_1=7, gallery_id_2=7, sign_2='-')),
     ('post', '/api/algebra', dict(json={'ids': [7, 7], 'signs': ['+', '-']})),
     'the weights cancel to a zero vector; change a weight'),
    ('word weights of another count',
     ['--gallery_ids', '7,9', '--words', 'boot', '--word_weights', '1,2', '--space', 'devise'],
     ('algebra', dict(gallery_id_1=7, gallery_id_2=9, words='boot', word_weights='1,2',
                      space='devise')),
     ('post', '/api/algebra', dict(json={'ids': [7, 9], 'words': ['boot'],
                                         'word_weights': [1, 2], 'space': 'devise'})),
     '1 word(s) but 2 word weight(s)'),
    ('gallery id out of range', ['--gallery_ids', '9999,1'],
     ('algebra', dict(gallery_id_1=9999, gallery_id_2=1)),
     ('post', '/api/algebra', dict(json={'ids': [9999, 1]})),
     'image 1 gallery id 9999 is not in the gallery (ids 0 to 255)'),
    ('algebra of one image', ['--gallery_ids', '7', '--image_weights', '1'],
     ('algebra', dict(gallery_id_1=7)),
     ('post', '/api/algebra', dict(json={'ids': [7]})),
     'add a second image, or words, to do algebra'),
    ('words in the siamese space', ['--gallery_ids', '7,9', '--words', 'boot'],
     ('algebra', dict(gallery_id_1=7, gallery_id_2=9, words='boot')),
     ('post', '/api/algebra', dict(json={'ids': [7, 9], 'words': ['boot']})),
     "words can only be added in the devise space: choose space 'devise'"),
    ('unknown space', ['--gallery_ids', '7,9', '--space', 'pixels'],
     ('algebra', dict(gallery_id_1=7, gallery_id_2=9, space='pixels')),
     ('post', '/api/algebra', dict(json={'ids': [7, 9], 'space': 'pixels'})),
     "space must be one of devise, siamese, got 'pixels'"),
    ('too many words', ['--gallery_ids', '7,9', '--words', _many(11), '--space', 'devise'],
     ('algebra', dict(gallery_id_1=7, gallery_id_2=9, words=_many(11), space='devise')),
     ('post', '/api/algebra', dict(json={'ids': [7, 9], 'words': _many(11).split(','),
                                         'space': 'devise'})),
     'words has 11 entries; the limit is 10'),
    ('no listed label has a vector', ['--gallery_ids', '1', '--labels', 'qwxzzy,zzqqxw'],
     ('zero_shot', dict(gallery_id=1, candidates='list', labels='qwxzzy, zzqqxw')),
     ('post', '/api/labels', dict(file='picture.png', params={'candidates': 'qwxzzy,zzqqxw'})),
     "none of the labels has a word vector: 'qwxzzy', 'zzqqxw'"),
    ('too many listed labels', ['--gallery_ids', '1', '--labels', _many(1001)],
     ('zero_shot', dict(gallery_id=1, candidates='list', labels=_many(1001))),
     ('post', '/api/labels', dict(file='picture.png', params={'candidates': _many(1001)})),
     'the label list has 1,001 entries; the limit is 1,000'),
    ('not an image', ['--images', 'text.png', '--labels', 'classes'],
     ('zero_shot', dict(image='text.png')),
     ('post', '/api/labels', dict(file='text.png')),
     'the image is not an image file that can be read (PNG, JPEG, GIF, BMP, WebP, TIFF, ...)'),
]


def _cli(argv, workdir, files, capsys):
  """(exit code, captured stdout and stderr) of `devise-jax search --workdir W ARGV`,
  in this process."""
  from absl import flags  # pylint: disable=import-outside-toplevel
  argv = [files.get(a, a) for a in argv]
  code = 0
  flags.FLAGS.unparse_flags()
  try:
    cli._main_with_clean_errors(cli._parse_flags(
        ['devise-jax', 'search', '--workdir', workdir] + argv))
  except SystemExit as e:
    code = e.code
  finally:
    flags.FLAGS.unparse_flags()
  return code, capsys.readouterr()


def _gradio(backend, handler, kwargs, files):
  kwargs = {k: files.get(v, v) if k.startswith('image') else v for k, v in kwargs.items()}
  if handler in ('zero_shot', 'similar'):
    kwargs.setdefault('image', None)
  with pytest.raises(gr.Error) as info:
    handlers.make_handlers(backend)[handler](**kwargs)
  return info.value.message


def _rest(client, method, route, kwargs, files):
  kwargs = dict(kwargs)
  if 'file' in kwargs:
    with open(files[kwargs.pop('file')], 'rb') as f:
      kwargs['files'] = {'image': ('upload.png', f.read(), 'image/png')}
  response = getattr(client, method)(route, **kwargs)
  assert response.status_code == 400, response.text
  assert list(response.json()) == ['error']
  return response.json()['error']


@pytest.fixture(scope='module')
def rest(backend):
  return TestClient(fastapi.FastAPI(routes=api.routes(backend)))


@pytest.mark.parametrize('name, argv, gradio, http, message', CASES,
                         ids=[c[0] for c in CASES])
def test_every_front_end_says_the_same_line(name, argv, gradio, http, message, workdir,
                                            backend, rest, files, capsys, monkeypatch):
  del name
  # The CLI asks the demo's loaded run and searcher (loading is not what is tested).
  monkeypatch.setattr(run_lib.Run, 'load', classmethod(lambda cls, w: backend.run))
  monkeypatch.setattr(gallery, 'Searcher', lambda run, name=None: backend.searcher)
  code, captured = _cli(argv, workdir, files, capsys)
  assert (code, captured.err) == (1, f'devise-jax: error: {message}\n')
  assert _gradio(backend, *gradio, files) == message
  assert _rest(rest, *http, files) == message


def test_a_label_list_is_one_label_per_spelling_with_one_unseen_flag(
    workdir, backend, rest, files, capsys, monkeypatch):
  """'sandal,Sandal,Bag,bag,SHIRT': three labels, each typed spelling's first kept,
  unseen when it names one of the run's unseen classes (classes.json) whatever its
  case, scored by the cosine of the image's vector and the word's; the same rows
  from the library, the CLI, a Gradio handler and the REST API."""
  monkeypatch.setattr(run_lib.Run, 'load', classmethod(lambda cls, w: backend.run))
  monkeypatch.setattr(gallery, 'Searcher', lambda run, name=None: backend.searcher)
  searcher, typed = backend.searcher, 'sandal,Sandal,Bag,bag,SHIRT'
  with open(os.path.join(workdir, 'classes.json')) as f:
    classes = json.load(f)
  unseen = {classes['names'][i].lower() for i in classes['unseen_ids']}
  assert unseen == {'sandal', 'shirt', 'ankle boot'}
  vector = searcher.embed_images([images_lib.decode(files['picture.png'])])[0][0]
  cosine = {w: float(searcher.word_vector(w) @ vector) for w in ('sandal', 'Bag', 'SHIRT')}
  want = sorted(((w, w.lower() in unseen) for w in cosine), key=lambda x: -cosine[x[0]])
  answer = queries.answer(searcher, queries.Labels(queries.QueryImage(
      file=files['picture.png']), 'list', typed, 5))
  code, captured = _cli(['--images', 'picture.png', '--labels', typed], workdir, files,
                        capsys)
  assert code == 0
  table, _ = handlers.make_handlers(backend)['zero_shot'](
      image=files['picture.png'], candidates='list', labels=typed, k=5)
  with open(files['picture.png'], 'rb') as f:
    response = rest.post('/api/labels', params={'candidates': typed, 'k': 5},
                         files={'image': ('upload.png', f.read(), 'image/png')})
  got = {'library': answer.rows, 'cli': json.loads(captured.out),
         'gradio': table.to_dict('records'), 'rest': response.json()['labels']}
  for name, rows in got.items():
    assert [(r['label'], bool(r['unseen'])) for r in rows] == want, name
    for r in rows:
      assert r['score'] == pytest.approx(cosine[r['label']], abs=1e-4), name


def test_similarity_scores_stay_in_the_cosines_range(backend, monkeypatch):
  """An image and its duplicate: float32 products of unit vectors overshoot 1 (a hand
  case where they do), and the query layer's scores are the exact bounds."""
  v = np.array([0.875998318195343, -0.4264361560344696, 0.22534246742725372], np.float32)
  keys = np.stack([v, v, -v])
  raw, _ = search.topk(v, keys, 3)
  assert raw[0] > 1.0 and raw[-1] < -1.0  # What the search itself returns.
  searcher = backend.searcher
  monkeypatch.setattr(searcher, 'gallery', dict(devise=keys, siamese=keys))
  monkeypatch.setattr(searcher, 'meta', dict(refs=['a', 'a copy', 'b'],
                                             label_names=['x', 'x', 'y']))
  for space in ('devise', 'siamese'):
    answer = queries.answer(searcher, queries.Similar(queries.QueryImage(0), space, 2))
    assert [(r['id'], r['score']) for r in answer.rows] == [(1, 1.0), (2, -1.0)]
  answer = queries.answer(searcher, queries.Algebra(
      [queries.QueryImage(0), queries.QueryImage(2)], signs=['+', '-'], k=1))
  assert [(r['id'], r['score']) for r in answer.rows] == [(1, 1.0)]


def test_answers_are_the_searchers(backend):
  searcher = backend.searcher
  g = searcher.gallery
  answer = queries.answer(searcher, queries.Similar(queries.QueryImage('7'), 'devise', '3'))
  assert answer.k == 3 and answer.gallery_ids == [7]
  assert answer.rows == searcher.similar(g['devise'][7], 'devise', 3, exclude_ids=[7])
  answer = queries.answer(searcher, queries.Algebra(
      [queries.QueryImage(3), queries.QueryImage(), queries.QueryImage(40)],
      weights=[1, 1, '0.5'], signs=['+', '+', '-'], words='boot', word_weights='2',
      space='devise', k=4))
  assert answer.weights == [1.0, -0.5] and answer.words == ['boot']
  assert answer.rows == searcher.algebra([g['devise'][3], g['devise'][40]], [1.0, -0.5],
                                         ['boot'], [2.0], 'devise', 4, exclude_ids=[3, 40])
  answer = queries.answer(searcher, queries.Labels(
      queries.QueryImage(5), 'list', 'boot, qwxzzy,shirt, boot', 2))
  assert answer.candidates == ['boot', 'shirt'] and answer.skipped == ['qwxzzy']
  assert answer.rows == searcher.labels(g['devise'][5], ['boot', 'shirt'], 2)


def test_a_workdir_without_gallery_is_a_404(backend, monkeypatch):
  monkeypatch.setattr(backend.searcher, 'gallery', None)
  with pytest.raises(queries.QueryError, match='has no gallery') as info:
    queries.answer(backend.searcher, queries.ImagesByWords('boot'))
  assert info.value.status == 404
  assert queries.SPACES == gallery.SPACES


def test_search_is_quiet_and_leaves_tensorflow_out(workdir, tmp_path):
  """`devise-jax search` prints its JSON and nothing on stderr, without importing
  TensorFlow or TFDS (even with TensorFlow's log level left unset); a search of words
  reads no checkpoint (Orbax stays out) and the cached word vectors without gensim."""
  script = ('import json, sys\nfrom devise_jax import cli\ntry:\n  cli.run()\n'
            'except SystemExit as e:\n  code = e.code\n'
            'heavy = sorted(m for m in sys.modules if m.split(".")[0] in '
            '("tensorflow", "tensorflow_datasets", "gensim", "orbax"))\n'
            f'open({str(tmp_path / "modules.json")!r}, "w").write(json.dumps(heavy))\n')
  env = {k: v for k, v in os.environ.items() if k != 'TF_CPP_MIN_LOG_LEVEL'}
  proc = subprocess.run([sys.executable, '-c', script, 'search', '--workdir', workdir,
                         '--words', 'boot', '--k', '3'], capture_output=True, text=True,
                        env=env, timeout=300, cwd=tmp_path)
  assert proc.returncode == 0 and proc.stderr == ''
  assert len(json.loads(proc.stdout)) == 3
  assert json.loads((tmp_path / 'modules.json').read_text()) == []


def test_limits_are_the_layers():
  assert queries.check_k('7') == 7
  for bad in (0, 51, 2.5, 'many', float('nan'), True):
    with pytest.raises(queries.QueryError, match='k must be a whole number'):
      queries.check_k(bad)
  assert queries.check_weight('', 'weight 1') == 1.0
  with pytest.raises(queries.QueryError, match='weight 1 must be at most 1e\\+06'):
    queries.check_weight(2e6, 'weight 1')
  assert queries.items('a, b,\n c,,', 'words', 3) == ['a', 'b', 'c']
  with pytest.raises(queries.QueryError, match='longer than 200 characters'):
    queries.items(['x' * 201], 'words', 3)
  with pytest.raises(queries.QueryError, match='give 1 to 4 images'):
    queries.check_algebra(5, 0, 'siamese')
  assert np.isfinite(queries.require_finite(np.ones(3))).all()


def test_a_request_without_its_image(backend):
  with pytest.raises(queries.QueryError,
                     match='^no image: upload an image or pick one from the gallery$'):
    queries.answer(backend.searcher, queries.Labels(queries.QueryImage()))
  # In algebra an empty slot is left out (the page has four, a query may fill two).
  answer = queries.answer(backend.searcher, queries.Algebra(
      [queries.QueryImage(), queries.QueryImage(1)], words='boot', space='devise', k=2))
  assert answer.gallery_ids == [1] and len(answer.rows) == 2
