"""vertjax.system."""
