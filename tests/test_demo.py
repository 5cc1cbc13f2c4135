"""The Gradio demo over HTTP: endpoints against the library, bad inputs, file serving.

One server for the session (tests/conftest.py: a copy of the tiny reference run with
its gallery), called through `gradio_client` as a user of the API would; every answer
is compared with the library's (`library`: a Run and a Searcher of the same workdir,
loaded apart from the demo's).
"""

import io

import httpx
import numpy as np
import PIL.Image
import pytest

from devise_jax.demo import images

gradio_client = pytest.importorskip('gradio_client')
# pylint: disable=wrong-import-position
from gradio_client import handle_file

from demo_support import check_images, library_labels, png_header_only, rows, zero_shot
# pylint: enable=wrong-import-position


# The endpoints answer what the library answers.


def check_labels(result_rows, library_rows):
  assert [(r['label'], r['unseen']) for r in result_rows] == [
      (w['label'], w['unseen']) for w in library_rows]
  for got, want in zip(result_rows, library_rows):
    assert got['score'] == pytest.approx(want['score'], abs=1e-4)


def test_zero_shot_matches_the_library(library, client, pictures):
  searcher = library.searcher
  # A gallery image by id: the gallery's stored vector.
  got, status = zero_shot(client, gallery_id=12, k=10)
  want = searcher.labels(searcher.gallery['devise'][12], 'classes', 10)
  assert [r['label'] for r in got] == [w['label'] for w in want]
  assert [r['unseen'] for r in got] == [w['unseen'] for w in want]
  # All 10 classes are shown: the unseen ones are exactly the run's unseen classes.
  assert len(got) == len(searcher.names) and len(library.run.unseen)
  assert {r['label'] for r in got if r['unseen']} == {searcher.names[i]
                                                      for i in library.run.unseen}
  for r, w in zip(got, want):
    assert r['score'] == pytest.approx(w['score'], abs=1e-4)
  assert 'gallery image #12' in status
  # An uploaded image: the library's own embedding of the same pixels.
  got, status = zero_shot(client, handle_file(pictures['gallery5.png']), k=3)
  check_labels(got, library_labels(library, images.decode(pictures['gallery5.png']),
                                   k=3))
  assert 'the uploaded image' in status
  # The open vocabulary (WordNet nouns), the raw tokens, and a typed list (an unknown
  # word is skipped, and said so).
  got, status = zero_shot(client, gallery_id=12, candidates='vocab', k=5)
  check_labels(got, searcher.labels(searcher.gallery['devise'][12], 'vocab', 5))
  assert f"the {len(searcher.vocabulary('vocab')[0]):,} WordNet nouns" in status
  got, status = zero_shot(client, gallery_id=12, candidates='tokens', k=5)
  check_labels(got, searcher.labels(searcher.gallery['devise'][12], 'tokens', 5))
  assert f'all {len(searcher.kv.index_to_key):,} tokens' in status
  got, status = zero_shot(client, gallery_id=12, candidates='list',
                          labels='boot, shirt,\nsandal, qwxzzy, boot', k=5)
  want = searcher.labels(searcher.gallery['devise'][12], ['boot', 'shirt', 'sandal'], 5)
  assert [(r['label'], r['unseen']) for r in got] == [(w['label'], w['unseen']) for w in want]
  assert "qwxzzy" in status and 'no word vector' in status


def test_search_words_matches_the_library(library, client):
  searcher = library.searcher
  grid, table, status = client.predict(word_1='boot', weight_1=1.0, word_2='sandal',
                                       weight_2=-0.5, k=6, api_name='/search_words')
  want = searcher.words_to_images(['boot', 'sandal'], [1.0, -0.5], 6)
  check_images(rows(table), want)
  assert len(grid) == 6
  assert all(f"#{w['id']} {w['label']}" in g['caption'] for g, w in zip(grid, want))
  assert '+1 × boot -0.5 × sandal' in status


def test_similar_matches_the_library(library, client, pictures):
  searcher = library.searcher
  for space in ('siamese', 'devise'):
    _, table, status = client.predict(None, 7, space, 5, api_name='/similar')
    want = searcher.similar(searcher.gallery[space][7], space, 5, exclude_ids=[7])
    check_images(rows(table), want)
    assert 7 not in [r['id'] for r in rows(table)]
    assert f'gallery image #7 ({searcher.meta["label_names"][7]}) in {space}' in status
  _, table, _ = client.predict(handle_file(pictures['gallery40.png']), None, 'siamese', 5,
                               api_name='/similar')
  array = images.decode(pictures['gallery40.png'])
  vector = library.run.siamese(library.run.encode_images([array]))[0]
  check_images(rows(table), searcher.similar(vector, 'siamese', 5))


def test_algebra_matches_the_library(library, client, pictures):
  searcher = library.searcher
  g = searcher.gallery
  inputs, grid, table, status = client.predict(
      image_1=None, gallery_id_1=3, sign_1='+', weight_1=1.0,
      image_2=None, gallery_id_2=40, sign_2='-', weight_2=0.5,
      image_3=None, gallery_id_3=-1, sign_3='+', weight_3=1.0,
      image_4=None, gallery_id_4=None, sign_4='+', weight_4=1.0,
      words='boot', word_weights='0.5', space='devise', k=5, api_name='/algebra')
  want = searcher.algebra([g['devise'][3], g['devise'][40]], [1.0, -0.5], ['boot'], [0.5],
                          'devise', 5, exclude_ids=[3, 40])
  check_images(rows(table), want)
  assert [i['caption'] for i in inputs] == ['+1 × #3 ' + searcher.meta['label_names'][3],
                                            '-0.5 × #40 ' + searcher.meta['label_names'][40]]
  assert len(grid) == 5 and '"boot"' in status
  # An upload and a gallery image, Siamese space.
  _, _, table, _ = client.predict(
      handle_file(pictures['gallery5.png']), None, '+', 1.0, None, 12, '+', 1.0,
      None, None, '+', 1.0, None, None, '+', 1.0, '', '', 'siamese', 4, api_name='/algebra')
  upload = searcher.embed_images([images.decode(pictures['gallery5.png'])])[1][0]
  want = searcher.algebra([upload, g['siamese'][12]], [1.0, 1.0], space='siamese', k=4,
                          exclude_ids=[12])
  check_images(rows(table), want)


# Awkward images work; bad inputs are clear errors and the server keeps serving.


@pytest.mark.parametrize('name', ['rgba.png', 'cmyk.jpg', 'i16.png', 'palette.png',
                                  'anim.gif', 'exif.jpg', 'one.png', 'wide.png'])
def test_awkward_images_are_predicted(library, client, pictures, name):
  """The demo's answer is the library's for the same pixels, as `images.decode` reads
  them (the decoding itself is checked in test_image_decoding_details)."""
  got, status = zero_shot(client, handle_file(pictures[name]), k=3)
  decoded = images.decode(pictures[name])
  assert decoded.dtype == np.uint8 and decoded.ndim == 3 and decoded.shape[2] == 3
  check_labels(got, library_labels(library, decoded, k=3))
  assert 'the uploaded image' in status


def test_requests_do_not_recompile(server, client, pictures):
  """Uploads of any size reuse the run's compiled embedders (one trace per function)."""
  zero_shot(client, handle_file(pictures['rgba.png']), k=3)
  client.predict(handle_file(pictures['exif.jpg']), None, 'siamese', 3, api_name='/similar')
  traces = dict(server.backend.run.traces)
  for name in ('one.png', 'wide.png', 'cmyk.jpg'):
    zero_shot(client, handle_file(pictures[name]), k=3)
    client.predict(handle_file(pictures[name]), None, 'siamese', 3, api_name='/similar')
  assert dict(server.backend.run.traces) == traces
  assert traces['encode'] == 1 and traces['devise'] == 1


BAD_INPUTS = [
    ('zero_shot', dict(image='text.png'), 'not an image'),
    ('zero_shot', dict(image='empty.png'), 'empty'),
    ('zero_shot', dict(image='truncated.png'), 'truncated or corrupt'),
    ('zero_shot', dict(image='bomb.png'), 'megapixels'),
    ('zero_shot', dict(), 'upload an image or pick one'),
    ('zero_shot', dict(gallery_id=99999), 'not in the gallery'),
    ('zero_shot', dict(gallery_id=1, candidates='list', labels=' , ,'), 'label list is empty'),
    ('zero_shot', dict(gallery_id=1, candidates='list',
                       labels=','.join(f'w{i}' for i in range(10000))), 'limit is 1,000'),
    ('zero_shot', dict(gallery_id=1, candidates='list', labels='qwxzzy, zzqqxw'),
     'none of the labels has a word vector'),
    ('zero_shot', dict(gallery_id=1, candidates='everything'), 'not in the list of choices'),
    ('zero_shot', dict(gallery_id=1, k=0), 'less than minimum'),
    ('search_words', dict(word_1='qwxzzy'), "no word vector for 'qwxzzy'"),
    ('search_words', dict(word_1='boot', weight_1=1.0, word_2='boot', weight_2=-1.0),
     'cancel'),
    ('search_words', dict(word_1='  '), 'words is empty'),
    ('similar', dict(image='text.png'), 'not an image'),
    ('similar', dict(gallery_id=3, space='pixels'), 'not in the list of choices'),
    ('algebra', dict(gallery_id_1=7, gallery_id_2=7, sign_2='-'), 'cancel'),
    ('algebra', dict(gallery_id_1=7), 'second image'),
    ('algebra', dict(gallery_id_1=7, gallery_id_2=9, words='boot'), 'devise space'),
    ('algebra', dict(gallery_id_1=7, gallery_id_2=9, words='boot, qwxzzy',
                     space='devise'), "no word vector for 'qwxzzy'"),
    ('algebra', dict(gallery_id_1=7, gallery_id_2=9, words='boot', word_weights='1, 2',
                     space='devise'), 'word weight'),
    ('algebra', dict(image_1='bomb.png', gallery_id_2=9), 'megapixels'),
    ('algebra', dict(), 'give 1 to 4 images'),
]


def call(client, endpoint, pictures, **kwargs):
  for key, value in kwargs.items():
    if key.startswith('image') and value:
      kwargs[key] = handle_file(pictures[value])
  if endpoint == 'zero_shot':
    args = dict(image=None, gallery_id=None, candidates='classes', labels='', k=5)
  elif endpoint == 'search_words':
    args = dict(word_1='', weight_1=1.0, word_2='', weight_2=1.0, k=5)
  elif endpoint == 'similar':
    args = dict(image=None, gallery_id=None, space='siamese', k=5)
  else:
    args = {f'{p}_{n}': v for n in range(1, 5) for p, v in (
        ('image', None), ('gallery_id', -1), ('sign', '+'), ('weight', 1.0))}
    args.update(words='', word_weights='', space='siamese', k=5)
  args.update(kwargs)
  return client.predict(api_name=f'/{endpoint}', **args)


@pytest.mark.parametrize('endpoint,kwargs,message', BAD_INPUTS,
                         ids=[f'{e}-{m[:20]}' for e, _, m in BAD_INPUTS])
def test_bad_inputs_are_clear_errors(client, pictures, endpoint, kwargs, message):
  with pytest.raises(gradio_client.exceptions.AppError) as info:
    call(client, endpoint, pictures, **kwargs)
  text = str(info.value)
  assert message in text
  assert 'Traceback' not in text and '.py' not in text
  # The server keeps serving.
  got, _ = zero_shot(client, gallery_id=2, k=2)
  assert len(got) == 2


def test_uploads_over_the_limit_are_refused(server):
  url = server.url
  big = b'\0' * (11 * 1024 * 1024)
  response = httpx.post(f'{url}gradio_api/upload', files={'files': ('big.png', big)},
                        timeout=60)
  assert response.status_code == 413
  response = httpx.post(f'{url}gradio_api/queue/join', content=b'{' + b' ' * (20 * 2**20),
                        headers={'content-type': 'application/json'}, timeout=60)
  assert response.status_code == 413


def test_image_decoding_details(pictures):
  rgba = np.zeros((4, 4, 4), np.uint8)  # Transparent black: white once composited.
  buffer = io.BytesIO()
  PIL.Image.fromarray(rgba, 'RGBA').save(buffer, 'PNG')
  assert (images.decode(buffer.getvalue()) == 255).all()
  gray16 = np.array([[0, 32896, 65535]], np.uint16)
  buffer = io.BytesIO()
  PIL.Image.fromarray(gray16, 'I;16').save(buffer, 'PNG')
  assert images.decode(buffer.getvalue())[0, :, 0].tolist() == [0, 128, 255]
  frame = images.decode(pictures['anim.gif'])
  assert tuple(frame[0, 0]) == (255, 0, 0)  # The first (red) frame.
  assert images.decode(pictures['exif.jpg']).shape == (30, 40, 3)  # Rotated.
  assert images.decode(pictures['wide.png']).shape == (1, images.MAX_SIDE, 3)
  assert images.decode(pictures['one.png']).shape == (1, 1, 3)
  assert images.decode(pictures['cmyk.jpg']).shape == (40, 30, 3)
  with pytest.raises(images.ImageError, match='too many pixels'):
    images.decode(png_header_only(30000, 30000))  # Above Pillow's own limit.
  nan = np.full((3, 3), np.nan, np.float32)
  buffer = io.BytesIO()
  PIL.Image.fromarray(nan, 'F').save(buffer, 'TIFF')
  assert np.isfinite(images.decode(buffer.getvalue())).all()
