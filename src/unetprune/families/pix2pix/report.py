"""What ``report.md`` says about a pix2pix U-Net and the published numbers it may stand beside.

:class:`Pix2PixReportText` refines the generic :class:`unetprune.report_text.ReportText`;
:data:`PUBLISHED` are the image-translation numbers of
docs/method.md#benchmarks-and-numbers-to-compare-against (GAN Compression and OMGD on
cityscapes / edges2shoes), checked point by point by :mod:`unetprune.report.comparability`.
"""

from __future__ import annotations

from ...report_text import DRN_PROTOCOL, Published, ReportText, method_ref

GAN_COMPRESSION = "GAN Compression (Li et al., CVPR 2020; mit-han-lab/gan-compression)"
OMGD = "OMGD (Ren et al., ICCV 2021; bytedance/OMGD)"

#: the published numbers of image translation the project quotes
PUBLISHED: tuple[Published, ...] = (
    Published(
        key="gan-compression-edges2shoes-fid",
        source=GAN_COMPRESSION,
        numbers="FID 24.12 original → 26.60 compressed",
        metric="fid",
        dataset="edges2shoes",
        split="val",
        n_images=200,
        image_size=256,
        generator="ResNet generator (resnet_9blocks), not a U-Net",
        generator_kind="resnet",
        generator_ngf=None,
        mode="eval",
        quantize="truncate",
        implementation="pytorch-fid-compat",
        values=(("original", 24.12), ("compressed", 26.60)),
    ),
    Published(
        key="gan-compression-cityscapes-miou",
        source=GAN_COMPRESSION,
        numbers="mIoU 42.06 original → 40.77 compressed",
        metric="miou",
        dataset="cityscapes",
        split="val",
        n_images=500,
        image_size=256,
        generator="ResNet generator (resnet_9blocks), not a U-Net",
        generator_kind="resnet",
        generator_ngf=None,
        mode="eval",
        quantize="truncate",
        implementation=DRN_PROTOCOL,
        values=(("original", 42.06), ("compressed", 40.77)),
    ),
    Published(
        key="omgd-cityscapes-miou",
        source=OMGD,
        numbers="mIoU 48.91 at 1.22 G output-based MACs",
        metric="miou",
        dataset="cityscapes",
        split="val",
        n_images=500,
        image_size=256,
        generator="U-Net with ngf 16, distilled (not pruned) from a larger U-Net",
        generator_kind="unet",
        generator_ngf=16,
        mode="eval",
        quantize="truncate",
        implementation=DRN_PROTOCOL,
        values=(("compressed", 48.91),),
    ),
)


class Pix2PixReportText(ReportText):
    """A U-Net of ``model.pix2pix.num_downs`` levels and ``model.pix2pix.ngf`` filters, trained with the
    pix2pix recipe."""

    def _options(self, cfg: dict) -> dict:
        """The family's own config keys (``model.<family name>``, its schema fragment)."""
        return (cfg.get("model") or {}).get(self.name) or {}

    def check_score(self) -> str:
        return "mean |G(A) − B| in [−1, 1] units"

    def generator(self, cfg: dict) -> tuple[str, str, int | None]:
        m = self._options(cfg)
        n, ngf = m.get("num_downs"), m.get("ngf")
        name = " = unet_256" if (n, ngf) == (8, 64) else ""
        return f"U-Net (num_downs {n}, ngf {ngf}, {m.get('norm', 'batch')} norm{name})", "unet", ngf

    def original_line(self, lay, folder) -> str:
        return (
            "* the **original** (unpruned) U-Net generator trained with the pix2pix recipe "
            f"({folder(lay.original_dir)});\n"
        )

    def config_rows(self, cfg: dict, epochs: str) -> list[tuple[str, str]]:
        d, m, t = cfg["data"], self._options(cfg), cfg["train"]
        return [
            ("dataset", f"{d['dataset']} ({d['direction']}, {d['crop_size']}px)"),
            (
                "generator",
                f"U-Net num_downs={m['num_downs']}, ngf={m['ngf']}, norm={m['norm']}, "
                f"dropout={m['use_dropout']}, bias_mode={m['bias_mode']}",
            ),
            (
                "original training",
                f"epochs {epochs}, batch {t['batch_size']}, lr {t['lr']}, lambda_l1 {t['lambda_l1']}",
            ),
        ]

    def evaluation_row(self, cfg: dict) -> str:
        e = cfg["evaluate"]
        return (
            f"mode {e['mode']}, FID backend {e['fid_backend']}, segmentation {e['segmentation']}, "
            f"max_images {e['max_images']}"
        )

    def evaluation_mode(self, cfg: dict) -> str:
        if cfg["evaluate"]["mode"] == "train_bn":
            return (
                "BatchNorm on batch statistics and dropout on, seeded — what the pix2pix reference does at "
                "test time"
            )
        return super().evaluation_mode(cfg)

    def inner_levels(self, cfg: dict, levels: str, layers: str, variants: str) -> str:
        return (
            f"**Inner levels**: level(s) {levels} of this num_downs={self._options(cfg)['num_downs']} U-Net, i.e. "
            "the levels whose encoder and decoder outputs both have the largest width (the 8·ngf levels; 5–8 "
            f"for unet_256); their layers are {layers}. Inner variants: {variants}."
        )

    def cut_layers(self, cfg: dict, variants: str) -> str:
        return (
            "**Cut inner layers**: remove the innermost k levels; the new innermost up-conv keeps only the "
            "weight slice of its encoder input; every surviving weight is copied from the original model "
            f"(the result equals a num_downs − k U-Net). Cut variants: {variants}."
        )

    def bias(self, cfg: dict) -> str | None:
        mode = self._options(cfg)["bias_mode"]
        if mode == "paper":
            text = (
                "conv bias wherever no norm follows (the paper's parameter count, 54,414,531 for unet_256; "
                f"{method_ref('check-numbers')})"
            )
        else:
            text = "the official pix2pix code's biases (only the outermost up-conv; 54,413,955 for unet_256)"
        return f"**Bias mode**: `{mode}` — {text}."
