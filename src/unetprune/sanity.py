"""The sanity gate: does the original do its task better than the trivial generators of its task?

Pruning findings mean something only for a generator that does its job.  The original's
evaluation carries a ``sanity`` block (:func:`score_trivial`, ``unetprune evaluate --sanity``):
each trivial generator of the model family (:meth:`unetprune.family.ModelFamily.trivial_generators`:
pix2pix — copy the input, the per-pixel mean of the training targets, the untrained generator;
Wav2Lip — copy the reference frame, the untrained generator) scored by the same Evaluator on the
same split, with its noise (bootstrap over the images; one generation seed)::

    "sanity": {"generators": {"copy-input": {"description": ..., "metrics": {"fid": v, ...},
                                             "std": {"fid": s, ...}, "not_compared": {}}, ...}}

:func:`unetprune.report.verdicts.sanity_gate` compares the original with each of them on the verdict metric
(``report.quality_metric``) and the family's :meth:`~unetprune.family.ModelFamily.sanity_metrics`
(e.g. lip-sync): the original *beats* a trivial generator on a metric when it is better by more
than ``z`` combined standard deviations (sqrt(std_original² + std_trivial²); without a noise
record, when it is better at all).  A trivial generator is not compared on the metrics its family
names in ``not_compared`` (where it is the floor by construction: copy-reference's outputs are
real frames, so its FID is the real-against-real floor); the report says which and why.  The gate passes when it beats every trivial generator on
every checked metric.  The report's first finding states the outcome; ``metrics.json`` and the
original's MLflow run carry ``sanity_passed``.
"""

from __future__ import annotations

from contextlib import contextmanager

from .metrics.noise import scalar_metrics

#: metric plug-ins the trivial generators are not scored with (they have no size or latency)
SKIPPED_PLUGINS = ("complexity",)


@contextmanager
def _without(evaluator, names):
    saved = evaluator.metrics
    evaluator.metrics = {k: v for k, v in saved.items() if k not in names}
    try:
        yield evaluator
    finally:
        evaluator.metrics = saved


def score_trivial(evaluator, cfg: dict, generator) -> dict:
    """The ``sanity`` block: every trivial generator of ``generator``'s family scored by
    ``evaluator`` (its metric plug-ins except :data:`SKIPPED_PLUGINS`; one generation seed, the
    configured bootstrap)."""
    from .family import family_for_config

    family = family_for_config(cfg)
    out = {}
    with _without(evaluator, SKIPPED_PLUGINS):
        for name, (module, description, *rest) in family.trivial_generators(
            cfg, generator, evaluator.root
        ).items():
            r = evaluator.score(module.eval(), noise_seeds=1)
            noise = (r.get("noise") or {}).get("metrics") or {}
            out[name] = {
                "description": description,
                "not_compared": dict(rest[0]) if rest else {},
                "metrics": scalar_metrics(r),
                "std": {m: e.get("std") for m, e in noise.items()},
                "diversity": (r.get("diversity") or {}).get("ratio"),
            }
    return {"generators": out}


def gate_metrics(cfg: dict) -> list[str]:
    """The metrics the gate checks: the verdict metric, then the family's own."""
    from .family import family_for_config

    q = cfg["report"]["quality_metric"]
    return list(dict.fromkeys([q, *family_for_config(cfg).sanity_metrics(cfg)]))
