"""The report's comparability section: which published numbers this run's numbers may stand beside.

For every published number the project quotes (docs/method.md#benchmarks-and-numbers-to-compare-against;
each model family lists its own: :meth:`unetprune.family.ModelFamily.comparability_rows`) the section lists the
protocol points where this run differs (dataset and split, image count and size, generator,
generator mode, quantisation, metric implementation), each derived from the config and the eval
JSONs (the unpruned model's, ``original``), never typed in::

    from unetprune.report.comparability import comparability_section
    md = comparability_section(cfg, evals)     # evals: {model: eval JSON}, e.g. {("original", "original"): {...}}

Status of a protocol point: ``same``; ``in by_mode.<mode>`` (the top-level numbers used another
generator mode, but the same evaluation also scored the published one: ``evaluate.extra_modes``);
``differs``; ``not recorded`` (an older eval JSON without the field, or the published protocol
does not state it).  A number can be set beside a published one only when no point differs.
"""

from __future__ import annotations

from collections.abc import Mapping

from ..family import all_families, family_for_config
from ..layout import ORIGINAL
from ..report_text import DRN_PROTOCOL, Published, report_text  # noqa: F401 (re-exported)

SAME, DIFFERS, UNKNOWN = "same", "differs", "not recorded"
CITYSCAPES_SEGMENTER = "cityscapes-drn-d-105"
FULL_RES_LABELS = "gtFine trainIds (full resolution)"  # = metrics.segmentation.FULL_RES_LABELS


def published(cfg: dict) -> list[Published]:
    """Every published number the installed model families quote, family by family (the summary
    table of the section lists them all)."""
    return [p for fam in all_families() for p in fam.comparability_rows(cfg)]


# --------------------------------------------------------------------------------------
# this run's protocol, from the config and the eval JSON
# --------------------------------------------------------------------------------------


def reference_eval(evals: Mapping) -> tuple[str, dict | None]:
    """(name, eval JSON) of the unpruned model (``original``), else the first model with one."""
    for key in ((ORIGINAL, ORIGINAL), ORIGINAL):
        if isinstance(evals.get(key), Mapping):
            return ORIGINAL, dict(evals[key])
    for key, ev in evals.items():
        if isinstance(ev, Mapping):
            return (key if isinstance(key, str) else "/".join(map(str, key))), dict(ev)
    return ORIGINAL, None


def generator_description(cfg: dict) -> tuple[str, str, int | None]:
    """(description, kind, width) of the experiment's unpruned generator, as its family states it."""
    return report_text(family_for_config(cfg)).generator(cfg)


def _mode_status(pub_mode: str, ev: dict) -> tuple[str, str]:
    ours = ev.get("mode")
    modes = list((ev.get("by_mode") or {}).keys())
    text = f"{ours}" + (f" (also {', '.join(modes)} in by_mode)" if modes else "")
    if ours is None:
        return "not recorded", UNKNOWN
    if ours == pub_mode:
        return text, SAME
    if pub_mode in modes:
        return text, f"in by_mode.{pub_mode}"
    return text, DIFFERS


def _implementation(pub: Published, cfg: dict, ev: dict) -> tuple[str, str]:
    if pub.metric == "fid":
        fid = ev.get("fid") or {}
        backend = fid.get("backend")
        if backend is None:
            return "no FID", DIFFERS
        return f"FID backend {backend}", SAME if backend == pub.implementation else DIFFERS
    if pub.metric == "miou":
        seg = ev.get("segmentation") or {}
        if not seg:
            return "no segmentation score", DIFFERS
        ok = seg.get("name") == CITYSCAPES_SEGMENTER and seg.get("label_source") == FULL_RES_LABELS
        return f"{seg.get('name')} (labels: {seg.get('label_source')})", SAME if ok else DIFFERS
    lse = ev.get("lse") or {}
    if not lse:
        return "no LSE score", DIFFERS
    backend = lse.get("backend")
    steps = lse.get("differs_from_published")
    if steps is None:  # an eval JSON from before the protocol was recorded: crops scored in memory
        return f"LSE backend {backend}, protocol not recorded", DIFFERS
    what = f"LSE backend {backend}, protocol {lse.get('protocol')}"
    if not steps:
        # the published numbers were measured with syncnet_python's released weights
        return what + "; every step as published", SAME if backend == "standard" else DIFFERS
    return what + "; differs in: " + "; ".join(str(s) for s in steps), DIFFERS


def _count(pub: Published, ev: dict) -> tuple[str, str]:
    n = ev.get("n_images")
    clips = (ev.get("lse") or {}).get("n_clips")
    text = f"{n} images" + (f" ({clips} clips)" if clips else "") if n is not None else "not recorded"
    if pub.n_images is None or n is None:
        return text, UNKNOWN
    return text, SAME if int(n) == pub.n_images else DIFFERS


def protocol_rows(pub: Published, cfg: dict, ev: dict) -> list[tuple[str, str, str, str]]:
    """(point, published, this run, status) for every protocol point of ``pub``."""
    rows = []
    dataset, split = cfg.get("data", {}).get("dataset"), ev.get("split")
    rows.append(
        (
            "dataset / split",
            f"{pub.dataset} {pub.split}",
            f"{dataset} {split}",
            SAME if (dataset, split) == (pub.dataset, pub.split) else DIFFERS,
        )
    )
    pub_n = f"{pub.n_images} images" if pub.n_images is not None else "not stated (the whole split)"
    rows.append(("image count", pub_n, *_count(pub, ev)))
    size = ev.get("image_size")
    rows.append(
        (
            "image size",
            f"{pub.image_size} px" if pub.image_size else "not stated",
            f"{size} px" if size else "not recorded",
            UNKNOWN
            if size is None or pub.image_size is None
            else SAME
            if int(size) == pub.image_size
            else DIFFERS,
        )
    )
    desc, kind, ngf = generator_description(cfg)
    same_gen = kind == pub.generator_kind and (pub.generator_ngf is None or ngf == pub.generator_ngf)
    rows.append(("generator", pub.generator, desc, SAME if same_gen else DIFFERS))
    rows.append(("generator mode", pub.mode, *_mode_status(pub.mode, ev)))
    q = ev.get("quantize")
    rows.append(
        (
            "quantisation",
            pub.quantize,
            q or "not recorded (round before evaluate.quantize existed)",
            UNKNOWN if q is None else SAME if q == pub.quantize else DIFFERS,
        )
    )
    rows.append(("metric implementation", pub.implementation, *_implementation(pub, cfg, ev)))
    return rows


def _value(pub: Published, ev: dict, mode: str | None = None) -> str:
    """This run's number for ``pub``'s metric (published units), with its noise level when recorded."""
    src = ev if mode is None or mode == ev.get("mode") else (ev.get("by_mode") or {}).get(mode) or {}
    noise = (src.get("noise") or {}).get("metrics") or {}

    def fmt(name: str, value, scale: float = 1.0, digits: int = 3) -> str | None:
        if not isinstance(value, (int, float)):
            return None
        std = (noise.get(name) or {}).get("std")
        pm = f" ± {std * scale:.{digits}f}" if isinstance(std, (int, float)) else ""
        return f"{value * scale:.{digits}f}{pm}"

    if pub.metric == "fid":
        out = fmt("fid", (src.get("fid") or {}).get("value"), digits=2)
        return f"FID {out}" if out else "n/a"
    if pub.metric == "miou":
        out = fmt("miou", (src.get("segmentation") or {}).get("miou"), 100.0, 2)
        return f"mIoU {out}" if out else "n/a"
    lse = src.get("lse") or {}
    parts = [
        f"{lab} {v}"
        for lab, v in (("LSE-D", fmt("lse_d", lse.get("lse_d"))), ("LSE-C", fmt("lse_c", lse.get("lse_c"))))
        if v
    ]
    return ", ".join(parts) or "n/a"


def assess(pub: Published, cfg: dict, ev: dict) -> dict:
    """Summary of ``pub`` against this run: rows, the differing points, a verdict."""
    rows = protocol_rows(pub, cfg, ev)
    differs = [r[0] for r in rows if r[3] == DIFFERS]
    unknown = [r[0] for r in rows if r[3] == UNKNOWN]
    via = [r[3].removeprefix("in ") for r in rows if r[3].startswith("in by_mode.")]
    other_dataset = rows[0][3] == DIFFERS
    if other_dataset:
        verdict = "no: another dataset / split"
    elif differs:
        verdict = "no: protocols differ"
    elif unknown:
        verdict = "only with care: " + ", ".join(unknown) + " not recorded / not stated"
    else:
        verdict = "yes" + (f", using {via[0]}" if via else "")
    return {
        "rows": rows,
        "differs": differs,
        "unknown": unknown,
        "via": via,
        "verdict": verdict,
        "other_dataset": other_dataset,
    }


# --------------------------------------------------------------------------------------
# markdown
# --------------------------------------------------------------------------------------


def _table(header: list[str], rows: list[list[str]]) -> str:
    def cell(x) -> str:
        return str(x).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def comparability_section(cfg: dict, evals: Mapping) -> str:
    """The markdown section (``## Comparability with published numbers``) for ``report.md``.

    ``evals`` maps model names (``"original"`` or ``(variant, stage)`` tuples, as
    ``report.tables.load_all_evals`` gives) to eval JSONs; the unpruned model's protocol is the
    one compared (the pruned models share it)."""
    name, ev = reference_eval(evals)
    out = ["## Comparability with published numbers", ""]
    if ev is None:
        out += ["No evaluation found, so nothing can be compared with published numbers.", ""]
        return "\n".join(out)
    out += [
        (
            f'Published numbers quoted in docs/method.md ("Benchmarks and numbers to compare against") '
            f"against the protocol of this run: `config.yaml` and the eval JSON of `{name}` (every evaluated "
            f"model shares it). A number of this run can be set beside a published one only where no "
            f'protocol point differs; "in by_mode.eval" means the same evaluation also scored that mode '
            f"(`evaluate.extra_modes`, eval JSON `by_mode`)."
        ),
        "",
    ]
    own = {p.key for p in family_for_config(cfg).comparability_rows(cfg)}
    assessed = [(p, assess(p, cfg, ev)) for p in published(cfg)]
    summary = []
    for p, a in assessed:
        differs = ", ".join(a["differs"]) or "—"
        summary.append([p.numbers, p.source, f"{p.dataset} {p.split}", differs, a["verdict"]])
    out += [_table(["published", "source", "dataset / split", "differs in", "comparable?"], summary), ""]
    matching = [(p, a) for p, a in assessed if not a["other_dataset"] and p.key in own]
    if not matching:
        ds = cfg.get("data", {}).get("dataset")
        out += [
            (
                f"No quoted published number is on this run's dataset and split (`{ds}` "
                f"{ev.get('split')}): the numbers above are for orientation only."
            ),
            "",
        ]
        return "\n".join(out)
    for p, a in matching:
        out += [f"### {p.numbers} — {p.source}", ""]
        rows = [list(r) for r in a["rows"]]
        mode_here = ev.get("mode")
        values = [_value(p, ev)]
        label = f"this run's `{name}` ({mode_here})"
        if p.mode != mode_here and p.mode in (ev.get("by_mode") or {}):
            values.append(f"{_value(p, ev, p.mode)} ({p.mode}, by_mode)")
        pub_vals = ", ".join(f"{lab} {v:g}" for lab, v in p.values) or p.numbers
        rows.append(
            [
                "value",
                pub_vals,
                "; ".join(values) + (" (± = noise std)" if "±" in "".join(values) else ""),
                "",
            ]
        )
        out += [_table(["protocol point", "published", label, "status"], rows), ""]
        if a["differs"]:
            out += [
                (
                    f"Differs in: {', '.join(a['differs'])}. Set this run's numbers beside it as orientation "
                    f"only, not as a reproduction."
                ),
                "",
            ]
        else:
            out += [f"Comparable: {a['verdict']}.", ""]
    return "\n".join(out)
