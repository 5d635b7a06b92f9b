"""The pix2pix family (U-Net generator, PatchGAN, aligned image pairs)."""
