"""``tinyfam``: a minimal model family living outside unetprune (an encoder-decoder GAN
generator without skip connections), registered through the ``unetprune.families`` entry
point of ``tinyfam-0.0.dist-info``."""
