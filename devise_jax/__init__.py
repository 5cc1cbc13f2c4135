"""devise_jax: DeViSE zero-shot classification and Siamese image embeddings in JAX/Flax."""
