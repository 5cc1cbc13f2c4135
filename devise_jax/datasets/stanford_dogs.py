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

import numpy as np


def first_box(example) -> np.ndarray:
  """float32 [4]: the example's first box, or the whole image (0, 0, 1, 1)."""
  boxes = np.reshape(np.asarray(example['objects']['bbox'], np.float32), (-1, 4))
  return boxes[0] if len(boxes) else np.array([0.0, 0.0, 1.0, 1.0], np.float32)


def crop(image: np.ndarray, box: np.ndarray) -> np.ndarray:
  """The pixels of `image` [H, W, C] inside the normalised `box`, at least 1x1.

  Edges are rounded outwards (floor of the top-left, ceiling of the
  bottom-right), so the crop holds every pixel the box touches.
  """
  size = np.array(image.shape[:2])
  box = np.clip(np.asarray(box, np.float32), 0.0, 1.0)
  top_left = np.minimum(np.floor(box[:2] * size.astype(np.float32)).astype(int), size - 1)
  bottom_right = np.maximum(np.ceil(box[2:] * size.astype(np.float32)).astype(int),
                            top_left + 1)
  return image[top_left[0]:bottom_right[0], top_left[1]:bottom_right[1]]
