"""vertjax.eval."""
