"""Wall time of each evaluator of a trained run, and the process's peak memory.

  .venv/bin/python experiments/bench/bench_evaluators.py --workdir W [--split S]

Restores the run once (`run.Run.load`), computes (or reads from the workdir's feature
cache) the evaluation split's outputs and the calibration, then runs each evaluator
of `config.evals` alone on the same data and prints one line per evaluator:
`<name>: <seconds> s`, then the time to get the outputs and the peak resident memory
(`ru_maxrss`). What `devise-jax eval` does, one evaluator at a time.
"""

import argparse
import os
import resource
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--workdir', required=True)
  parser.add_argument('--split', default=None)
  args = parser.parse_args(argv)
  from devise_jax import evaluate  # pylint: disable=import-outside-toplevel
  from devise_jax import evaluators  # pylint: disable=import-outside-toplevel
  from devise_jax import run as run_lib  # pylint: disable=import-outside-toplevel
  start = time.perf_counter()
  run = run_lib.Run.load(args.workdir)
  split = args.split or run.config.data.eval_split
  data = evaluate.evaluation_data(run, split)
  prepared = time.perf_counter() - start
  print(f'split {split}: {len(data.labels)} images, {len(run.seen)} seen and '
        f'{len(run.unseen)} unseen classes')
  for name in run.config.evals:
    start = time.perf_counter()
    metrics = evaluators.run_all([name], data, run.config.eval)
    print(f'{name}: {time.perf_counter() - start:.1f} s ({len(metrics)} metrics)',
          flush=True)
  print(f'restore, outputs and calibration: {prepared:.1f} s')
  print(f'peak resident memory: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.2f} GiB')


if __name__ == '__main__':
  main()
