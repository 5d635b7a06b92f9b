"""unetprune: structured pruning of U-Net GAN generators ("Cut Inner Layers", arXiv 2206.14658)."""

__version__ = "0.1.0"
