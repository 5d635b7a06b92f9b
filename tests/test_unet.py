import pytest
import torch

from unetprune.models import PatchGANDiscriminator, UNetSpec, build_generator, count_parameters
from unetprune.models.unet import UNetGenerator

# Exact parameter counts, computed layer by layer (see PAPER.md "Reference architectures"):
# 'paper' = conv bias wherever no norm follows; 'reference' = official pix2pix code with
# BatchNorm (only the outermost ConvTranspose has a bias): 576 fewer for unet_256
# (down1 bias 64 + innermost down bias 512), 64 + 512 = 576 fewer for every depth.
PAPER_PARAMS = {8: 54_414_531, 7: 41_829_571, 6: 29_244_611, 5: 16_659_651, 4: 6_171_843}


def _meta_generator(spec):
    with torch.device("meta"):
        return UNetGenerator(spec)


@pytest.mark.parametrize("num_downs,expected", sorted(PAPER_PARAMS.items()))
def test_parameter_counts_paper(num_downs, expected):
    g = _meta_generator(UNetSpec.reference(num_downs=num_downs))
    assert count_parameters(g) == expected


@pytest.mark.parametrize("num_downs", [4, 5, 6, 7, 8])
def test_parameter_counts_reference_bias(num_downs):
    enc = UNetSpec.reference(num_downs=num_downs).enc_widths
    g = _meta_generator(UNetSpec.reference(num_downs=num_downs, bias_mode="reference"))
    assert count_parameters(g) == PAPER_PARAMS[num_downs] - enc[0] - enc[-1]


def test_unet256_matches_paper_table_layer_by_layer():
    g = _meta_generator(UNetSpec.reference(8))
    table = {1: (64, 128, 3), 2: (128, 256, 64), 3: (256, 512, 128), 4: (512, 1024, 256),
             5: (512, 1024, 512), 6: (512, 1024, 512), 7: (512, 1024, 512), 8: (512, 512, 512)}
    for lv, (enc_out, dec_in, dec_out) in table.items():
        down, up = getattr(g, f"down{lv}"), getattr(g, f"up{lv}")
        assert down.conv.out_channels == enc_out
        assert (up.conv.in_channels, up.conv.out_channels) == (dec_in, dec_out)
        # BN exactly on levels 2..7 of the encoder and 2..8 of the decoder
        assert isinstance(down.norm, torch.nn.BatchNorm2d) == (1 < lv < 8)
        assert isinstance(up.norm, torch.nn.BatchNorm2d) == (lv > 1)
        assert (down.conv.bias is not None) == (lv in (1, 8))
        assert (up.conv.bias is not None) == (lv == 1)
        assert isinstance(up.dropout, torch.nn.Dropout) == (lv in (5, 6, 7))
        assert isinstance(down.act, torch.nn.LeakyReLU) == (lv > 1)
    assert isinstance(g.up1.norm, torch.nn.Tanh)
    assert g.up8.up_ch == 0 and g.up7.skip_ch == 512 and g.up7.up_ch == 512


def test_forward_shapes_and_range():
    g = build_generator(UNetSpec.reference(num_downs=5, ngf=8), seed=0)
    x = torch.randn(2, 3, 32, 32)
    y = g(x)
    assert y.shape == (2, 3, 32, 32)
    assert y.abs().max() <= 1.0
    assert g.level_names() == ["down1", "down2", "down3", "down4", "down5", "up5", "up4", "up3", "up2", "up1"]


def test_custom_widths_are_an_ordinary_instance():
    spec = UNetSpec(3, 3, enc_widths=[8, 12, 20, 7], dec_widths=[3, 5, 9, 11])
    g = build_generator(spec, seed=0)
    assert g.down3.conv.out_channels == 20 and g.down4.conv.in_channels == 20
    assert g.up4.conv.in_channels == 7 and g.up4.conv.out_channels == 11
    assert g.up3.conv.in_channels == 20 + 11 and g.up2.conv.in_channels == 12 + 9
    assert g.up1.conv.in_channels == 8 + 5
    assert g(torch.randn(1, 3, 16, 16)).shape == (1, 3, 16, 16)


def test_spec_validation_messages():
    with pytest.raises(ValueError, match="dec_widths has 2 entries, expected 3"):
        UNetSpec(3, 3, [4, 8, 8], [3, 4]).validate()
    with pytest.raises(ValueError, match=r"enc_widths\[1\] must be a positive integer"):
        UNetSpec(3, 3, [4, 0, 8], [3, 4, 8]).validate()
    with pytest.raises(ValueError, match="dec_widths\\[0\\] \\(up1\\) must equal output_nc=3"):
        UNetSpec(3, 3, [4, 8, 8], [5, 4, 8]).validate()


def test_init_normal_002():
    g = build_generator(UNetSpec.reference(num_downs=8), seed=0)
    w = g.down5.conv.weight
    assert abs(w.mean().item()) < 1e-3 and abs(w.std().item() - 0.02) < 1e-3
    assert abs(g.down5.norm.weight.mean().item() - 1.0) < 5e-3
    assert torch.count_nonzero(g.down1.conv.bias) == 0


def test_patchgan_70x70():
    d = PatchGANDiscriminator(6, 64, 3)
    assert d(torch.randn(1, 6, 256, 256)).shape == (1, 1, 30, 30)
    # 2,768,705 parameters for the reference 70x70 PatchGAN with BatchNorm
    assert count_parameters(d) == 2_768_705
