"""DeViSE on ImageNet-2012 (Frome et al., NeurIPS 2013): the paper's setting.

Stage 1 trains SqueezeNet 1.1 with a softmax over the seen classes; stage 2 trains the
linear DeViSE projection onto the word vectors of the class names with the paper's
hinge rank loss. Evaluation reports flat hit@k and hierarchical precision@k (the
paper's metrics, its appendix) on the seen classes (Table 1's 1K rows), on WordNet
label sets 2 and 3 hops around the seen classes, with and without the seen classes
as extra candidates (Table 2's 2-hop / 3-hop rows, `devise_jax/evaluators/hierarchy.py`),
and over every WordNet noun with a word vector (`open_vocab`, the open-vocabulary end
of Table 2), plus this project's zero-shot, GZSL and ConSE columns.

Data: the ILSVRC-2012 tar files are a manual download (image-net.org); put
`ILSVRC2012_img_train.tar` and `ILSVRC2012_img_val.tar` in a folder and pass it as
`config.data.manual_dir` (the first run prepares TFDS `imagenet2012`: hours, ~150 GB
under `config.data.data_dir`). The zero-shot images here are ILSVRC's own: 200 of the
1,000 classes are held out (a seeded draw from the class list alone,
`protocol.draw_splits(1000, 200, 1, seed=0)`), because the paper's zero-shot images
(ImageNet 2011 21K classes) are not in TFDS. Class names are WordNet lemmas of the
synset ids (devise_jax/datasets/imagenet.py); `config.data.synsets` maps them back.

  devise-jax train --config experiments/configs/imagenet_devise.py \
      --workdir workdirs/imagenet --stages stage1,stage2 \
      --config.data.manual_dir=/data/imagenet --config.data.data_dir=/data/tfds
  devise-jax eval --workdir workdirs/imagenet          # eval.json, the table
  devise-jax embed --workdir workdirs/imagenet         # the validation gallery
  devise-jax demo --workdir workdirs/imagenet

Word vectors: the embedded GloVe 6B 50-d, with the 15 class names it lacks replaced
by their nearest covered WordNet hypernym (`imagenet.GLOVE_6B_FALLBACKS`). The paper
used skip-gram vectors trained on Wikipedia; closer to it, e.g.
`--config.word_vectors.source=/data/cc.en.300.bin` (fastText, whose subwords cover
every name). Restrict the 2/3-hop sets to ImageNet-21K as the paper did with
`--config.eval.restrict=/data/imagenet21k_words.txt` (ImageNet's `words.txt` format).

Hardware and time (an estimate, not a measurement: nothing here has run on ImageNet).
The training step costs about 14 MFLOPs per image at 32 px (experiments/bench), about
49x that at 224 px, ~0.7 GFLOPs: stage 1's 77M images (60 epochs) are ~5e16 FLOPs,
under an hour of compute on one current GPU at ~3% of its bfloat16 peak,
so the input pipeline (JPEG decoding on the host, roughly 3,000-5,000 images/s on 16
cores) decides: about 4-7 hours for stage 1 on one GPU with a 16-core host; stage 2
(on cached features, ~2.6 GB) and evaluation about an hour. On the 2-core CPU of
the development machine (~18 images/s at 224 px) stage 1 would take about 7 weeks.

Variants (`imagenet_devise.py:NAME`):
  synthetic  the same recipe at 224 px on 12,800 + 10,000 synthetic ImageNet-shaped
             JPEGs (no download; prepared on first use), 300 steps a stage:
               devise-jax train --config experiments/configs/imagenet_devise.py:synthetic \
                   --workdir workdirs/synthetic_imagenet --stages stage1,stage2
             its wall time and memory are in experiments/bench/README.md.
  tiny       32 px, a few steps: what tests/test_recipes.py runs on
             `tfds.testing.mock_data` (seconds).

Nothing below was tuned on ImageNet; choose with `devise-jax protocol --validation`.
"""

import os

from devise_jax import config_checks
from devise_jax import protocol
from devise_jax import wordnet
from devise_jax.datasets import imagenet

NUM_UNSEEN = 200


def _base_config():
  """The embedded default's config: every field, with its comment there."""
  return config_checks.load_config_file(
      os.path.join(os.path.dirname(__file__), 'fashion_mnist_zsl.py'))


def get_config(arg=None):
  """Returns the config; `arg` selects a variant: None/'default', 'synthetic' or 'tiny'."""
  config = _base_config()
  data = config.data
  data.name = 'imagenet2012'
  data.train_split = 'train[:99%]'  # 12,800 training images are held out for choices.
  data.val_split = 'train[99%:]'
  data.eval_split = 'validation'  # ILSVRC-2012 val, 50,000 images: the paper's test set.
  data.image_size = 224
  data.crop_padding = 32  # Resize to 256, crop 224.
  data.mean = (0.485, 0.456, 0.406)
  data.std = (0.229, 0.224, 0.225)
  data.cache = False  # 140 GB of JPEGs.
  data.augment = 'random_resized_crop'  # The ImageNet literature's training crop.
  names = imagenet.readable_names(wordnet.imagenet1k_ids())
  split = protocol.draw_splits(len(names), NUM_UNSEEN, 1, seed=0)[0]
  data.unseen_classes = tuple(names[i] for i in split)
  # Class name -> WordNet id, as pairs: some names hold dots ('R.V.'), which
  # ConfigDict keys cannot.
  if 'synsets' in data:
    del data['synsets']
  data.synsets = tuple(imagenet.synsets(wordnet.imagenet1k_ids()).items())
  config.word_vectors.overrides.update(
      imagenet.glove_6b_overrides(wordnet.imagenet1k_ids()))

  config.stage1.optimizer = 'sgd'
  config.stage1.num_steps = 150_000  # 60 epochs of 1.27M images.
  config.stage1.batch_size = 512
  config.stage1.learning_rate = 0.08
  config.stage1.warmup_steps = 2_500
  config.stage1.weight_decay = 2e-4
  # The paper's objective: its hinge rank loss on the raw features (the Fashion-MNIST
  # default's softmax on centred features was chosen on Fashion-MNIST's validation).
  config.stage2.loss = 'hinge_rank'
  config.stage2.center_features = False
  config.stage2.num_steps = 20_000
  config.stage2.batch_size = 1024
  # 800 seen labels constrain the whole 50-d output (Fashion-MNIST's 7 did not).
  config.stage2.weight_decay = 1e-2
  config.checkpoint_every = 5_000
  config.log_every = 500

  config.evals = ('zero_shot', 'gzsl', 'gzsl_calibrated', 'conse', 'seen_hit',
                  'hierarchy', 'open_vocab')
  config.eval.hit_k = (1, 2, 5, 10, 20)  # The paper's k.
  config.eval.hierarchy_k = (1, 2, 5, 10, 20)
  config.eval.open_vocab_k = (1, 2, 5, 10, 20)
  config.eval.label_sets = ('seen', '2-hop', '3-hop', '2-hop+seen', '3-hop+seen')
  config.eval.restrict = ''  # A synset list (e.g. ImageNet-21K's) the hop sets keep to.

  if arg == 'synthetic':
    # The paper's shapes without ImageNet: 224 px JPEGs of ImageNet's sizes in its
    # 1,000 classes (devise_jax/datasets/synthetic_imagenet.py), 12,800 training and
    # 10,000 evaluation images; a few hundred steps a stage. What it measures is
    # wall time and memory (experiments/bench/README.md); its accuracy means nothing.
    data.name = 'synthetic_imagenet/recipe'
    data.train_split, data.val_split = 'train[:90%]', 'train[90%:]'
    data.eval_split = 'validation'
    config.stage1.num_steps, config.stage1.batch_size = 300, 32
    config.stage1.warmup_steps, config.stage1.learning_rate = 30, 0.02
    config.stage2.num_steps, config.stage2.batch_size = 300, 256
    config.log_every, config.checkpoint_every = 50, 150
    config.eval.batch_size = 128
  elif arg == 'tiny':
    data.train_split, data.val_split, data.eval_split = 'train', 'train', 'validation'
    data.image_size, data.crop_padding = 32, 4
    for stage in (config.stage1, config.stage2):
      stage.num_steps, stage.batch_size, stage.warmup_steps = 4, 16, 1
    config.stage1.optimizer = 'adamw'
    config.log_every, config.checkpoint_every = 2, 2
    config.eval.batch_size = 32
  elif arg not in (None, '', 'default'):
    raise ValueError(f"unknown config variant {arg!r}; expected 'default', "
                     "'synthetic' or 'tiny'")
  return config
