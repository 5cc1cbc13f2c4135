"""Stanford Dogs (TFDS `stanford_dogs`): 120 breeds, crops from the bounding box.

TFDS downloads the images, annotations and the official train/test lists
(12,000 / 8,580 images) itself; on a machine without internet, prepare the
dataset elsewhere with the same TFDS version and copy its `data_dir`.

Its label names are `<WordNet id>-<breed>` ('n02085620-chihuahua'); their
readable names are the synsets' WordNet lemmas (`imagenet.readable_names`),
the same names the ImageNet classes of those synsets get.

The puppy seed project trained on 128 px crops of the dog, so with
`config.data.crop_to_box` an image is cropped to its first annotated box
(`objects/bbox`, normalised (ymin, xmin, ymax, xmax)) before resizing. Most
images hold one dog; where there are several the first annotated one is the
image's labelled subject as often as any, and one box per image keeps one
example per image. An image without a box is kept whole.
"""

import tensorflow as tf

# What `_read` decodes besides image and label to find the box.
BOX_FEATURES = {'objects': {'bbox': True}}


def first_box(example) -> tf.Tensor:
  """float32 [4]: the example's first box, or the whole image (0, 0, 1, 1)."""
  boxes = tf.reshape(tf.cast(example['objects']['bbox'], tf.float32), [-1, 4])
  whole = tf.constant([0.0, 0.0, 1.0, 1.0])
  return tf.cond(tf.shape(boxes)[0] > 0, lambda: boxes[0], lambda: whole)


def crop(image: tf.Tensor, box: tf.Tensor) -> tf.Tensor:
  """The pixels of `image` [H, W, C] inside the normalised `box`, at least 1x1.

  Edges are rounded outwards (floor of the top-left, ceiling of the
  bottom-right), so the crop holds every pixel the box touches.
  """
  shape = tf.cast(tf.shape(image)[:2], tf.float32)
  box = tf.clip_by_value(box, 0.0, 1.0)
  top_left = tf.cast(tf.floor(box[:2] * shape), tf.int32)
  bottom_right = tf.cast(tf.math.ceil(box[2:] * shape), tf.int32)
  top_left = tf.minimum(top_left, tf.cast(shape, tf.int32) - 1)
  bottom_right = tf.maximum(bottom_right, top_left + 1)
  return image[top_left[0]:bottom_right[0], top_left[1]:bottom_right[1]]
