"""vertjax.retrieval."""
