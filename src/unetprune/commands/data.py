"""`unetprune data …`: fetch the pix2pix benchmarks, prepare Cityscapes, verify a dataset.

    unetprune data list
    unetprune data fetch NAME [--root DIR] [--from FILE_OR_URL] [--sha256 HEX] [--force]
                              [--max-bytes SIZE] [--max-ratio X]
    unetprune data prepare-cityscapes --zips DIR [--root OUT] [--label-side right|left] [--force]
    unetprune data verify [--root DIR] [--name NAME] [--quick]

A thin adapter over ``unetprune.data.fetch`` and ``unetprune.data.cityscapes``: failures
are DataErrors, which the CLI prints as one line with exit status 2.
"""

from __future__ import annotations

import sys
from pathlib import Path


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _counts(counts: dict[str, int]) -> str:
    order = {"train": 0, "val": 1, "test": 2}
    items = sorted(counts.items(), key=lambda kv: order.get(kv[0], 3))
    return ", ".join(f"{split} {n}" for split, n in items)


def register(sub) -> None:
    from ..data.fetch import DATASETS

    p = sub.add_parser("data", help="fetch, prepare and verify the benchmark datasets")
    dsub = p.add_subparsers(dest="data_command", required=True, metavar="ACTION")

    q = dsub.add_parser("list", help="list the known datasets and where they come from")
    q.set_defaults(func=run_list)

    q = dsub.add_parser("fetch", help="download and install a pix2pix benchmark (resumable, checksummed)")
    q.add_argument("name", choices=sorted(DATASETS), metavar="NAME", help=f"one of: {', '.join(DATASETS)}")
    q.add_argument(
        "--root", help="dataset folder to create (train/ val/ test/ inside; default datasets/NAME)"
    )
    q.add_argument(
        "--from",
        dest="source",
        metavar="FILE_OR_URL",
        help="take the archive from a mirror URL, a file:// URL or a local file instead",
    )
    q.add_argument("--sha256", help="require the archive to have this sha256")
    q.add_argument("--force", action="store_true", help="fetch again even if ROOT already holds the dataset")
    q.add_argument("--keep-archive", action="store_true", help="keep the downloaded archive after installing")
    q.add_argument(
        "--retries", type=int, default=4, help="download retries with exponential back-off (default 4)"
    )
    q.add_argument("--timeout", type=float, default=60.0, help="network timeout in seconds (default 60)")
    q.add_argument("--no-progress", action="store_true", help="no progress bar")
    q.add_argument(
        "--max-bytes",
        metavar="SIZE",
        help="refuse an archive that unpacks to more (e.g. 20G; default per dataset, "
        "several times its real size)",
    )
    q.add_argument(
        "--max-ratio",
        type=float,
        default=None,
        help="refuse an archive that unpacks to more than X times its size (default 100)",
    )
    q.set_defaults(func=run_fetch)

    q = dsub.add_parser(
        "prepare-cityscapes", help="build aligned label<->photo pairs from the official Cityscapes zips"
    )
    q.add_argument(
        "--zips",
        required=True,
        help="folder holding gtFine_trainvaltest.zip and leftImg8bit_trainvaltest.zip",
    )
    q.add_argument(
        "--root", default="datasets/cityscapes", help="dataset folder to create (default datasets/cityscapes)"
    )
    q.add_argument(
        "--label-side",
        choices=("right", "left"),
        default="right",
        help="where the colour label map goes: right = B as pix2pix (default), left = A",
    )
    q.add_argument("--size", type=int, default=256, help="side of each half in pixels (default 256)")
    q.add_argument("--force", action="store_true", help="rebuild even if ROOT already holds it")
    q.add_argument("--no-progress", action="store_true", help="no progress bar")
    q.set_defaults(func=run_prepare_cityscapes)

    q = dsub.add_parser("verify", help="check a dataset against its lock file (counts, decoding, hashes)")
    q.add_argument("--root", required=True, help="dataset folder")
    q.add_argument("--name", help="fail unless the folder holds this dataset")
    q.add_argument(
        "--quick",
        action="store_true",
        help="counts, every file's size and the sha256 of a random sample (no decoding); "
        "what the workflow runs before training",
    )
    q.set_defaults(func=run_verify)


def run_list(args) -> int:
    from ..data.fetch import DATASETS

    for spec in DATASETS.values():
        where = spec.url or "licence-gated: unetprune data prepare-cityscapes"
        print(f"{spec.name:15s} {where}  ({spec.description})")
    return 0


def run_fetch(args) -> int:
    from ..data.archive import DEFAULT_MAX_RATIO
    from ..data.fetch import fetch_dataset, parse_size

    res = fetch_dataset(
        args.name,
        Path(args.root) if args.root else None,
        source=args.source,
        sha256=args.sha256,
        force=args.force,
        keep_archive=args.keep_archive,
        retries=args.retries,
        timeout=args.timeout,
        progress=not args.no_progress,
        max_bytes=parse_size(args.max_bytes) if args.max_bytes else None,
        max_ratio=args.max_ratio or DEFAULT_MAX_RATIO,
        log=_log,
    )
    state = "already present" if res.skipped else "installed"
    print(f"{res.name} {state} at {res.root}: {_counts(res.counts)} images; archive sha256 {res.sha256}")
    return 0


def run_prepare_cityscapes(args) -> int:
    from ..data.cityscapes import prepare_cityscapes

    res = prepare_cityscapes(
        args.zips,
        args.root,
        size=args.size,
        label_side=args.label_side,
        force=args.force,
        progress=not args.no_progress,
        log=_log,
    )
    state = "already prepared" if res.skipped else "prepared"
    print(
        f"cityscapes {state} at {res.root}: {_counts(res.counts)} pairs; label maps in {res.root / 'labels'}"
    )
    return 0


def run_verify(args) -> int:
    from ..data.fetch import verify_dataset

    lock = verify_dataset(args.root, name=args.name, quick=args.quick)
    counts = _counts(lock.get("splits", {}))
    print(f"{lock.get('dataset')} at {args.root} matches its lock file: {counts} images")
    return 0
