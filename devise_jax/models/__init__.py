"""Flax linen models: the SqueezeNet encoder and the heads built on its features."""
