import pytest
import torch

from unetprune.errors import UserFacingError
from unetprune.metrics import complexity
from unetprune.families.pix2pix.patchgan import PatchGANDiscriminator
from unetprune.families.pix2pix.unet import UNetSpec, build_generator, count_parameters
from unetprune.family import family_names, family_of, get_family
from unetprune.families.pix2pix.family import Pix2PixFamily
from unetprune.families.pix2pix.unet import UNetGenerator

# Exact parameter counts, computed layer by layer (see docs/method.md):
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
    table = {
        1: (64, 128, 3),
        2: (128, 256, 64),
        3: (256, 512, 128),
        4: (512, 1024, 256),
        5: (512, 1024, 512),
        6: (512, 1024, 512),
        7: (512, 1024, 512),
        8: (512, 512, 512),
    }
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


# --- the model-family seam ------------------------------------------------------------------


def test_registry_returns_pix2pix():
    fam = get_family("pix2pix")
    assert isinstance(fam, Pix2PixFamily) and fam.name == "pix2pix"
    assert get_family() is fam and get_family(None) is fam
    assert "pix2pix" in family_names()
    spec = UNetSpec.reference(5, 8)
    assert family_of(spec) is fam
    assert family_of(build_generator(spec, seed=0)) is fam
    assert family_of({"format": "unetprune-checkpoint"}) is fam  # old checkpoint: no key
    assert family_of({"family": "pix2pix"}) is fam and family_of("pix2pix") is fam
    assert fam.metrics == ("fid", "kid", "segmentation", "paired", "diversity", "complexity")


def test_registry_errors_name_the_family():
    with pytest.raises(UserFacingError, match=r"unknown model family 'no-such-family'; known: .*pix2pix"):
        get_family("no-such-family")
    with pytest.raises(UserFacingError, match="unknown model family 'nope'"):
        family_of({"family": "nope"})
    with pytest.raises(TypeError, match="Linear belongs to no registered model family"):
        family_of(torch.nn.Linear(2, 2))


def test_count_parameters_is_the_one_in_metrics():
    assert count_parameters is complexity.count_parameters


def test_family_spec_round_trip_and_config():
    fam = get_family("pix2pix")
    spec = UNetSpec(3, 3, enc_widths=[8, 12, 20, 7], dec_widths=[3, 5, 9, 11], dropout_levels=[2])
    d = fam.spec_to_dict(spec)
    assert d["name"] == "unet" and d["enc_widths"] == [8, 12, 20, 7]
    assert fam.spec_from_dict(d) == spec
    cfg = {
        "model": {
            "pix2pix": {"num_downs": 8, "ngf": 64, "norm": "batch", "use_dropout": True, "bias_mode": "paper"}
        }
    }
    assert fam.spec_from_config(cfg) == UNetSpec.reference(8)
    with torch.device("meta"):
        assert count_parameters(fam.build(fam.spec_from_config(cfg), init=False)) == 54_414_531


def test_generator_built_via_family_equals_direct():
    spec = UNetSpec.reference(num_downs=5, ngf=8)
    direct = build_generator(spec, seed=3).eval()
    via = get_family("pix2pix").build(spec, seed=3).eval()
    via_dict = get_family("pix2pix").build(spec.to_dict(), seed=3).eval()
    other_seed = get_family("pix2pix").build(spec, seed=4).eval()
    a, b, c = direct.state_dict(), via.state_dict(), via_dict.state_dict()
    assert list(a) == list(b) == list(c)
    for k in a:
        assert a[k].shape == b[k].shape and torch.equal(a[k], b[k]) and torch.equal(a[k], c[k])
    assert not torch.equal(a["down3.conv.weight"], other_seed.state_dict()["down3.conv.weight"])
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    assert torch.equal(direct(x), via(x))
    assert get_family("pix2pix").input_shape(direct) == (1, 3, 32, 32)


def test_family_prunable_groups_order_and_inner_levels():
    fam = get_family("pix2pix")
    g = _meta_generator(UNetSpec.reference(8))
    order = [f"down{i}" for i in range(1, 9)] + [f"up{i}" for i in range(8, 1, -1)]
    assert fam.groups(g) == fam.groups(g.spec) == order
    assert fam.default_inner_levels(g.spec) == [5, 6, 7, 8]
    from unetprune.pruning.ops import pruning_ops

    ops = pruning_ops(g)  # the pruning side of the seam, registered under the family's name
    assert ops.family == fam.name
    assert ops.layers_of_levels(g, None) == (
        [5, 6, 7, 8],
        ["down5", "down6", "down7", "down8", "up8", "up7", "up6", "up5"],
    )
    conv, norm = fam.layer_filters(g, "up3")
    assert conv is g.up3.conv and norm is g.up3.norm and fam.layer_width(g, "up3") == 128
    cost = ops.width_cost(g, (1, 3, 256, 256))
    assert cost({})["params"] == 54_414_531
    # halving down8 and up8: down8 loses 256 filters (+ biases), up8 goes 512x512 -> 256x256
    # (+ 256 BN pairs), up7 loses the 256 input channels of its up half
    removed = (256 * 512 * 16 + 256) + (512 * 512 - 256 * 256) * 16 + 2 * 256 + 256 * 512 * 16
    assert cost({"down8": 256, "up8": 256})["params"] == 54_414_531 - removed == 47_073_731
    half = UNetSpec.reference(8)
    half.enc_widths[7], half.dec_widths[7] = 256, 256
    assert count_parameters(_meta_generator(half)) == 47_073_731
