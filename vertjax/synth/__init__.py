"""vertjax.synth."""
