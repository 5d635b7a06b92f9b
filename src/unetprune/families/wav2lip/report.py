"""What ``report.md`` says about a Wav2Lip generator and the published numbers it may stand beside.

:class:`Wav2LipReportText` refines the generic :class:`unetprune.report_text.ReportText` (the
lip-sync expert, the talking-face evaluation protocol, the sample video); :data:`PUBLISHED`
are the LRS2 numbers of docs/method.md#benchmarks-and-numbers-to-compare-against, checked
point by point by :mod:`unetprune.report.comparability`.
"""

from __future__ import annotations

from ...report_text import Published, ReportText

WAV2LIP_PAPER = "Wav2Lip (Prajwal et al., ACM MM 2020)"
GENERATOR = "Wav2Lip generator (36.3 M parameters)"
SYNCNET_PROTOCOL = "syncnet_python S (syncnet_v2.model) on the generated videos"

#: the published LRS2 numbers the project quotes
PUBLISHED: tuple[Published, ...] = (
    Published(
        key="wav2lip-lrs2-lse",
        source=WAV2LIP_PAPER,
        numbers="LSE-D 6.386, LSE-C 7.781 (as published)",
        metric="lse",
        dataset="lrs2",
        split="test",
        n_images=None,
        image_size=None,
        generator=GENERATOR,
        generator_kind="wav2lip",
        generator_ngf=None,
        mode="eval",
        quantize="truncate",
        implementation=SYNCNET_PROTOCOL,
        values=(("LSE-D", 6.386), ("LSE-C", 7.781)),
    ),
    Published(
        key="wav2lip-lrs2-fid",
        source=WAV2LIP_PAPER,
        numbers="FID 4.887 (as published)",
        metric="fid",
        dataset="lrs2",
        split="test",
        n_images=None,
        image_size=None,
        generator=GENERATOR,
        generator_kind="wav2lip",
        generator_ngf=None,
        mode="eval",
        quantize="truncate",
        implementation="pytorch-fid-compat",
        values=(("FID", 4.887),),
    ),
    Published(
        key="wav2lip-lrs2-rerun",
        source="Wav2Lip's released weights, re-run (docs/method.md)",
        numbers="LSE-D ≈7.15, LSE-C ≈6.77",
        metric="lse",
        dataset="lrs2",
        split="test",
        n_images=None,
        image_size=None,
        generator=GENERATOR,
        generator_kind="wav2lip",
        generator_ngf=None,
        mode="eval",
        quantize="truncate",
        implementation=SYNCNET_PROTOCOL,
        values=(("LSE-D", 7.15), ("LSE-C", 6.77)),
    ),
)


class Wav2LipReportText(ReportText):
    """A Wav2Lip generator (widths ``model.wav2lip.width_mult`` of the reference) trained with its
    frozen lip-sync expert; its sample grid spreads over the first test clip and comes with a video."""

    #: the sample grid's rows: frames spread over the first 4 s (100 frames at 25 fps) of the clip
    sample_span = 100

    def _options(self, cfg: dict) -> dict:
        """The family's own config keys (``model.<family name>``, its schema fragment)."""
        return (cfg.get("model") or {}).get(self.name) or {}

    def generator(self, cfg: dict) -> tuple[str, str, int | None]:
        w = self._options(cfg).get("width_mult", 1.0)
        if w != 1.0:  # a narrower (or wider) Wav2Lip is another generator than the published one
            return f"Wav2Lip generator (width x{w:g})", "wav2lip-scaled", None
        return "Wav2Lip generator (reference widths)", "wav2lip", None

    def original_line(self, lay, folder) -> str:
        return (
            f"* the **original** (unpruned) Wav2Lip generator trained with its frozen lip-sync expert "
            f"({folder(lay.expert_dir)}, {folder(lay.original_dir)});\n"
        )

    def config_rows(self, cfg: dict, epochs: str) -> list[tuple[str, str]]:
        d, t, w = cfg["data"], cfg["train"], self._options(cfg)
        x = t["expert"]
        return [
            ("dataset", f"{d['dataset']} (talking faces: 96x96 face crops, 16 kHz audio, 25 fps)"),
            (
                "generator",
                f"Wav2Lip, widths x{w['width_mult']:g} of the reference; expert SyncNet widths "
                f"x{w['expert_width_mult']:g}" + (" + quality discriminator (HQ)" if w.get("hq") else ""),
            ),
            (
                "expert training",
                f"{x['n_epochs']} + {x['n_epochs_decay']} epochs, batch {x['batch_size']}, lr {x['lr']}",
            ),
            (
                "original training",
                f"epochs {epochs}, batch {t['batch_size']}, lr {t['lr']}, Adam betas ({t['beta1']}, "
                f"{t['beta2']}), sync loss weight {t['syncnet_wt']} " + self._sync_switch(t),
            ),
        ]

    @staticmethod
    def _sync_switch(t: dict) -> str:
        """When the sync loss comes on (``train.sync_threshold`` on the generated frames'
        validation sync loss; a BCE is at most 100, so a threshold above it means the first check)."""
        if t["sync_threshold"] > 100:
            return f"from the first check (sync_threshold {t['sync_threshold']:g}: above any sync loss)"
        before = f" ({t['sync_boost']:g} before)" if t.get("sync_boost") else ""
        return f"once the generated frames' validation sync loss is below {t['sync_threshold']:g}{before}"

    def evaluation_row(self, cfg: dict) -> str:
        e = cfg["evaluate"]
        return (
            f"mode {e['mode']}, FID backend {e['fid_backend']}, LSE backend {e['lse_backend']}, "
            f"LSE protocol {e.get('lse_protocol', 'own-audio')}, max_images {e['max_images']} (frames)"
        )

    def evaluation_mode(self, cfg: dict) -> str:
        return (
            (
                "`model.eval()`: running BatchNorm statistics"
                if cfg["evaluate"]["mode"] == "eval"
                else "BatchNorm on batch statistics"
            )
            + "; each frame generated from its lower-half-masked self, the frame half a clip away as identity "
            "reference and its mel window (docs/method.md, Wav2Lip evaluation protocol); L1/PSNR/SSIM on the "
            "lower half, LSE-D/LSE-C with syncnet_python's protocol" + self.lse_protocol_text(cfg)
        )

    def lse_protocol_text(self, cfg: dict) -> str:
        """The LSE protocol in use and every step of it that differs from the published one."""
        from .lse import OWN_AUDIO_DIFFERENCES, PUBLISHED, published_differences

        e = cfg["evaluate"]
        if e.get("lse_protocol") == PUBLISHED:
            det = "s3fd" if e.get("lse_detector_weights") else "haar"
            head, diffs = (
                "published (the Wav2Lip repository's filelist evaluation)",
                published_differences(det, e.get("fid_backend")),  # the fid plug-in scores the written frames
            )
        else:
            head, diffs = "own-audio", list(OWN_AUDIO_DIFFERENCES)
        return f". LSE protocol: {head}; differs from the published evaluation in: " + "; ".join(diffs)

    def inner_levels(self, cfg: dict, levels: str, layers: str, variants: str) -> str:
        return (
            f"**Inner levels**: level(s) {levels} of this Wav2Lip generator (width "
            f"x{self._options(cfg).get('width_mult', 1):g}), i.e. the levels all of whose face-path stages have "
            "the largest width (FE5, FE6, FD0, FD1, FD2 of the reference: 512 wide); their layers are "
            f"{layers}. Inner variants: {variants}."
        )

    def cut_layers(self, cfg: dict, variants: str) -> str:
        return (
            "**Cut inner layers** (Wav2Lip; the paper is silent): *cut-k* removes the k innermost levels and "
            "feeds the audio embedding, broadcast, where the removed decoder output went (every surviving "
            "weight copied; a k whose replaced decoder output is not as wide as the audio embedding is "
            "refused); *cut-res* removes the residual blocks of the inner stages (widths and resolutions "
            f"unchanged). Cut variants: {variants}."
        )

    def bias(self, cfg: dict) -> str | None:
        return (
            "**Bias mode**: the reference Wav2Lip's layout — every conv has a bias and is followed by "
            "BatchNorm."
        )

    def samples_note(self, lay, here) -> str:
        return (
            f"Rows are frames spread over the first test clip; input = the frame with its lower half masked. "
            f"The same clip through every model, side by side with its audio: "
            f"[{here(lay.video('samples'))}]({here(lay.video('samples'))}) (frame grid: "
            f"![video frames]({here(lay.figure('samples_video'))})), made by the `sample_video` job.\n"
        )
