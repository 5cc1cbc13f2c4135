"""Puppy embeddings on Stanford Dogs: the puppy seed project, in this codebase.

120 breeds, 128 px crops from each image's bounding box (`config.data.crop_to_box`,
devise_jax/datasets/stanford_dogs.py), a SqueezeNet 1.1 softmax (stage 1), the DeViSE
projection (stage 2) and the Siamese head on the frozen encoder's features (stage 3),
then a gallery of the test split for similarity search and puppy algebra. 20 of the
120 breeds are held out for the zero-shot columns: `config.data.unseen_fraction` of
the class list, drawn with `config.seed` (input_pipeline.split_classes), never by
looking at results. Breed names are the synsets' WordNet lemmas; GloVe 6B lacks 8 of
them, which take their nearest covered hypernym (`imagenet.GLOVE_6B_FALLBACKS`).
TFDS downloads Stanford Dogs itself (offline: prepare it elsewhere, copy the data_dir).

  devise-jax train --config experiments/configs/stanford_dogs_puppy.py \
      --workdir workdirs/dogs
  devise-jax eval --workdir workdirs/dogs
  devise-jax embed --workdir workdirs/dogs                        # the test gallery
  devise-jax search --workdir workdirs/dogs --gallery_ids 12 --space siamese  # similar
  devise-jax search --workdir workdirs/dogs --gallery_ids 12,40   # puppy algebra
  devise-jax demo --workdir workdirs/dogs

Hardware and time (an estimate, not a run): at 128 px the training step costs about
16x the 32 px step (~0.22 GFLOPs per image; 600-950 images/s at 32 px on the 2-core
development CPU, experiments/bench), so stage 1's 640k images take about 3-5 hours on
that CPU; on one GPU the run is bound by JPEG decoding and takes about 5-10 minutes.
Stages 2-3 run on cached features (minutes).

Variants (`stanford_dogs_puppy.py:NAME`): tiny  32 px, a few steps: what
tests/test_recipes.py runs on `tfds.testing.mock_data` (seconds).

Nothing below was tuned on Stanford Dogs; choose with `devise-jax protocol --validation`.
"""

import os

from devise_jax import config_checks

from devise_jax.datasets import imagenet

DOG_IDS = ('n02085620', 'n02116738')  # Stanford Dogs' WordNet ids lie in this range.


def _base_config():
  """The embedded default's config: every field, with its comment there."""
  return config_checks.load_config_file(
      os.path.join(os.path.dirname(__file__), 'fashion_mnist_zsl.py'))


def get_config(arg=None):
  """Returns the config; `arg` selects a variant: None/'default' or 'tiny'."""
  config = _base_config()
  data = config.data
  data.name = 'stanford_dogs'
  data.train_split = 'train[:90%]'
  data.val_split = 'train[90%:]'
  data.eval_split = 'test'
  data.image_size = 128  # The seed project's crops.
  data.crop_padding = 16  # Resize the box's pixels to 144, crop 128.
  data.crop_to_box = True  # Crop to the first annotated dog (objects/bbox).
  # Training: the Inception-style crop inside the dog's box; its area range starts at
  # 25 % rather than ImageNet's 8 % because the box is already the dog (untuned).
  data.augment = 'random_resized_crop'
  data.crop_area = (0.25, 1.0)
  data.mean = (0.485, 0.456, 0.406)
  data.std = (0.229, 0.224, 0.225)
  data.unseen_classes = ()
  data.unseen_fraction = 20 / 120
  if 'synsets' in data:  # The default's are Fashion-MNIST's; none here.
    del data['synsets']
  fallbacks = [i for i in imagenet.GLOVE_6B_FALLBACKS
               if DOG_IDS[0] <= i <= DOG_IDS[1]]
  config.word_vectors.overrides.update(imagenet.glove_6b_overrides(fallbacks))

  # No class maps to a WordNet synset here (config.data.synsets is empty), so the
  # WordNet evaluators would have no image to score.
  config.evals = tuple(e for e in config.evals if e not in ('open_vocab', 'hierarchy'))

  config.stage1.num_steps = 10_000  # 59 epochs of 10,800 images.
  config.stage1.batch_size = 64
  config.stage2.weight_decay = 0.1  # 100 seen labels constrain more of the 50-d output.
  config.stage3.num_steps = 3_000
  config.stage3.batch_size = 64  # 8 breeds x 8 images.
  config.checkpoint_every = 1_000
  config.log_every = 200
  config.eval.batch_size = 200

  if arg == 'tiny':
    data.train_split, data.val_split, data.eval_split = 'train', 'train', 'test'
    data.image_size, data.crop_padding = 32, 4
    for stage in (config.stage1, config.stage2, config.stage3):
      stage.num_steps, stage.batch_size, stage.warmup_steps = 4, 16, 1
    config.log_every, config.checkpoint_every = 2, 2
    config.eval.batch_size = 32
  elif arg not in (None, '', 'default'):
    raise ValueError(f"unknown config variant {arg!r}; expected 'default' or 'tiny'")
  return config
