"""`unetprune import`: released weights of a model family's reference code as a self-describing
unetprune checkpoint, ready to evaluate, prune and fine-tune.  The command reads its arguments
and hands the files to the family's :meth:`~unetprune.family.ModelFamily.import_released`
(``--family``; default: ``--config``'s ``model.family``, else pix2pix).

    unetprune import --from latest_net_G.pth --out facades.pt
    unetprune import --from latest_net_G.pth --discriminator latest_net_D.pth --out facades.pt
    unetprune import --config CFG --from latest_net_G.pth --out OUT.pt --record TRAIN_JSON
    unetprune import --family wav2lip --from wav2lip_gan.pth --expert lipsync_expert.pth --out G.pt

pix2pix (junyanz/pytorch-CycleGAN-and-pix2pix): the file is read with
``torch.load(weights_only=True)`` only (never unpickled code); its ``model.model.1.model…``
names are mapped by :mod:`unetprune.families.pix2pix.reference` and every key and shape is
checked (``bias_mode="reference"``: the official code's biases).  Depth, width, norm and the
in/out channels come from the file; ``--num-downs``/``--ngf``/``--norm`` (or ``--config``'s
``model.pix2pix`` section) state what it must be.  Fine-tuning needs a discriminator:
``--discriminator`` maps a released ``latest_net_D.pth``; without it the checkpoint gets a
freshly initialised PatchGAN (pix2pix init, seeded), and says so.  ``--record`` writes the run
record the workflow's ``train_original`` job leaves (no training: ``imported`` with the file's
sha256).
"""

from __future__ import annotations

import json
from pathlib import Path


def register(sub) -> None:
    p = sub.add_parser(
        "import",
        help="import released weights (pix2pix latest_net_G.pth, wav2lip_gan.pth, ...)",
        description=__doc__.split("\n\n")[0],
    )
    p.add_argument(
        "--from",
        dest="source",
        required=True,
        metavar="REF.pth",
        help="the released file (e.g. latest_net_G.pth, wav2lip_gan.pth, lipsync_expert.pth)",
    )
    p.add_argument(
        "--family",
        help="model family of the file (default: --config's model.family, else pix2pix); "
        "e.g. wav2lip, wav2lip-expert",
    )
    p.add_argument(
        "--expert",
        metavar="EXPERT.pth",
        help="a released lip-sync expert carried by the checkpoint (families with one, e.g. wav2lip)",
    )
    p.add_argument("--out", required=True, metavar="OUT.pt", help="unetprune checkpoint to write")
    p.add_argument(
        "--discriminator",
        metavar="D.pth",
        help="the released discriminator (pix2pix latest_net_D.pth, default a fresh PatchGAN; "
        "wav2lip visual_quality_disc.pth)",
    )
    p.add_argument(
        "--config",
        help="experiment config: its model section must describe the file; recorded in the "
        "checkpoint (pix2pix: seed, ndf, n_layers_d for a fresh D)",
    )
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config value (repeatable; with --config)",
    )
    p.add_argument("--num-downs", type=int, help="expected depth (8 = unet_256; default: the file's)")
    p.add_argument("--ngf", type=int, help="expected outermost width (default: the file's)")
    p.add_argument("--norm", choices=["batch", "instance"], help="expected norm (default: the file's)")
    p.add_argument(
        "--no-dropout",
        action="store_true",
        help="the model was trained with --no_dropout (pix2pix default: dropout on)",
    )
    p.add_argument(
        "--record", metavar="JSON", help="also write the import record (train.json of the original)"
    )
    p.set_defaults(func=run)


SECTION = "pix2pix"  # the family's config section, model.pix2pix


def model_options(cfg: dict) -> dict:
    """``model.pix2pix`` of a config (read here, not through the family module, which imports
    this one for its import hook)."""
    return ((cfg.get("model") or {}).get(SECTION)) or {}


def _error(msg: str):
    from ....errors import UserFacingError

    return UserFacingError(msg)


def load_state_dict(path: Path | str, what: str) -> dict:
    """``path``'s state dict, read with :func:`unetprune.weights.load_weights`; one-line errors."""
    from ....checkpoint import FORMAT
    from ....weights import is_state_dict, load_weights

    path = Path(path)
    obj = load_weights(
        path,
        f"pix2pix {what} state dict",
        error=_error,
        missing="{path} does not exist (expected a {what})",
        unreadable="{path} is not a weights-only {what} "
        "(torch.load(weights_only=True) refused it: {first:.200})",
    )
    if isinstance(obj, dict) and obj.get("format") == FORMAT:
        raise _error(f"{path} is already a unetprune checkpoint; expected a pix2pix {what} state dict")
    if not obj or not is_state_dict(obj):
        raise _error(f"{path} is not a state dict (a dict of tensors); expected a pix2pix {what} state dict")
    return obj


def _check_config(cfg: dict, spec, path: Path) -> None:
    """The config's ``model.pix2pix`` section must describe the imported generator."""
    from ....family import family_for_config

    family = cfg["model"].get("family", SECTION)
    if family != SECTION:
        raise _error(f"{path}: a pix2pix generator cannot start a {family!r} experiment (model.family)")
    m = model_options(cfg)
    want = family_for_config(cfg).spec_from_config(cfg)
    diffs = []
    for key, theirs in (("num_downs", spec.num_downs), ("ngf", spec.enc_widths[0]), ("norm", spec.norm)):
        if m[key] != theirs:
            diffs.append(f"model.{SECTION}.{key} is {m[key]!r}, the file has {theirs!r}")
    if (want.input_nc, want.output_nc) != (spec.input_nc, spec.output_nc):
        diffs.append(
            f"the file maps {spec.input_nc} to {spec.output_nc} channels, the config "
            f"{want.input_nc} to {want.output_nc}"
        )
    if not diffs and spec.norm == "batch" and m["bias_mode"] != "reference":
        diffs.append(
            f"model.{SECTION}.bias_mode is {m['bias_mode']!r}, the file has the official code's "
            f"biases: set model.{SECTION}.bias_mode: reference"
        )
    if diffs:
        raise _error(f"{path}: the config does not describe this generator: {'; '.join(diffs)}")


def import_reference(
    source: Path | str,
    *,
    cfg: dict | None = None,
    discriminator: Path | str | None = None,
    num_downs: int | None = None,
    ngf: int | None = None,
    norm: str | None = None,
    use_dropout: bool = True,
) -> tuple[dict, dict]:
    """Convert ``source`` (and ``discriminator``) into a unetprune checkpoint dict; also return
    the import record.  ``cfg`` (validated) supplies the expectations, dropout, seed and D's
    shape; the keyword expectations apply when no ``cfg`` is given."""
    import torch

    from ....checkpoint import make_checkpoint
    from ....fileio import sha256_file
    from ....metrics.complexity import count_parameters
    from ....family import get_family
    from ..patchgan import build_discriminator
    from ..reference import ReferenceFormatError, discriminator_from_reference, generator_from_reference
    from ..unet import init_weights

    source = Path(source)
    fam = get_family("pix2pix")
    if cfg is not None:  # the config's model.pix2pix section states the expectations (checked below)
        num_downs = ngf = norm = None
        use_dropout = model_options(cfg)["use_dropout"]
    sd = load_state_dict(source, "UnetGenerator")
    try:
        spec, state = generator_from_reference(
            sd, use_dropout=use_dropout, num_downs=num_downs, ngf=ngf, norm=norm
        )
    except ReferenceFormatError as e:
        want = f"unet_{2**num_downs} (num_downs {num_downs})" if num_downs else "UnetGenerator"
        raise _error(f"{source} is not a pix2pix {want} state dict: {e}") from None
    if cfg is not None:
        _check_config(cfg, spec, source)
    G = fam.build(spec, init=False)
    G.load_state_dict(state)
    record = {
        "imported": True,
        "source": str(source),
        "sha256": sha256_file(source),
        "format": "junyanz/pytorch-CycleGAN-and-pix2pix UnetGenerator state dict",
        "arch": spec.to_dict(),
        "params_G": count_parameters(G),
    }

    d_in = spec.input_nc + spec.output_nc
    if discriminator:
        dsd = load_state_dict(discriminator, "NLayerDiscriminator")
        try:
            d_arch, d_state = discriminator_from_reference(dsd)
        except ReferenceFormatError as e:
            raise _error(f"{discriminator} is not a pix2pix NLayerDiscriminator state dict: {e}") from None
        if d_arch["input_nc"] != d_in:
            raise _error(
                f"{discriminator} is not the discriminator of this generator: it reads "
                f"{d_arch['input_nc']} channels, the generator's pairs have {d_in}"
            )
        D = build_discriminator(d_arch)
        D.load_state_dict(d_state)
        record["discriminator"] = {
            "fresh": False,
            "source": str(discriminator),
            "sha256": sha256_file(discriminator),
            "arch": d_arch,
        }
    else:
        m = model_options(cfg or {})
        seed = int((cfg or {}).get("seed", 0))
        torch.manual_seed(seed)
        D = build_discriminator(
            {"input_nc": d_in, "ndf": m.get("ndf", 64), "n_layers": m.get("n_layers_d", 3), "norm": spec.norm}
        )
        init_weights(D)
        record["discriminator"] = {
            "fresh": True,
            "arch": D.config,
            "init": f"pix2pix normal(0, 0.02), seed {seed}",
            "note": "freshly initialised PatchGAN: no discriminator was imported",
        }
    d_state = {k: v.detach().cpu().clone() for k, v in D.state_dict().items()}
    ckpt = make_checkpoint(
        G,
        cfg or {},
        meta={"kind": "pix2pix-import", **record},
        discriminator={"arch": D.config, "state_dict": d_state},
    )
    return ckpt, record


def import_released(
    source: Path | str,
    *,
    cfg: dict | None = None,
    discriminator: Path | str | None = None,
    expert: Path | str | None = None,
    options: dict | None = None,
) -> tuple[dict, dict]:
    """The pix2pix family's :meth:`~unetprune.family.ModelFamily.import_released`:
    :func:`import_reference` with ``options`` ``num_downs``/``ngf``/``norm``/``use_dropout``."""
    if expert:
        raise _error(f"--expert {expert}: a pix2pix generator has no lip-sync expert")
    o = dict(options or {})
    ckpt, record = import_reference(
        source,
        cfg=cfg,
        discriminator=discriminator,
        num_downs=o.get("num_downs"),
        ngf=o.get("ngf"),
        norm=o.get("norm"),
        use_dropout=o.get("use_dropout", True),
    )
    d, a = record["discriminator"], record["arch"]
    record["summary"] = (
        f"imported {source} (unet_{2 ** len(a['enc_widths'])}, ngf {a['enc_widths'][0]}, "
        f"{a['norm']} norm, {record['params_G']:,} params, bias_mode reference); discriminator: "
        f"{'fresh PatchGAN' if d['fresh'] else d['source']}"
    )
    return ckpt, record


def run(args) -> int:
    from ....config import load_config
    from ....family import get_family
    from ....fileio import atomic_torch_save, atomic_write_text

    if args.overrides and not args.config:
        raise _error("--set needs --config")
    cfg = load_config(args.config, args.overrides) if args.config else None
    expectations = {"num_downs": args.num_downs, "ngf": args.ngf, "norm": args.norm}
    if cfg is not None and any(v is not None for v in expectations.values()):
        raise _error("give the expected architecture either by --config or by --num-downs/--ngf/--norm")
    name = args.family or (cfg["model"].get("family") if cfg is not None else None)
    family = get_family(name)
    options = {k: v for k, v in expectations.items() if v is not None}
    if args.no_dropout:
        options["use_dropout"] = False
    ckpt, record = family.import_released(
        args.source, cfg=cfg, discriminator=args.discriminator, expert=args.expert, options=options
    )
    atomic_torch_save(ckpt, args.out)
    if args.record:
        log = {**record, "config": cfg or {}, "epochs": [], "steps": [], "complete": True}
        atomic_write_text(args.record, json.dumps(log, indent=2))
    print(f"{args.out}: {record['summary']}")
    return 0
