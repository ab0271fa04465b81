"""vertjax.consistency."""
