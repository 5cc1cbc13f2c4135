"""Where a run's numbers go: metrics.jsonl and TensorBoard event files in the workdir.

`MetricWriter(workdir, name)` writes the event files of one part of a run under
`WORKDIR/tensorboard/<name>/` (a stage, or 'eval'), so `tensorboard --logdir workdirs`
shows every run, each stage as its own curve:

  <stage>  scalars loss, accuracy, learning_rate, l2_grads, l2_params, images_per_sec
           at every logged step (the same records as metrics.jsonl, which stays);
           image `inputs`: the first batch a stage trains on images, with its labels
  eval     scalars eval/<metric> of eval.json's metrics, at stage 2's step; images
           plots/<name> (the PNGs of devise_jax/plots.py)

Events are written with `tf.summary`: TensorFlow is already a dependency (tf.data and
TFDS), and `clu.metric_writers` would add a package whose summary writer wraps the same
calls. Only process 0 writes. The training loop calls `write_scalars` at its existing
log points, with values it has already fetched: no extra host sync per step.
"""

import os

import jax
import numpy as np
import PIL.Image
import tensorflow as tf

from devise_jax import artefacts
from devise_jax import plots


class MetricWriter:
  """metrics.jsonl records and event files of one stage, or of evaluation."""

  def __init__(self, workdir, name):
    self.workdir, self.name = workdir, name
    self._writer = None
    if jax.process_index() == 0:
      self._writer = tf.summary.create_file_writer(artefacts.tensorboard_dir(workdir, name))

  def write_scalars(self, step, values, jsonl=True):
    """{tag: number} at `step`; also a metrics.jsonl record {stage, step, **values}."""
    if jsonl:
      artefacts.append_metrics(self.workdir, dict(stage=self.name, step=step, **values))
    if self._writer is None:
      return
    with self._writer.as_default(step=step):
      for tag, value in values.items():
        tf.summary.scalar(tag, float(value))
    self._writer.flush()

  def write_images(self, step, images):
    """{tag: uint8 [H, W, 3] array} at `step`, one image each."""
    if self._writer is None:
      return
    with self._writer.as_default(step=step):
      for tag, image in images.items():
        tf.summary.image(tag, np.asarray(image, np.uint8)[None], max_outputs=1)
    self._writer.flush()

  def write_inputs(self, step, images, labels, names, count=16):
    """The first `count` images of a batch titled with their class names, as the
    image `inputs` (normalised images are rescaled for display)."""
    if self._writer is None:
      return
    titles = [names[i] if 0 <= i < len(names) else str(i) for i in labels[:count]]
    grid = plots.figure_array(plots.labelled_grid(images[:count], titles))
    self.write_images(step, {'inputs': grid})

  def close(self):
    if self._writer is not None:
      self._writer.close()


def write_eval(workdir, result, step, plot_paths=()):
  """eval.json's scalar metrics as eval/<metric>, and the plots as images, at `step`."""
  writer = MetricWriter(workdir, 'eval')
  metrics = {f'eval/{k}': v for k, v in result['metrics'].items()
             if isinstance(v, (int, float)) and np.isfinite(v)}
  writer.write_scalars(step, metrics, jsonl=False)
  images = {}
  for path in plot_paths:
    with PIL.Image.open(path) as image:
      name = os.path.splitext(os.path.basename(path))[0]
      images[f'plots/{name}'] = np.asarray(image.convert('RGB'))
  writer.write_images(step, images)
  writer.close()
