from .family import ModelFamily, family_for_config, family_names, family_of, get_family, register_family
from .patchgan import PatchGANDiscriminator, build_discriminator
from .unet import UNetGenerator, UNetSpec, build_generator, count_parameters, init_weights

__all__ = ["ModelFamily", "PatchGANDiscriminator", "UNetGenerator", "UNetSpec", "build_discriminator",
           "build_generator", "count_parameters", "family_for_config", "family_names", "family_of",
           "get_family", "init_weights", "register_family"]
