"""The demo's REST API (demo/api.py) and the one-argument Gradio calls.

One server for the session (tests/conftest.py: a copy of the tiny reference run,
evaluated, with its gallery). Every answer is compared with the library's (a Run and a
Searcher loaded apart from the server's) to 1e-4; bad inputs answer a 4xx whose body
is exactly {"error": "<one line>"}.
"""

import io

import httpx
import numpy as np
import PIL.Image
import pytest

from devise_jax.demo import app
from devise_jax.demo import images

from demo_support import Client, handle_file, library_labels, rows, start


@pytest.fixture(scope='module')
def http(server):
  with httpx.Client(base_url=server.url.rstrip('/'), timeout=60) as client:
    yield client


def upload(path):
  with open(path, 'rb') as f:
    return {'image': (path.rsplit('/', 1)[-1], f.read(), 'image/png')}


def ok(response):
  assert response.status_code == 200, response.text
  return response.json()


def check_images(got, want):
  assert [(g['id'], g['label']) for g in got] == [(w['id'], w['label']) for w in want]
  for g, w in zip(got, want):
    assert g['score'] == pytest.approx(w['score'], abs=1e-4)


def upload_vector(library, path, space):
  """The library's vector of an uploaded file, decoded as a visitor's upload is."""
  features = library.run.encode_images([images.decode(path)])
  return (library.run.devise if space == 'devise' else library.run.siamese)(features)[0]


# Answers equal the library's.


def test_labels(http, library, pictures):
  path = pictures['gallery5.png']
  for candidates, k in (('classes', 10), ('vocab', 5), ('tokens', 5),
                        ('boot, shirt,sandal', 3)):
    got = ok(http.post('/api/labels', params=dict(k=k, candidates=candidates),
                       files=upload(path)))['labels']
    listed = candidates if candidates in ('classes', 'vocab', 'tokens') else [
        c.strip() for c in candidates.split(',')]
    want = library_labels(library, images.decode(path), listed, k)
    assert [(g['label'], g['unseen']) for g in got] == [
        (w['label'], w['unseen']) for w in want]
    for g, w in zip(got, want):
      assert g['score'] == pytest.approx(w['score'], abs=1e-4)
  # The default: the dataset's top 5 classes.
  got = ok(http.post('/api/labels', files=upload(path)))['labels']
  assert [g['label'] for g in got] == [w['label'] for w in library_labels(
      library, images.decode(path))]


def test_images_by_words(http, server, library):
  searcher = library.searcher
  for params, words, weights, k in (('words=boot', ['boot'], None, 4),
                                    ('words=boot,sandal&k=6', ['boot', 'sandal'], None, 6),
                                    ('words=boot,sandal&weights=1,-0.5&k=3',
                                     ['boot', 'sandal'], [1.0, -0.5], 3)):
    got = ok(http.get(f'/api/images?{params}'))['images']
    check_images(got, searcher.words_to_images(words, weights, k))
  # Each result's URL is its picture, as the page shows it.
  picture = http.get(got[0]['url'])
  assert picture.headers['content-type'] == 'image/png'
  shown = np.asarray(PIL.Image.open(io.BytesIO(picture.content)))
  np.testing.assert_array_equal(shown, server.backend.picture(got[0]['id']))


def test_similar(http, library, pictures):
  path = pictures['exif.jpg']
  for space, k in (('siamese', 4), ('devise', 7)):
    got = ok(http.post('/api/similar', params=dict(space=space, k=k),
                       files=upload(path)))['images']
    want = library.searcher.similar(upload_vector(library, path, space), space, k)
    check_images(got, want)


def test_algebra(http, library):
  searcher = library.searcher
  got = ok(http.post('/api/algebra', json=dict(ids=[12, 40], signs=['+', '-'])))
  siamese = searcher.gallery['siamese']
  check_images(got['images'], searcher.algebra(
      [siamese[12], siamese[40]], [1.0, -1.0], space='siamese', k=4, exclude_ids=[12, 40]))
  got = ok(http.post('/api/algebra', json=dict(
      ids=[12], weights=[2.0], words=['sandal', 'boot'], word_weights=[-0.5, 1],
      space='devise', k=6)))
  check_images(got['images'], searcher.algebra(
      [searcher.gallery['devise'][12]], [2.0], ['sandal', 'boot'], [-0.5, 1.0],
      space='devise', k=6, exclude_ids=[12]))
  assert 12 not in [r['id'] for r in got['images']]


# Bad inputs: a 4xx and one line.


def _many(n):
  return ','.join(f'w{i}' for i in range(n))


BAD = [
    ('post', '/api/labels', dict(file='text.png'), 400, 'is not an image file'),
    ('post', '/api/labels', dict(file='truncated.png'), 400, 'truncated or corrupt'),
    ('post', '/api/labels', dict(file='bomb.png'), 400, 'megapixels'),
    ('post', '/api/labels', dict(file='empty.png'), 400, 'empty'),
    ('post', '/api/labels', dict(), 400, 'image: Field required'),
    ('post', '/api/labels', dict(file='gallery5.png', params={'k': 0}), 400,
     'k must be a whole number from 1 to 50, got 0'),
    ('post', '/api/labels', dict(file='gallery5.png', params={'k': 'many'}), 400, 'k: '),
    ('post', '/api/labels', dict(file='gallery5.png', params={'candidates': 'qwxzzy'}),
     400, 'qwxzzy'),
    ('post', '/api/labels', dict(file='gallery5.png', params={'candidates': _many(1001)}),
     400, 'the limit is 1,000'),
    ('post', '/api/labels', dict(file='gallery5.png', params={'candidates': ' , '}), 400,
     'the label list is empty'),
    ('get', '/api/images', dict(params={'words': 'qwxzzy'}), 400,
     "no word vector for 'qwxzzy'"),
    ('get', '/api/images', dict(params={'words': ''}), 400, 'words is empty'),
    ('get', '/api/images', dict(), 400, 'words: Field required'),
    ('get', '/api/images', dict(params={'words': _many(11)}), 400, 'the limit is 10'),
    ('get', '/api/images', dict(params={'words': 'boot', 'weights': '1,2'}), 400,
     '1 word(s) but 2 weight(s)'),
    ('get', '/api/images', dict(params={'words': 'boot', 'weights': 'inf'}), 400,
     'must be a finite number'),
    ('post', '/api/similar', dict(file='gallery5.png', params={'space': 'pixels'}), 400,
     'space must be one of devise, siamese'),
    ('post', '/api/algebra', dict(json={'ids': []}), 400, 'give 1 to 4 images'),
    ('post', '/api/algebra', dict(json={'ids': [1, 2, 3, 4, 5]}), 400, 'give 1 to 4 images'),
    ('post', '/api/algebra', dict(json={'ids': [12, 99999]}), 400,
     '99999 is not in the gallery'),
    ('post', '/api/algebra', dict(json={'ids': [12]}), 400, 'add a second image'),
    ('post', '/api/algebra', dict(json={'ids': [12, 40], 'words': ['boot']}), 400,
     'words can only be added in the devise space'),
    ('post', '/api/algebra', dict(json={'ids': [12, 40], 'signs': ['*', '+']}), 400,
     "sign 1 must be '+' or '-'"),
    ('post', '/api/algebra', dict(json={'ids': [12, 40], 'weights': [1]}), 400,
     '2 image(s) but 1 weight(s)'),
    ('post', '/api/algebra', dict(json={'ids': ['x']}), 400, 'ids.0: '),
    ('post', '/api/algebra', dict(content=b'{not json', headers={
        'content-type': 'application/json'}), 400, 'JSON'),
    ('get', '/api/images/99999.png', dict(), 404, 'no gallery image 99999'),
]


@pytest.mark.parametrize('method, route, kwargs, status, message', BAD,
                         ids=[f'{b[1]}-{b[4][:20]}' for b in BAD])
def test_bad_inputs(http, pictures, method, route, kwargs, status, message):
  kwargs = dict(kwargs)
  if 'file' in kwargs:
    kwargs['files'] = upload(pictures[kwargs.pop('file')])
  response = getattr(http, method)(route, **kwargs)
  assert response.status_code == status, response.text
  body = response.json()
  assert list(body) == ['error'] and '\n' not in body['error']
  assert message in body['error'], body['error']


def test_uploads_over_the_limits(http):
  for size in (images.MAX_BYTES + 10, 17 * 1024 * 1024):  # Refused by the route, and
    response = http.post('/api/labels', files={  # by the server before any parsing.
        'image': ('big.png', b'\x89PNG' + b'0' * size, 'image/png')})
    assert response.status_code == 413
    assert list(response.json()) == ['error'] and 'large' in response.json()['error']


def test_docs_and_schema(http, demo_workdir):
  schema = ok(http.get('/openapi.json'))
  assert set(schema['paths']) == {'/api/labels', '/api/images', '/api/similar',
                                  '/api/algebra', '/api/images/{gallery_id}.png'}
  assert set(schema['paths']['/api/labels']) == {'post'}
  assert {p['name'] for p in schema['paths']['/api/images']['get']['parameters']} == {
      'words', 'weights', 'k'}
  page = http.get('/docs')
  assert page.status_code == 200 and 'swagger-ui-bundle.js' in page.text
  assert 'cdn.' not in page.text  # Swagger UI is served locally.
  script = http.get('/docs/swagger-ui-bundle.js')
  assert script.status_code == 200 and len(script.content) > 100_000
  # The plots reach the page as pictures; the workdir's files stay unserved.
  for route in (f'/gradio_api/file={demo_workdir}/plots/confusion_gzsl.png',
                f'/api/images/../../{demo_workdir}/config.json'):
    assert http.get(route).status_code in (403, 404)


def test_api_needs_the_demo_password(server):
  demo = app.build_app(server.backend.workdir, backend=server.backend)
  url = start(demo, auth='alice:wonderland').rstrip('/')
  try:
    for auth in (None, ('alice', 'wrong')):
      response = httpx.get(f'{url}/api/images', params={'words': 'boot'}, auth=auth)
      assert response.status_code == 401 and 'log in' in response.json()['error']
    assert httpx.get(f'{url}/openapi.json').status_code == 401
    response = httpx.get(f'{url}/api/images', params={'words': 'boot'},
                         auth=('alice', 'wonderland'))
    assert response.status_code == 200 and len(response.json()['images']) == 4
  finally:
    demo.close()


# Gradio's endpoints answer with their main input alone.


def test_one_argument_gradio_calls(server, library, pictures):
  client = Client(server.url, verbose=False, download_files=False)
  searcher = library.searcher
  path = pictures['gallery5.png']
  table, _ = client.predict(handle_file(path), api_name='/zero_shot')
  want = library_labels(library, images.decode(path))  # Classes, k=5: the page's values.
  assert [(r['label'], r['unseen']) for r in rows(table)] == [
      (w['label'], w['unseen']) for w in want]
  _, table, _ = client.predict('boot', api_name='/search_words')
  assert [r['id'] for r in rows(table)] == [
      w['id'] for w in searcher.words_to_images(['boot'], [1.0], 8)]
  _, table, _ = client.predict(handle_file(path), api_name='/similar')
  assert [r['id'] for r in rows(table)] == [w['id'] for w in searcher.similar(
      upload_vector(library, path, 'siamese'), 'siamese', 8)]
  _, _, table, _ = client.predict(gallery_id_1=12, gallery_id_2=40, api_name='/algebra')
  siamese = searcher.gallery['siamese']
  assert [r['id'] for r in rows(table)] == [w['id'] for w in searcher.algebra(
      [siamese[12], siamese[40]], [1.0, -1.0], space='siamese', k=8,
      exclude_ids=[12, 40])]
