"""vertjax.train."""
