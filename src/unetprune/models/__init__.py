from .patchgan import PatchGANDiscriminator, build_discriminator
from .unet import UNetGenerator, UNetSpec, build_generator, count_parameters, init_weights

__all__ = ["PatchGANDiscriminator", "UNetGenerator", "UNetSpec", "build_discriminator",
           "build_generator", "count_parameters", "init_weights"]
