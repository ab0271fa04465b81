"""vertjax.convert."""
