"""Zero-shot CIFAR-100: a fixed split of 80 seen and 20 unseen fine classes.

The 20 unseen classes are split 0 of the protocol's seeded sampler over the 100 fine
labels in TFDS's order, `protocol.draw_splits(100, 20, 1, seed=0)[0]` (label ids 1, 3,
6, 15, 22, 26, 42, 46, 52, 53, 55, 57, 59, 61, 68, 70, 73, 83, 92, 93): drawn from the
class list alone, never chosen by looking at results or word vectors
(tests/test_recipes.py checks the list below against the draw). Stages 1-3 as in the
embedded default (softmax, DeViSE, Siamese head); GloVe 6B 50-d covers every name.
TFDS downloads CIFAR-100 itself (offline: prepare it elsewhere, copy the data_dir).

  devise-jax train --config experiments/configs/cifar100_zsl.py --workdir workdirs/cifar100
  devise-jax eval --workdir workdirs/cifar100
  devise-jax embed --workdir workdirs/cifar100          # the test split as the gallery
  devise-jax demo --workdir workdirs/cifar100
  devise-jax protocol --config experiments/configs/cifar100_zsl.py \
      --splits 5 --seeds 3 --unseen 20 --out workdirs/cifar100_protocol   # headline

Hardware and time (an estimate from the embedded default's measured speed, not a run:
the 32 px training step ran at 600-950 images/s on the 2-core development CPU,
experiments/bench): stage 1's 2.6M images take about 45-70 minutes there, stages 2-3
a few minutes; on one GPU the whole run takes minutes.

Variants (`cifar100_zsl.py:NAME`): tiny  a few steps: what tests/test_recipes.py runs
on `tfds.testing.mock_data` (seconds).

Nothing below was tuned on CIFAR-100; choose with `devise-jax protocol --validation`.
"""

import os

from devise_jax import config_checks

# Split 0 of protocol.draw_splits(100, 20, 1, seed=0) over
# devise_jax.datasets.cifar100.FINE_LABELS.
UNSEEN = ('aquarium_fish', 'bear', 'bee', 'camel', 'clock', 'crab', 'leopard', 'man',
          'oak_tree', 'orange', 'otter', 'pear', 'pine_tree', 'plate', 'road', 'rose',
          'shark', 'sweet_pepper', 'tulip', 'turtle')


def _base_config():
  """The embedded default's config: every field, with its comment there."""
  return config_checks.load_config_file(
      os.path.join(os.path.dirname(__file__), 'fashion_mnist_zsl.py'))


def get_config(arg=None):
  """Returns the config; `arg` selects a variant: None/'default' or 'tiny'."""
  config = _base_config()
  data = config.data
  data.name = 'cifar100'
  data.train_split = 'train[:90%]'
  data.val_split = 'train[90%:]'
  data.eval_split = 'test'
  data.image_size = 32
  data.crop_padding = 4
  data.mean = (0.507, 0.487, 0.441)  # CIFAR-100's training-set channel means and stds.
  data.std = (0.267, 0.256, 0.276)
  data.unseen_classes = UNSEEN
  if 'synsets' in data:  # The default's are Fashion-MNIST's; none here.
    del data['synsets']

  # No class maps to a WordNet synset here (config.data.synsets is empty), so the
  # WordNet evaluators would have no image to score.
  config.evals = tuple(e for e in config.evals if e not in ('open_vocab', 'hierarchy'))

  config.stage1.num_steps = 20_000  # 57 epochs of 45,000 images.
  config.stage2.weight_decay = 0.1  # 80 seen labels constrain more of the 50-d output.
  config.stage3.num_steps = 3_000
  config.checkpoint_every = 1_000
  config.log_every = 200

  if arg == 'tiny':
    data.train_split, data.val_split, data.eval_split = 'train', 'train', 'test'
    for stage in (config.stage1, config.stage2, config.stage3):
      stage.num_steps, stage.batch_size, stage.warmup_steps = 4, 16, 1
    config.log_every, config.checkpoint_every = 2, 2
    config.eval.batch_size = 32
  elif arg not in (None, '', 'default'):
    raise ValueError(f"unknown config variant {arg!r}; expected 'default' or 'tiny'")
  return config
