"""vertjax.data."""
