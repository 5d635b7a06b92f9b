import json
from dataclasses import asdict, dataclass

import pytest
import torch
from torch import nn

from unetprune.checkpoint import generator_from_checkpoint, load_checkpoint
from unetprune.config import load_config
from unetprune.errors import TrainingDiverged, UserFacingError
from unetprune.layout import CHECKPOINT_NAME, RESUME_NAME, SAMPLES_NAME, TRAIN_LOG_NAME
from unetprune.metrics.complexity import count_parameters
from unetprune.family import ModelFamily, get_family, register_family, unregister_family
from unetprune.train import epoch_seed, lr_factor, train

from killresume import assert_equal_tensors, kill_and_resume


def tiny_cfg(data_root, **train_over):
    t = {
        "n_epochs": 2,
        "n_epochs_decay": 2,
        "save_every": 1,
        "threads": 1,
        "log_every": 2,
        "eval_images": 2,
        **train_over,
    }
    return {
        "experiment": "tiny",
        "seed": 7,
        "data": {"dataset": "folder", "root": str(data_root), "load_size": 36, "crop_size": 32},
        "demo": {"image_size": 32},
        "model": {"pix2pix": {"num_downs": 5, "ngf": 4, "ndf": 4}},
        "train": t,
        "evaluate": {"fid_backend": "standin"},
    }


def test_lr_schedule_reference_lambda_rule():
    f = [lr_factor(e, 3, 3) for e in range(6)]
    assert f == [1.0, 1.0, 1.0, 0.75, 0.5, 0.25]


def test_train_writes_log_checkpoint_and_grid(tiny_demo, tmp_path):
    cfg = load_config(None, tiny_cfg(tiny_demo))
    log = train(cfg, tmp_path, progress=False)
    assert log["complete"] and len(log["epochs"]) == 4
    assert [e["lr"] for e in log["epochs"]] == pytest.approx([2e-4, 2e-4, 2e-4 * 2 / 3, 2e-4 / 3])
    on_disk = json.loads((tmp_path / TRAIN_LOG_NAME).read_text())
    assert on_disk["epochs"][-1]["G_L1"] == pytest.approx(log["epochs"][-1]["G_L1"])
    ckpt = torch.load(tmp_path / CHECKPOINT_NAME, weights_only=True)  # self-describing, safe load
    assert ckpt["epoch"] == 4 and ckpt["generator"]["arch"]["enc_widths"] == [4, 8, 16, 32, 32]
    assert ckpt["config"]["train"]["n_epochs"] == 2 and "torch" in ckpt["versions"]
    G = generator_from_checkpoint(ckpt)
    assert G(torch.zeros(1, 3, 32, 32)).shape == (1, 3, 32, 32)
    from PIL import Image

    grid = Image.open(tmp_path / SAMPLES_NAME)
    assert grid.size == (3 * 32, 2 * 32)  # 2 rows of input | output | target
    # the learning curve: the check before training and after every epoch, with the weights' distance
    ev = on_disk["eval"]
    assert ev["check_every"] == 1 and [c["epoch"] for c in ev["curve"]] == [0, 1, 2, 3, 4]
    assert ev["curve"][0] == {"epoch": 0, "score": ev["l1_init"], "weights_rel_l2": 0.0}
    assert ev["curve"][-1]["score"] == ev["l1_final"]
    moved = [c["weights_rel_l2"] for c in ev["curve"]]
    assert all(m > 0 for m in moved[1:]) and moved[-1] == pytest.approx(on_disk["weights"]["rel_l2"])
    w = on_disk["weights"]
    assert set(w["by_param"]) == {k for k, v in G.named_parameters() if v.dim() >= 2}
    assert w["min_rel_l2"] == min(w["by_param"].values()) == w["by_param"][w["min_param"]] > 0


def test_existing_run_requires_resume(tiny_demo, tmp_path):
    cfg = load_config(None, tiny_cfg(tiny_demo, n_epochs=1, n_epochs_decay=0))
    train(cfg, tmp_path, progress=False)
    with pytest.raises(UserFacingError, match="pass --resume"):
        train(cfg, tmp_path, progress=False)
    log = train(cfg, tmp_path, resume=True, progress=False)  # finished run: nothing to do
    assert log["complete"]
    other = load_config(None, {**tiny_cfg(tiny_demo, n_epochs=1, n_epochs_decay=0), "seed": 8})
    with pytest.raises(UserFacingError, match="config 'seed' differs"):
        train(other, tmp_path, resume=True, progress=False)


def test_nan_loss_stops_and_keeps_last_good_checkpoint(tiny_demo, tmp_path, monkeypatch):
    cfg = load_config(None, tiny_cfg(tiny_demo))
    train(cfg, tmp_path, progress=False, stop_after_epochs=1)
    assert not (tmp_path / CHECKPOINT_NAME).exists()  # only finished runs have one
    good = torch.load(tmp_path / RESUME_NAME, weights_only=True)
    from unetprune.families.pix2pix.train import Pix2PixTrainer

    real_step = Pix2PixTrainer.train_step

    def poisoned(self, a, b):
        out = real_step(self, a, b)
        out["G_L1"] = out["G_L1"] * float("nan")
        return out

    monkeypatch.setattr(Pix2PixTrainer, "train_step", poisoned)
    with pytest.raises(TrainingDiverged, match=r"G_L1 became non-finite at epoch 2"):
        train(cfg, tmp_path, resume=True, progress=False)
    after = torch.load(tmp_path / RESUME_NAME, weights_only=True)
    assert after["epoch"] == 1
    for k, v in good["generator"]["state_dict"].items():
        assert torch.equal(v, after["generator"]["state_dict"][k])


def test_sigkill_and_resume_gives_identical_weights(tiny_demo, tmp_path):
    """Kill a run with SIGKILL after its first checkpoint; resume; compare with an
    uninterrupted run: every tensor (G, D, optimiser states) must be bitwise equal."""
    cfg = tiny_cfg(tiny_demo, n_epochs=3, n_epochs_decay=3)
    a, b = kill_and_resume(cfg, tmp_path, 6, timeout=300)
    for part in ("generator", "discriminator"):
        assert_equal_tensors(a[part]["state_dict"], b[part]["state_dict"], part)
    assert_equal_tensors(a["optimizers"], b["optimizers"], "optimizers")


def test_sigkill_mid_epoch_and_resume_gives_identical_weights(tiny_demo, tmp_path):
    """train.save_every_steps: the resumable state written inside an epoch (every 4 steps; an
    epoch is not a multiple of 4 steps); killed with SIGKILL after one such state and resumed,
    the run continues from that step and ends bitwise equal to an uninterrupted run, with the
    same per-epoch mean losses."""
    cfg = tiny_cfg(tiny_demo, n_epochs=2, n_epochs_decay=2, save_every=100, save_every_steps=4)
    a, b = kill_and_resume(cfg, tmp_path, 4, timeout=300, mid_epoch=True)
    for part in ("generator", "discriminator"):
        assert_equal_tensors(a[part]["state_dict"], b[part]["state_dict"], part)
    assert_equal_tensors(a["optimizers"], b["optimizers"], "optimizers")
    assert (json.loads(a["log"])["global_step"] // 4) % 4  # states fall inside epochs


def test_epoch_batches_follow_the_shuffling_loader(tiny_demo):
    """The explicit batch order equals DataLoader(shuffle=True, generator=...)'s for the same
    seed (the order training has always used), and leaves the generator where it was."""
    from torch.utils.data import DataLoader

    from unetprune.train import epoch_batches

    for n, bs in ((10, 3), (7, 7), (16, 4), (5, 8)):
        g = torch.Generator()
        g.manual_seed(epoch_seed(7, 2))
        before = g.get_state()
        got = epoch_batches(n, bs, g)
        assert torch.equal(g.get_state(), before)
        ref = [b.tolist() for b in DataLoader(list(range(n)), batch_size=bs, shuffle=True, generator=g)]
        assert got == ref


# --- the trainer reaches the models, data, step and samples through the model family ------------


@dataclass
class TinySpec:
    width: int = 3

    def to_dict(self):
        return {"name": "tiny", **asdict(self)}

    @classmethod
    def from_dict(cls, d):
        d = dict(d)
        assert d.pop("name") == "tiny"
        return cls(**d)


class TinyNet(nn.Module):
    def __init__(self, spec):
        super().__init__()
        self.spec = spec
        self.body = nn.Sequential(
            nn.Conv2d(1, spec.width, 3, padding=1), nn.ReLU(), nn.Conv2d(spec.width, 1, 3, padding=1)
        )

    def forward(self, x):
        return self.body(x)


class TinyData(torch.utils.data.Dataset):
    """y = 2x on 8 random 1x8x8 images; records the epochs it was set to."""

    split = "val"

    def __init__(self):
        g = torch.Generator().manual_seed(0)
        self.x = torch.randn(8, 1, 8, 8, generator=g)
        self.epochs = []

    def set_epoch(self, e):
        self.epochs.append(e)

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return {"x": self.x[i], "y": 2 * self.x[i]}


class TinyTrainer:
    losses = ("L1",)

    def __init__(self, G, D, tcfg, device):
        self.G, self.D = G.to(device), D
        self.opt = torch.optim.Adam(self.G.parameters(), lr=tcfg["lr"])
        self.steps = 0

    def set_lr(self, lr):
        for group in self.opt.param_groups:
            group["lr"] = lr

    def set_train_mode(self):
        self.G.train()

    def step(self, batch):
        self.opt.zero_grad(set_to_none=True)
        loss = (self.G(batch["x"]) - batch["y"]).abs().mean()
        loss.backward()
        self.opt.step()
        self.steps += 1
        return {"L1": loss.detach()}

    def state(self):
        return {"discriminator": {"arch": {}, "state_dict": {}}, "optimizers": {"G": self.opt.state_dict()}}

    def load_state(self, ckpt):
        self.G.load_state_dict(ckpt["generator"]["state_dict"])
        self.opt.load_state_dict(ckpt["optimizers"]["G"])


class TinyFamily(ModelFamily):
    name = "test-tiny"
    metrics = ("paired",)
    spec_type = TinySpec

    def __init__(self):
        self.trainers, self.rendered, self.data = [], [], TinyData()

    def spec_from_config(self, cfg):
        return TinySpec(width=cfg["model"][self.name]["width"])

    def build(self, spec, init=True, seed=None):
        spec = spec if isinstance(spec, TinySpec) else TinySpec.from_dict(spec)
        return TinyNet(spec)

    def input_shape(self, generator):
        return (1, 1, 8, 8)

    def build_discriminator(self, cfg, generator):
        return nn.Identity()

    def discriminator_from_entry(self, entry):
        return nn.Identity()

    def trainer(self, generator, discriminator, tcfg, device):
        self.trainers.append(TinyTrainer(generator, discriminator, tcfg, device))
        return self.trainers[-1]

    def train_dataset(self, cfg):
        return self.data

    def check_dataset(self, cfg):
        return self.data

    def check_score(self, generator, dataset, cfg):
        with torch.no_grad():
            return float((generator(dataset.x) - 2 * dataset.x).abs().mean())

    def render_samples(self, generator, dataset, path, cfg):
        self.rendered.append(path)
        path.write_bytes(b"tiny")
        return path

    def _no_pruning(self, *a, **k):
        raise NotImplementedError("the tiny test family is not prunable")

    groups = layer_width = layer_filters = default_inner_levels = widths = _no_pruning


@pytest.fixture
def tiny_family():
    fam = register_family(TinyFamily())
    yield fam
    unregister_family(fam.name)


def _tiny_family_cfg(tiny_demo, **train_over):
    cfg = load_config(None, tiny_cfg(tiny_demo, **train_over))
    cfg["model"]["family"] = "test-tiny"  # set after validation: only the registry knows it
    cfg["model"]["test-tiny"] = {"width": 4}  # its own section (it ships no schema fragment)
    return cfg


def test_train_loop_runs_a_registered_family(tiny_demo, tiny_family, tmp_path):
    cfg = _tiny_family_cfg(tiny_demo, n_epochs=2, n_epochs_decay=1, batch_size=4, lr=1e-2)
    log = train(cfg, tmp_path, progress=False)
    assert len(tiny_family.trainers) == 1 and tiny_family.trainers[0].steps == 3 * 2  # 8 items / batch 4
    assert tiny_family.data.epochs == [0, 1, 2]
    assert log["complete"] and [list(e) for e in log["epochs"]][0] == [
        "epoch",
        "lr",
        "seconds",
        "images_per_s",
        "L1",
    ]
    assert [e["lr"] for e in log["epochs"]] == pytest.approx([1e-2, 1e-2, 1e-2 / 2])
    assert log["eval"]["l1_final"] < log["eval"]["l1_init"]  # it learned y = 2x a bit
    assert log["params_G"] == count_parameters(tiny_family.trainers[0].G) == (1 * 4 * 9 + 4) + (4 * 1 * 9 + 1)
    assert tiny_family.rendered == [tmp_path / SAMPLES_NAME]
    ckpt = load_checkpoint(tmp_path / CHECKPOINT_NAME)
    assert ckpt["family"] == "test-tiny" and ckpt["meta"]["kind"] == "test-tiny-trainer"
    assert ckpt["generator"]["arch"] == {"name": "tiny", "width": 4}
    G = generator_from_checkpoint(ckpt)
    assert isinstance(G, TinyNet)
    assert all(torch.equal(v, tiny_family.trainers[0].G.state_dict()[k]) for k, v in G.state_dict().items())


def test_family_trainer_resumes_through_its_state(tiny_demo, tiny_family, tmp_path):
    cfg = _tiny_family_cfg(tiny_demo, n_epochs=2, n_epochs_decay=1, batch_size=4, lr=1e-2)
    train(cfg, tmp_path / "full", progress=False)
    train(cfg, tmp_path / "cut", progress=False, stop_after_epochs=1)
    log = train(cfg, tmp_path / "cut", progress=False, resume=True)
    assert log["resumed_at_epoch"] == [1] and tiny_family.trainers[-1].steps == 2 * 2
    a = load_checkpoint(tmp_path / "full" / CHECKPOINT_NAME)["generator"]["state_dict"]
    b = load_checkpoint(tmp_path / "cut" / CHECKPOINT_NAME)["generator"]["state_dict"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_finetune_refuses_a_checkpoint_of_another_family(tiny_demo, tiny_family, tmp_path):
    from unetprune.checkpoint import save_generator
    from unetprune.families.pix2pix.unet import UNetSpec, build_generator

    save_generator(tmp_path / "p.pt", build_generator(UNetSpec.reference(5, 4), seed=0))
    cfg = _tiny_family_cfg(tiny_demo)
    with pytest.raises(
        UserFacingError, match="holds a 'pix2pix' generator, but this run's model family is 'test-tiny'"
    ):
        train(cfg, tmp_path / "ft", init_from=tmp_path / "p.pt", progress=False)


def test_pix2pix_models_come_from_the_family(tiny_demo, tmp_path):
    from unetprune.families.pix2pix.train import Pix2PixTrainer
    from unetprune.train import build_models

    cfg = load_config(None, tiny_cfg(tiny_demo))
    fam = get_family("pix2pix")
    G, D, info = build_models(cfg)
    assert info == {} and fam.owns(G) and G.spec == fam.spec_from_config(cfg)
    torch.manual_seed(cfg["seed"])
    G2 = fam.build(fam.spec_from_config(cfg), init=True)
    D2 = fam.build_discriminator(cfg, G2)
    for a, b in ((G, G2), (D, D2)):
        sa, sb = a.state_dict(), b.state_dict()
        assert list(sa) == list(sb) and all(torch.equal(sa[k], sb[k]) for k in sa)
    assert isinstance(fam.trainer(G, D, cfg["train"], torch.device("cpu")), Pix2PixTrainer)


def test_old_checkpoint_without_family_fine_tunes(tiny_demo, tmp_path):
    """A trainer checkpoint without a 'family' key initialises fine-tuning as the default
    family (pix2pix), generator and discriminator."""
    from unetprune.train import build_models

    cfg = load_config(None, tiny_cfg(tiny_demo, n_epochs=1, n_epochs_decay=0))
    train(cfg, tmp_path / "run", progress=False)
    ckpt = torch.load(tmp_path / "run" / CHECKPOINT_NAME, weights_only=True)
    del ckpt["family"]
    torch.save(ckpt, tmp_path / "old.pt")
    G, D, info = build_models(cfg, init_from=tmp_path / "old.pt")
    assert info == {"init_from": str(tmp_path / "old.pt"), "discriminator_from": str(tmp_path / "old.pt")}
    for model, part in ((G, "generator"), (D, "discriminator")):
        saved = ckpt[part]["state_dict"]
        assert all(torch.equal(v, saved[k]) for k, v in model.state_dict().items())


# --- the learning curve and the weights' distance from their initialisation ---------------------


def test_weight_change_is_the_relative_l2_distance():
    from unetprune.train import weight_change

    net = nn.Sequential(nn.Linear(2, 2), nn.Conv2d(1, 1, 1))
    with torch.no_grad():
        net[0].weight.fill_(1.0)
        net[0].bias.zero_()
        net[1].weight.fill_(2.0)
        net[1].bias.fill_(1.0)
    initial = {k: v.detach().clone() for k, v in net.named_parameters()}
    assert weight_change(initial, net) == {
        "rel_l2": 0.0,
        "min_rel_l2": 0.0,
        "min_param": "0.weight",
        "by_param": {"0.weight": 0.0, "1.weight": 0.0},
    }
    with torch.no_grad():
        net[0].weight.fill_(2.0)  # |dW| = 2 over |W0| = 2: moved by 1.0
        net[1].bias.fill_(4.0)  # a bias: counted overall, not per tensor
    w = weight_change(initial, net)
    # overall: sqrt(4 * 1 + 9) / sqrt(4 * 1 + 4 + 1) = sqrt(13) / 3
    assert w["rel_l2"] == pytest.approx(13**0.5 / 3)
    assert w["by_param"] == {"0.weight": 1.0, "1.weight": 0.0} and w["min_param"] == "1.weight"


def test_learning_curve_every_n_epochs_and_resume(tiny_demo, tiny_family, tmp_path):
    cfg = _tiny_family_cfg(tiny_demo, n_epochs=3, n_epochs_decay=2, batch_size=4, lr=1e-2, check_every=2)
    log = train(cfg, tmp_path / "full", progress=False)
    curve = log["eval"]["curve"]
    assert [c["epoch"] for c in curve] == [0, 2, 4, 5]  # every 2 epochs and the last
    assert curve[-1]["score"] == log["eval"]["l1_final"] < curve[0]["score"] == log["eval"]["l1_init"]
    assert curve[0]["weights_rel_l2"] == 0.0 < curve[1]["weights_rel_l2"]
    # a resumed run has the same curve as an uninterrupted one
    train(cfg, tmp_path / "cut", progress=False, stop_after_epochs=3)
    resumed = train(cfg, tmp_path / "cut", progress=False, resume=True)
    assert resumed["eval"]["curve"] == curve and resumed["weights"] == log["weights"]
    # check_every 0: only before and after training
    cfg0 = _tiny_family_cfg(tiny_demo, n_epochs=3, n_epochs_decay=2, batch_size=4, lr=1e-2, check_every=0)
    log0 = train(cfg0, tmp_path / "zero", progress=False)
    assert [c["epoch"] for c in log0["eval"]["curve"]] == [0, 5]
    assert log0["eval"]["curve"][-1]["score"] == curve[-1]["score"]


def test_per_epoch_checks_do_not_change_the_training(tiny_demo, tmp_path):
    """The checks run in train_bn mode (BatchNorm batch statistics, dropout) between epochs; they
    restore the BatchNorm buffers and fork the RNG, so the weights equal a run without them."""
    every = load_config(None, tiny_cfg(tiny_demo, n_epochs=2, n_epochs_decay=0, check_every=1))
    never = load_config(None, tiny_cfg(tiny_demo, n_epochs=2, n_epochs_decay=0, check_every=0))
    a = train(every, tmp_path / "every", progress=False)
    b = train(never, tmp_path / "never", progress=False)
    assert len(a["eval"]["curve"]) == 3 and len(b["eval"]["curve"]) == 2
    sa = load_checkpoint(tmp_path / "every" / CHECKPOINT_NAME)["generator"]["state_dict"]
    sb = load_checkpoint(tmp_path / "never" / CHECKPOINT_NAME)["generator"]["state_dict"]
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert a["eval"]["l1_final"] == b["eval"]["l1_final"]


def test_checks_every_n_steps_leave_the_training_unchanged_and_survive_a_resume(tiny_demo, tmp_path):
    """train.check_every_steps: the learning check after every N training steps over the whole run
    (mid-epoch too), in eval.curve_steps; the weights equal a run without the checks, and a run
    stopped after an epoch and resumed records the same checks and ends with the same weights."""
    every = load_config(
        None, tiny_cfg(tiny_demo, n_epochs=2, n_epochs_decay=1, check_every=0, check_every_steps=4)
    )
    never = load_config(None, tiny_cfg(tiny_demo, n_epochs=2, n_epochs_decay=1, check_every=0))
    a = train(every, tmp_path / "every", progress=False)
    b = train(never, tmp_path / "never", progress=False)
    n = a["global_step"]
    per_epoch = n // 3
    assert n == b["global_step"] == 3 * per_epoch and per_epoch % 4  # some checks fall mid-epoch
    steps = a["eval"]["curve_steps"]
    assert [c["step"] for c in steps] == list(range(4, n + 1, 4))
    assert [c["epoch"] for c in steps] == [-(-c["step"] // per_epoch) for c in steps]
    assert all(c["score"] > 0 and c["weights_rel_l2"] > 0 for c in steps)
    assert a["eval"]["check_every_steps"] == 4 and b["eval"]["curve_steps"] == []
    sa = load_checkpoint(tmp_path / "every" / CHECKPOINT_NAME)["generator"]["state_dict"]
    sb = load_checkpoint(tmp_path / "never" / CHECKPOINT_NAME)["generator"]["state_dict"]
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    train(every, tmp_path / "cut", progress=False, stop_after_epochs=1)
    resumed = train(every, tmp_path / "cut", progress=False, resume=True)
    assert resumed["eval"]["curve_steps"] == steps and resumed["global_step"] == n
    sr = load_checkpoint(tmp_path / "cut" / CHECKPOINT_NAME)["generator"]["state_dict"]
    assert all(torch.equal(sa[k], sr[k]) for k in sa)
