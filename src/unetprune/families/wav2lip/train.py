"""Training Wav2Lip: the lip-sync expert's and the generator's trainers, their critics and
the learning checks.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from ...errors import UserFacingError
from ...trainer import Trainer, memory_format

# ------------------------------------------------------------------------------------------
# training: the expert SyncNet trainer and the generator trainer
# ------------------------------------------------------------------------------------------
#
# Both are trainers of the generic loop (:func:`unetprune.train.train`: epochs, seeding,
# resume, atomic checkpoints, NaN guard, progress bars), subclasses of
# :class:`unetprune.trainer.Trainer` (the state/resume protocol).  Recipe (reference Rudrabha/Wav2Lip
# ``color_syncnet_train.py``, ``wav2lip_train.py``, ``hq_wav2lip_train.py``):
#
# * expert: ``d = cos(audio_emb, face_emb)`` (both ReLU'd and L2-normalised, so d ∈ [0, 1]),
#   loss = BCE(d, label) on in-sync (1) and off-sync (0) windows of the same clip; Adam 1e-4,
#   batch 64 (``train.expert``);
# * generator: loss = syncnet_wt · sync + disc_wt · perceptual + (1 − syncnet_wt − disc_wt) · L1,
#   L1 on the whole generated frames (B, 3, T, 96, 96) vs the targets; sync = BCE(cos(expert(mel,
#   lower halves of G's 5 frames)), 1) with the expert frozen (``requires_grad`` off) in
#   ``train.expert_mode`` (train, as the reference: batch statistics; or eval); ``syncnet_wt`` is
#   ``train.sync_boost`` (0 in the reference) until the validation sync loss falls below
#   ``train.sync_threshold`` (0.75), then ``train.syncnet_wt`` (0.01 in wav2lip_train.py, 0.03 in
#   hq_wav2lip_train.py) for the rest of the run (checked after every epoch, the reference every
#   3000 steps); perceptual =
#   BCE(qual(G lower halves), 1) with the HQ quality discriminator (``model.hq``; ``disc_wt`` 0.07,
#   0 without it), which is trained on real → 1, generated → 0 with its own Adam (train.lr).
#
# The expert is its own model family, ``wav2lip-expert`` (its "generator" is the SyncNet), so
# ``unetprune train --expert`` writes an ordinary self-describing checkpoint
# (``family: wav2lip-expert``) that a generator config names as ``model.wav2lip.expert_checkpoint``.

EXPERT_FAMILY = "wav2lip-expert"


def cosine_bce(audio: torch.Tensor, face: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
    """The reference ``cosine_loss``: BCE of the cosine similarity (clamped to [0, 1]) vs ``label``."""
    import torch.nn.functional as F

    d = F.cosine_similarity(audio.float(), face.float()).clamp(0.0, 1.0).unsqueeze(1)
    return F.binary_cross_entropy(d, label.float().view(-1, 1))


def in_clip_pair_bce(
    audio: torch.Tensor, face: torch.Tensor, start: torch.Tensor, min_offset: int = 1
) -> tuple[torch.Tensor, torch.Tensor]:
    """The expert's loss on groups of windows of one clip each (``audio`` and ``face`` embeddings
    (B, k, D), ``start`` (B, k)): the reference's BCE on the cosine similarity (clamped to
    [0, 1]), with every in-sync pair (audio ``i``, face ``i``) as label 1 and every pair of the
    same group whose starts differ by at least ``min_offset`` frames as label 0; the two labels
    weigh half each, so chance scores ln 2 as the reference's balanced sampling.
    Returns ``(loss, balanced accuracy at 0.5)``."""
    import torch.nn.functional as F

    a = F.normalize(audio.float(), dim=-1)
    v = F.normalize(face.float(), dim=-1)
    cos = (a @ v.transpose(1, 2)).clamp(0.0, 1.0)  # (B, k, k): audio i x face j
    k = cos.shape[1]
    eye = torch.eye(k, dtype=torch.bool, device=cos.device).expand_as(cos)
    off = (start[:, :, None] - start[:, None, :]).abs() >= max(1, int(min_offset))
    pos, neg = cos[eye], cos[off & ~eye]
    loss = 0.5 * F.binary_cross_entropy(pos, torch.ones_like(pos))
    acc = 0.5 * (pos.detach() > 0.5).float().mean()
    if neg.numel():
        loss = loss + 0.5 * F.binary_cross_entropy(neg, torch.zeros_like(neg))
        acc = acc + 0.5 * (neg.detach() <= 0.5).float().mean()
    return loss, acc


def lower_halves_stacked(frames: torch.Tensor) -> torch.Tensor:
    """(B, 3, T, S, S) frames → (B, 3T, S/2, S): the expert's input (frames on channels, as the reference)."""
    g = frames[:, :, :, frames.shape[3] // 2 :]
    return torch.cat([g[:, :, i] for i in range(g.shape[2])], dim=1)


class Wav2LipCritics(nn.Module):
    """The non-generator models of a Wav2Lip generator run (the trainer's "discriminator" slot):
    ``expert`` (frozen :class:`~unetprune.families.wav2lip.syncnet.SyncNetColor`, or ``None`` = no sync
    loss) and ``qual`` (the HQ :class:`~unetprune.families.wav2lip.syncnet.Wav2LipDiscQual`, or ``None``).
    ``config`` is the checkpoint's ``discriminator.arch``: enough to rebuild both.

    The expert's weights never receive gradients; ``expert_mode`` (``train.expert_mode``, set by
    the trainer) is the module mode it runs in whatever mode the critics are put in: ``"eval"``
    (its BatchNorm statistics stay as stored) or ``"train"`` (the reference: batch statistics,
    running statistics updated)."""

    def __init__(
        self, expert: nn.Module | None, qual: nn.Module | None, config: dict, expert_mode: str = "eval"
    ):
        super().__init__()
        self.expert = expert
        self.qual = qual
        self.config = config
        self.expert_mode = expert_mode
        if expert is not None:
            expert.requires_grad_(False)
            expert.train(expert_mode == "train")

    def set_expert_mode(self, mode: str) -> None:
        if mode not in ("train", "eval"):
            raise ValueError(f"expert mode must be 'train' or 'eval', got {mode!r}")
        self.expert_mode = mode
        if self.expert is not None:
            self.expert.train(mode == "train")

    def train(self, mode: bool = True):
        super().train(mode)
        if self.expert is not None:
            self.expert.train(self.expert_mode == "train")  # frozen weights; the configured mode
        return self


def _critics_from_arch(arch: dict) -> Wav2LipCritics:
    from .syncnet import SyncNetColor, SyncNetSpec, Wav2LipDiscQual

    expert = SyncNetColor(SyncNetSpec.from_dict(arch["expert"])) if arch.get("expert") else None
    qual = Wav2LipDiscQual(arch["qual_widths"]) if arch.get("qual_widths") else None
    return Wav2LipCritics(expert, qual, dict(arch))


def load_expert(path: Path | str):
    """``(SyncNetColor, source record)`` from a ``wav2lip-expert`` checkpoint (``unetprune train
    --expert``) or a reference ``lipsync_expert.pth``; a one-line error naming the file otherwise."""
    from ...checkpoint import CheckpointError, load_checkpoint, sha256_file
    from .syncnet import SyncNetColor, SyncNetSpec, load_syncnet_color_weights

    path = Path(path)
    if not path.is_file():
        raise UserFacingError(
            f"model.wav2lip.expert_checkpoint {path} does not exist: train the expert first "
            f"(`unetprune train --expert --config CONFIG --out DIR`)"
        )
    source = {"path": str(path), "sha256": sha256_file(path)}
    try:
        ckpt = load_checkpoint(path)
    except CheckpointError as e:
        if "not a unetprune checkpoint" not in str(e):
            raise
        return load_syncnet_color_weights(path), {**source, "kind": "reference"}
    if ckpt.get("family") != EXPERT_FAMILY:
        raise UserFacingError(
            f"model.wav2lip.expert_checkpoint {path} holds a {ckpt.get('family', 'pix2pix')!r} model, "
            f"not a lip-sync expert ({EXPERT_FAMILY!r}, `unetprune train --expert`)"
        )
    m = SyncNetColor(SyncNetSpec.from_dict(ckpt["generator"]["arch"]))
    m.load_state_dict(ckpt["generator"]["state_dict"])
    return m, {**source, "kind": EXPERT_FAMILY, "epoch": ckpt.get("epoch")}


class _Windows:
    """Evenly spaced windows of a :class:`~unetprune.families.wav2lip.datasets.TalkingFaceDataset` (``n`` of
    them, ``None`` = all), forwarding ``set_epoch``, ``split`` and ``__len__``.  ``rotate`` (the
    training set): epoch ``e`` takes the evenly spaced windows shifted by ``e`` windows, so a run
    of ``n`` windows per epoch draws on every window of the split instead of the same ``n``."""

    def __init__(self, ds, n: int | None, rotate: bool = False):
        self.ds, self.split = ds, ds.split
        self.samples_per_item = int(getattr(ds, "samples_per_item", 1))
        self.total = len(ds)
        k = self.total if not n or n >= self.total else int(n)
        self.idx = [int(i * self.total // k) for i in range(k)]
        self.rotate, self.shift = bool(rotate) and k < self.total, 0

    def set_epoch(self, epoch: int) -> None:
        self.ds.set_epoch(epoch)
        if self.rotate:
            self.shift = int(epoch) % self.total

    def __len__(self) -> int:
        return len(self.idx)

    def __getitem__(self, i: int) -> dict:
        return self.ds[(self.idx[i] + self.shift) % self.total]


def talking_root(cfg: dict) -> Path:
    """The preprocessed talking-face folder of a config: ``<data root>/preprocessed`` (what
    ``unetprune demo-talking --out <data root>`` builds) if it exists, else the data root itself
    (a folder written by ``unetprune data preprocess-lrs2``)."""
    from ...layout import Layout

    root = Layout.from_config(cfg).data_root
    pre = root / "preprocessed"
    return pre if (pre / "train.txt").is_file() else root


def expert_train_dataset(cfg: dict):
    """The expert's training samples: with ``train.expert.sampling: in_clip_pairs`` groups of
    ``train.expert.windows_per_clip`` windows of one clip
    (:class:`~unetprune.families.wav2lip.datasets.ClipWindowGroups`; ``data.max_train_items``
    windows per epoch, in groups), else the reference's labelled windows."""
    from .datasets import ClipWindowGroups

    e, n = cfg["train"]["expert"], cfg["data"]["max_train_items"]
    if e["sampling"] != "in_clip_pairs":
        return talking_dataset(cfg, "train", "expert", n, min_offset=e["min_offset"])
    k = e["windows_per_clip"]
    windows = talking_dataset(cfg, "train", "expert", None, min_offset=e["min_offset"]).ds
    return _Windows(ClipWindowGroups(windows, k), max(1, n // k) if n else None)


def talking_dataset(
    cfg: dict, split: str, mode: str, n: int | None = None, min_offset: int = 1, rotate: bool = False
) -> _Windows:
    from ...data.aligned import DataError
    from .datasets import TalkingFaceDataset

    root = talking_root(cfg)
    if not (root / f"{split}.txt").is_file():
        hint = (
            f"`unetprune demo-talking --out {root}`"
            if cfg["data"]["dataset"] == "demo"
            else f"`unetprune data preprocess-lrs2 --out {root}`"
        )
        raise DataError(f"{root}: no talking-face {split} split ({split}.txt); build it with {hint}")
    return _Windows(
        TalkingFaceDataset(root, split, mode=mode, seed=cfg["seed"], min_offset=min_offset), n, rotate
    )


def _batches(dataset, batch_size: int = 8):
    from torch.utils.data import DataLoader

    return DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=0)


def _gen_batch(G: nn.Module, batch: dict, device) -> torch.Tensor:
    return G(batch["face"].to(device), batch["indiv_mels"].to(device))


def lower_half_l1(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-sample mean |pred − target| over the lower halves of (B, 3, T, S, S) frames (in [0, 1] units)."""
    h = pred.shape[3] // 2
    return (pred[:, :, :, h:].float() - target[:, :, :, h:].float()).abs().flatten(1).mean(1)


def copy_reference_l1(dataset) -> float:
    """The "copy the reference frame" baseline: lower-half L1 of the identity reference (the
    generator's second input, channels 3..5) against the target, over ``dataset``."""
    tot, n = 0.0, 0
    for b in _batches(dataset):
        tot += float(lower_half_l1(b["face"][:, 3:], b["target"]).sum())
        n += b["target"].shape[0]
    return tot / max(n, 1)


def generated_lower_half_l1(G: nn.Module, dataset, mode: str = "eval", seed: int = 0) -> float:
    """Mean lower-half L1 of ``G``'s frames against the targets over ``dataset`` (generation
    mode ``mode``, the model left as it was)."""
    from ...translate import generation_mode

    device = next(G.parameters()).device
    tot, n = 0.0, 0
    with generation_mode(G, mode, seed):
        for b in _batches(dataset):
            tot += float(lower_half_l1(_gen_batch(G, b, device).cpu(), b["target"]).sum())
            n += b["target"].shape[0]
    return tot / max(n, 1)


def expert_sync_loss(
    expert: nn.Module,
    dataset,
    G: nn.Module | None = None,
    mode: str = "eval",
    seed: int = 0,
    expert_mode: str = "eval",
) -> float:
    """Mean expert sync loss over ``dataset``: of ``G``'s frames (generated in ``mode``) against
    their audio (label 1, a generator-mode dataset), or with ``G=None`` of an expert-mode
    dataset's own labelled windows; the expert runs in ``expert_mode`` (``"train"``: batch
    statistics, as the reference's frozen expert)."""
    from ...translate import generation_mode

    device = next(expert.parameters()).device
    was = expert.training
    expert.train(expert_mode == "train")
    tot, n = 0.0, 0
    ctx = generation_mode(G, mode, seed) if G is not None else torch.no_grad()
    try:
        with ctx, torch.no_grad():
            for b in _batches(dataset):
                if G is None:
                    faces, label = b["faces"].to(device), b["label"].to(device)
                else:
                    faces = lower_halves_stacked(_gen_batch(G, b, device))
                    label = torch.ones(faces.shape[0], 1, device=device)
                a, v = expert(b["mel"].to(device), faces)
                k = faces.shape[0]
                tot += float(cosine_bce(a, v, label)) * k
                n += k
    finally:
        expert.train(was)
    return tot / max(n, 1)


def _bgr_to_rgb_uint8(x: torch.Tensor):
    import numpy as np

    a = (x.detach().float().clamp(0, 1) * 255.0 + 0.5).to(torch.uint8).permute(1, 2, 0).cpu().numpy()
    return np.ascontiguousarray(a[:, :, ::-1])


#: why train.cuda_graph does not capture the Wav2Lip steps (unetprune.cuda_graph; 'auto' runs eagerly)
WAV2LIP_GRAPH_REASON = (
    "the wav2lip step is not captured yet (the sync-loss switch changes the step "
    "between epochs; batches of 5-frame windows are not launch-bound like pix2pix's batch 1)"
)


def _eager_step_mode(tcfg: dict, device: torch.device):
    from ... import cuda_graph

    d = cuda_graph.decide(tcfg.get("cuda_graph", "auto"), device, unsupported=WAV2LIP_GRAPH_REASON)
    return cuda_graph.StepMode("eager", d.setting, d.reason)


class Wav2LipTrainer(Trainer):
    """The Wav2Lip generator step (see the training notes above): ``G``, the frozen expert and
    the optional quality discriminator (``D``: a :class:`Wav2LipCritics`), Adam for G (and for
    the quality discriminator).  ``syncnet_wt`` is the current weight of the sync loss:
    ``train.sync_boost`` (0: off, as the reference) until the switch (:meth:`sync_check` sees the
    validation sync loss below ``train.sync_threshold``), then ``train.syncnet_wt``."""

    resume_keys = ("target", "syncnet_wt", "sync_threshold", "sync_boost", "disc_wt")

    def __init__(self, G: nn.Module, D: Wav2LipCritics, tcfg: dict, device: torch.device):
        super().__init__(G, D, tcfg, device, memory_format=memory_format(tcfg, device))
        betas = (tcfg["beta1"], tcfg["beta2"])
        self.opt_G = torch.optim.Adam(
            [p for p in self.G.parameters() if p.requires_grad], lr=tcfg["lr"], betas=betas
        )
        self.expert = self.D.expert
        self.qual = self.D.qual
        self.expert_mode = str(tcfg.get("expert_mode", "train"))
        self.D.set_expert_mode(self.expert_mode)
        self.opt_D = (
            torch.optim.Adam(self.qual.parameters(), lr=tcfg["lr"], betas=betas)
            if self.qual is not None
            else None
        )
        self.disc_wt = float(tcfg["disc_wt"]) if self.qual is not None else 0.0
        self.sync_boost = float(tcfg.get("sync_boost") or 0.0) if self.expert is not None else 0.0
        self.syncnet_wt = self.sync_boost
        self.sync_on_epoch: int | None = None
        self.sync_on_step: int | None = None
        self.sync_check_every = int(tcfg.get("sync_check_every", 0) or 0)
        self.global_step = 0
        self._run_cfg: dict | None = None
        self.losses = ("L1", "sync", "loss") + (
            ("G_disc", "D_real", "D_fake") if self.qual is not None else ()
        )
        self._val = None
        self.step_mode = _eager_step_mode(tcfg, device)  # train.cuda_graph: eager, with the reason

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        """G's Adam, and the quality discriminator's when there is one (the expert stays frozen,
        in ``train.expert_mode``, whatever ``set_train_mode`` does: :class:`Wav2LipCritics`)."""
        return {"G": self.opt_G, **({"D": self.opt_D} if self.opt_D is not None else {})}

    def sync_loss(self, mel: torch.Tensor, frames: torch.Tensor) -> torch.Tensor:
        a, v = self.expert(mel, lower_halves_stacked(frames))
        return cosine_bce(a, v, torch.ones(frames.shape[0], 1, device=frames.device))

    def step(self, batch: dict) -> dict[str, torch.Tensor]:
        import torch.nn.functional as F

        dev = self.device
        x, gt = batch["face"].to(dev), batch["target"].to(dev)
        indiv, mel = batch["indiv_mels"].to(dev), batch["mel"].to(dev)
        zero = torch.zeros((), device=dev)
        g = self.G(x, indiv)  # (B, 3, T, 96, 96)
        l1 = F.l1_loss(g, gt)
        sync = self.sync_loss(mel, g) if (self.syncnet_wt > 0 and self.expert is not None) else zero
        if self.qual is not None:
            self.qual.requires_grad_(False)
            pl = self.qual.logits(g)
            perceptual = F.binary_cross_entropy_with_logits(pl, torch.ones_like(pl))
        else:
            perceptual = zero
        loss = (
            self.syncnet_wt * sync + self.disc_wt * perceptual + (1.0 - self.syncnet_wt - self.disc_wt) * l1
        )
        kd = self.distill_terms((x, indiv), g)  # {} unless distilling (unetprune.trainer)
        if kd:
            loss = loss + kd["KD"]
        self.opt_G.zero_grad(set_to_none=True)
        loss.backward()
        self.opt_G.step()
        out = {"L1": l1.detach(), "sync": sync.detach(), "loss": loss.detach()}
        self.global_step += 1
        out.update({k: v.detach() for k, v in kd.items()})
        if self.qual is not None:
            self.qual.requires_grad_(True)
            self.opt_D.zero_grad(set_to_none=True)
            pr = self.qual.logits(gt)
            pf = self.qual.logits(g.detach())
            d_real = F.binary_cross_entropy_with_logits(pr, torch.ones_like(pr))
            d_fake = F.binary_cross_entropy_with_logits(pf, torch.zeros_like(pf))
            (d_real + d_fake).backward()
            self.opt_D.step()
            out.update(G_disc=perceptual.detach(), D_real=d_real.detach(), D_fake=d_fake.detach())
        if (
            self._run_cfg is not None
            and self.sync_check_every
            and self.global_step % self.sync_check_every == 0
            and self.expert is not None
            and not self.switched
        ):
            was = self.G.training
            self.sync_check(self._run_cfg, step=self.global_step)
            self.G.train(was)
        return out

    @property
    def switched(self) -> bool:
        """Whether the sync loss has been switched to ``train.syncnet_wt`` (by an epoch's or a
        step's check)."""
        return self.sync_on_epoch is not None or self.sync_on_step is not None

    def bind(self, cfg: dict) -> None:
        """The run's whole config (its validation windows), for the sync check every
        ``train.sync_check_every`` steps; unbound, the check runs at epoch ends only."""
        self._run_cfg = cfg

    def sync_check(self, cfg: dict, epoch: int | None = None, step: int | None = None) -> float:
        """Before the switch: the validation sync loss of G's frames with the frozen expert (in
        ``train.expert_mode``); below ``sync_threshold`` the sync loss weighs ``syncnet_wt`` from
        the next step, and the switch is recorded at ``epoch`` or ``step``.  Returns the loss."""
        if self._val is None:
            self._val = talking_dataset(cfg, "val", "generator", max(cfg["train"]["eval_images"], 1))
        val = expert_sync_loss(self.expert, self._val, self.G, "eval", cfg["seed"], self.expert_mode)
        if val < self.cfg["sync_threshold"]:
            self.syncnet_wt = float(self.cfg["syncnet_wt"])
            self.sync_on_epoch, self.sync_on_step = epoch, step
        return val

    def end_epoch(self, epoch: int, cfg: dict) -> dict:
        """The reference's switch, also at every epoch end (:meth:`sync_check`)."""
        if self.expert is None or self.switched:
            return {"syncnet_wt": self.syncnet_wt}
        val = self.sync_check(cfg, epoch=epoch + 1)
        return {"val_sync": val, "syncnet_wt": self.syncnet_wt}

    def extra_state(self) -> dict:
        """The sync-loss switch: its current weight, the epoch (or step) it was turned on, and
        the generator steps taken."""
        st = {"syncnet_wt": self.syncnet_wt, "sync_on_epoch": self.sync_on_epoch}
        if self.sync_on_step is not None:
            st["sync_on_step"] = self.sync_on_step
        if self.global_step:
            st["global_step"] = self.global_step
        return {"wav2lip": st}

    def after_load(self, ckpt: dict) -> None:
        st = ckpt.get("wav2lip") or {}
        self.syncnet_wt = float(st.get("syncnet_wt", 0.0))
        self.sync_on_epoch = st.get("sync_on_epoch")
        self.sync_on_step = st.get("sync_on_step")
        self.global_step = int(st.get("global_step", 0))


class SyncNetTrainer(Trainer):
    """The expert's step: BCE on the cosine similarity of in-sync (1) vs off-sync (0) windows;
    Adam on every parameter.  ``G`` is the expert (the generic loop's "generator" slot)."""

    losses = ("sync", "acc")
    resume_keys = ("target",)

    def __init__(self, G: nn.Module, D: nn.Module, tcfg: dict, device: torch.device):
        # the expert trains alone: no discriminator state
        super().__init__(G, None, tcfg, device, memory_format=memory_format(tcfg, device))
        self.opt = torch.optim.Adam(self.G.parameters(), lr=tcfg["lr"], betas=(tcfg["beta1"], tcfg["beta2"]))
        self.min_offset = int(tcfg["expert"]["min_offset"])
        self.step_mode = _eager_step_mode(tcfg, device)  # train.cuda_graph: eager, with the reason

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"expert": self.opt}

    def step(self, batch: dict) -> dict[str, torch.Tensor]:
        import torch.nn.functional as F

        faces, mel = batch["faces"].to(self.device), batch["mel"].to(self.device)
        if faces.dim() == 5:  # in-clip groups (ClipWindowGroups): (B, k, 3T, S/2, S)
            b, k = faces.shape[:2]
            a, v = self.G(mel.flatten(0, 1), faces.flatten(0, 1))
            loss, acc = in_clip_pair_bce(
                a.view(b, k, -1), v.view(b, k, -1), batch["start"].to(self.device), self.min_offset
            )
        else:
            label = batch["label"].to(self.device).view(-1, 1)
            a, v = self.G(mel, faces)
            d = F.cosine_similarity(a, v).clamp(0.0, 1.0).unsqueeze(1)
            loss = F.binary_cross_entropy(d, label)
            acc = ((d.detach() > 0.5).float() == label).float().mean()
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        return {"sync": loss.detach(), "acc": acc}


def expert_check_windows(cfg: dict):
    """The expert's check: its validation sync loss (the reference's evaluation on the val
    split) over ``train.eval_images`` labelled windows of the val split, off-sync windows at
    least ``train.expert.min_offset`` frames away as in training; the ``train.eval_split``
    windows where there is no val split."""
    n = cfg["train"]["eval_images"]
    if not n:
        return None
    if (talking_root(cfg) / "val.txt").is_file():
        return talking_dataset(cfg, "val", "expert", n, min_offset=cfg["train"]["expert"]["min_offset"])
    return _check_windows(cfg, "expert")


def _check_windows(cfg: dict, mode: str):
    split, n = cfg["train"]["eval_split"], cfg["train"]["eval_images"]
    if not split or not n or not (talking_root(cfg) / f"{split}.txt").is_file():
        return None
    return talking_dataset(cfg, split, mode, n)


def _save_png(rows: list, path: Path | str) -> Path:
    import numpy as np
    from PIL import Image

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.concatenate(rows, axis=0)).save(path)
    return path
