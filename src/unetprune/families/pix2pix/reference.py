"""State-dict names of the official pix2pix code (junyanz/pytorch-CycleGAN-and-pix2pix), mapped
both ways to ours.  Pure functions on dicts of tensors: nothing here reads files.

The reference ``UnetGenerator`` nests one ``UnetSkipConnectionBlock`` per level; each block's
``model`` is an ``nn.Sequential`` with the next block inside it::

    outermost (level 1)  model.model           = [downconv, <level 2>, uprelu, upconv, tanh]
    level 1 < i < N      <prefix(i)>           = [downrelu, downconv, downnorm, <level i+1>,
                                                  uprelu, upconv, upnorm (, dropout)]
    innermost (level N)  <prefix(N)>           = [downrelu, downconv, uprelu, upconv, upnorm]

    prefix(1) = "model.model",  prefix(i) = "model.model.1" + ".model.3" * (i - 2) + ".model"

so ``down{i}.conv`` ↔ ``prefix(i).1`` (``.0`` for level 1), ``down{i}.norm`` ↔ ``prefix(i).2``,
``up{i}.conv`` ↔ ``prefix(i).5`` (``.3`` for levels 1 and N), ``up{i}.norm`` ↔ ``prefix(i).6``
(``.4`` for level N).  The reference builds at least 5 levels (ngf·1, 2, 4, 8 and an 8·ngf
innermost) and gives a conv a bias only with InstanceNorm, plus the outermost ConvTranspose:
our ``bias_mode="reference"``.  Its skip connection carries ``LeakyReLU(x)`` (the in-place
``downrelu``) where ours carries ``x``; the parent's ``ReLU`` makes them equal.

The reference ``NLayerDiscriminator`` (``model.<i>``) has exactly the module sequence of our
:class:`~unetprune.families.pix2pix.patchgan.PatchGANDiscriminator`, so its names map to themselves.

Files written by ``torch.nn.DataParallel`` prefix every key with ``module.``; checkpoints of
PyTorch < 0.4 lack ``num_batches_tracked`` and may carry running statistics of
InstanceNorm layers (the reference patches both on load; so do we).
"""

from __future__ import annotations

from typing import Mapping

import torch

from .unet import UNetSpec

MIN_NUM_DOWNS = 5  # the reference always builds the ngf·1, 2, 4, 8 levels plus an innermost one
NORM_BUFFERS = ("running_mean", "running_var", "num_batches_tracked")
DISCRIMINATOR_FIRST = "model.0.weight"


class ReferenceFormatError(ValueError):
    """A state dict is not one of the reference architecture the caller expects (message says what)."""


# --- names -------------------------------------------------------------------------------


def level_prefix(level: int) -> str:
    """The reference module path of level ``level``'s ``nn.Sequential`` (1 = outermost)."""
    if level < 1:
        raise ValueError(f"levels start at 1, got {level}")
    if level == 1:
        return "model.model"
    return "model.model.1" + ".model.3" * (level - 2) + ".model"


def module_map(num_downs: int) -> dict[str, str]:
    """Our module names (``down3.conv``, ``up3.norm``, …) → the reference's, for a U-Net of
    ``num_downs`` levels (the norm entries exist only with BatchNorm)."""
    if num_downs < 2:
        raise ValueError(f"a U-Net needs at least 2 levels, got {num_downs}")
    out: dict[str, str] = {}
    for i in range(1, num_downs + 1):
        p = level_prefix(i)
        if i == 1:
            out["down1.conv"], out["up1.conv"] = f"{p}.0", f"{p}.3"
        elif i == num_downs:
            out[f"down{i}.conv"], out[f"up{i}.conv"], out[f"up{i}.norm"] = f"{p}.1", f"{p}.3", f"{p}.4"
        else:
            out[f"down{i}.conv"], out[f"down{i}.norm"] = f"{p}.1", f"{p}.2"
            out[f"up{i}.conv"], out[f"up{i}.norm"] = f"{p}.5", f"{p}.6"
    return out


def _rename(key: str, table: Mapping[str, str]) -> str | None:
    module, _, leaf = key.rpartition(".")
    new = table.get(module)
    return None if new is None else f"{new}.{leaf}"


def to_reference(state_dict: Mapping[str, torch.Tensor], num_downs: int) -> dict[str, torch.Tensor]:
    """Our generator state dict → the reference's names (same tensors)."""
    table = module_map(num_downs)
    out = {}
    for k, v in state_dict.items():
        new = _rename(k, table)
        if new is None:
            raise KeyError(f"{k} is not a parameter of a {num_downs}-level U-Net")
        out[new] = v
    return out


def from_reference(state_dict: Mapping[str, torch.Tensor], num_downs: int) -> dict[str, torch.Tensor]:
    """The reference's generator state dict (no ``module.`` prefix) → our names; keys that
    belong to no module of a ``num_downs``-level U-Net raise ``KeyError``."""
    table = {ref: ours for ours, ref in module_map(num_downs).items()}
    out = {}
    for k, v in state_dict.items():
        new = _rename(k, table)
        if new is None:
            raise KeyError(f"{k} belongs to no layer of a {num_downs}-level reference U-Net")
        out[new] = v
    return out


def strip_module_prefix(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Remove the ``module.`` prefix ``nn.DataParallel`` puts on every key (if all have it)."""
    keys = list(state_dict)
    if keys and all(k.startswith("module.") for k in keys):
        return {k[len("module.") :]: v for k, v in state_dict.items()}
    return dict(state_dict)


# --- inference and checks ----------------------------------------------------------------


def _shape(t) -> list[int]:
    return list(t.shape)


def infer_generator(state_dict: Mapping[str, torch.Tensor]) -> dict:
    """``num_downs``, ``ngf``, ``input_nc``, ``output_nc`` and ``norm`` of a reference
    ``UnetGenerator`` state dict (``module.`` stripped); ``ReferenceFormatError`` if it is none."""
    sd = state_dict
    for key in ("model.model.0.weight", "model.model.3.weight"):
        if key not in sd:
            raise ReferenceFormatError(f"no '{key}' (the outermost block of a pix2pix UnetGenerator)")
        if not isinstance(sd[key], torch.Tensor) or sd[key].dim() != 4:
            raise ReferenceFormatError(f"'{key}' is not a 4-d conv weight")
    down1, up1 = sd["model.model.0.weight"], sd["model.model.3.weight"]
    n = 1
    while f"{level_prefix(n + 1)}.1.weight" in sd:
        n += 1
    if n < MIN_NUM_DOWNS:
        raise ReferenceFormatError(
            f"{n} nested UnetSkipConnectionBlocks, the reference builds at least {MIN_NUM_DOWNS}"
        )
    p2 = level_prefix(2)
    if f"{p2}.2.weight" in sd:
        norm = "batch"
    elif f"{p2}.1.bias" in sd:
        norm = "instance"  # InstanceNorm (affine=False) has no parameters; its convs have biases
    else:
        raise ReferenceFormatError(
            f"neither a BatchNorm ('{p2}.2.weight') nor an InstanceNorm "
            f"layout (a bias '{p2}.1.bias') at level 2"
        )
    return {
        "num_downs": n,
        "ngf": int(down1.shape[0]),
        "input_nc": int(down1.shape[1]),
        "output_nc": int(up1.shape[1]),
        "norm": norm,
    }


def describe(num_downs: int, ngf: int) -> str:
    return f"unet_{2**num_downs} (num_downs {num_downs}, ngf {ngf})"


def generator_from_reference(
    state_dict: Mapping[str, torch.Tensor],
    *,
    use_dropout: bool = True,
    num_downs: int | None = None,
    ngf: int | None = None,
    norm: str | None = None,
) -> tuple[UNetSpec, dict[str, torch.Tensor]]:
    """Our spec (``bias_mode="reference"``) and state dict for a reference ``UnetGenerator``
    state dict.  ``num_downs``/``ngf``/``norm``, when given, must be what the state dict holds;
    every key and shape is checked against the architecture.  Dropout leaves no trace in a
    state dict: ``use_dropout`` says whether the model had it (pix2pix's default: yes)."""
    sd = strip_module_prefix(state_dict)
    found = infer_generator(sd)
    for name, want in (("num_downs", num_downs), ("ngf", ngf), ("norm", norm)):
        if want is not None and found[name] != want:
            raise ReferenceFormatError(
                f"it holds {describe(found['num_downs'], found['ngf'])} with {found['norm']} norm; "
                f"expected {name} {want}"
            )
    n = found["num_downs"]
    spec = UNetSpec.reference(
        num_downs=n,
        ngf=found["ngf"],
        input_nc=found["input_nc"],
        output_nc=found["output_nc"],
        norm=found["norm"],
        use_dropout=use_dropout,
        bias_mode="reference",
    )
    from .unet import build_generator

    expected = to_reference(build_generator(spec, init=False).state_dict(), n)
    sd = dict(sd)
    for k in list(sd):
        module, _, leaf = k.rpartition(".")
        if k not in expected and leaf == "num_batches_tracked":
            del sd[k]  # harmless extra buffer
        elif k not in expected and found["norm"] == "instance" and leaf in NORM_BUFFERS:
            del sd[k]  # InstanceNorm running statistics of PyTorch < 0.4 (unused)
    for k, v in expected.items():
        if k not in sd and k.endswith("num_batches_tracked"):
            sd[k] = torch.zeros_like(v)  # PyTorch < 0.4 checkpoints
    missing = [k for k in expected if k not in sd]
    extra = [k for k in sd if k not in expected]
    what = f"a reference {describe(n, found['ngf'])} with {found['norm']} norm"
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"missing {', '.join(missing[:3])}{' …' if len(missing) > 3 else ''}")
        if extra:
            parts.append(f"unexpected {', '.join(extra[:3])}{' …' if len(extra) > 3 else ''}")
        raise ReferenceFormatError(f"keys do not match {what}: {'; '.join(parts)}")
    for k, v in expected.items():
        t = sd[k]
        if not isinstance(t, torch.Tensor) or _shape(t) != _shape(v):
            got = _shape(t) if isinstance(t, torch.Tensor) else type(t).__name__
            raise ReferenceFormatError(f"'{k}' has shape {got}, {what} has {_shape(v)}")
    ours = from_reference(
        {k: sd[k].to(expected[k].dtype) if sd[k].is_floating_point() else sd[k] for k in expected}, n
    )
    return spec, ours


def infer_discriminator(state_dict: Mapping[str, torch.Tensor]) -> dict:
    """``input_nc``, ``ndf``, ``n_layers`` and ``norm`` of a reference ``NLayerDiscriminator``."""
    sd = state_dict
    first = sd.get(DISCRIMINATOR_FIRST)
    if not isinstance(first, torch.Tensor) or first.dim() != 4:
        raise ReferenceFormatError(
            f"no 4-d '{DISCRIMINATOR_FIRST}' (the first conv of a pix2pix NLayerDiscriminator)"
        )
    convs = sorted(
        int(k.split(".")[1])
        for k in sd
        if k.startswith("model.")
        and k.endswith(".weight")
        and k.count(".") == 2
        and isinstance(sd[k], torch.Tensor)
        and sd[k].dim() == 4
    )
    n_layers = len(convs) - 2
    if n_layers < 1:
        raise ReferenceFormatError(f"{len(convs)} convs, an NLayerDiscriminator has at least 3")
    norm = "batch" if "model.3.weight" in sd else "instance"
    return {"input_nc": int(first.shape[1]), "ndf": int(first.shape[0]), "n_layers": n_layers, "norm": norm}


def discriminator_from_reference(
    state_dict: Mapping[str, torch.Tensor],
) -> tuple[dict, dict[str, torch.Tensor]]:
    """Our PatchGAN ``arch`` dict and state dict for a reference ``NLayerDiscriminator`` state
    dict (same names; ``module.`` stripped, every key and shape checked)."""
    from .patchgan import PatchGANDiscriminator

    sd = strip_module_prefix(state_dict)
    found = infer_discriminator(sd)
    D = PatchGANDiscriminator(**found)
    expected = D.state_dict()
    what = (
        f"a reference PatchGAN (input_nc {found['input_nc']}, ndf {found['ndf']}, "
        f"n_layers {found['n_layers']}, {found['norm']} norm)"
    )
    sd = {k: v for k, v in sd.items() if k in expected or k.rpartition(".")[2] not in NORM_BUFFERS}
    for k, v in expected.items():
        if k not in sd and k.endswith("num_batches_tracked"):
            sd[k] = torch.zeros_like(v)
    missing = [k for k in expected if k not in sd]
    extra = [k for k in sd if k not in expected]
    if missing or extra:
        raise ReferenceFormatError(f"keys do not match {what}: missing {missing[:3]}, unexpected {extra[:3]}")
    for k, v in expected.items():
        if not isinstance(sd[k], torch.Tensor) or _shape(sd[k]) != _shape(v):
            raise ReferenceFormatError(f"'{k}' does not have the shape {_shape(v)} of {what}")
    return D.config, {k: sd[k] for k in expected}
