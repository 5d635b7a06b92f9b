"""train.cuda_graph (src/unetprune/cuda_graph.py): the capture decision and its one-line
reasons, the config key, the static-buffer step (run eagerly on the CPU it must equal the
plain trainer bit for bit: buffers, warm-up and restore, partial batches, lr changes, resume),
the eager checkpoint format; and, on a GPU (marked ``gpu``), the captured step against eager."""

import copy
import json

import pytest
import torch

from unetprune import cuda_graph
from unetprune.config import ConfigError, load_config
from unetprune.errors import UserFacingError
from unetprune.layout import CHECKPOINT_NAME, RESUME_NAME, TRAIN_LOG_NAME
from unetprune.family import family_for_config
from unetprune.train import build_models, train

CPU = torch.device("cpu")
CUDA = torch.device("cuda")


def small_cfg(**train_over):
    t = {"device": "cpu", "amp": "off", "channels_last": False, "compile": False, "threads": 1, **train_over}
    # num_downs 6: one decoder level with dropout, so the RNG restore is exercised
    return load_config(
        None,
        {
            "data": {"dataset": "folder", "load_size": 64, "crop_size": 64},
            "model": {"pix2pix": {"num_downs": 6, "ngf": 4, "ndf": 4}},
            "train": t,
            "seed": 3,
        },
    )


def make_trainer(cfg, device=CPU):
    G, D, _ = build_models(cfg)
    return family_for_config(cfg).trainer(G, D, cfg["train"], device)


def batches(n, size=64, b=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [
        (torch.rand(b, 3, size, size, generator=g) * 2 - 1, torch.rand(b, 3, size, size, generator=g) * 2 - 1)
        for _ in range(n)
    ]


def run_steps(tr, data, lr_at=None, seed=11):
    torch.manual_seed(seed)  # dropout
    tr.set_train_mode()
    out = []
    for i, (a, b) in enumerate(data):
        if lr_at is not None and i == lr_at:
            tr.set_lr(5e-5)
        out.append({k: v.clone() for k, v in tr.train_step(a, b).items()})
    return out


def states_equal(t1, t2) -> bool:
    sd1, sd2 = t1.G.state_dict(), t2.G.state_dict()
    sd1.update({f"D.{k}": v for k, v in t1.D.state_dict().items()})
    sd2.update({f"D.{k}": v for k, v in t2.D.state_dict().items()})
    return sd1.keys() == sd2.keys() and all(torch.equal(sd1[k], sd2[k]) for k in sd1)


# --- the decision ----------------------------------------------------------------------------


def test_decision_and_reasons():
    assert cuda_graph.decide("auto", CPU) == cuda_graph.GraphDecision(False, "auto", "no CUDA")
    assert cuda_graph.decide("off", CUDA).reason == "train.cuda_graph is off"
    assert cuda_graph.decide(False, CUDA).reason == "train.cuda_graph is off"  # YAML `off`
    assert cuda_graph.decide("auto", CUDA) == cuda_graph.GraphDecision(True, "auto", None)
    assert cuda_graph.decide(True, CUDA).use  # YAML `on`
    assert cuda_graph.decide("auto", CUDA, amp_dtype=torch.bfloat16).use  # bf16 autocast is captured
    assert "GradScaler" in cuda_graph.decide("auto", CUDA, amp_dtype=torch.float16).reason
    assert "train.compile" in cuda_graph.decide("auto", CUDA, compile_on=True).reason
    assert cuda_graph.decide("auto", CUDA, unsupported="family X").reason == "family X"
    for reason in ("no CUDA", "train.compile is on", "family X"):
        assert "\n" not in reason
    with pytest.raises(UserFacingError, match="'train.cuda_graph': 'on'.*no CUDA"):
        cuda_graph.decide("on", CPU)
    with pytest.raises(UserFacingError, match="train.compile"):
        cuda_graph.decide("on", CUDA, compile_on=True)
    with pytest.raises(UserFacingError, match="not one of auto, on, off"):
        cuda_graph.decide("sometimes", CPU)


def test_config_key_accepts_auto_on_off():
    for value, norm in (("auto", "auto"), ("on", "on"), ("off", "off"), (True, "on"), (False, "off")):
        cfg = load_config(None, {"train": {"cuda_graph": value}})
        assert cuda_graph.normalise_setting(cfg["train"]["cuda_graph"]) == norm
    assert load_config(None, {})["train"]["cuda_graph"] == "auto"
    import yaml

    assert yaml.safe_load("cuda_graph: on")["cuda_graph"] is True  # why booleans are accepted
    with pytest.raises(ConfigError, match="train.cuda_graph"):
        load_config(None, {"train": {"cuda_graph": "always"}})


def test_cpu_trainer_is_eager_with_the_reason():
    tr = make_trainer(small_cfg())
    assert tr.graph is None and not tr.graph_decision.use
    assert tr.step_mode.as_dict()["mode"] == "eager" and tr.step_mode.reason == "no CUDA"
    assert tr.step_mode.line() == "cuda_graph: eager steps (no CUDA)"
    assert isinstance(tr.opt_G.param_groups[0]["lr"], float)  # the eager optimisers, unchanged
    with pytest.raises(UserFacingError, match="no CUDA"):
        make_trainer(small_cfg(cuda_graph="on"))
    assert make_trainer(small_cfg(cuda_graph="off")).step_mode.reason == "train.cuda_graph is off"


def test_wav2lip_trainers_fall_back_with_their_reason():
    from unetprune.families.wav2lip.train import WAV2LIP_GRAPH_REASON, _eager_step_mode

    assert _eager_step_mode({"cuda_graph": "auto"}, CPU).reason == "no CUDA"
    m = _eager_step_mode({"cuda_graph": "auto"}, CUDA)  # decided without touching the GPU
    assert m.mode == "eager" and m.reason == WAV2LIP_GRAPH_REASON and "\n" not in m.reason
    with pytest.raises(UserFacingError, match="not captured"):
        _eager_step_mode({"cuda_graph": "on"}, CUDA)


def test_train_logs_the_step_mode(tiny_demo, tmp_path, capsys):
    raw = {
        "data": {"dataset": "folder", "root": str(tiny_demo), "load_size": 36, "crop_size": 32},
        "model": {"pix2pix": {"num_downs": 5, "ngf": 4, "ndf": 4}},
        "train": {"n_epochs": 1, "n_epochs_decay": 0, "batch_size": 4, "threads": 1, "eval_images": 0},
    }
    log = train(load_config(None, raw), tmp_path, progress=False, log_epochs=True)
    assert log["step_mode"]["mode"] == "eager" and log["step_mode"]["reason"] == "no CUDA"
    assert json.loads((tmp_path / TRAIN_LOG_NAME).read_text())["step_mode"]["reason"] == "no CUDA"
    assert "cuda_graph: eager steps (no CUDA)" in capsys.readouterr().out


# --- the static-buffer step, run eagerly on the CPU --------------------------------------------


def test_static_step_equals_the_plain_trainer_bit_for_bit():
    """Warm-up (3 real steps), restore, static buffers, an lr change, and a last partial batch
    that runs eagerly: the losses and every weight and optimiser state equal the plain trainer's."""
    cfg = small_cfg()
    data = batches(6) + batches(1, b=1, seed=5)  # the last batch is partial
    plain, static = make_trainer(cfg), make_trainer(cfg)
    assert any(isinstance(m, torch.nn.Dropout) for m in plain.G.modules())
    static.use_step_graph("static")
    a = run_steps(plain, data, lr_at=3)
    b = run_steps(static, data, lr_at=3)
    assert [x.keys() for x in a] == [x.keys() for x in b]
    assert all(torch.equal(x[k], y[k]) for x, y in zip(a, b) for k in x)
    assert states_equal(plain, static)
    for o1, o2 in ((plain.opt_G, static.opt_G), (plain.opt_D, static.opt_D)):
        s1, s2 = o1.state_dict(), o2.state_dict()
        assert all(
            torch.equal(s1["state"][i][k], s2["state"][i][k]) for i in s1["state"] for k in s1["state"][i]
        )
    st = static.step_mode.as_dict()
    assert st["mode"] == "static" and st["eager_steps"] == 1 and len(st["events"]) == 1
    assert "partial batch" in st["events"][0] and "[1, 3, 64, 64]" in st["events"][0]
    # the warm-up really changed the models: without the restore the runs differ
    assert static.graph.warmup == cuda_graph.WARMUP_STEPS > 0


def test_without_the_restore_the_static_step_would_differ(monkeypatch):
    cfg = small_cfg()
    data = batches(3)
    plain, static = make_trainer(cfg), make_trainer(cfg)
    static.use_step_graph("static")
    monkeypatch.setattr(cuda_graph, "_restore", lambda *a, **k: None)
    a, b = run_steps(plain, data), run_steps(static, data)
    assert not all(torch.equal(x[k], y[k]) for x, y in zip(a, b) for k in x)


def test_static_step_resumes_from_a_checkpoint_bit_for_bit():
    cfg = small_cfg()
    data = batches(6)
    whole = make_trainer(cfg)
    whole.use_step_graph("static")
    ref = run_steps(whole, data[:3]) + run_steps(whole, data[3:], seed=12)

    first = make_trainer(cfg)
    first.use_step_graph("static")
    run_steps(first, data[:3])
    state = copy.deepcopy({"generator": {"state_dict": first.G.state_dict()}, **first.state()})
    second = make_trainer(cfg)
    second.use_step_graph("static")
    second.load_state(state)
    assert second.graph.static_in is None  # a load forgets the capture
    out = run_steps(second, data[3:], seed=12)
    assert all(torch.equal(x[k], y[k]) for x, y in zip(ref[3:], out) for k in x)
    assert states_equal(whole, second)


def test_step_graph_recaptures_after_a_mode_change():
    tr = make_trainer(small_cfg())
    g = tr.use_step_graph("static")
    run_steps(tr, batches(2))
    first = g.static_in
    tr.G.eval()
    tr.train_step(*batches(1)[0])
    assert g.static_in is not first  # buffers set up again for the new train/eval mode


# --- checkpoints in the eager format ---------------------------------------------------------


def _stepped_adam(**kw):
    torch.manual_seed(0)
    p = torch.nn.Parameter(torch.randn(4, 3))
    opt = torch.optim.Adam([p], lr=2e-4, betas=(0.5, 0.999), **kw)
    p.grad = torch.randn(4, 3)
    opt.step()
    return opt


def test_eager_optimizer_state_is_the_eager_format():
    eager = _stepped_adam().state_dict()
    same = cuda_graph.eager_optimizer_state(eager)
    assert same["param_groups"] == eager["param_groups"]
    assert all(torch.equal(same["state"][0][k], eager["state"][0][k]) for k in eager["state"][0])
    # a graph optimiser's dict (lr a tensor, capturable, fused, step a float32 tensor) ...
    graphy = copy.deepcopy(eager)
    graphy["param_groups"][0].update(lr=torch.tensor(2e-4), capturable=True, fused=True, foreach=None)
    graphy["state"][0]["step"] = torch.tensor(1.0, dtype=torch.float32)
    back = cuda_graph.eager_optimizer_state(graphy)
    # ... comes back as the eager one (lr as float32 rounds it: 2e-4 within 1e-11)
    assert back["param_groups"][0].pop("lr") == pytest.approx(2e-4, abs=1e-11)
    assert {k: v for k, v in eager["param_groups"][0].items() if k != "lr"} == back["param_groups"][0]
    assert back["state"][0]["step"].device.type == "cpu" and back["state"][0]["step"].dtype == torch.float32
    # and loads into an eager Adam, which then stays eager
    opt = _stepped_adam()
    opt.load_state_dict(cuda_graph.eager_optimizer_state(graphy))
    assert opt.param_groups[0]["capturable"] is False and isinstance(opt.param_groups[0]["lr"], float)


def test_to_graph_optimizer_restores_the_capturable_flavour():
    opt = _stepped_adam()
    cuda_graph.to_graph_optimizer(opt, CPU)
    g = opt.param_groups[0]
    assert g["capturable"] is True and isinstance(g["lr"], torch.Tensor) and g["lr"].dtype == torch.float32
    assert g["foreach"] is True and not g["fused"]  # no fused Adam off CUDA
    cuda_graph.set_lr(opt, 1e-3)
    assert float(g["lr"]) == pytest.approx(1e-3)
    lr_tensor = g["lr"]
    cuda_graph.set_lr(opt, 5e-4)
    assert g["lr"] is lr_tensor  # filled in place: no recapture


def test_step_mode_line_and_events():
    m = cuda_graph.StepMode("graph")
    seen = []
    m.report_to(seen.append)
    m.event("x runs eagerly")
    m.event("x runs eagerly")
    assert seen == [m.line(), "cuda_graph: x runs eagerly"] and m.as_dict()["events"] == ["x runs eagerly"]


# --- on a GPU ---------------------------------------------------------------------------------


def _gpu_cfg(amp="off", channels_last=False, cuda_graph_setting="on", num_downs=8, ngf=64, size=256):
    return load_config(
        None,
        {
            "data": {"dataset": "folder", "load_size": size, "crop_size": size},
            "model": {"pix2pix": {"num_downs": num_downs, "ngf": ngf}},
            "train": {
                "device": "cuda",
                "amp": amp,
                "channels_last": channels_last,
                "compile": False,
                "cuda_graph": cuda_graph_setting,
            },
            "seed": 0,
        },
    )


def _deterministic_cuda():
    torch.backends.cudnn.benchmark = False
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False


def _close(a, b, rel):
    return abs(a - b) <= rel * max(1.0, abs(b))


@pytest.mark.gpu
@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "channels_last"])
def test_gpu_graph_matches_eager_for_50_steps_fp32(channels_last):
    """Acceptance: unet_256, batch 1, fp32 (NCHW, and channels-last, the faster graph): 50 steps
    of the captured step match the eager trainer's losses within 1e-4 (relative, or absolute
    below 1), dropout and BN included; an lr change half-way is a fill, not a recapture."""
    _deterministic_cuda()
    data = batches(50, size=256, b=1, seed=1)
    runs = {}
    for setting in ("off", "on"):
        tr = make_trainer(_gpu_cfg(channels_last=channels_last, cuda_graph_setting=setting), CUDA)
        losses = run_steps(tr, data, lr_at=25)
        torch.cuda.synchronize()
        runs[setting] = (tr, [{k: float(v) for k, v in s.items()} for s in losses])
    (eager, le), (graph, lg) = runs["off"], runs["on"]
    assert (
        graph.step_mode.captures == 1 and graph.step_mode.replays == 50 and graph.step_mode.eager_steps == 0
    )
    per_step = [max(abs(x[k] - y[k]) / max(1.0, abs(y[k])) for k in x) for x, y in zip(lg, le)]
    worst = max(per_step)
    assert worst <= 1e-4, (
        f"graph vs eager: worst relative loss difference {worst:.2e}; per step (1, 2, 5, 10, "
        f"25, 50): {[f'{per_step[i]:.1e}' for i in (0, 1, 4, 9, 24, 49)]}"
    )
    for (n, b1), b2 in zip(eager.G.named_buffers(), graph.G.buffers()):  # BN running statistics
        if b1.is_floating_point():
            assert torch.allclose(b1, b2, rtol=1e-3, atol=1e-4), n


@pytest.mark.gpu
def test_gpu_graph_bf16_channels_last_runs_and_tracks_eager():
    data = batches(10, size=256, b=1, seed=2)
    out = {}
    for setting in ("off", "on"):
        tr = make_trainer(_gpu_cfg(amp="bf16", channels_last=True, cuda_graph_setting=setting), CUDA)
        out[setting] = [{k: float(v) for k, v in s.items()} for s in run_steps(tr, data)]
    assert all(torch.isfinite(torch.tensor(list(s.values()))).all() for s in out["on"])
    assert all(_close(a[k], b[k], 5e-2) for a, b in zip(out["on"][:3], out["off"][:3]) for k in a)


@pytest.mark.gpu
def test_gpu_graph_train_partial_batch_and_resume(tiny_demo, tmp_path):
    """train() with the graph: the last partial batch runs eagerly (recorded), the epoch losses
    track an eager run's, and a graph checkpoint resumes (graph or eager) to the same weights."""

    def cfg(setting):
        return load_config(
            None,
            {
                "data": {"dataset": "folder", "root": str(tiny_demo), "load_size": 36, "crop_size": 32},
                "model": {"pix2pix": {"num_downs": 5, "ngf": 8, "ndf": 8}},
                "train": {
                    "device": "cuda",
                    "amp": "off",
                    "channels_last": False,
                    "cuda_graph": setting,
                    "n_epochs": 2,
                    "n_epochs_decay": 1,
                    "batch_size": 4,
                    "eval_images": 0,
                },
            },
        )

    _deterministic_cuda()
    g = train(cfg("on"), tmp_path / "graph", progress=False)
    e = train(cfg("off"), tmp_path / "eager", progress=False)
    assert g["step_mode"]["mode"] == "graph" and g["step_mode"]["eager_steps"] == 3  # 6 items, batch 4
    assert any("partial batch" in ev for ev in g["step_mode"]["events"])
    for eg, ee in zip(g["epochs"], e["epochs"]):
        assert _close(eg["G_L1"], ee["G_L1"], 1e-3) and _close(eg["D_real"], ee["D_real"], 1e-3)
    # kill after one epoch, resume eagerly from the graph checkpoint (same format)
    train(cfg("on"), tmp_path / "r", progress=False, stop_after_epochs=1)
    ck = torch.load(tmp_path / "r" / RESUME_NAME, weights_only=True)
    ref = torch.load(tmp_path / "eager" / CHECKPOINT_NAME, weights_only=True)
    assert ck["optimizers"]["G"]["param_groups"][0].keys() == ref["optimizers"]["G"]["param_groups"][0].keys()
    assert ck["optimizers"]["G"]["param_groups"][0]["capturable"] is False
    train(cfg("off"), tmp_path / "r", resume=True, progress=False)
    done = torch.load(tmp_path / "r" / CHECKPOINT_NAME, weights_only=True)
    full = torch.load(tmp_path / "graph" / CHECKPOINT_NAME, weights_only=True)
    for k, v in full["generator"]["state_dict"].items():
        if v.is_floating_point():
            assert torch.allclose(v, done["generator"]["state_dict"][k], rtol=1e-3, atol=1e-4), k


@pytest.mark.gpu
def test_gpu_compile_auto_yields_to_the_graph():
    """train.compile: auto (the paper configs') leaves the step to the whole-step graph; an
    explicit compile: true keeps torch.compile and the step eager, saying why."""

    def cfg(compile_):
        return load_config(
            None,
            {
                "data": {"dataset": "folder", "load_size": 32, "crop_size": 32},
                "model": {"pix2pix": {"num_downs": 5, "ngf": 4, "ndf": 4}},
                "train": {"device": "cuda", "compile": compile_, "cuda_graph": "auto"},
            },
        )

    tr = make_trainer(cfg("auto"), CUDA)
    assert tr.graph_decision.use and tr.G_fwd is tr.G and tr.step_mode.mode == "graph"
    tr2 = make_trainer(cfg(True), CUDA)
    assert not tr2.graph_decision.use and "train.compile" in tr2.step_mode.reason


def test_eager_adam_is_torch_default_on_the_cpu():
    """On the CPU the eager trainer's Adam is torch's default (nothing changes there)."""
    p = [torch.nn.Parameter(torch.zeros(3))]
    g = cuda_graph.eager_adam(p, 1e-3, (0.5, 0.999), CPU).param_groups[0]
    ref = torch.optim.Adam([torch.nn.Parameter(torch.zeros(3))], lr=1e-3, betas=(0.5, 0.999)).param_groups[0]
    assert {k: g[k] for k in ("fused", "foreach", "capturable")} == {
        k: ref[k] for k in ("fused", "foreach", "capturable")
    }
    opt = torch.optim.Adam(p, lr=1e-3)
    cuda_graph.to_eager_optimizer(opt, CPU)
    assert opt.param_groups[0]["fused"] == ref["fused"]


@pytest.mark.gpu
def test_gpu_eager_trainer_uses_fused_adam_and_writes_the_cpu_format():
    """On CUDA the eager step's Adam is fused (the graph's update kernel); its checkpoint is in
    the CPU eager format and resumes on CUDA as fused again."""
    cfg = _gpu_cfg(cuda_graph_setting="off", num_downs=5, ngf=8, size=32)
    tr = make_trainer(cfg, CUDA)
    assert tr.opt_G.param_groups[0]["fused"] and tr.opt_D.param_groups[0]["fused"]
    run_steps(tr, batches(2, size=32, b=1))
    st = tr.state()
    g = st["optimizers"]["G"]
    assert not g["param_groups"][0].get("fused") and all(
        s["step"].device.type == "cpu" for s in g["state"].values()
    )
    tr2 = make_trainer(cfg, CUDA)
    tr2.load_state({"generator": {"state_dict": tr.G.state_dict()}, **st})
    assert tr2.opt_G.param_groups[0]["fused"] and tr2.opt_G.param_groups[0]["foreach"] is None
    assert all(s["step"].is_cuda for s in tr2.opt_G.state.values())
    run_steps(tr2, batches(2, size=32, b=1))  # the resumed run steps
    assert all(float(s["step"]) == 4 for s in tr2.opt_G.state.values())
