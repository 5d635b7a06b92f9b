"""The trainer, shared by the original model and by fine-tuning of pruned generators.

The training loop (:func:`train`: schedule, seeding, resume, NaN guard, checkpoints, logs)
is family-agnostic; the models, the data, the training step, the learning check and the
sample grid come from the model family (:mod:`unetprune.family`): the family of
the ``init_from`` checkpoint, else the config's ``model.family`` (default
:data:`~unetprune.family.DEFAULT_FAMILY`; with ``train.target: expert``, that family's
lip-sync expert, ``<family>-expert``).  The family's trainer follows the protocol of
:mod:`unetprune.trainer` (whose :class:`~unetprune.trainer.Trainer` holds the state/resume
half): ``resume_keys`` are further ``train`` keys that must match to resume, and
``end_epoch(epoch, cfg) -> dict`` runs after every epoch, before the checkpoint (its values
join the epoch's log).

Schedule: ``n_epochs`` at constant lr then ``n_epochs_decay`` of linear decay (the pix2pix
reference's ``lambda_rule``, :func:`lr_factor`).

Reproducibility and resume: everything random in epoch ``e`` (data order, crops,
flips, dropout) is seeded from ``(seed, e)``; the resumable state (``resume.pt``: G, D,
optimisers, epoch, log) is written atomically every ``save_every`` epochs and, with
``save_every_steps``, every that many training steps (counted over the whole run) inside an
epoch too, with the position in the epoch, the epoch's running loss sums and the RNG state
(``epoch_progress``); so a run killed at any point and resumed with ``--resume`` continues
from the last state written and ends with the same weights as an uninterrupted run (on CPU,
same thread count).  When the last epoch is done the state
is renamed to ``checkpoint.pt`` (atomic, no copy): ``checkpoint.pt`` exists only for
finished runs, so a workflow can treat it as the job's output while ``resume.pt``
survives a killed job.  A NaN/inf loss stops the run with
:class:`TrainingDiverged` before anything is written, so the last good checkpoint stays.

Learning curve (``train.json``): ``eval.curve`` holds the family's check score on
``train.eval_split`` before training (epoch 0) and after every ``train.check_every`` epochs
(and the last), each with the generator's relative L2 distance from its initial weights;
``eval.curve_steps`` the same check after every ``train.check_every_steps`` training steps
(counted over the whole run, as the reference Wav2Lip scripts' ``eval_interval``; 0 = none);
``weights`` gives that distance at the end, overall and per weight tensor
(:func:`weight_change`).  The checks run in the evaluation mode with a forked RNG and
restored BatchNorm buffers, so they do not change the training.
"""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader

from .fileio import atomic_torch_save, atomic_write_text, remove_stale_temps
from .provenance import utc_now_iso
from .checkpoint import load_checkpoint, make_checkpoint
from .config import deep_merge
from .devices import resolve_device
from .errors import TrainingDiverged, UserFacingError
from .layout import CHECKPOINT_NAME, RESUME_NAME, SAMPLES_NAME
from .layout import TRAIN_LOG_NAME as LOG_NAME
from .metrics.complexity import count_parameters
from .family import ModelFamily, family_for_config, family_of, get_family

# train keys that must match to continue a run (speed options and logging may change)
RESUME_KEYS = ("n_epochs", "n_epochs_decay", "batch_size", "lr", "beta1", "beta2", "lambda_l1")


def lr_factor(epoch: int, n_epochs: int, n_epochs_decay: int) -> float:
    """Reference ``lambda_rule`` (epoch 0-based): 1 for n_epochs, then linear decay."""
    return 1.0 - max(0, epoch + 1 - n_epochs) / float(n_epochs_decay + 1)


def epoch_seed(seed: int, epoch: int) -> int:
    return (seed * 1_000_003 + epoch * 7919 + 17) % (2**63 - 1)


def epoch_batches(n: int, batch_size: int, order: torch.Generator) -> list[list[int]]:
    """The index batches of one shuffled epoch of ``n`` items, in the order ``DataLoader(...,
    batch_size, shuffle=True, generator=order, drop_last=False)`` draws them from ``order``'s
    current state (its base seed first, then the permutation); ``order`` itself is not advanced."""
    g = torch.Generator()
    g.set_state(order.get_state())
    torch.empty((), dtype=torch.int64).random_(generator=g)  # the loader's base-seed draw
    perm = torch.randperm(n, generator=g).tolist()
    return [perm[i : i + batch_size] for i in range(0, n, batch_size)]


def _rng_state(device: torch.device) -> dict:
    st = {"cpu": torch.get_rng_state()}
    if device.type == "cuda":
        st["cuda"] = torch.cuda.get_rng_state(device)
    return st


def _set_rng_state(st: dict, device: torch.device) -> None:
    torch.set_rng_state(st["cpu"])
    if device.type == "cuda" and "cuda" in st:
        torch.cuda.set_rng_state(st["cuda"], device)


def weight_change(initial: dict[str, torch.Tensor], G: nn.Module) -> dict:
    """How far ``G``'s parameters moved from ``initial`` (a copy of them when the run started):
    ``rel_l2`` = ||theta - theta_0|| / ||theta_0|| over all parameters together, and per weight
    tensor (2 or more dims: conv and linear weights) ``by_param``, with the least-moved one
    (``min_rel_l2``, ``min_param``).  0 everywhere = the weights never left their initialisation."""
    diff2 = base2 = 0.0
    by_param: dict[str, float] = {}
    with torch.no_grad():
        for name, p in G.named_parameters():
            if name not in initial:
                continue
            p0 = initial[name].to(torch.float64)
            d = float((p.detach().to("cpu", torch.float64) - p0).pow(2).sum())
            b = float(p0.pow(2).sum())
            diff2, base2 = diff2 + d, base2 + b
            if p.dim() >= 2 and b > 0:
                by_param[name] = math.sqrt(d / b)
    out: dict = {"rel_l2": math.sqrt(diff2 / base2) if base2 > 0 else None}
    if by_param:
        least = min(by_param, key=by_param.get)
        out.update(min_rel_l2=by_param[least], min_param=least, by_param=by_param)
    return out


def _check_finite(sums: dict[str, torch.Tensor], epoch: int, step: int) -> None:
    vals = {k: float(v) for k, v in sums.items()}
    bad = [k for k, v in vals.items() if not math.isfinite(v)]
    if bad:
        raise TrainingDiverged(
            f"loss {', '.join(bad)} became non-finite at epoch {epoch + 1}, step {step} "
            f"({vals}); the run stopped and the last good checkpoint was kept. Lower train.lr, "
            f"check the data for corrupt images, or turn train.amp off."
        )


def _compatible(saved: dict, cfg: dict, path: Path, extra_keys: tuple[str, ...] = ()) -> None:
    pairs = [(s, saved.get(s), cfg.get(s)) for s in ("model", "data", "seed")]
    pairs += [
        (f"train.{k}", saved["train"].get(k), cfg["train"].get(k)) for k in RESUME_KEYS + tuple(extra_keys)
    ]
    for key, old, new in pairs:
        if old != new:
            raise UserFacingError(
                f"cannot resume from {path}: config '{key}' differs from the interrupted run's "
                f"({old} != {new}); use the original config, or delete {path} to start afresh"
            )


def _distillation(cfg: dict, family: ModelFamily, trainer, teacher_path, device):
    """The :class:`~unetprune.trainer.Distillation` of a fine-tuning run: the teacher's generator
    from ``teacher_path`` (of the run's family), frozen; ``finetune.distill``'s weight and features
    (each a prunable group of the teacher); the teacher's mode follows ``evaluate.mode``."""
    from .checkpoint import generator_from_checkpoint
    from .trainer import Distillation

    teacher = generator_from_checkpoint(teacher_path)
    if family_of(teacher).name != family.name:
        raise UserFacingError(
            f"{teacher_path} holds a {family_of(teacher).name!r} generator; the teacher of a "
            f"{family.name!r} run must be one too"
        )
    d = cfg["finetune"]["distill"]
    groups = family.groups(teacher)
    bad = [f for f in d["features"] if f not in groups]
    if bad:
        raise UserFacingError(
            f"config error at 'finetune.distill.features': {', '.join(bad)} are not prunable groups "
            f"of the teacher (one of {', '.join(groups)})"
        )
    return Distillation(
        trainer.G, teacher, family, d["weight"], d["features"], cfg["train"], device, cfg["evaluate"]["mode"]
    )


def finetune_config(cfg: dict) -> dict:
    """The training config of a fine-tuning run: finetune.train's keys, then
    finetune.{n_epochs, n_epochs_decay, lr}, in place of train's."""
    f = cfg["finetune"]
    over = {**f.get("train", {}), "n_epochs": f["n_epochs"], "n_epochs_decay": f["n_epochs_decay"]}
    if f["lr"] is not None:
        over["lr"] = f["lr"]
    return deep_merge(cfg, {"train": over})


def expert_config(cfg: dict) -> dict:
    """The training config of a lip-sync expert run (``unetprune train --expert``):
    ``train.target = expert`` and train.expert.{n_epochs, n_epochs_decay, batch_size, lr, beta1,
    beta2} in place of train's."""
    e = cfg["train"]["expert"]
    over = {k: e[k] for k in ("n_epochs", "n_epochs_decay", "batch_size", "lr", "beta1", "beta2") if k in e}
    return deep_merge(cfg, {"train": {**over, "target": "expert"}})


def training_family(cfg: dict) -> ModelFamily:
    """The family whose model a run trains: the config's ``model.family``, or with
    ``train.target: expert`` its lip-sync expert (``<family>-expert``, e.g. ``wav2lip-expert``)."""
    family = family_for_config(cfg)
    target = cfg["train"].get("target", "generator")
    return family if target == "generator" else get_family(f"{family.name}-{target}")


def build_models(
    cfg: dict,
    init_from: Path | str | None = None,
    init_discriminator_from: Path | str | None = None,
    family: ModelFamily | None = None,
) -> tuple[nn.Module, nn.Module, dict]:
    """Original model: fresh G and D (the family's init, seeded).  Fine-tuning: G from
    ``init_from`` (any widths) and D from ``init_discriminator_from`` (e.g. the original's
    checkpoint: the paper's fine-tuning re-uses the discriminator) or else from
    ``init_from`` if it has one.  Everything is built by ``family`` (default: the config's
    ``model.family``, which must be the ``init_from`` checkpoint's)."""
    family = family or training_family(cfg)
    torch.manual_seed(cfg["seed"])
    info: dict = {}
    if init_from:
        ckpt = load_checkpoint(init_from)
        if family_of(ckpt).name != family.name:
            raise UserFacingError(
                f"{init_from} holds a {family_of(ckpt).name!r} generator, but this "
                f"run's model family is {family.name!r}"
            )
        G = family.build(family.spec_from_dict(ckpt["generator"]["arch"]), init=False)
        G.load_state_dict(ckpt["generator"]["state_dict"])
        info["init_from"] = str(init_from)
    else:
        G = family.build(family.spec_from_config(cfg), init=True)
        ckpt = None
    D = family.build_discriminator(cfg, G)
    d_src = init_discriminator_from or (init_from if ckpt is not None and "discriminator" in ckpt else None)
    if d_src:
        d_ckpt = load_checkpoint(d_src)
        if "discriminator" not in d_ckpt:
            raise UserFacingError(
                f"{d_src} holds no discriminator (use a trainer checkpoint, e.g. original/checkpoint.pt)"
            )
        D = family.discriminator_from_entry(d_ckpt["discriminator"])
        info["discriminator_from"] = str(d_src)
    return G, D, info


def train(
    cfg: dict,
    out_dir: Path | str,
    resume: bool = False,
    init_from: Path | str | None = None,
    progress: bool = True,
    stop_after_epochs: int | None = None,
    init_discriminator_from: Path | str | None = None,
    log_epochs: bool = False,
    distill_from: Path | str | None = None,
) -> dict:
    """Train (or fine-tune, with ``init_from``) and return the log dict written to train.json.

    ``distill_from``: a checkpoint of the teacher (the unpruned original) to distil from with
    ``finetune.distill``'s weight and features (:class:`unetprune.trainer.Distillation`); the
    distillation terms join the logged losses and ``train.json`` records its setup under ``distill``.
    A distilled step is not captured as a CUDA graph (``train.cuda_graph`` auto runs it eagerly).

    ``progress`` shows tqdm bars; ``log_epochs`` prints one line per epoch without them
    (for log files).  ``stop_after_epochs`` ends the call early after that many epochs of *this* call (the
    checkpoint is written), which is how tests simulate an interrupted run.
    """
    from tqdm import tqdm

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tcfg, dcfg = cfg["train"], cfg["data"]
    if tcfg["threads"]:
        torch.set_num_threads(tcfg["threads"])
    device = resolve_device(tcfg["device"], key="train.device")
    total_epochs = tcfg["n_epochs"] + tcfg["n_epochs_decay"]
    ckpt_path = out_dir / CHECKPOINT_NAME
    resume_path = out_dir / RESUME_NAME
    # temporaries of atomic writes a killed run (kill -9) left behind: this run owns out_dir
    remove_stale_temps(out_dir, (RESUME_NAME, CHECKPOINT_NAME, LOG_NAME, SAMPLES_NAME))

    family = training_family(cfg)
    if distill_from is not None:  # a resumed run must distil the same way
        from .cuda_graph import normalise_setting

        d = cfg["finetune"]["distill"]
        over: dict = {"distill": {"weight": d["weight"], "features": list(d["features"])}}
        setting = normalise_setting(tcfg.get("cuda_graph", "auto"))
        if setting == "on":
            raise UserFacingError(
                "config error at 'train.cuda_graph': on cannot capture a distilled fine-tune (its adapters "
                "step outside the captured step); set it to auto or off"
            )
        if setting == "auto":  # distilled steps run eagerly
            over["cuda_graph"] = "off"
        cfg = deep_merge(cfg, {"train": over})
        tcfg = cfg["train"]
    G, D, info = build_models(cfg, init_from, init_discriminator_from, family=family)
    # the weights the run starts from (fresh init or init_from; a resumed run rebuilds the same):
    # train.json records how far training moved them (weight_change)
    initial = {k: v.detach().to("cpu", copy=True) for k, v in G.named_parameters()}
    log: dict = {
        "config": cfg,
        "device": str(device),
        "threads": torch.get_num_threads(),
        "epochs": [],
        "steps": [],
        "started_at": utc_now_iso(),
        **info,
    }
    trainer = family.trainer(G, D, tcfg, device)
    if hasattr(trainer, "bind"):  # optional: trainers that need the run's whole config
        trainer.bind(cfg)
    if distill_from is not None:
        if not hasattr(trainer, "enable_distillation"):
            raise UserFacingError(
                f"model family {family.name!r} has a trainer without distillation (unetprune.trainer.Trainer); "
                f"fine-tune its variants without distill"
            )
        trainer.enable_distillation(_distillation(cfg, family, trainer, distill_from, device))
        log["distill"] = {**trainer.distill.record(), "teacher": str(distill_from)}
    step_mode = getattr(trainer, "step_mode", None)  # CUDA-graph or eager steps, and why (cuda_graph.py)
    if step_mode is not None and (progress or log_epochs):
        step_mode.report_to(tqdm.write)  # one line now, one per later eager fallback
    start_epoch = 0
    progress_at: dict | None = None  # where inside start_epoch a mid-epoch state left off
    state_path = ckpt_path if ckpt_path.exists() else resume_path
    if resume and state_path.exists():
        state = load_checkpoint(state_path, map_location=device)
        if family_of(state).name != family.name:
            raise UserFacingError(
                f"cannot resume from {state_path}: it holds a {family_of(state).name!r} run, "
                f"this run trains {family.name!r}; choose another --out"
            )
        _compatible(
            state["config"], cfg, state_path, tuple(getattr(trainer, "resume_keys", ())) + ("distill",)
        )
        trainer.load_state(state)
        start_epoch = int(state["epoch"])
        progress_at = state.get("epoch_progress")
        log = json.loads(state["log"])
        log["resumed_at_epoch"] = log.get("resumed_at_epoch", []) + [start_epoch]
        if progress_at is not None:
            log["resumed_at_step"] = log.get("resumed_at_step", []) + [int(log["global_step"])]
    elif state_path.exists() and not resume:
        raise UserFacingError(
            f"{state_path} exists: pass --resume to continue that run, or choose another --out"
        )

    dataset = family.train_dataset(cfg)
    # an item may hold several samples (a group of windows): train.batch_size counts samples
    per_item = int(getattr(dataset, "samples_per_item", 1))
    items_per_batch = max(1, int(tcfg["batch_size"]) // per_item)
    order = torch.Generator()

    def epoch_loader(batches: list[list[int]]):
        """The epoch's batches (the shuffled order of :func:`epoch_batches`, from a resumed step on)."""
        if hasattr(dataset, "batch_loader"):  # device-resident data batches itself (data/gpu_data.py)
            return dataset.batch_loader(items_per_batch, order, batches)
        return DataLoader(
            dataset,
            batch_sampler=batches,
            generator=order,  # the workers' base seed, as a shuffling loader draws it
            num_workers=dcfg["num_workers"],
            pin_memory=device.type == "cuda",
            persistent_workers=False,
        )

    def save(epoch_done: int, final: bool, progress_in: dict | None = None) -> None:
        extra = {} if progress_in is None else {"epoch_progress": progress_in}
        state = make_checkpoint(
            trainer.G,
            cfg,
            meta={"kind": f"{family.name}-trainer", **info},
            **trainer.state(),
            epoch=epoch_done,
            total_epochs=total_epochs,
            log=json.dumps(log),
            **extra,
        )
        atomic_torch_save(state, resume_path)
        if final:
            os.replace(resume_path, ckpt_path)

    eval_set = family.check_dataset(cfg)
    if eval_set is not None and start_epoch == 0:
        log["eval"] = {
            "split": eval_set.split,
            "n_images": len(eval_set),
            "mode": cfg["evaluate"]["mode"],
            "l1_init": family.check_score(trainer.G, eval_set, cfg),
        }
        # the learning curve: the check score every train.check_every epochs (epoch 0 = before training)
        log["eval"]["check_every"] = int(tcfg.get("check_every", 1))
        log["eval"]["curve"] = [{"epoch": 0, "score": log["eval"]["l1_init"], "weights_rel_l2": 0.0}]
        # and every train.check_every_steps training steps, counted over the whole run
        log["eval"]["check_every_steps"] = int(tcfg.get("check_every_steps") or 0)
        log["eval"]["curve_steps"] = []
    check_every = int(tcfg.get("check_every", 1))
    check_every_steps = int(tcfg.get("check_every_steps") or 0)
    save_every_steps = int(tcfg.get("save_every_steps") or 0)
    global_step = int(log.get("global_step", 0))  # steps taken up to the state resumed from

    epochs_this_call = 0
    if start_epoch == total_epochs and ckpt_path.exists():
        epochs = []  # resumed a finished run: nothing to do
    else:
        epochs = range(start_epoch, total_epochs)
    if total_epochs == 0:
        save(0, final=True)
    for epoch in epochs:
        lr = tcfg["lr"] * lr_factor(epoch, tcfg["n_epochs"], tcfg["n_epochs_decay"])
        trainer.set_lr(lr)
        trainer.set_train_mode()
        dataset.set_epoch(epoch)
        order.manual_seed(epoch_seed(cfg["seed"], epoch))
        torch.manual_seed(epoch_seed(cfg["seed"] + 1, epoch))  # dropout
        batches = epoch_batches(len(dataset), items_per_batch, order)
        sums = {k: torch.zeros((), device=device) for k in trainer.losses}
        n_steps, n_images, t0 = 0, 0, time.perf_counter()
        if progress_at is not None:  # continue the epoch where the mid-epoch state left off
            n_steps, n_images = int(progress_at["step"]), int(progress_at["images"])
            for k in sums:
                sums[k] += float(progress_at["sums"][k])
            t0 -= float(progress_at["seconds"])
            _set_rng_state(progress_at["rng"], device)
            progress_at = None
        bar = tqdm(
            epoch_loader(batches[n_steps:]),
            desc=f"epoch {epoch + 1}/{total_epochs}",
            disable=not progress,
            leave=False,
            initial=n_steps,
            total=len(batches),
        )
        for batch in bar:
            if getattr(trainer, "distill", None) is not None:
                trainer.distill.zero_grad()
            losses = trainer.step(batch)
            if getattr(trainer, "distill", None) is not None:  # the adapters learn from the same backward
                if "KD" not in losses:
                    raise UserFacingError(
                        f"model family {family.name!r}: its trainer's step ignores distillation "
                        f"(no KD loss); fine-tune its variants without distill"
                    )
                trainer.distill.step()
            for k, v in losses.items():
                sums[k] += v.float()
            n_steps += 1
            global_step += 1
            n_images += per_item * len(
                next(iter(batch.values()))
            )  # a batch: dict, first entry one row per item
            steps_curve = (log.get("eval") or {}).get("curve_steps")
            if eval_set is not None and steps_curve is not None and check_every_steps:
                if global_step % check_every_steps == 0:
                    steps_curve.append(
                        {
                            "step": global_step,
                            "epoch": epoch + 1,
                            "score": family.check_score(trainer.G, eval_set, cfg),
                            "weights_rel_l2": weight_change(initial, trainer.G)["rel_l2"],
                        }
                    )
                    trainer.set_train_mode()  # the check ran in the evaluation mode
            if n_steps % tcfg["log_every"] == 0:
                _check_finite(sums, epoch, n_steps)
                means = {k: float(v) / n_steps for k, v in sums.items()}
                log["steps"].append({"epoch": epoch + 1, "step": n_steps, **means})
                bar.set_postfix({k: f"{v:.3f}" for k, v in means.items()})
            if save_every_steps and global_step % save_every_steps == 0 and n_steps < len(batches):
                _check_finite(sums, epoch, n_steps)
                log["global_step"] = global_step
                save(
                    epoch,
                    final=False,
                    progress_in={
                        "step": n_steps,
                        "images": n_images,
                        "sums": {k: float(v) for k, v in sums.items()},
                        "seconds": time.perf_counter() - t0,
                        "rng": _rng_state(device),
                    },
                )
        _check_finite(sums, epoch, n_steps)
        if device.type == "cuda":
            torch.cuda.synchronize()
        dt = time.perf_counter() - t0
        log["epochs"].append(
            {
                "epoch": epoch + 1,
                "lr": lr,
                "seconds": dt,
                "images_per_s": n_images / dt if dt > 0 else None,
                **{k: float(v) / max(n_steps, 1) for k, v in sums.items()},
            }
        )
        end_epoch = getattr(
            trainer, "end_epoch", None
        )  # a family's per-epoch step (e.g. Wav2Lip's sync switch)
        if end_epoch is not None:
            log["epochs"][-1].update(end_epoch(epoch, cfg))
        if progress or log_epochs:
            e = log["epochs"][-1]
            parts = "".join(f"{k} {e[k]:.3f}  " for k in trainer.losses)
            tqdm.write(f"epoch {epoch + 1}/{total_epochs}  lr {lr:.2e}  {parts}{e['images_per_s']:.1f} img/s")
        epochs_this_call += 1
        done = epoch + 1
        log["global_step"] = global_step
        curve = (log.get("eval") or {}).get("curve")
        if (
            eval_set is not None
            and curve is not None
            and ((check_every and done % check_every == 0) or done == total_epochs)
        ):
            curve.append(
                {
                    "epoch": done,
                    "score": family.check_score(trainer.G, eval_set, cfg),
                    "weights_rel_l2": weight_change(initial, trainer.G)["rel_l2"],
                }
            )
        if done % tcfg["save_every"] == 0 or done == total_epochs or epochs_this_call == stop_after_epochs:
            save(done, final=done == total_epochs)
        if epochs_this_call == stop_after_epochs:
            break
    log["complete"] = len(log["epochs"]) == total_epochs
    log["params_G"] = count_parameters(trainer.G)
    log["weights"] = weight_change(initial, trainer.G)
    if log["complete"] and eval_set is not None:
        curve = log.setdefault("eval", {}).get("curve") or []
        last = curve[-1] if curve and curve[-1]["epoch"] == total_epochs else None  # checked just now
        log["eval"]["l1_final"] = last["score"] if last else family.check_score(trainer.G, eval_set, cfg)
        family.render_samples(trainer.G, eval_set, out_dir / SAMPLES_NAME, cfg)
    if step_mode is not None:
        log["step_mode"] = step_mode.as_dict()
    log["finished_at"] = utc_now_iso()  # the job's times (MLflow shows them; started_at survives resumes)
    atomic_write_text(out_dir / LOG_NAME, json.dumps(log, indent=2))
    return log
