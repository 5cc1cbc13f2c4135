"""The training loop: how one stage steps, logs and checkpoints, on a data mesh.

Data parallelism uses `jax.jit` with shardings: the batch is split over a 1-D mesh of
every device (axis 'data'), params and optimiser state are replicated, and XLA inserts
the gradient all-reduce. Several steps run per compiled call (`multi_step`), and batches
are copied to the devices ahead of the call that takes them (`on_device`).
"""

import collections
import dataclasses
import time
from typing import Any, Callable

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
import orbax.checkpoint as ocp
import tqdm

from devise_jax import artefacts
from devise_jax import checkpoint


class TrainingError(RuntimeError):
  """Training cannot go on (e.g. a NaN loss)."""


def data_mesh():
  # Mesh() gives 'auto' axes: XLA's partitioner places every intermediate.
  return Mesh(np.asarray(jax.devices()), ('data',))


def multi_step(step, n):
  """`n` steps of `step` as one function `(state, batches, rng) -> (state, metrics)` of
  batches stacked [n, ...]; the metrics are the last step's.

  The steps are written out one after the other (unrolled): XLA:CPU then overlaps the
  end of one step (the optimiser's many small updates) with the start of the next, and
  the call is dispatched once: 1.13-1.22x the throughput of single calls for stage 1 on
  a 2-core CPU (experiments/bench/README.md). A `lax.scan` loop (XLA while loop) was
  6x slower there.
  """
  def run(state, batches, rng):
    for i in range(n):
      state, metrics = step(state, jax.tree_util.tree_map(lambda b: b[i], batches), rng)
    return state, metrics
  return run


def jit_step(step, mesh, stacked=False):
  """`step` jitted as training runs it: state and rng replicated over `mesh`, the batch
  (`stacked`: each of the batches [n, ...]) split over its 'data' axis, the state
  donated (updated in place)."""
  replicated = NamedSharding(mesh, P())
  sharded = NamedSharding(mesh, P(None, 'data') if stacked else P('data'))
  return jax.jit(step, in_shardings=(replicated, sharded, replicated),
                 out_shardings=(replicated, replicated), donate_argnums=0)


def shard_batch(batch, sharding):
  return {k: jax.make_array_from_process_local_data(sharding, v) for k, v in batch.items()}


def calls(start, stop, size, boundaries=()):
  """(first step, steps) of each compiled call from step `start` to `stop`: `size`
  steps, aligned to multiples of `size`, and cut so that every multiple of each of
  `boundaries` (where the loop logs and saves) ends a call. A function of the step
  numbers alone, so a resumed run makes the same calls as an uninterrupted one."""
  step = start
  while step < stop:
    end = min([stop, (step // size + 1) * size] + [(step // b + 1) * b for b in boundaries])
    yield step, end - step
    step = end


def on_device(batches, sharding, sizes, ahead=2):
  """Yields (host batches, device batches) stacked [n, ...] for each n in `sizes`, each
  copy to the devices started `ahead` calls before the call that takes it."""
  queue = collections.deque()
  for n in sizes:
    group = [next(batches) for _ in range(n)]
    host = {k: np.stack([b[k] for b in group]) for k in group[0]}
    queue.append((host, shard_batch(host, sharding)))
    if len(queue) > ahead:
      yield queue.popleft()
  yield from queue


@dataclasses.dataclass
class Loop:
  """How one stage steps, logs and checkpoints."""
  stage: str
  num_steps: int
  batch_size: int
  log_every: int
  checkpoint_every: int
  workdir: str
  mngr: Any  # The stage's Orbax CheckpointManager.
  mesh: Any  # Batches are split over its 'data' axis.
  steps_per_call: int = 1  # Steps per compiled call (`multi_step`).
  after_step: Callable[[int], None] | None = None
  learning_rate: Callable[[int], Any] | None = None  # The schedule, logged at log points.
  class_names: tuple = ()  # Label id -> name (TensorBoard's input images).
  writer: Any = None  # metric_writer.MetricWriter: metrics.jsonl and event files.

  def run(self, state, step, batches, rng):
    """Steps from `state.step` to `num_steps` with the pure `step`; returns the final
    state."""
    start = int(state.step)
    schedule = list(calls(start, self.num_steps, self.steps_per_call,
                          (self.log_every, self.checkpoint_every)))
    compiled = {}  # Steps per call -> the jitted `multi_step`.
    sharding = NamedSharding(self.mesh, P(None, 'data'))
    bar = tqdm.tqdm(total=self.num_steps, initial=start, desc=self.stage,
                    dynamic_ncols=True)
    tick, images = time.perf_counter(), 0
    for (first, n), (host, batch) in zip(
        schedule, on_device(batches, sharding, [n for _, n in schedule])):
      if first == start and 'image' in host:  # Host data: no device sync.
        self.writer.write_inputs(first, host['image'][0], host['label'][0],
                                 self.class_names)
      if n not in compiled:
        compiled[n] = jit_step(multi_step(step, n), self.mesh, stacked=True)
      state, metrics = compiled[n](state, batch, rng)
      bar.update(n)
      images += n * self.batch_size
      done = first + n
      if done % self.log_every == 0 or done == self.num_steps:
        metrics = self._log(done, metrics, images / (time.perf_counter() - tick))
        bar.set_postfix(loss=f"{metrics['loss']:.4f}",
                        img_s=f"{metrics['images_per_sec']:.0f}")
        tick, images = time.perf_counter(), 0
      if done % self.checkpoint_every == 0 or done == self.num_steps:
        self._save(done, state, metrics)
      if self.after_step:
        for step_done in range(first + 1, done + 1):
          self.after_step(step_done)
    bar.close()
    return state

  def _log(self, done, metrics, images_per_sec):
    metrics = {k: float(v) for k, v in jax.device_get(metrics).items()}
    if not all(np.isfinite(v) for v in metrics.values()):
      self.mngr.wait_until_finished()
      raise TrainingError(f'{self.stage}: non-finite metrics at step {done} ({metrics}); '
                          f'the last good checkpoint is step {self.mngr.latest_step()}')
    metrics['images_per_sec'] = images_per_sec
    if self.learning_rate is not None:  # The rate of the step just taken (done - 1).
      metrics['learning_rate'] = float(self.learning_rate(done - 1))
    self.writer.write_scalars(done, metrics)
    return metrics

  def _save(self, done, state, metrics):
    if not np.isfinite(float(metrics['l2_params'])):
      raise TrainingError(f'{self.stage}: non-finite params at step {done}; not saved')
    self.mngr.save(done, args=ocp.args.StandardSave(state))
    artefacts.record_fingerprint(self.workdir, self.stage, done, state.params)
