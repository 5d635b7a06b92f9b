"""The ``wav2lip`` and ``wav2lip-expert`` model families: what the core asks of them."""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from ...family import ModelFamily
from .networks import FACE_SIZE, MEL_SHAPE, N_LEVELS, Wav2LipGenerator, Wav2LipSpec, _scaled, build_wav2lip
from .structure import (
    _spec_of,
    default_inner_levels,
    group_convs,
    wav2lip_groups,
    wav2lip_input_shapes,
    wav2lip_levels,
    wav2lip_widths,
)
from .train import (
    EXPERT_FAMILY,
    SyncNetTrainer,
    Wav2LipCritics,
    Wav2LipTrainer,
    _bgr_to_rgb_uint8,
    _check_windows,
    _critics_from_arch,
    _save_png,
    expert_check_windows,
    expert_sync_loss,
    generated_lower_half_l1,
    load_expert,
    expert_train_dataset,
    talking_dataset,
)

SECTION = "wav2lip"  # the config section of this family's own keys: model.wav2lip (schema.yaml here)


def model_options(cfg: dict) -> dict:
    """``model.wav2lip`` of a config (its schema fragment's keys; empty in an unvalidated dict)."""
    return ((cfg.get("model") or {}).get(SECTION)) or {}


#: why copy-reference is not compared on FID/KID: those measure how real the frames look, and it
#: outputs real frames of the scored clips
REAL_FRAMES = (
    "its outputs are real frames of the same clips, so their distance to the test frames is the "
    "real-against-real floor that no generator can beat"
)


class Wav2LipFamily(ModelFamily):
    """The ``wav2lip`` model family: build, structure queries and the generator's training step
    (:class:`Wav2LipTrainer`; its lip-sync expert is the ``wav2lip-expert`` family); its pruning
    operations are :mod:`unetprune.families.wav2lip.pruning`.  ``input_shape`` is the face input
    ``(1, face_nc, 96, 96)``; the mel window is always ``(B, 1, 80, 16)`` (:data:`MEL_SHAPE`).
    """

    name = "wav2lip"
    # FID/KID on the generated faces, lower-half L1/PSNR/SSIM, the collapse check, size, LSE-D/LSE-C
    metrics: tuple[str, ...] = ("fid", "kid", "paired", "diversity", "complexity", "lse", "openness")
    spec_type = Wav2LipSpec

    def pruning_ops(self):
        from .pruning import WAV2LIP_OPS

        return WAV2LIP_OPS

    def register_metrics(self) -> None:
        from . import lse  # noqa: F401  (registers the LSE-D/LSE-C plug-in)
        from . import openness  # noqa: F401  (registers the demo's mouth-openness correlation)

    # --- build ------------------------------------------------------------------------
    def spec_from_config(self, cfg: dict) -> Wav2LipSpec:
        """The reference Wav2Lip, widths scaled by ``model.wav2lip.width_mult`` (default 1)."""
        return Wav2LipSpec.reference(float(model_options(cfg).get("width_mult", 1.0)))

    def build(self, spec, init: bool = True, seed: int | None = None) -> Wav2LipGenerator:
        return build_wav2lip(spec, seed=seed)  # the reference's (PyTorch's) default init

    def input_shape(self, generator) -> tuple[int, int, int, int]:
        return (1, _spec_of(generator).face_nc, FACE_SIZE, FACE_SIZE)

    def input_shapes(self, generator, input_shape) -> list[tuple[int, ...]]:
        """The face batch ``input_shape`` (B, 6, 96, 96) and its mel windows (B, 1, 80, 16)."""
        return list(wav2lip_input_shapes(generator, input_shape))

    def layer_position(self, spec, layer: str) -> tuple[str, int | None]:
        """fe{j}: encoder level j; fd{i}: decoder level 7-i (fd0 with fd1 at level 6); the
        audio branch and the output block are outside the levels."""
        m = re.fullmatch(r"(audio|fe|fd|out)(\d+)", layer)
        if not m:
            raise ValueError(f"{layer!r} is not a Wav2Lip channel group")
        kind, i = m.group(1), int(m.group(2))
        if kind == "fe":
            return "encoder", i
        if kind == "fd":
            return "decoder", N_LEVELS - max(i, 1)
        return ("audio", None) if kind == "audio" else ("output", None)

    def levels(self, spec) -> list[int]:
        return wav2lip_levels(spec)

    def cut_ks(self, spec) -> dict[int, str | None]:
        """k = 1..levels-2; a cut fits where the audio embedding is as wide as the decoder output
        it replaces (k=1, 2 of the reference; k=3 would need new weights)."""
        s = _spec_of(spec)
        aw, out = s.audio_widths[-1], {}
        for k in range(1, N_LEVELS - s.cut - 1):
            nc = s.cut + k
            rw = s.fd_widths[nc]
            out[k] = (
                None
                if rw == aw
                else (
                    f"the audio embedding ({aw} channels) would replace fd{nc}'s output, which fd{nc + 1} reads as "
                    f"{rw} channels: its weights cannot be copied (new weights would be needed)"
                )
            )
        return out

    def has_residual_blocks(self, spec) -> bool:
        s = _spec_of(spec)
        return any(s.fe_residual) or any(s.fd_residual)

    def eval_set(self, cfg: dict, split: str, root):
        from .datasets import TalkingEvalSet

        return TalkingEvalSet.load(cfg, split, root)

    def trivial_generators(self, cfg: dict, generator, root) -> dict:
        """Copy the reference frame (compared on lip sync and the paired metrics, not on FID/KID:
        its outputs are real frames), and the untrained generator."""
        from .trivial import CopyReference

        return {
            "copy-reference": (
                CopyReference(),
                "outputs the identity reference frame it is given, ignoring the audio",
                {m: REAL_FRAMES for m in ("fid", "kid")},
            ),
            **super().trivial_generators(cfg, generator, root),
        }

    def sanity_metrics(self, cfg: dict) -> list[str]:
        """Lip-sync: LSE-C (the confidence of the lip-sync network) and, on the demo, the
        mouth-openness correlation with the recorded track (:mod:`.openness`)."""
        return ["lse_c", "openness"]

    # --- channel groups -------------------------------------------------------------------
    def groups(self, spec_or_generator) -> list[str]:
        return wav2lip_groups(spec_or_generator)

    def layer_width(self, generator, layer: str) -> int:
        return self.layer_filters(generator, layer)[0].out_channels

    def layer_filters(self, generator, layer: str) -> tuple[nn.Module, nn.Module | None]:
        """The stage's first conv (and its BN): for ``fe{i}``/``fd{i}`` the stage's entry conv
        (a ConvTranspose2d for ``fd1..fd6``), for ``audio{g}`` its group's entry conv."""
        convs = group_convs(generator, layer)
        if not convs:
            raise ValueError(
                f"{layer!r} is not a channel group of this Wav2Lip ({', '.join(wav2lip_groups(generator))})"
            )
        first = convs[0]
        return generator.get_submodule(first.path), generator.get_submodule(first.bn)

    def default_inner_levels(self, spec) -> list[int]:
        return default_inner_levels(spec)

    def widths(self, generator) -> dict:
        return wav2lip_widths(generator)

    # --- training: L1 + frozen-expert sync loss (+ the HQ quality discriminator) ---------
    def build_discriminator(self, cfg: dict, generator) -> Wav2LipCritics:
        """The frozen expert of ``model.wav2lip.expert_checkpoint`` (none: no sync loss) and, with
        ``model.wav2lip.hq``, a fresh quality discriminator (widths scaled by ``model.wav2lip.width_mult``)."""
        from .syncnet import REF_DISC_WIDTHS, Wav2LipDiscQual

        m = model_options(cfg)
        expert, source, arch = None, None, None
        if m.get("expert_checkpoint"):
            expert, source = load_expert(m["expert_checkpoint"])
            arch = expert.spec.to_dict()
        qual_widths = _scaled(REF_DISC_WIDTHS, float(m.get("width_mult", 1.0))) if m.get("hq") else None
        qual = Wav2LipDiscQual(qual_widths) if qual_widths else None
        return Wav2LipCritics(
            expert,
            qual,
            {"name": "wav2lip-critics", "expert": arch, "expert_source": source, "qual_widths": qual_widths},
        )

    def discriminator_from_entry(self, entry: dict) -> Wav2LipCritics:
        D = _critics_from_arch(entry["arch"])
        D.load_state_dict(entry["state_dict"])
        return D

    def trainer(self, generator, discriminator, tcfg: dict, device: torch.device) -> Wav2LipTrainer:
        return Wav2LipTrainer(generator, discriminator, tcfg, device)

    def train_dataset(self, cfg: dict):
        return talking_dataset(cfg, "train", "generator", cfg["data"]["max_train_items"], rotate=True)

    def check_dataset(self, cfg: dict):
        return _check_windows(cfg, "generator")

    def check_score(self, generator, dataset, cfg: dict) -> float:
        """Mean lower-half L1 of the generated frames vs the targets ([0, 1] units, evaluate.mode)."""
        return generated_lower_half_l1(generator, dataset, cfg["evaluate"]["mode"], cfg["seed"])

    # --- samples ------------------------------------------------------------------------
    def render_samples(self, generator, dataset, path: Path | str, cfg: dict, n: int = 8) -> Path:
        """PNG grid, one row per window (its middle frame): reference | masked target | generated | target."""
        import numpy as np

        from ...translate import generation_mode

        device = next(generator.parameters()).device
        rows = []
        with generation_mode(generator, cfg["evaluate"]["mode"], cfg["seed"]):
            for i in range(min(n, len(dataset))):
                b = dataset[i]
                face, target = b["face"][None], b["target"]
                g = generator(face.to(device), b["indiv_mels"][None].to(device))[0].cpu()
                t = target.shape[1] // 2
                cells = [face[0, 3:, t], face[0, :3, t], g[:, t], target[:, t]]
                rows.append(np.concatenate([_bgr_to_rgb_uint8(c) for c in cells], axis=1))
        return _save_png(rows, path)

    # --- config -----------------------------------------------------------------------
    def schema_fragment(self) -> Path:
        return Path(__file__).with_name("schema.yaml")

    def check_config(self, cfg: dict) -> None:
        """Talking-face data (the demo, LRS2 or a preprocessed folder), LSE weights for the
        standard backend, a positive L1 weight."""
        from ...errors import ConfigError

        d, t, w = cfg["data"], cfg["train"], model_options(cfg)
        if d["dataset"] not in ("demo", "folder", "lrs2"):
            raise ConfigError(
                f"config error at 'data.dataset': model.family wav2lip trains on talking-face data: "
                f"'demo' (`unetprune demo-talking`), 'lrs2' (data.source = the raw LRS2 folder) or "
                f"'folder' (a `data preprocess-lrs2` output at data.root), not {d['dataset']!r}"
            )
        if d["dataset"] == "lrs2" and not (d["source"] or d["root"]):
            raise ConfigError(
                "config error at 'data.source': lrs2 is licence-gated and never downloaded: set "
                "data.source to your LRS2 folder (<speaker>/<clip>.mp4 with train.txt, val.txt, "
                "test.txt; the workflow preprocesses it) or data.root to an already preprocessed folder"
            )
        if cfg["evaluate"]["lse_backend"] == "standard" and not cfg["evaluate"]["lse_weights"]:
            raise ConfigError(
                "config error at 'evaluate.lse_weights': lse_backend standard needs the SyncNet v2 "
                "weights (syncnet_v2.model from syncnet_python) at evaluate.lse_weights"
            )
        e = t["expert"]
        if e["sampling"] == "in_clip_pairs" and e["batch_size"] % e["windows_per_clip"]:
            raise ConfigError(
                f"config error at 'train.expert.batch_size': with sampling in_clip_pairs it must be a "
                f"multiple of train.expert.windows_per_clip ({e['windows_per_clip']}), got {e['batch_size']}"
            )
        ev = cfg["evaluate"]
        if ev.get("lse_protocol") == "published" and not ev.get("lse_filelist"):
            raise ConfigError(
                "config error at 'evaluate.lse_filelist': lse_protocol published needs the filelist of "
                "pairs ('AUDIO_SOURCE VIDEO' per line, the reference's test_filelists/lrs2.txt)"
            )
        if ev.get("lse_protocol") == "published" and not (ev.get("lse_video_root") or d["source"]):
            raise ConfigError(
                "config error at 'evaluate.lse_video_root': lse_protocol published needs the folder of "
                "the filelist's videos (or data.source)"
            )
        if d["dataset"] == "folder" and not d["root"]:
            raise ConfigError(
                "config error at 'data.root': data.dataset 'folder' needs data.root (a preprocessed "
                "talking-face folder with train.txt)"
            )
        disc = t["disc_wt"] if w["hq"] else 0.0
        for key in ("syncnet_wt", "sync_boost"):
            if t.get(key, 0) + disc >= 1:
                raise ConfigError(
                    f"config error at 'train.{key}': {key} + disc_wt = {t[key] + disc:g} "
                    f"leaves no weight for the L1 loss (1 - {key} - disc_wt must be positive)"
                )

    # --- command line and workflow ----------------------------------------------------
    def command_modules(self) -> list[str]:
        """demo-talking + data preprocess-lrs2, lipsync, train-lse-standin + lse, sample-video."""
        return [f"{__package__}.commands.{m}" for m in ("talking", "lipsync", "lse", "video")]

    def import_released(self, source, *, cfg=None, discriminator=None, expert=None, options=None):
        """A released ``wav2lip.pth``/``wav2lip_gan.pth`` (+ ``lipsync_expert.pth``,
        ``visual_quality_disc.pth``): :func:`.released.import_generator`."""
        from .released import import_generator

        return import_generator(source, cfg=cfg, discriminator=discriminator, expert=expert, options=options)

    def workflow_rules(self) -> list[Path]:
        """The expert, the LSE stand-in, the sample video and LRS2 preprocessing (``wav2lip.smk``)."""
        return [Path(__file__).with_name("wav2lip.smk")]

    def job_inputs(self, job: str, layout, cfg: dict) -> dict[str, tuple[Path, str | None]]:
        """Training and fine-tuning read the expert the workflow trains (passed as
        ``model.wav2lip.expert_checkpoint``); scoring jobs read the stand-in LSE network when
        ``evaluate.lse_backend`` is standin without ``evaluate.lse_weights``."""
        if job in ("train", "finetune"):
            return {"expert": (layout.expert_checkpoint, f"model.{SECTION}.expert_checkpoint")}
        ev = cfg["evaluate"]
        if job in ("evaluate", "sweep") and ev["lse_backend"] == "standin" and not ev["lse_weights"]:
            return {"lse": (layout.lse_standin, None)}
        return {}

    def final_outputs(self, layout, cfg: dict) -> list[Path]:
        return [layout.video("samples")]

    def demo_manifest(self, layout) -> Path:
        """``demo_talking.json`` (the clips are under ``preprocessed/``)."""
        return layout.data_file("demo_talking.json")

    def data_marker(self, layout, cfg: dict) -> Path | None:
        """LRS2: the summary of its preprocessing into the data root; otherwise as the core's."""
        if cfg["data"]["dataset"] == "lrs2":
            return layout.talking_summary
        return super().data_marker(layout, cfg)

    def build_demo(self, cfg: dict, out: Path, force: bool = False) -> str:
        """The talking-face demo clips of ``demo.talking``."""
        from .demo import build_talking_demo

        t = cfg["demo"]["talking"]
        man = build_talking_demo(
            out,
            n_train=t["n_train"],
            n_val=t["n_val"],
            n_test=t["n_test"],
            side=t["side"],
            seed=t["seed"],
            force=force,
            progress=False,
            log=print,
        )
        counts = man["preprocess"]["counts"]
        return f"talking-face demo at {out}: " + ", ".join(f"{k} {v}" for k, v in counts.items()) + " clips"

    # --- report and tracking ----------------------------------------------------------
    def comparability_rows(self, cfg: dict) -> list:
        """Wav2Lip's published LRS2 numbers and their re-run (:mod:`.report`)."""
        from .report import PUBLISHED

        return list(PUBLISHED)

    def report_text(self):
        from .report import Wav2LipReportText

        return Wav2LipReportText(self)

    def pyfunc_inputs(self, image_size: int) -> list[tuple[str, tuple[int, ...]]]:
        """The face input (reference + masked target, 6 channels) and the mel window."""
        return [("face", (6, image_size, image_size)), ("mel", (1, *MEL_SHAPE))]


class Wav2LipExpertFamily(ModelFamily):
    """The lip-sync expert (:class:`~unetprune.families.wav2lip.syncnet.SyncNetColor`) as a trainable
    family: ``unetprune train --expert`` (``train.target: expert``) trains it with
    :class:`SyncNetTrainer` in the generic loop; checkpoints record ``family: wav2lip-expert``.
    Not prunable (no channel groups)."""

    name = EXPERT_FAMILY
    metrics: tuple[str, ...] = ()

    @property
    def spec_type(self):
        from .syncnet import SyncNetSpec

        return SyncNetSpec

    def spec_from_config(self, cfg: dict):
        from .syncnet import SyncNetSpec

        return SyncNetSpec.reference(float(model_options(cfg).get("expert_width_mult", 1.0)))

    def build(self, spec, init: bool = True, seed: int | None = None) -> nn.Module:
        from .syncnet import SyncNetColor, SyncNetSpec

        if isinstance(spec, Mapping):
            spec = SyncNetSpec.from_dict(spec)
        if seed is not None:
            torch.manual_seed(seed)
        return SyncNetColor(spec)

    def input_shape(self, generator) -> tuple[int, int, int, int]:
        return (1, generator.spec.face_nc, FACE_SIZE // 2, FACE_SIZE)

    def input_shapes(self, generator, input_shape) -> list[tuple[int, ...]]:
        """In ``forward(mel, face)`` order: the mel window (B, 1, 80, 16) and the stacked lower
        halves ``input_shape`` (B, 15, 48, 96)."""
        face = tuple(int(s) for s in input_shape)
        return [(face[0], 1, *MEL_SHAPE), face]

    def import_released(self, source, *, cfg=None, discriminator=None, expert=None, options=None):
        """A released ``lipsync_expert.pth``: :func:`.released.import_expert`."""
        from .released import import_expert

        return import_expert(source, cfg=cfg, discriminator=discriminator, expert=expert, options=options)

    def _not_prunable(self, *a, **k):
        raise NotImplementedError("the lip-sync expert is not a prunable generator")

    groups = layer_width = layer_filters = default_inner_levels = widths = _not_prunable

    def build_discriminator(self, cfg: dict, generator) -> nn.Module:
        return nn.Identity()  # the expert trains alone

    def discriminator_from_entry(self, entry: dict) -> nn.Module:
        return nn.Identity()

    def trainer(self, generator, discriminator, tcfg: dict, device: torch.device) -> SyncNetTrainer:
        return SyncNetTrainer(generator, discriminator, tcfg, device)

    def train_dataset(self, cfg: dict):
        return expert_train_dataset(cfg)

    def check_dataset(self, cfg: dict):
        return expert_check_windows(cfg)

    def check_score(self, generator, dataset, cfg: dict) -> float:
        """Mean sync BCE over the check windows (half in sync, half off; lower is better)."""
        return expert_sync_loss(generator, dataset, None)

    def render_samples(self, generator, dataset, path: Path | str, cfg: dict, n: int = 8) -> Path:
        """PNG, one row per window: its 5 lower halves, then a bar: the cosine similarity
        (green: in-sync window, red: off-sync)."""
        import numpy as np

        device = next(generator.parameters()).device
        was = generator.training
        generator.eval()
        rows = []
        try:
            with torch.no_grad():
                for i in range(min(n, len(dataset))):
                    b = dataset[i]
                    a, v = generator(b["mel"][None].to(device), b["faces"][None].to(device))
                    d = float(torch.nn.functional.cosine_similarity(a, v).clamp(0, 1))
                    faces = b["faces"]
                    cells = [_bgr_to_rgb_uint8(faces[3 * k : 3 * k + 3]) for k in range(faces.shape[0] // 3)]
                    h = cells[0].shape[0]
                    bar = np.full((h, 48, 3), 255, np.uint8)
                    colour = (0, 160, 0) if float(b["label"]) == 1.0 else (200, 0, 0)
                    bar[h - round(d * h) :, 8:40] = colour
                    rows.append(np.concatenate(cells + [bar], axis=1))
        finally:
            generator.train(was)
        return _save_png(rows, path)


WAV2LIP = Wav2LipFamily()
WAV2LIP_EXPERT = Wav2LipExpertFamily()
