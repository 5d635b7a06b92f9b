"""How far the Wav2Lip demo generator gets against "copy the reference frame".

A learning measurement, not a pass/fail test: the numbers and what they mean are in
``docs/wav2lip.md``.  Trains the demo's lip-sync expert (once, kept in ``--work``) and then
the generator of ``config/wav2lip_demo.yaml`` with the epochs / width given here, and scores
it with the pipeline's protocol (:class:`unetprune.families.wav2lip.datasets.TalkingEvalSet`:
every frame, the identity reference half a clip away) on the test clips (identities never
trained on) and on up to ``--train-frames`` frames of the training clips, beside the
copy-the-reference baseline (the very reference frame the generator is given) and the
untrained generator (the same seeded initialisation):

* lower-half L1 (what the generator produces) of the generated frames, of the copies and
  (test clips) of the untrained generator's frames;
* upper-half L1 (given to the generator as input: how well it passes its input through);
* with ``--lse``: stand-in LSE-C of the test clips (the stand-in LSE network trained once on
  the training clips, as the workflow's ``lse_standin`` job does) for the trained and the
  untrained generator, the copies and the real frames: whether the generator learned an
  audio-driven mouth.

    python benchmarks/wav2lip_learning.py                              # the demo recipe (10 epochs)
    python benchmarks/wav2lip_learning.py --lse                        # plus stand-in LSE-C
    python benchmarks/wav2lip_learning.py --epochs 20 --decay 10       # 3x the training
    python benchmarks/wav2lip_learning.py --width 0.5 --device cuda --json out.json

The demo set is built in ``--work/data`` when missing; runs already in ``--work`` are reused.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--config", default=str(REPO / "config" / "wav2lip_demo.yaml"))
    p.add_argument(
        "--work", default="wav2lip_learning", help="folder for the demo set, the expert and the runs"
    )
    p.add_argument("--epochs", type=int, help="train.n_epochs (default: the config's)")
    p.add_argument("--decay", type=int, help="train.n_epochs_decay (default: the config's)")
    p.add_argument("--width", type=float, help="model.wav2lip.width_mult (default: the config's)")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--train-frames", type=int, default=600, help="training-clip frames scored (0: none)")
    p.add_argument("--lse", action="store_true", help="also score stand-in LSE-C on the test clips")
    p.add_argument("--json", help="write the figures to this file")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    import torch

    from unetprune.checkpoint import generator_from_checkpoint
    from unetprune.config import load_config, validate
    from unetprune.families.wav2lip.datasets import TalkingEvalSet
    from unetprune.families.wav2lip.demo import build_talking_demo
    from unetprune.layout import CHECKPOINT_NAME, TRAIN_LOG_NAME
    from unetprune.train import build_models, expert_config, train

    torch.set_num_threads(args.threads)
    work = Path(args.work)
    data = work / "data"
    cfg = load_config(args.config, {"data": {"root": str(data)}})
    if not (data / "demo_talking.json").is_file():
        t = cfg["demo"]["talking"]
        build_talking_demo(
            data, n_train=t["n_train"], n_val=t["n_val"], n_test=t["n_test"], side=t["side"], seed=t["seed"]
        )
    expert = work / "expert"
    if not (expert / CHECKPOINT_NAME).is_file():
        train(validate(expert_config(cfg)), expert)
    over = {"device": args.device, "threads": args.threads}
    for key, value in (("n_epochs", args.epochs), ("n_epochs_decay", args.decay)):
        if value is not None:
            over[key] = value
    section = cfg["model"]["family"]  # the family's own keys: model.<family>.*
    model = {"expert_checkpoint": str(expert / CHECKPOINT_NAME)}
    if args.width is not None:
        model["width_mult"] = args.width
    cfg = load_config(args.config, {"data": {"root": str(data)}, "model": {section: model}, "train": over})
    tr = cfg["train"]
    tag = f"e{tr['n_epochs']}+{tr['n_epochs_decay']}_w{cfg['model'][section]['width_mult']}_{args.device}"
    run = work / tag
    t0 = time.perf_counter()
    if not (run / CHECKPOINT_NAME).is_file():
        train(cfg, run)
    seconds = time.perf_counter() - t0
    G = generator_from_checkpoint(run / CHECKPOINT_NAME)
    mode, seed = cfg["evaluate"]["mode"], cfg["seed"]
    res = {"run": tag, "train_seconds_this_call": round(seconds, 1), "splits": {}}
    log = json.loads((run / TRAIN_LOG_NAME).read_text())
    res["train_L1_last_epoch"] = log["epochs"][-1].get("L1")
    G0 = build_models(cfg)[0]  # the same seeded initialisation, untrained
    for split, limit in (("test", None), ("train", args.train_frames)):
        if limit == 0:
            continue
        es = TalkingEvalSet.load({**cfg, "evaluate": {**cfg["evaluate"], "max_images": limit}}, split, data)
        fake, copy = es.generate(G, mode, seed), es.copied_references
        upper = slice(0, es.paired_rows.start)
        res["splits"][split] = {
            "frames": es.n,
            "lower_l1": es.region_l1(fake),
            "lower_l1_copy": es.region_l1(copy),
            "upper_l1": es.region_l1(fake, upper),
            "upper_l1_copy": es.region_l1(copy, upper),
        }
        if split == "test":
            fake0 = es.generate(G0, mode, seed)
            res["splits"][split]["lower_l1_untrained"] = es.region_l1(fake0)
            if args.lse:
                res["lse_c_test"] = lse_c(
                    cfg,
                    es,
                    work,
                    data,
                    args.threads,
                    {"trained": fake, "untrained": fake0, "copy_reference": copy, "real": es.targets},
                )
    print(
        f"\n{tag}: generator trained {tr['n_epochs']}+{tr['n_epochs_decay']} epochs "
        f"(last epoch's training L1 {res['train_L1_last_epoch']:.4f})"
    )
    print(f"  {'split':<6} {'frames':>6} {'lower L1':>9} {'copy':>7} {'upper L1':>9} {'copy':>7}")
    for split, r in res["splits"].items():
        print(
            f"  {split:<6} {r['frames']:>6} {r['lower_l1']:>9.4f} {r['lower_l1_copy']:>7.4f} "
            f"{r['upper_l1']:>9.4f} {r['upper_l1_copy']:>7.4f}"
            + ("   beats copy" if r["lower_l1"] < r["lower_l1_copy"] else "")
        )
    if "lower_l1_untrained" in res["splits"].get("test", {}):
        print(f"  untrained generator, test lower L1: {res['splits']['test']['lower_l1_untrained']:.4f}")
    if "lse_c_test" in res:
        print(
            "  stand-in LSE-C, test clips (higher = more in sync): "
            + ", ".join(f"{k} {v:.2f}" for k, v in res["lse_c_test"].items())
        )
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=2))
    return 0


def lse_c(cfg: dict, eval_set, work: Path, data: Path, threads: int, frames: dict) -> dict:
    """Stand-in LSE-C of each set of test frames; the stand-in network is trained once into
    ``work/lse_standin.pt`` on the training clips with the config's step count."""
    from types import SimpleNamespace

    from unetprune.cli import main as cli
    from unetprune.families.wav2lip.lse import LSEMetric

    standin = work / "lse_standin.pt"
    if not standin.is_file():
        rc = cli(
            [
                "train-lse-standin",
                "--data",
                str(data),
                "--out",
                str(standin),
                "--no-progress",
                "--steps",
                str(cfg["evaluate"]["lse_standin_steps"]),
                "--threads",
                str(threads),
            ]
        )
        if rc != 0:
            raise SystemExit(f"train-lse-standin failed (exit {rc}); see its message above")
    metric = LSEMetric()
    metric.setup(
        eval_set, SimpleNamespace(ev={"lse_backend": "standin", "lse_weights": str(standin)}, device="cpu")
    )
    return {name: metric.score(f, None)["lse"]["lse_c"] for name, f in frames.items()}


if __name__ == "__main__":
    raise SystemExit(main())
