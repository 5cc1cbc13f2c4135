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

The routes are translators: each builds a request of the query layer
(`devise_jax.queries`, shared with the page and the CLI: k, weights, words, list
lengths, gallery ids, the algebra rules, the decoder's limits of 10 MB and 40
megapixels) and answers the library's rows (`gallery.Searcher`). Every bad input answers a 4xx
with `{"error": "<one line>"}` (400 bad input, 401 log-in, 404 unknown picture or no
gallery, 413 too large, 429 too many failed log-ins, 503 busy; the server's middleware,
`guard.py`, gives its own refusals and FastAPI's the same shape). With `--auth
USER:PASS` the API wants HTTP basic auth with the same user and password (`curl -u
USER:PASS`). Every route computes behind the page's gate (`gate.py`: two at a time, at
most 64 waiting, taken before an upload is decoded). An image result's `url` is the
picture's path (`/api/images/12.png`), or under `--public_url` when one is set: never
built from the request's Host header.
"""

import io
import logging
import os
import secrets

import fastapi
from fastapi import Depends, File, Query, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.openapi.utils import get_openapi
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.routing import APIRoute
from fastapi.security import HTTPBasic, HTTPBasicCredentials
import fastapi_offline
import PIL.Image
import pydantic
from starlette.exceptions import HTTPException

from devise_jax import queries

from . import gate as gate_lib
from . import images

log = logging.getLogger(__name__)
_SWAGGER = os.path.join(os.path.dirname(fastapi_offline.__file__), 'static')


class ApiError(Exception):
  """A refusal with its own HTTP status (413 too large, 404 no such picture)."""

  def __init__(self, status, message):
    super().__init__(message)
    self.status, self.message = status, message


def error_response(status, message, headers=None):
  return JSONResponse({'error': message}, status_code=status, headers=headers)


# FastAPI's message for a body it cannot decode (bad JSON, bad UTF-8, nesting too deep).
_UNPARSED = {'There was an error parsing the body':
             'the request body could not be parsed (it must be valid JSON in UTF-8)'}


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
      except HTTPException as e:  # FastAPI's, and Starlette's (a bad multipart body).
        return error_response(e.status_code, _UNPARSED.get(e.detail, e.detail), e.headers)

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
  skipped: list[str] = pydantic.Field([], description='listed candidates left out: '
                                      'they have no word vector')


class Image(pydantic.BaseModel):
  id: int = pydantic.Field(description='gallery id')
  label: str = pydantic.Field(description="the image's class")
  score: float = pydantic.Field(description='cosine similarity to the query')
  url: str = pydantic.Field(description='the picture (PNG)')


class Images(pydantic.BaseModel):
  images: list[Image]


class AlgebraQuery(pydantic.BaseModel):
  ids: list[int] = pydantic.Field(description=f'1 to {queries.MAX_ALGEBRA_IMAGES} '
                                  'gallery ids',
                                  examples=[[12, 40]])
  weights: list[float] | None = pydantic.Field(
      None, description='a weight per id (default 1)', examples=[[1.0, 1.0]])
  signs: list[str] | None = pydantic.Field(
      None, description="'+' or '-' per id (default '+'), times its weight",
      examples=[['+', '-']])
  words: list[str] = pydantic.Field([], description='words to add (devise space only)')
  word_weights: list[float] | None = pydantic.Field(None, description='a weight per word')
  space: str = pydantic.Field('siamese', description="'siamese' or 'devise'")
  k: int = pydantic.Field(4, description=f'results, 1 to {queries.MAX_K}')


class Error(pydantic.BaseModel):
  error: str


ERRORS = {code: {'model': Error} for code in (400, 401, 404, 413, 429, 503)}


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

  def __init__(self, backend, gate, public_url=''):
    self.backend, self.searcher = backend, backend.searcher
    self.gate, self.public_url = gate, public_url

  async def answer(self, work, uploads=()):
    """`work()`'s answer, computed behind the gate (heavy if one of the `uploads` is
    large), or its failure as a one-line {"error"} response."""
    try:
      heavy = await gate_lib.is_heavy([u.file for u in uploads])
      return await self.gate.run(work, heavy)
    except gate_lib.Busy as e:
      return error_response(503, str(e), {'Retry-After': '5'})
    except ApiError as e:
      return error_response(e.status, e.message)
    except Exception as e:  # pylint: disable=broad-except
      if queries.is_expected(e):
        return error_response(getattr(e, 'status', 400), queries.one_line(e))
      log.exception('demo API: unexpected error')
      return error_response(500, 'internal error while answering this request (it was '
                            'logged on the server)')

  def upload(self, upload):
    """The uploaded file's bytes, refused (413) past the decoder's byte limit."""
    data = upload.file.read(images.MAX_BYTES + 1)
    if len(data) > images.MAX_BYTES:
      raise ApiError(413, f'the image is larger than {images.MAX_BYTES // 2**20} MB')
    return queries.QueryImage(file=data)

  def image_rows(self, answer):
    return {'images': [dict(id=r['id'], label=r['label'], score=r['score'],
                            url=f"{self.public_url}/api/images/{r['id']}.png")
                       for r in answer.rows]}

  def labels(self, upload, k, candidates):
    named = candidates in queries.CANDIDATE_SETS
    answer = queries.answer(self.searcher, queries.Labels(
        self.upload(upload), candidates if named else 'list', '' if named else candidates,
        k))
    return {'labels': answer.rows, 'skipped': answer.skipped}

  def words(self, words, weights, k):
    answer = queries.answer(self.searcher, queries.ImagesByWords(words, weights, k))
    return self.image_rows(answer)

  def similar(self, upload, k, space):
    answer = queries.answer(self.searcher, queries.Similar(self.upload(upload), space, k))
    return self.image_rows(answer)

  def algebra(self, query):
    answer = queries.answer(self.searcher, queries.Algebra(
        [queries.QueryImage(gallery_id=i) for i in query.ids], query.weights, query.signs,
        query.words, query.word_weights, query.space, query.k))
    return self.image_rows(answer)

  def picture(self, gallery_id):
    if self.searcher.gallery is None or not 0 <= gallery_id < self.backend.gallery_size():
      raise ApiError(404, f'no gallery image {gallery_id}')
    buffer = io.BytesIO()
    PIL.Image.fromarray(self.backend.picture(gallery_id)).save(buffer, 'PNG')
    return Response(buffer.getvalue(), media_type='image/png')


def routes(backend, auth=None, *, gate=None, public_url=''):
  """The API's routes over `backend`; `auth` None or (user, password); they compute
  behind `gate` (the page's `gate.Gate`, or a new one); image URLs under `public_url`."""
  api = Api(backend, gate or gate_lib.Gate(), public_url)
  router = fastapi.APIRouter(route_class=_OneLineErrors,
                             dependencies=[Depends(_auth_dependency(auth))])
  image_file = File(description='an image file (PNG, JPEG, GIF, BMP, WebP, TIFF; '
                    f'at most {images.MAX_BYTES // 2**20} MB)')

  @router.post('/api/labels', response_model=Labels, responses=ERRORS)
  async def labels(image: UploadFile = image_file, k: int = 5,
                   candidates: str = Query('classes', description="'classes', 'vocab' "
                                           "(WordNet nouns), 'tokens' (every word-vector "
                                           'token) or a comma-separated list of labels')):
    """The top-k labels of an image (zero-shot)."""
    return await api.answer(lambda: api.labels(image, k, candidates), [image])

  @router.get('/api/images', response_model=Images, responses=ERRORS)
  async def words_to_images(words: str = Query(description='comma-separated words or '
                                               'phrases (several: averaged)',
                                               examples=['boot']),
                            weights: str = Query('', description='a weight per word '
                                                 '(default 1 each)'),
                            k: int = 4):
    """The gallery images nearest to the (weighted) average of the words."""
    return await api.answer(lambda: api.words(words, weights, k))

  @router.post('/api/similar', response_model=Images, responses=ERRORS)
  async def similar(image: UploadFile = image_file, k: int = 4,
                    space: str = Query('siamese', description="'siamese' or 'devise'")):
    """The gallery images nearest to an uploaded image."""
    return await api.answer(lambda: api.similar(image, k, space), [image])

  @router.post('/api/algebra', response_model=Images, responses=ERRORS)
  async def algebra(query: AlgebraQuery):
    """Puppy algebra: the gallery images nearest to the weighted sum of gallery images
    (and, in the devise space, words); the input images are never returned."""
    return await api.answer(lambda: api.algebra(query))

  @router.get('/api/images/{gallery_id}.png', name='gallery_picture',
              response_class=Response, responses={200: {'content': {'image/png': {}}}})
  async def picture(gallery_id: int):
    """A gallery image, as the page shows it (PNG)."""
    return await api.answer(lambda: api.picture(gallery_id))

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
