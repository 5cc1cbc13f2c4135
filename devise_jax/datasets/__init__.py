"""Local TFDS dataset builders; importing this module registers them."""

from devise_jax.datasets import fashion_mnist_local

FashionMnistLocal = fashion_mnist_local.FashionMnistLocal
