"""The pix2pix family's own ``unetprune`` commands (``Pix2PixFamily.command_modules``)."""
