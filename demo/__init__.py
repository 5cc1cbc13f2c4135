"""The Gradio demo of a trained workdir, installed as `devise_jax.demo` (see `app`)."""
