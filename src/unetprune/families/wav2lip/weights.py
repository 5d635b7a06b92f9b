"""The released Wav2Lip checkpoints: their state-dict key names mapped onto this package's
modules, loaded safely (:func:`unetprune.weights.load_weights`) and checked against the architecture.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from pathlib import Path

import torch
from torch import nn

from ...weights import WeightsFileError, load_weights
from .networks import Wav2LipGenerator, Wav2LipSpec


# ------------------------------------------------------------------------------------------
# reference state dicts and weight files
# ------------------------------------------------------------------------------------------

_PREFIX_RE = re.compile(r"^(module\.|_orig_mod\.)+")


def strip_prefixes(sd: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Remove DataParallel's ``module.`` (and torch.compile's ``_orig_mod.``) prefixes."""
    return {_PREFIX_RE.sub("", k): v for k, v in sd.items()}


def _block_leaf(rest: str) -> str | None:
    """``conv_block.0.weight`` → ``conv.weight``; ``conv_block.1.running_mean`` → ``bn.running_mean``."""
    m = re.fullmatch(r"conv_block\.([01])\.(.+)", rest)
    if not m:
        return None
    return ("conv." if m.group(1) == "0" else "bn.") + m.group(2)


# reference conv-block keys -> our block prefix (the indices of the match fill the braces)
_WAV2LIP_BLOCK_KEYS = (
    (re.compile(r"face_encoder_blocks\.(\d+)\.(\d+)\.(.+)"), "fe{}.{}."),
    (re.compile(r"face_decoder_blocks\.(\d+)\.(\d+)\.(.+)"), "fd{}.{}."),
    (re.compile(r"audio_encoder\.(\d+)\.(.+)"), "audio.{}."),
    (re.compile(r"output_block\.0\.(.+)"), "out.0."),
)


def map_reference_wav2lip_key(key: str) -> str | None:
    """Our name of a reference Wav2Lip key (after prefix stripping); ``None`` if it is not one."""
    for pattern, prefix in _WAV2LIP_BLOCK_KEYS:
        m = pattern.fullmatch(key)
        if m:
            *index, rest = m.groups()
            leaf = _block_leaf(rest)
            return None if leaf is None else prefix.format(*index) + leaf
    m = re.fullmatch(r"output_block\.1\.(weight|bias)", key)
    return f"out.1.{m.group(1)}" if m else None


def _unwrap_checkpoint(obj) -> Mapping:
    """The state dict inside a reference checkpoint (``{"state_dict": …}``) or the object itself."""
    if isinstance(obj, Mapping) and "state_dict" in obj and isinstance(obj["state_dict"], Mapping):
        return obj["state_dict"]
    return obj


def _check_against(model: nn.Module, sd: Mapping[str, torch.Tensor], what: str) -> None:
    """Raise ValueError (one line) unless ``sd`` has exactly ``model``'s keys and shapes."""
    own = model.state_dict()
    missing = [k for k in own if k not in sd]
    extra = [k for k in sd if k not in own]
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing (e.g. {missing[0]})")
        if extra:
            parts.append(f"{len(extra)} unexpected (e.g. {extra[0]})")
        raise ValueError(f"not a {what} state dict: " + ", ".join(parts))
    for k, v in own.items():
        t = sd[k]
        if not isinstance(t, torch.Tensor) or tuple(t.shape) != tuple(v.shape):
            got = tuple(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__
            raise ValueError(f"not a {what} state dict: {k} has shape {got}, expected {tuple(v.shape)}")


def load_reference_wav2lip_state_dict(
    sd: Mapping, spec: Wav2LipSpec | None = None
) -> dict[str, torch.Tensor]:
    """Map a reference Wav2Lip state dict (or checkpoint ``{"state_dict": …}``) onto our names.

    Accepts the keys of Rudrabha/Wav2Lip's ``Wav2Lip`` with or without the ``module.``
    prefix.  The result is checked against a generator of ``spec`` (default: the reference
    widths) — every key present, every shape right — and raises ``ValueError`` with a
    one-line reason otherwise.
    """
    return remap_state_dict(
        sd,
        map_reference_wav2lip_key,
        "Wav2Lip",
        "reference Wav2Lip",
        lambda: Wav2LipGenerator(spec if spec is not None else Wav2LipSpec.reference()),
    )


def remap_state_dict(sd: Mapping, mapper, what: str, ref_what: str, build) -> dict[str, torch.Tensor]:
    """A foreign state dict (or ``{"state_dict": …}`` checkpoint, with or without ``module.``)
    under our names: every key through ``mapper`` (None = not this model's key), then checked
    against ``build()`` made on the meta device (every key present, every shape right).
    ``ValueError`` with a one-line reason otherwise: "not a <what> state dict: …" for foreign
    keys, "not a <ref_what> state dict: …" for missing keys or wrong shapes."""
    out: dict[str, torch.Tensor] = {}
    unknown = []
    for k, v in strip_prefixes(_unwrap_checkpoint(sd)).items():
        ours = mapper(k)
        if ours is None:
            unknown.append(k)
        else:
            out[ours] = v
    if unknown:
        raise ValueError(f"not a {what} state dict: {len(unknown)} keys of another model (e.g. {unknown[0]})")
    with torch.device("meta"):
        ref = build()
    _check_against(ref, out, ref_what)
    return out


def load_reference_file(
    path: Path | str,
    remap: Callable[[Mapping], dict],
    build: Callable[[], nn.Module],
    *,
    kind: str,
    expected: str,
    hint: Callable[[Mapping], str] = lambda obj: "",
    check: Callable[[Mapping], None] | None = None,
    map_location="cpu",
) -> nn.Module:
    """``build()`` with the weights of the released file ``path``: read safely
    (:func:`unetprune.weights.load_weights`), mapped by ``remap`` (ValueError when it does not
    fit).  One-line :class:`WeightsFileError` errors name the file: ``expected {kind}, got <type>``
    for a file that holds no mapping, ``expected {expected}{hint(obj)}; <why>`` for one that does
    not map; ``check(obj)`` may refuse the mapping first."""
    obj = load_weights(path, map_location=map_location)
    if not isinstance(obj, Mapping):
        raise WeightsFileError(f"{path}: expected {kind}, got {type(obj).__name__}")
    if check is not None:
        check(obj)
    try:
        sd = remap(obj)
    except ValueError as e:
        raise WeightsFileError(f"{path}: expected {expected}{hint(obj)}; {e}") from None
    m = build()
    m.load_state_dict(sd)
    return m


def load_wav2lip_weights(
    path: Path | str, spec: Wav2LipSpec | None = None, map_location="cpu"
) -> Wav2LipGenerator:
    """A generator with the weights of a reference Wav2Lip checkpoint (``wav2lip.pth``,
    ``wav2lip_gan.pth``: ``{"state_dict": …}``) or a bare reference state dict."""
    return load_reference_file(
        path,
        lambda obj: load_reference_wav2lip_state_dict(obj, spec),
        lambda: Wav2LipGenerator(spec if spec is not None else Wav2LipSpec.reference()),
        kind="a reference Wav2Lip checkpoint (a dict with 'state_dict')",
        expected="a reference Wav2Lip generator checkpoint",
        map_location=map_location,
    )
