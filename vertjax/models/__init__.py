"""vertjax.models."""
