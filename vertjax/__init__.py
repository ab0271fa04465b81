"""vertjax: T5X-style JAX/Flax recipes for trustworthy vertical-domain language models.

Importing the package is cheap: heavy dependencies (TensorFlow through seqio, scann) load lazily
in the modules that need them.
"""

__version__ = "0.1.0"
