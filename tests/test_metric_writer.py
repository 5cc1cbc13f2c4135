"""TensorBoard events of training and evaluation, read back with TensorBoard's own reader.

The tiny reference run (3 stages, 6 steps each, logged every 2 steps) must have left
event files for every stage with the scalars of metrics.jsonl, the learning rate of
the warm-up + cosine schedule (checked against the formula by hand), and stage 1's
input images; evaluation adds eval/<metric> scalars equal to eval.json and the plots.
"""

import io
import math

import numpy as np
import PIL.Image
import pytest

event_accumulator = pytest.importorskip(
    'tensorboard.backend.event_processing.event_accumulator')
from tensorboard.util import tensor_util  # pylint: disable=wrong-import-position

from devise_jax import checkpoint  # pylint: disable=wrong-import-position
from devise_jax import plots  # pylint: disable=wrong-import-position

TRAIN_TAGS = {'loss', 'accuracy', 'learning_rate', 'l2_grads', 'l2_params',
              'images_per_sec'}


def read_events(workdir, name):
  """{tag: [(step, value)]} of the event files of `name` in `workdir`."""
  acc = event_accumulator.EventAccumulator(checkpoint.tensorboard_dir(workdir, name),
                                           size_guidance={'tensors': 0})
  acc.Reload()
  return {tag: [(e.step, tensor_util.make_ndarray(e.tensor_proto))
                for e in acc.Tensors(tag)] for tag in acc.Tags()['tensors']}


def image_of(value):
  """The first image of an image summary's tensor [width, height, png, ...]."""
  width, height, png = value[0], value[1], value[2]
  image = PIL.Image.open(io.BytesIO(png))
  assert image.size == (int(width), int(height))
  return image


def expected_learning_rate(stage_config, step):
  """optax's warm-up + cosine decay, written out by hand."""
  peak, warmup = stage_config.learning_rate, stage_config.warmup_steps
  total = max(stage_config.num_steps, warmup + 1)
  if step < warmup:
    return peak * step / warmup
  return 0.5 * peak * (1 + math.cos(math.pi * min(step - warmup, total - warmup)
                                    / (total - warmup)))


@pytest.mark.parametrize('stage', ['stage1', 'stage2', 'stage3'])
def test_every_stage_writes_its_scalars(reference_run, stage):
  config, workdir, _ = reference_run
  events = read_events(workdir, stage)
  assert TRAIN_TAGS <= set(events)
  logged = list(range(config.log_every, config[stage].num_steps + 1, config.log_every))
  records = [r for r in checkpoint.read_metrics(workdir) if r['stage'] == stage]
  assert [r['step'] for r in records] == logged
  for tag in TRAIN_TAGS:
    assert [s for s, _ in events[tag]] == logged, tag
    assert [float(v) for _, v in events[tag]] == pytest.approx(
        [r[tag] for r in records], rel=1e-6), tag
  lr = [float(v) for _, v in events['learning_rate']]
  assert lr == pytest.approx([expected_learning_rate(config[stage], s - 1)
                              for s in logged], rel=1e-5)


def test_stage1_shows_its_labelled_inputs(reference_run):
  _, workdir, _ = reference_run
  events = read_events(workdir, 'stage1')
  (step, value), = events['inputs']
  assert step == 0
  image = image_of(value)
  assert image.width > 200 and image.height > 100
  assert np.asarray(image).std() > 10  # Not a blank picture.
  # Stages 2 and 3 train on cached features: no images to show.
  assert 'inputs' not in read_events(workdir, 'stage2')


def test_evaluation_writes_metrics_and_plots(evaluated_run):
  workdir, result = evaluated_run.workdir, evaluated_run.result
  events = read_events(workdir, 'eval')
  step = result['stage2_step']
  for key, value in result['metrics'].items():
    (got_step, got), = events[f'eval/{key}']
    assert got_step == step and float(got) == pytest.approx(value, rel=1e-6), key
  for name in plots.EVAL_PLOTS:
    (_, value), = events[f'plots/{name[:-4]}']
    on_disk = PIL.Image.open(f'{checkpoint.plots_dir(workdir)}/{name}')
    assert image_of(value).size == on_disk.size
