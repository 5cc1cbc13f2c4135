"""The demo's REST API: plain HTTP and JSON beside the Gradio page, on the same port.

    POST /api/labels?k=5&candidates=classes   multipart `image` -> top-k labels
    GET  /api/images?words=boot,sandal&k=4    the gallery images nearest to the words
    POST /api/similar?k=4&space=siamese        multipart `image` -> nearest gallery images
    POST /api/algebra                          JSON {ids, weights or signs, words, ...}
    GET  /api/images/{id}.png                  a gallery picture (each image result's url)
    GET  /docs, /openapi.json                  Swagger UI and the OpenAPI schema

These are the first seed project's three calls (image -> labels, words -> images,
image -> images) plus puppy algebra. `candidates` is 'classes' (seen and unseen compete,
calibrated stacking as in the page), 'vocab' (WordNet nouns with a word vector), 'tokens'
(every token of the word vectors) or a comma-separated list; several words are averaged
(optional `weights`).

How it is served: `routes(backend, auth)` are handed to Gradio's own FastAPI app
(`Blocks.launch(app_kwargs={'routes': ...})`, see `app.launch_kwargs`), so one server
and one port answer the page, Gradio's API and this one, and `Blocks.launch` keeps doing
what it does (the queue, share links, start and stop, the safe defaults). We chose that
over `gr.mount_gradio_app` under a FastAPI app of our own, which would need the server's
start, stop and share tunnel redone by hand. The schema at /openapi.json is built from
these routes alone (Gradio's internal routes stay out of /docs), and Swagger UI's files
come from the `fastapi-offline` package: the page fetches nothing from a CDN.

Answers are the library's (`gallery.Searcher`); inputs pass the page's checks (`checks`:
k, weights, words, list lengths, gallery ids) and uploads its decoder and limits
(`images.decode`: 10 MB, 40 megapixels, odd formats). Every bad input answers a 4xx
with `{"error": "<one line>"}` (400 bad input, 401 log-in, 404 unknown picture or no
gallery, 413 too large). With `--auth USER:PASS` the API wants HTTP basic auth with the
same user and password (`curl -u USER:PASS`). Two requests compute at a time, as in the
page's queue.
"""

import io
import logging
import os
import secrets
import threading

import fastapi
from fastapi import Depends, File, Query, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.openapi.utils import get_openapi
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.routing import APIRoute
from fastapi.security import HTTPBasic, HTTPBasicCredentials
import fastapi_offline
import gradio as gr
import PIL.Image
import pydantic

from . import checks
from . import images
from .handlers import MAX_ALGEBRA_WORDS
from .layout import CONCURRENCY  # Requests computed at once, as in the page's queue.

log = logging.getLogger(__name__)

MAX_ALGEBRA_IMAGES = 4  # The page's four slots.
CANDIDATE_SETS = ('classes', 'vocab', 'tokens')  # `Searcher.labels`'s named sets.
_SWAGGER = os.path.join(os.path.dirname(fastapi_offline.__file__), 'static')


class ApiError(Exception):
  """A refusal with its own HTTP status (413 too large, 404 no such picture)."""

  def __init__(self, status, message):
    super().__init__(message)
    self.status, self.message = status, message


def error_response(status, message, headers=None):
  return JSONResponse({'error': message}, status_code=status, headers=headers)


def _validation_message(error):
  first = error.errors()[0]
  where = '.'.join(str(p) for p in first.get('loc', ())[1:]) or 'request'
  return f"{where}: {first.get('msg', 'invalid value')}".splitlines()[0]


class _OneLineErrors(APIRoute):
  """FastAPI's own errors (a missing or mistyped parameter, a log-in) as {"error"}."""

  def get_route_handler(self):
    handler = super().get_route_handler()

    async def route(request):
      try:
        return await handler(request)
      except RequestValidationError as e:
        return error_response(400, _validation_message(e))
      except fastapi.HTTPException as e:
        return error_response(e.status_code, str(e.detail), e.headers)

    return route


# What the answers look like (for /docs).


class Label(pydantic.BaseModel):
  label: str
  score: float = pydantic.Field(description='cosine; over the classes, less gamma for '
                                'seen ones (calibrated stacking)')
  unseen: bool = pydantic.Field(description='a class never seen in training')
  cosine: float | None = pydantic.Field(None, description='the plain cosine (classes)')
  synset: str | None = pydantic.Field(None, description='WordNet id (vocab)')


class Labels(pydantic.BaseModel):
  labels: list[Label]


class Image(pydantic.BaseModel):
  id: int = pydantic.Field(description='gallery id')
  label: str = pydantic.Field(description="the image's class")
  score: float = pydantic.Field(description='cosine similarity to the query')
  url: str = pydantic.Field(description='the picture (PNG)')


class Images(pydantic.BaseModel):
  images: list[Image]


class AlgebraQuery(pydantic.BaseModel):
  ids: list[int] = pydantic.Field(description=f'1 to {MAX_ALGEBRA_IMAGES} gallery ids',
                                  examples=[[12, 40]])
  weights: list[float] | None = pydantic.Field(
      None, description='a weight per id (default 1)', examples=[[1.0, 1.0]])
  signs: list[str] | None = pydantic.Field(
      None, description="'+' or '-' per id (default '+'), times its weight",
      examples=[['+', '-']])
  words: list[str] = pydantic.Field([], description='words to add (devise space only)')
  word_weights: list[float] | None = pydantic.Field(None, description='a weight per word')
  space: str = pydantic.Field('siamese', description="'siamese' or 'devise'")
  k: int = pydantic.Field(4, description=f'results, 1 to {checks.MAX_K}')


class Error(pydantic.BaseModel):
  error: str


ERRORS = {code: {'model': Error} for code in (400, 401, 404, 413)}


def _auth_dependency(auth):
  basic = HTTPBasic(auto_error=False)

  def check(credentials: HTTPBasicCredentials | None = Depends(basic)):
    if auth is None:
      return
    if credentials is None or not (
        secrets.compare_digest(credentials.username.encode(), auth[0].encode())
        and secrets.compare_digest(credentials.password.encode(), auth[1].encode())):
      raise fastapi.HTTPException(401, 'log in with HTTP basic auth (curl -u USER:PASS)',
                                  headers={'WWW-Authenticate': 'Basic'})

  return check


class Api:
  """The routes' work, over the demo's backend (its run, searcher and pictures)."""

  def __init__(self, backend):
    self.backend, self.searcher = backend, backend.searcher
    self._slots = threading.BoundedSemaphore(CONCURRENCY)

  def answer(self, work):
    """`work()`'s answer, or its failure as a one-line {"error"} response."""
    try:
      with self._slots:
        return work()
    except ApiError as e:
      return error_response(e.status, e.message)
    except gr.Error as e:
      return error_response(404 if 'no gallery' in e.message else 400, e.message)
    except checks.EXPECTED_ERRORS as e:
      return error_response(400, checks.one_line(e))
    except Exception:  # pylint: disable=broad-except
      log.exception('demo API: unexpected error')
      return error_response(500, 'internal error while answering this request (it was '
                            'logged on the server)')

  def decode(self, upload):
    """The uploaded file as an RGB array: the page's limits and decoder."""
    data = upload.file.read(images.MAX_BYTES + 1)
    if len(data) > images.MAX_BYTES:
      raise ApiError(413, f'the image is larger than {images.MAX_BYTES // 2**20} MB')
    return images.decode(data, name='the image')

  def embed(self, upload, space):
    features = self.backend.run.encode_images([self.decode(upload)])
    embed = self.backend.run.devise if space == 'devise' else self.backend.run.siamese
    return checks.finite_vector(embed(features)[0])

  def image_rows(self, request, rows):
    rows = checks.finite_scores(rows)
    return {'images': [dict(id=r['id'], label=r['label'], score=r['score'],
                            url=str(request.url_for('gallery_picture',
                                                    gallery_id=r['id'])))
                       for r in rows]}

  def labels(self, upload, k, candidates):
    k = checks.k(k)
    if candidates not in CANDIDATE_SETS:
      candidates = [checks.word(c, 'a candidate label') for c in checks.split_list(
          candidates, 'candidates', checks.MAX_LABELS)]
      if not candidates:
        raise checks.fail("candidates must be 'classes', 'vocab', 'tokens' or a "
                          'comma-separated list of labels')
    vector = self.embed(upload, 'devise')
    return {'labels': checks.finite_scores(self.searcher.labels(vector, candidates, k))}

  def words(self, request, words, weights, k):
    k = checks.k(k)
    words = [checks.word(w, 'a word') for w in checks.split_list(words, 'words',
                                                                 MAX_ALGEBRA_WORDS)]
    if not words:
      raise checks.fail('words is empty: give one or more comma-separated words')
    weights = [checks.weight(w, 'a weight') for w in checks.split_list(
        weights, 'weights', MAX_ALGEBRA_WORDS)] or None
    if weights and len(weights) != len(words):
      raise checks.fail(f'{len(words)} word(s) but {len(weights)} weight(s)')
    checks.require_gallery(self.searcher)
    return self.image_rows(request, self.searcher.words_to_images(words, weights, k))

  def similar(self, request, upload, k, space):
    k, space = checks.k(k), checks.space(space)
    checks.require_gallery(self.searcher)
    vector = self.embed(upload, space)
    return self.image_rows(request, self.searcher.similar(vector, space, k))

  def algebra(self, request, query):
    k, space = checks.k(query.k), checks.space(query.space)
    size = checks.require_gallery(self.searcher)
    ids = list(query.ids)
    if not 1 <= len(ids) <= MAX_ALGEBRA_IMAGES:
      raise checks.fail(f'ids: give 1 to {MAX_ALGEBRA_IMAGES} gallery ids, got {len(ids)}')
    for i in ids:
      if not 0 <= i < size:
        raise checks.fail(f'ids: {i} is not in the gallery (ids 0 to {size - 1})')
    weights = _per_item(query.weights, ids, 'weights',
                        lambda w, n: checks.weight(w, f'weight {n}'))
    signs = _per_item(query.signs, ids, 'signs', checks.sign)
    words = [checks.word(w, 'a word') for w in query.words]
    if len(words) > MAX_ALGEBRA_WORDS or not all(words):
      raise checks.fail(f'words: 0 to {MAX_ALGEBRA_WORDS} non-empty words')
    word_weights = _per_item(query.word_weights, words, 'word_weights',
                             lambda w, n: checks.weight(w, f'word weight {n}'))
    if len(ids) < 2 and not words:
      raise checks.fail('add a second image, or words, to do algebra')
    if words and space != 'devise':
      raise checks.fail("words can only be added in the devise space: space='devise'")
    vectors = [self.searcher.gallery[space][i] for i in ids]
    rows = self.searcher.algebra(vectors, [s * w for s, w in zip(signs, weights)], words,
                                 word_weights, space, k, exclude_ids=ids)
    return self.image_rows(request, rows)

  def picture(self, gallery_id):
    if self.searcher.gallery is None or not 0 <= gallery_id < self.backend.gallery_size():
      raise ApiError(404, f'no gallery image {gallery_id}')
    buffer = io.BytesIO()
    PIL.Image.fromarray(self.backend.picture(gallery_id)).save(buffer, 'PNG')
    return Response(buffer.getvalue(), media_type='image/png')


def _per_item(values, items, name, check):
  """`check(value, n)` of one value per item, n from 1 (1.0 each when None)."""
  if values is None:
    return [1.0] * len(items)
  if len(values) != len(items):
    raise checks.fail(f'{name}: {len(items)} expected, got {len(values)}')
  return [check(v, n) for n, v in enumerate(values, 1)]


def routes(backend, auth=None):
  """The API's routes over `backend`; `auth` None or (user, password)."""
  api = Api(backend)
  router = fastapi.APIRouter(route_class=_OneLineErrors,
                             dependencies=[Depends(_auth_dependency(auth))])
  image_file = File(description='an image file (PNG, JPEG, GIF, BMP, WebP, TIFF; '
                    f'at most {images.MAX_BYTES // 2**20} MB)')

  @router.post('/api/labels', response_model=Labels, responses=ERRORS)
  def labels(image: UploadFile = image_file, k: int = 5,
             candidates: str = Query('classes', description="'classes', 'vocab' "
                                     "(WordNet nouns), 'tokens' (every word-vector token) "
                                     'or a comma-separated list of labels')):
    """The top-k labels of an image (zero-shot)."""
    return api.answer(lambda: api.labels(image, k, candidates))

  @router.get('/api/images', response_model=Images, responses=ERRORS)
  def words_to_images(request: fastapi.Request,
                      words: str = Query(description='comma-separated words or phrases '
                                         '(several: averaged)', examples=['boot']),
                      weights: str = Query('', description='a weight per word '
                                           '(default 1 each)'),
                      k: int = 4):
    """The gallery images nearest to the (weighted) average of the words."""
    return api.answer(lambda: api.words(request, words, weights, k))

  @router.post('/api/similar', response_model=Images, responses=ERRORS)
  def similar(request: fastapi.Request, image: UploadFile = image_file, k: int = 4,
              space: str = Query('siamese', description="'siamese' or 'devise'")):
    """The gallery images nearest to an uploaded image."""
    return api.answer(lambda: api.similar(request, image, k, space))

  @router.post('/api/algebra', response_model=Images, responses=ERRORS)
  def algebra(request: fastapi.Request, query: AlgebraQuery):
    """Puppy algebra: the gallery images nearest to the weighted sum of gallery images
    (and, in the devise space, words); the input images are never returned."""
    return api.answer(lambda: api.algebra(request, query))

  @router.get('/api/images/{gallery_id}.png', name='gallery_picture',
              response_class=Response, responses={200: {'content': {'image/png': {}}}})
  def picture(gallery_id: int):
    """A gallery image, as the page shows it (PNG)."""
    return api.answer(lambda: api.picture(gallery_id))

  schema = {}

  @router.get('/openapi.json', include_in_schema=False)
  def openapi():
    if not schema:
      schema.update(get_openapi(
          title='devise_jax demo API', version='1', description=__doc__.split('\n\n')[1],
          routes=[r for r in router.routes if r.include_in_schema]))
      for operations in schema['paths'].values():  # Bad input is a 400 here, not 422.
        for operation in operations.values():
          operation['responses'].pop('422', None)
      for name in ('HTTPValidationError', 'ValidationError'):
        schema['components']['schemas'].pop(name, None)
    return schema

  @router.get('/docs', include_in_schema=False)
  def docs():
    return get_swagger_ui_html(openapi_url='/openapi.json', title='devise_jax API',
                               swagger_js_url='/docs/swagger-ui-bundle.js',
                               swagger_css_url='/docs/swagger-ui.css',
                               swagger_favicon_url='/docs/favicon.png')

  for name in ('swagger-ui-bundle.js', 'swagger-ui.css', 'favicon.png'):
    router.add_api_route(f'/docs/{name}', _static(name), include_in_schema=False)
  return router.routes


def _static(name):
  path = os.path.join(_SWAGGER, name)
  return lambda: FileResponse(path)
