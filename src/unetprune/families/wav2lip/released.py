"""The released Wav2Lip files (``wav2lip.pth``, ``wav2lip_gan.pth``, ``lipsync_expert.pth``,
``visual_quality_disc.pth``) as self-describing unetprune checkpoints: the ``import_released``
hooks of the ``wav2lip`` and ``wav2lip-expert`` families (``unetprune import --family …``) and
the conversion ``lipsync --checkpoint`` applies to a released generator.

The released files are the reference training scripts' ``save_checkpoint`` dicts
(``{"state_dict", "optimizer", "global_step", "global_epoch"}``), with or without
DataParallel's ``module.`` prefixes; a bare state dict is accepted too.  Everything is read
with ``torch.load(weights_only=True)`` (:func:`unetprune.weights.load_weights`); only the
``state_dict`` entry is used (the optimiser state is not carried over) and it must map key for
key, shape for shape, onto the architecture: anything else is refused with one line naming
the file.  The widths come from the file (``width_mult`` = its first stage's width over the
reference's) or, with a config, from ``model.wav2lip`` (checked against the file).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch

from ...errors import UserFacingError
from ...weights import load_weights
from .networks import REF_FE_WIDTHS, Wav2LipGenerator, Wav2LipSpec
from .syncnet import (
    REF_DISC_WIDTHS,
    REF_SYNC_FACE_WIDTHS,
    SyncNetColor,
    SyncNetSpec,
    Wav2LipDiscQual,
    identify_sync_weights,
    load_reference_syncnet_color_state_dict,
    map_reference_disc_qual_key,
)
from .train import EXPERT_FAMILY, Wav2LipCritics, load_expert
from .weights import _unwrap_checkpoint, load_reference_wav2lip_state_dict, remap_state_dict, strip_prefixes

SECTION = "wav2lip"
REFERENCE = "Rudrabha/Wav2Lip"


def _options(cfg: dict | None) -> dict:
    return (((cfg or {}).get("model") or {}).get(SECTION)) or {}


def read_released(path: Path | str, what: str) -> dict[str, torch.Tensor]:
    """The state dict inside the released file ``path`` (wrappers and ``module.`` prefixes
    removed); a one-line :class:`UserFacingError` naming the file for anything that is not a
    weights-only mapping of tensors (crafted pickles, unetprune checkpoints, other objects)."""
    from ...checkpoint import FORMAT

    path = Path(path)
    obj = load_weights(
        path,
        what,
        error=UserFacingError,
        missing="{path} does not exist (expected {what})",
        unreadable="{path} is not a weights-only {what} (torch.load(weights_only=True) refused it: {first:.200})",
    )
    if isinstance(obj, Mapping) and obj.get("format") == FORMAT:
        raise UserFacingError(f"{path} is already a unetprune checkpoint; expected {what}")
    sd = _unwrap_checkpoint(obj) if isinstance(obj, Mapping) else None
    if (
        not isinstance(sd, Mapping)
        or not sd
        or not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in sd.items())
    ):
        raise UserFacingError(f"{path} holds no state dict (a dict of tensors); expected {what}")
    return strip_prefixes(sd)


def _ratio(sd: Mapping[str, torch.Tensor], key: str, base: int) -> float | None:
    t = sd.get(key)
    return None if t is None or t.dim() == 0 else t.shape[0] / base


def _refuse(path, what: str, e: Exception, obj=None) -> UserFacingError:
    is_ = identify_sync_weights(obj) if obj is not None else None
    hint = f" (this file is {is_})" if is_ else ""
    return UserFacingError(f"{path} is not {what}{hint}: {e}")


def _network_state(path, cfg, what, noun, probe, ref_width, width_key, spec_cls, load):
    """``(spec, state dict under our names)`` of the released file ``path`` of one network: its
    width read from the ``probe`` weight against the reference's ``ref_width``, or ``cfg``'s
    ``model.wav2lip.<width_key>`` (which must then describe the file)."""
    sd = read_released(path, what)
    found = _ratio(sd, probe, ref_width)
    mult = float(_options(cfg).get(width_key, 1.0)) if cfg is not None else (found or 1.0)
    spec = spec_cls.reference(mult)
    try:
        state = load(sd, spec)
    except ValueError as e:
        if cfg is not None and found and found != mult:
            raise UserFacingError(
                f"{path}: the config does not describe this {noun}: model.{SECTION}.{width_key} is "
                f"{mult:g}, the file has {found:g}"
            ) from None
        raise _refuse(path, what, e, sd) from None
    return spec, state


def generator_state(path: Path | str, cfg: dict | None = None) -> tuple[Wav2LipSpec, dict]:
    """``(spec, state dict under our names)`` of a released generator file; ``cfg``'s
    ``model.wav2lip.width_mult`` must describe it when given."""
    return _network_state(
        path,
        cfg,
        "a released Wav2Lip generator (wav2lip.pth / wav2lip_gan.pth)",
        "generator",
        "face_encoder_blocks.0.0.conv_block.0.weight",
        REF_FE_WIDTHS[0],
        "width_mult",
        Wav2LipSpec,
        load_reference_wav2lip_state_dict,
    )


def expert_state(path: Path | str, cfg: dict | None = None) -> tuple[SyncNetSpec, dict]:
    """``(spec, state dict under our names)`` of a released ``lipsync_expert.pth``; ``cfg``'s
    ``model.wav2lip.expert_width_mult`` must describe it when given."""
    return _network_state(
        path,
        cfg,
        "a released Wav2Lip lip-sync expert (lipsync_expert.pth, SyncNet_color)",
        "expert",
        "face_encoder.0.conv_block.0.weight",
        REF_SYNC_FACE_WIDTHS[0],
        "expert_width_mult",
        SyncNetSpec,
        load_reference_syncnet_color_state_dict,
    )


def disc_qual_state(path: Path | str) -> tuple[list[int], dict]:
    """``(widths, state dict under our names)`` of a released ``visual_quality_disc.pth``."""
    what = "a released Wav2Lip quality discriminator (visual_quality_disc.pth, Wav2Lip_disc_qual)"
    sd = read_released(path, what)
    widths = []
    for i, ref in enumerate(REF_DISC_WIDTHS):
        t = sd.get(f"face_encoder_blocks.{i}.0.conv_block.0.weight")
        widths.append(int(t.shape[0]) if isinstance(t, torch.Tensor) and t.dim() == 4 else ref)
    try:
        state = remap_state_dict(
            sd,
            map_reference_disc_qual_key,
            "Wav2Lip_disc_qual",
            "reference Wav2Lip_disc_qual",
            lambda: Wav2LipDiscQual(widths),
        )
    except ValueError as e:
        raise _refuse(path, what, e, sd) from None
    return widths, state


def _source(path: Path | str) -> dict:
    from ...fileio import sha256_file

    return {"path": str(path), "sha256": sha256_file(path)}


def import_generator(
    source: Path | str,
    *,
    cfg: dict | None = None,
    discriminator: Path | str | None = None,
    expert: Path | str | None = None,
    options: Mapping | None = None,
) -> tuple[dict, dict]:
    """The ``wav2lip`` family's import: a released generator as a unetprune checkpoint whose
    ``discriminator`` entry (the trainer's critics) holds the frozen expert (``expert``, else
    ``cfg``'s ``model.wav2lip.expert_checkpoint``, else none) and the quality discriminator
    (``discriminator``, else ``model.wav2lip.disc_init_weights``, else a fresh one with
    ``model.wav2lip.hq``, else none)."""
    from ...checkpoint import make_checkpoint
    from ...metrics.complexity import count_parameters

    if options:
        raise UserFacingError(
            f"--{sorted(options)[0].replace('_', '-')}: not an option of a Wav2Lip import "
            f"(the architecture comes from the file or --config's model.{SECTION})"
        )
    spec, state = generator_state(source, cfg)
    m = _options(cfg)
    discriminator = discriminator or m.get("disc_init_weights")
    G = Wav2LipGenerator(spec)
    G.load_state_dict(state)

    exp_model, exp_source = None, None
    if expert:
        exp_spec, exp_state = expert_state(expert, cfg)
        exp_model = SyncNetColor(exp_spec)
        exp_model.load_state_dict(exp_state)
        exp_source = {**_source(expert), "kind": "reference"}
    elif m.get("expert_checkpoint"):
        exp_model, exp_source = load_expert(m["expert_checkpoint"])

    qual, qual_note = None, None
    if discriminator:
        widths, q_state = disc_qual_state(discriminator)
        qual = Wav2LipDiscQual(widths)
        qual.load_state_dict(q_state)
        qual_note = {**_source(discriminator), "fresh": False, "widths": widths}
    elif m.get("hq"):
        from .networks import _scaled

        seed = int((cfg or {}).get("seed", 0))
        torch.manual_seed(seed)
        qual = Wav2LipDiscQual(_scaled(REF_DISC_WIDTHS, float(m.get("width_mult", 1.0))))
        qual_note = {"fresh": True, "widths": qual.widths, "init": f"PyTorch default, seed {seed}"}
    critics = Wav2LipCritics(
        exp_model,
        qual,
        {
            "name": "wav2lip-critics",
            "expert": exp_model.spec.to_dict() if exp_model is not None else None,
            "expert_source": exp_source,
            "qual_widths": qual.widths if qual is not None else None,
        },
    )
    record = {
        "imported": True,
        "source": str(source),
        "sha256": _source(source)["sha256"],
        "format": f"{REFERENCE} Wav2Lip checkpoint (state_dict)",
        "arch": spec.to_dict(),
        "params_G": count_parameters(G),
        "expert": exp_source,
        "discriminator": qual_note,
    }
    record["summary"] = (
        f"imported {source} (Wav2Lip, {record['params_G']:,} params); expert: "
        f"{exp_source['path'] if exp_source else 'none (no sync loss)'}; quality discriminator: "
        f"{'none' if qual_note is None else ('fresh' if qual_note['fresh'] else qual_note['path'])}"
    )
    d_state = {k: v.detach().cpu().clone() for k, v in critics.state_dict().items()}
    ckpt = make_checkpoint(
        G,
        cfg or {},
        meta={"kind": "wav2lip-import", **record},
        discriminator={"arch": critics.config, "state_dict": d_state},
    )
    return ckpt, record


def import_expert(
    source: Path | str,
    *,
    cfg: dict | None = None,
    discriminator: Path | str | None = None,
    expert: Path | str | None = None,
    options: Mapping | None = None,
) -> tuple[dict, dict]:
    """The ``wav2lip-expert`` family's import: a released ``lipsync_expert.pth`` as the checkpoint
    ``unetprune train --expert`` would write (family ``wav2lip-expert``)."""
    from ...checkpoint import make_checkpoint
    from ...metrics.complexity import count_parameters

    extra = [n for n, v in (("--discriminator", discriminator), ("--expert", expert)) if v]
    extra += [f"--{k.replace('_', '-')}" for k in sorted(options or {})]
    if extra:
        raise UserFacingError(
            f"{extra[0]}: not an option of a lip-sync expert import (give the expert as --from)"
        )
    spec, state = expert_state(source, cfg)
    E = SyncNetColor(spec)
    E.load_state_dict(state)
    record = {
        "imported": True,
        "source": str(source),
        "sha256": _source(source)["sha256"],
        "format": f"{REFERENCE} SyncNet_color checkpoint (state_dict)",
        "arch": spec.to_dict(),
        "params_G": count_parameters(E),
    }
    record["summary"] = f"imported {source} ({EXPERT_FAMILY}, {record['params_G']:,} params)"
    return make_checkpoint(E, cfg or {}, meta={"kind": "wav2lip-expert-import", **record}), record


def is_released_generator(path: Path | str) -> bool:
    """Whether ``path`` holds a released generator's state dict (not a unetprune checkpoint);
    unreadable files are left to the checkpoint loader's own errors."""
    from ...checkpoint import FORMAT

    try:
        obj = load_weights(path, "a checkpoint")
    except UserFacingError:
        return False
    if not isinstance(obj, Mapping) or obj.get("format") == FORMAT:
        return False
    sd = _unwrap_checkpoint(obj)
    return isinstance(sd, Mapping) and any(
        isinstance(k, str) and k.startswith("face_encoder_blocks.") for k in strip_prefixes(sd)
    )


def lipsync_checkpoint(path: Path | str, workdir: Path | str, log=print) -> Path:
    """``path`` itself when it is a unetprune checkpoint (or unreadable: the loader names the
    problem); a released generator converted into ``workdir/imported.pt`` otherwise, said on ``log``."""
    from ...fileio import atomic_torch_save

    if not is_released_generator(path):
        return Path(path)
    ckpt, record = import_generator(path)
    out = Path(workdir) / "imported.pt"
    atomic_torch_save(ckpt, out)
    log(
        f"{path}: a released Wav2Lip generator, converted to a unetprune checkpoint ({record['params_G']:,} params)"
    )
    return out
