"""CIFAR-100 (TFDS `cifar100`): the 100 fine labels and the fixed zero-shot split.

TFDS's `label` feature is the fine label (100 classes; `coarse_label`, the 20
superclasses, is not read), named as in the data set's `fine_label_names.txt`,
in this order (alphabetical). TFDS downloads the data itself; on a machine
without internet, prepare it elsewhere and copy the `data_dir`.

The zero-shot split of experiments/configs/cifar100_zsl.py is 20 unseen classes
drawn by the protocol's seeded sampler from this list alone,
`protocol.draw_splits(100, 20, 1, seed=0)[0]`: never chosen by looking at
results or at word vectors (tests/test_recipes.py checks the config against
the draw).
"""

FINE_LABELS = (
    'apple', 'aquarium_fish', 'baby', 'bear', 'beaver', 'bed', 'bee', 'beetle',
    'bicycle', 'bottle', 'bowl', 'boy', 'bridge', 'bus', 'butterfly', 'camel', 'can',
    'castle', 'caterpillar', 'cattle', 'chair', 'chimpanzee', 'clock', 'cloud',
    'cockroach', 'couch', 'crab', 'crocodile', 'cup', 'dinosaur', 'dolphin',
    'elephant', 'flatfish', 'forest', 'fox', 'girl', 'hamster', 'house', 'kangaroo',
    'keyboard', 'lamp', 'lawn_mower', 'leopard', 'lion', 'lizard', 'lobster', 'man',
    'maple_tree', 'motorcycle', 'mountain', 'mouse', 'mushroom', 'oak_tree', 'orange',
    'orchid', 'otter', 'palm_tree', 'pear', 'pickup_truck', 'pine_tree', 'plain',
    'plate', 'poppy', 'porcupine', 'possum', 'rabbit', 'raccoon', 'ray', 'road',
    'rocket', 'rose', 'sea', 'seal', 'shark', 'shrew', 'skunk', 'skyscraper', 'snail',
    'snake', 'spider', 'squirrel', 'streetcar', 'sunflower', 'sweet_pepper', 'table',
    'tank', 'telephone', 'television', 'tiger', 'tractor', 'train', 'trout', 'tulip',
    'turtle', 'wardrobe', 'whale', 'willow_tree', 'wolf', 'woman', 'worm')
