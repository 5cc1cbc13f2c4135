"""The demo's page: a gr.Blocks with one tab per endpoint, Results (plots) and About.

Each `_*_tab` function lays out one tab and binds its button to the endpoint of the
same name (`handlers.make_handlers`), through the gate it shares with the REST API
(`gate.py`); the gallery pickers only move ids between components of the page, and an
upload box shows its upload as the server decoded it (private events, not API
endpoints).
"""

import base64
import functools
import os

import gradio as gr
import PIL.Image

from devise_jax import plots
from devise_jax import queries

from . import about
from . import gate as gate_lib
from . import handlers as handlers_lib
from . import images
from . import server

CANDIDATES = (('dataset classes', 'classes'), ('my list (comma separated)', 'list'),
              ('WordNet nouns (open vocabulary)', 'vocab'),
              ('raw word-vector tokens', 'tokens'))
PRIVATE = dict(api_visibility='private', queue=False)
LABEL_HEADERS = ['rank', 'label', 'score', 'unseen']
IMAGE_HEADERS = ['rank', 'id', 'label', 'score']
# The endpoints' image parameters: their size decides whether a request is heavy.
IMAGE_ARGS = {'zero_shot': ('image',), 'similar': ('image',), 'preview': ('image',),
              'algebra': ('image_1', 'image_2', 'image_3', 'image_4')}


class SafeImage(gr.Image):
  """gr.Image whose upload reaches the handler undecoded (a path, or bytes for a data
  URL): decoding happens in `images.decode`, not in Gradio's PIL call. An image given
  as a URL (`handle_file('http://...')`) is refused before Gradio would download it
  (`async_move_resource_to_block_cache`, its one fetch of input files)."""

  is_template = True  # The page shows it as a plain Image.

  async def async_move_resource_to_block_cache(self, url_or_file_path):
    try:
      images.refuse_url(url_or_file_path)
    except images.ImageError as e:
      raise handlers_lib.fail(str(e)) from None
    return await super().async_move_resource_to_block_cache(url_or_file_path)

  def move_resource_to_block_cache(self, url_or_file_path):
    try:
      images.refuse_url(url_or_file_path)
    except images.ImageError as e:
      raise handlers_lib.fail(str(e)) from None
    return super().move_resource_to_block_cache(url_or_file_path)

  def preprocess(self, payload):
    if payload is None:
      return None
    if payload.url and payload.url.startswith('data:'):
      try:
        head, data = payload.url.split(',', 1)
        if len(data) > images.MAX_BYTES * 4 // 3 + 4:
          raise handlers_lib.fail('the image is larger than 10 MB')
        return base64.b64decode(data) if ';base64' in head else data.encode()
      except (ValueError, TypeError):
        raise handlers_lib.fail('the image data URL is malformed') from None
    if not payload.path or not os.path.isfile(payload.path):
      raise handlers_lib.fail('send the image as an uploaded file')
    return payload.path


def _image_input(label, height=220, elem_id=None):
  return SafeImage(label=label, type='filepath', image_mode=None, format='png',
                   sources=['upload', 'clipboard'], height=height, elem_id=elem_id,
                   elem_classes=['query-image'])


def _gallery_id_input(label='gallery id (set by picking; -1 = use the uploaded image)',
                      elem_id=None):
  return gr.Number(value=-1, label=label, precision=0, minimum=-1, elem_id=elem_id)


def _picker(backend, label='Pick from the gallery', elem_id=None, columns=8):
  """A gallery of a few images per class to pick from; (component, their ids)."""
  ids = backend.pick_ids()
  value = [(backend.picture(i), f'#{i} {backend.label(i)}') for i in ids]
  picker = gr.Gallery(value=value, label=label, columns=columns, height=260,
                      allow_preview=False, interactive=False, format='png',
                      object_fit='contain', visible=bool(ids), elem_id=elem_id)
  return picker, ids


def _results_gallery(label, elem_id=None):
  return gr.Gallery(label=label, columns=4, height=340, allow_preview=True,
                    interactive=False, format='png', object_fit='contain',
                    fit_columns=False, elem_id=elem_id)


def _image_results(prefix):
  """Status line, picture grid and score table of an image search (ids `prefix-*`)."""
  status = _status(f'{prefix}-status')
  grid = _results_gallery('Nearest gallery images', elem_id=f'{prefix}-grid')
  table = gr.Dataframe(headers=IMAGE_HEADERS, interactive=False, label='Scores',
                       elem_id=f'{prefix}-table')
  return status, grid, table


def _status(elem_id):
  return gr.Markdown(elem_classes=['status-box'], elem_id=elem_id)


_k_slider = functools.partial(gr.Slider, minimum=1, maximum=queries.MAX_K, step=1,
                              label='k')


def _bind_picker(backend, picker, ids, image, gallery_id):
  """Picking a gallery image shows it and sets the id; an upload resets the id to -1."""

  def pick(evt: gr.SelectData):
    return backend.picture(ids[evt.index]), ids[evt.index]

  picker.select(pick, None, [image, gallery_id], **PRIVATE)


def _bind_upload(image, gallery_id, preview):
  """An upload shows as the model sees it (`preview`: decoded by the server, a result it
  serves; the upload itself never is) and resets the id to -1."""
  image.upload(preview, image, [image, gallery_id], **PRIVATE)
  image.clear(lambda: -1, None, gallery_id, **PRIVATE)


def _zero_shot_tab(backend, handler, preview):
  with gr.Tab('Zero-shot prediction', id='zero_shot'):
    with gr.Row():
      with gr.Column(scale=1):
        image = _image_input('Image (upload, or pick one below)', elem_id='zs-image')
        gallery_id = _gallery_id_input(elem_id='zs-gid')
        candidates = gr.Radio(list(CANDIDATES), value='classes', label='Candidate labels')
        # value='' (not None): API parameters default to the components' values.
        labels = gr.Textbox(value='', label='My labels (comma separated, up to 1000)',
                            placeholder='boot, clog, slipper, sandal', lines=2,
                            elem_id='zs-labels')
        k = _k_slider(value=5)
        button = gr.Button('Predict labels', variant='primary', elem_id='zs-predict')
      with gr.Column(scale=1):
        status = _status('zs-status')
        table = gr.Dataframe(headers=LABEL_HEADERS, label='Top labels (cosine score; '
                             'unseen = class not seen in training)', interactive=False,
                             elem_id='zs-table')
    picker, ids = _picker(backend, elem_id='zs-picker')
  button.click(handler, [image, gallery_id, candidates, labels, k], [table, status],
               api_name='zero_shot')
  labels.input(None, None, candidates, js="() => 'list'", **PRIVATE)
  _bind_picker(backend, picker, ids, image, gallery_id)
  _bind_upload(image, gallery_id, preview)


def _search_words_tab(handler):
  with gr.Tab('Search by words', id='search_words'):
    with gr.Row():
      with gr.Column(scale=1):
        word_1 = gr.Textbox(label='Word', value='boot', elem_id='sw-word-1')
        weight_1 = gr.Number(value=1.0, label='Weight')
        word_2 = gr.Textbox(label='Second word (optional)', value='')
        weight_2 = gr.Number(value=1.0, label='Weight of the second word')
        k = _k_slider(value=8)
        button = gr.Button('Search', variant='primary', elem_id='sw-search')
      with gr.Column(scale=2):
        status, grid, table = _image_results('sw')
  inputs, outputs = [word_1, weight_1, word_2, weight_2, k], [grid, table, status]
  button.click(handler, inputs, outputs, api_name='search_words')
  word_1.submit(handler, inputs, outputs, api_visibility='private')


def _similar_tab(backend, handler, preview):
  with gr.Tab('Similar images', id='similar'):
    with gr.Row():
      with gr.Column(scale=1):
        image = _image_input('Image (upload, or pick one below)', elem_id='si-image')
        gallery_id = _gallery_id_input(elem_id='si-gid')
        space = gr.Radio([('Siamese (visual similarity)', 'siamese'),
                          ('DeViSE (label meaning)', 'devise')], value='siamese',
                         label='Space')
        k = _k_slider(value=8)
        button = gr.Button('Find similar', variant='primary', elem_id='si-find')
      with gr.Column(scale=2):
        status, grid, table = _image_results('si')
    picker, ids = _picker(backend, elem_id='si-picker')
  button.click(handler, [image, gallery_id, space, k], [grid, table, status],
               api_name='similar')
  _bind_picker(backend, picker, ids, image, gallery_id)
  _bind_upload(image, gallery_id, preview)


def _algebra_slots(preview):
  """Four (image, gallery id, sign, weight) slots in a row."""
  slots = []
  with gr.Row():
    for n in range(1, 5):
      with gr.Column(min_width=160):
        image = _image_input(f'Image {n}', height=150, elem_id=f'al-image-{n}')
        gallery_id = _gallery_id_input(f'gallery id {n} (-1 = the upload)',
                                       elem_id=f'al-gid-{n}')
        with gr.Row():
          sign = gr.Radio(list(queries.SIGNS), value='+' if n != 2 else '-',
                          label=f'Sign {n}', min_width=80)
          weight = gr.Number(value=1.0, label=f'Weight {n}', min_width=80)
        slots.append((image, gallery_id, sign, weight))
        _bind_upload(image, gallery_id, preview)
  return slots


def _bind_slot_picker(backend, picker, ids, slot, slots):
  """Picking fills the chosen slot (image and id) and moves the choice to the next."""

  def pick(chosen, evt: gr.SelectData):
    gallery_id, chosen = ids[evt.index], int(chosen or 1)
    updates = []
    for n in range(1, 5):
      updates += ([backend.picture(gallery_id), gallery_id] if n == chosen
                  else [gr.skip(), gr.skip()])
    return updates + [chosen % 4 + 1]

  picker.select(pick, [slot], [c for s in slots for c in s[:2]] + [slot], **PRIVATE)


def _algebra_tab(backend, handler, preview):
  with gr.Tab('Puppy algebra', id='algebra'):
    gr.Markdown('Two to four images, each added (+) or subtracted (−) with a weight; '
                'in DeViSE space, words too (e.g. image − "sandal" + "boot"). '
                'Pick gallery images into the chosen slot, or upload.')
    slots = _algebra_slots(preview)
    with gr.Row():
      with gr.Column(scale=2):
        slot = gr.Radio([1, 2, 3, 4], value=1, label='Put the image picked below into slot')
        picker, ids = _picker(backend, elem_id='al-picker', columns=6)
      with gr.Column(scale=1):
        words = gr.Textbox(value='', label='Words (comma separated, DeViSE space only)',
                           placeholder='sandal, boot')
        word_weights = gr.Textbox(value='',
                                  label='Word weights (comma separated; default 1)',
                                  placeholder='-1, 1')
        space = gr.Radio([('Siamese', 'siamese'), ('DeViSE', 'devise')], value='siamese',
                         label='Space')
        k = _k_slider(value=8)
        button = gr.Button('Compute', variant='primary', elem_id='al-compute')
    status = _status('al-status')
    with gr.Row():
      shown = gr.Gallery(label='Inputs (weight × image)', columns=4, height=260,
                         allow_preview=False, interactive=False, format='png',
                         object_fit='contain', fit_columns=False, elem_id='al-inputs')
      grid = _results_gallery('Result: nearest gallery images', elem_id='al-grid')
    table = gr.Dataframe(headers=IMAGE_HEADERS, interactive=False, label='Scores',
                         elem_id='al-table')
  button.click(handler, [c for s in slots for c in s] + [words, word_weights, space, k],
               [shown, grid, table, status], api_name='algebra')
  _bind_slot_picker(backend, picker, ids, slot, slots)


def _results_tab(backend):
  """Evaluation's plots (WORKDIR/plots/*.png), loaded once as pictures: the files are
  never served from the workdir, Gradio serves copies in its cache."""
  with gr.Tab('Results', id='results'):
    found = plots.existing(backend.workdir)
    if not found:
      gr.Markdown(f'No plots yet: `devise-jax eval --workdir {backend.workdir}` draws '
                  'them.', elem_id='results-none')
    for path, title in found:
      with PIL.Image.open(path) as picture:
        value = picture.convert('RGB')
      gr.Image(value=value, label=title, type='pil', format='png', interactive=False,
               elem_id=f'plot-{os.path.splitext(os.path.basename(path))[0]}',
               elem_classes=['plot'])


def _header(backend):
  searcher = backend.searcher
  unseen = ', '.join(sorted(searcher.names[i] for i in searcher.unseen)) or 'none'
  return (f'## DeViSE zero-shot labels, search and puppy algebra\n'
          f'Model from `{backend.workdir}` · {len(searcher.names)} classes, of which '
          f'**{unseen}** were never seen in training · gallery of '
          f'{backend.gallery_size():,} images.')


def build_app(workdir, backend=None, gate=None):
  """The demo's gr.Blocks for a workdir (serve it with `app.serve` or `app.launch`).

  `backend` (a `handlers.Backend`) is reused when given, so one loaded run can serve
  several apps; the app keeps it as `demo.devise_backend`, and its gate (`gate`, or a
  new `gate.Gate`, shared with the REST API) as `demo.devise_gate`. The endpoints
  compute behind the gate, so Gradio's queue itself has no concurrency limit: its
  events wait at the gate. Gradio keeps uploads and results in this process's own
  folder (`server.private_upload_dir`).
  """
  server.private_upload_dir()  # Before any component reads GRADIO_TEMP_DIR.
  backend = backend or handlers_lib.Backend(workdir)
  gate = gate or gate_lib.Gate()
  handlers = {name: gate_lib.gated(gate, fn, IMAGE_ARGS.get(name, ()),
                                   busy=handlers_lib.fail)
              for name, fn in handlers_lib.make_handlers(backend).items()}
  title = f'devise_jax demo: {os.path.basename(backend.workdir)}'
  with gr.Blocks(title=title, analytics_enabled=False, delete_cache=(1800, 3600)) as demo:
    gr.Markdown(_header(backend))
    with gr.Tabs():
      _zero_shot_tab(backend, handlers['zero_shot'], handlers['preview'])
      _search_words_tab(handlers['search_words'])
      _similar_tab(backend, handlers['similar'], handlers['preview'])
      _algebra_tab(backend, handlers['algebra'], handlers['preview'])
      _results_tab(backend)
      with gr.Tab('About', id='about'):
        gr.Markdown(about.markdown(backend), elem_id='about-text')
  demo.queue(default_concurrency_limit=None, max_size=gate.running + gate.waiting)
  demo.devise_backend, demo.devise_gate = backend, gate
  return demo
