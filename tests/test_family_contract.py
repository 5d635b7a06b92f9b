"""The model-family contract, checked for every registered family (the built-ins and the
third test family of tests/thirdfamily, registered through its entry point):

* a generator builds from its spec, the spec survives its dict, and a checkpoint rebuilds it;
* every prunable group pruned to a subset of its filters equals the original with the other
  filters' outputs zeroed (float64, randomised BatchNorm statistics);
* each cut the family allows (``cut_ks``) is an ordinary shallower model of the family: a fresh
  build of its spec has the same parameters and, with the cut's weights, the same outputs; each
  cut it refuses raises :class:`PruningError`;
* the width cost equals the real parameter and MAC counts (:mod:`unetprune.metrics.complexity`),
  of the original and of a pruned model;
* one trainer step gives finite losses; the trainer state round-trips through a checkpoint;
* the evaluation set loads, the generator's outputs quantise to its targets' shape; the
  learning check is finite and the samples are written.

Families without pruning operations (the lip-sync expert) skip the pruning checks only.  The
small configs and the data of each family are listed in ``CONFIGS`` / ``DATA``.
"""

from __future__ import annotations

import copy
import math
from pathlib import Path

import pytest
import torch
from nets import randomise_bn
from torch.utils.data import default_collate

from unetprune.checkpoint import generator_from_checkpoint, load_checkpoint, make_checkpoint, save_generator
from unetprune.config import load_config
from unetprune.errors import UserFacingError
from unetprune.family import family_names, family_of, get_family
from unetprune.fileio import atomic_torch_save
from unetprune.layout import Layout
from unetprune.metrics.complexity import count_all, count_parameters
from unetprune.pruning import PruningError, prune
from unetprune.train import expert_config

REPO = Path(__file__).resolve().parents[1]
FAMILIES = family_names()

TINYFAM_CFG = {
    "experiment": "tinyfam-contract",
    "data": {"dataset": "demo", "load_size": 32, "crop_size": 32},
    "model": {"family": "tinyfam", "tinyfam": {"levels": 5, "width": 8, "disc_width": 8}},
    "train": {"n_epochs": 1, "n_epochs_decay": 0, "batch_size": 2, "eval_images": 2, "threads": 1},
    "evaluate": {"fid_backend": "standin", "max_images": 4},
}


def _config(name: str) -> dict:
    """A small validated config of family ``name`` (no data root yet)."""
    if name == "pix2pix":
        return load_config(REPO / "config" / "tiny.yaml")
    if name == "wav2lip":
        return load_config(REPO / "config" / "wav2lip_tiny.yaml")
    if name == "wav2lip-expert":
        return expert_config(load_config(REPO / "config" / "wav2lip_tiny.yaml"))
    if name == "tinyfam":
        return load_config(None, copy.deepcopy(TINYFAM_CFG))
    return load_config(None, {"model": {"family": name}})


def _aligned(root: Path) -> None:
    from unetprune.data.demo import build_demo_dataset

    build_demo_dataset(root, image_size=32, n_train=4, n_val=2, n_test=4, progress=False)


def _talking(root: Path) -> None:
    from unetprune.families.wav2lip.demo import build_talking_demo

    build_talking_demo(root, n_train=2, n_val=1, n_test=1, side=96, progress=False)


DATA = {"pix2pix": _aligned, "tinyfam": _aligned, "wav2lip": _talking, "wav2lip-expert": _talking}


@pytest.fixture(scope="module")
def data_roots(tmp_path_factory):
    """One data folder per data builder, built on first use."""
    roots: dict = {}

    def get(name: str) -> Path:
        build = DATA.get(name)
        if build is None:
            pytest.skip(f"no test data known for model family {name!r}")
        if build not in roots:
            root = tmp_path_factory.mktemp(build.__name__.strip("_"))
            build(root)
            roots[build] = root
        return roots[build]

    return get


def _with_data(name: str, root: Path) -> dict:
    cfg = _config(name)
    cfg["data"]["root"] = str(root)
    return cfg


def _inputs(fam, g, batch: int = 2, seed: int = 3) -> tuple[torch.Tensor, ...]:
    gen = torch.Generator().manual_seed(seed)
    shapes = fam.input_shapes(g, fam.input_shape(g))
    return tuple(torch.rand((batch, *s[1:]), generator=gen) * 2 - 1 for s in shapes)


def _ops_or_skip(fam):
    """The family's pruning operations; a family without them (``None``) skips the pruning checks."""
    ops = fam.pruning_ops()
    if ops is None:
        pytest.skip(f"model family {fam.name!r} has no pruning operations")
    return ops


def _mask_points(fam, g, layer: str) -> list[torch.nn.Module]:
    """The modules whose outputs carry the filters of ``layer`` (the family's scoring norm, or
    conv without one); a Wav2Lip stage: the BatchNorm of every conv of the group (its residual
    blocks add their input back, so each must be zeroed)."""
    if fam.name == "wav2lip":
        from unetprune.families.wav2lip.structure import group_convs

        return [g.get_submodule(c.bn) for c in group_convs(g, layer)]
    conv, norm = fam.layer_filters(g, layer)
    return [norm if norm is not None else conv]


def _masked_forward(fam, g, drop: dict[str, list[int]], inputs) -> torch.Tensor:
    hooks = []
    for layer, ix in drop.items():
        mask = torch.ones(fam.layer_width(g, layer), dtype=torch.float64)
        mask[ix] = 0.0
        for m in _mask_points(fam, g, layer):
            hooks.append(m.register_forward_hook(lambda mod, inp, out, k=mask: out * k.view(1, -1, 1, 1)))
    try:
        with torch.no_grad():
            return g(*inputs)
    finally:
        for h in hooks:
            h.remove()


@pytest.fixture(scope="module")
def built():
    """``{name: (family, config, randomised eval-mode generator)}``, built on first use."""
    cache: dict = {}

    def get(name: str):
        if name not in cache:
            fam = get_family(name)
            cfg = _config(name)
            g = fam.build(fam.spec_from_config(cfg), seed=0)
            g = randomise_bn(
                g,
                lambda gen: tuple(
                    torch.rand((4, *s[1:]), generator=gen) * 2 - 1
                    for s in fam.input_shapes(g, fam.input_shape(g))
                ),
                seed=1,
            ).eval()
            cache[name] = fam, cfg, g
        return cache[name]

    return get


# ------------------------------------------------------------------------------------------
# build
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", FAMILIES)
def test_build_from_spec_and_from_checkpoint(built, name, tmp_path):
    fam, cfg, g = built(name)
    spec = fam.spec_from_config(cfg)
    assert fam.name == name and family_of(g) is fam and fam.owns(g) and fam.owns(spec)
    assert fam.spec_from_dict(fam.spec_to_dict(spec)) == spec
    a, b = fam.build(spec, seed=5), fam.build(fam.spec_to_dict(spec), seed=5)  # a spec or its dict
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    x = _inputs(fam, g)
    with torch.no_grad():
        y = g(*x)
    out = y[0] if isinstance(y, tuple) else y
    assert torch.isfinite(out).all()
    save_generator(tmp_path / "g.pt", g, config=cfg)
    assert load_checkpoint(tmp_path / "g.pt")["family"] == name
    back = generator_from_checkpoint(tmp_path / "g.pt").eval()
    assert family_of(back) is fam and back.spec == g.spec
    assert back.state_dict().keys() == g.state_dict().keys()
    assert all(torch.equal(v, g.state_dict()[k]) for k, v in back.state_dict().items())
    with torch.no_grad():
        y2 = back(*x)
    torch.testing.assert_close(y2, y, atol=0, rtol=0)


# ------------------------------------------------------------------------------------------
# pruning
# ------------------------------------------------------------------------------------------


def _random_keep(fam, g, groups, seed: int) -> tuple[dict, dict]:
    gen = torch.Generator().manual_seed(seed)
    keep, drop = {}, {}
    for layer in groups:
        n = fam.layer_width(g, layer)
        perm = torch.randperm(n, generator=gen).tolist()
        k = max(1, n // 2)
        keep[layer], drop[layer] = sorted(perm[:k]), sorted(perm[k:])
    return keep, drop


@pytest.mark.parametrize("name", FAMILIES)
def test_every_group_pruned_equals_the_masked_original(built, name):
    ops = _ops_or_skip(get_family(name))
    fam, _, g = built(name)
    groups = fam.groups(g)
    assert groups and len(set(groups)) == len(groups)
    g64 = copy.deepcopy(g).double()
    x = tuple(t.double() for t in _inputs(fam, g))
    with torch.no_grad():
        full = g64(*x)
    for i, chosen in enumerate([groups] + [[layer] for layer in groups]):  # all at once, then each alone
        keep, drop = _random_keep(fam, g, chosen, seed=i)
        new = ops.prune_channels(g, keep)
        assert family_of(new) is fam and not new.training
        assert {layer: fam.layer_width(new, layer) for layer in chosen} == {
            k: len(v) for k, v in keep.items()
        }
        assert fam.groups(new) == groups
        with torch.no_grad():
            got = copy.deepcopy(new).double()(*x)
        ref = _masked_forward(fam, g64, drop, x)
        torch.testing.assert_close(got, ref, atol=1e-6, rtol=1e-6, msg=lambda m, c=chosen: f"{c}: {m}")
        if any(drop.values()):
            assert not torch.allclose(full, ref, atol=1e-6), (
                f"masking {chosen} changes nothing: the test cannot fail"
            )


@pytest.mark.parametrize("name", FAMILIES)
def test_cuts_equal_freshly_built_shallower_models(built, name):
    ops = _ops_or_skip(get_family(name))
    fam, _, g = built(name)
    ks = fam.cut_ks(g.spec)
    assert all(isinstance(k, int) and k >= 1 for k in ks)
    x = _inputs(fam, g)
    for k, refusal in ks.items():
        if refusal is not None:
            with pytest.raises(PruningError):
                ops.cut(g, k)
            continue
        new, removed = ops.cut(g, k)
        assert family_of(new) is fam and isinstance(removed, dict)
        fresh = fam.build(fam.spec_from_dict(fam.spec_to_dict(new.spec)), init=True, seed=1)
        assert count_parameters(fresh) == count_parameters(new) < count_parameters(g)
        assert {n: tuple(t.shape) for n, t in fresh.state_dict().items()} == {
            n: tuple(t.shape) for n, t in new.state_dict().items()
        }
        assert [type(m) for m in fresh.modules()] == [type(m) for m in new.modules()]
        assert set(fam.groups(new)) < set(fam.groups(g))
        fresh.load_state_dict(new.state_dict())
        fresh.eval()
        new.eval()
        with torch.no_grad():
            torch.testing.assert_close(fresh(*x), new(*x), atol=0, rtol=0)
        _, info = prune(g, "cut", k=k)  # the engine, through the family
        assert info["params"] == count_parameters(new)
    for k in (0, max(ks, default=0) + 1):  # outside the family's range
        with pytest.raises(PruningError):
            ops.cut(g, k)


@pytest.mark.parametrize("name", FAMILIES)
def test_width_cost_equals_real_counts(built, name):
    ops = _ops_or_skip(get_family(name))
    fam, _, g = built(name)
    shape = fam.input_shape(g)
    cost = ops.width_cost(g, shape)
    real = count_all(g, shape)
    assert cost({}) == real and real["params"] == count_parameters(g)
    keep, _ = _random_keep(fam, g, fam.groups(g), seed=7)
    new = ops.prune_channels(g, keep)
    assert cost({k: len(v) for k, v in keep.items()}) == count_all(new, shape)
    one = fam.groups(g)[len(fam.groups(g)) // 2]
    keep1, _ = _random_keep(fam, g, [one], seed=8)
    assert cost({one: len(keep1[one])}) == count_all(ops.prune_channels(g, keep1), shape)


# ------------------------------------------------------------------------------------------
# training, checkpoints, evaluation, samples (on each family's small data)
# ------------------------------------------------------------------------------------------


def _batch(dataset, n: int = 2) -> dict:
    if hasattr(dataset, "set_epoch"):
        dataset.set_epoch(0)
    return default_collate([dataset[i] for i in range(min(n, len(dataset)))])


@pytest.mark.parametrize("name", FAMILIES)
def test_trainer_step_and_checkpoint_round_trip(data_roots, name, tmp_path):
    fam = get_family(name)
    cfg = _with_data(name, data_roots(name))
    device = torch.device("cpu")

    def trainer(G, D):
        t = fam.trainer(G, D, cfg["train"], device)
        assert t.G is G
        t.set_train_mode()
        t.set_lr(cfg["train"]["lr"])
        return t

    G = fam.build(fam.spec_from_config(cfg), seed=0)
    tr = trainer(G, fam.build_discriminator(cfg, G))
    batch = _batch(fam.train_dataset(cfg))
    torch.manual_seed(0)
    losses = tr.step(batch)
    assert set(losses) == set(tr.losses)
    assert all(math.isfinite(float(v)) for v in losses.values()), losses

    ckpt_path = tmp_path / "state.pt"
    atomic_torch_save(make_checkpoint(tr.G, cfg, **tr.state(), epoch=1), ckpt_path)
    ckpt = load_checkpoint(ckpt_path)
    assert ckpt["family"] == name
    G2 = fam.build(fam.spec_from_dict(ckpt["generator"]["arch"]), init=False)
    tr2 = trainer(G2, fam.build_discriminator(cfg, G2))  # as `train --resume` rebuilds it
    tr2.load_state(ckpt)
    if "discriminator" in ckpt:  # fine-tuning reuses it
        D = fam.discriminator_from_entry(ckpt["discriminator"])
        assert all(torch.equal(v, ckpt["discriminator"]["state_dict"][k]) for k, v in D.state_dict().items())
    assert all(torch.equal(v, tr.G.state_dict()[k]) for k, v in tr2.G.state_dict().items())
    torch.manual_seed(1)
    a = tr.step(batch)
    torch.manual_seed(1)
    b = tr2.step(batch)  # the resumed trainer continues identically
    for key in tr.losses:
        torch.testing.assert_close(b[key], a[key], atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("name", FAMILIES)
def test_eval_set_check_score_and_samples(data_roots, name, tmp_path):
    fam = get_family(name)
    cfg = _with_data(name, data_roots(name))
    G = fam.build(fam.spec_from_config(cfg), seed=0).eval()
    check = fam.check_dataset(cfg)
    assert check is not None and len(check) > 0
    assert math.isfinite(fam.check_score(G, check, cfg))
    png = Path(fam.render_samples(G, check, tmp_path / "grid.png", cfg))
    assert png.is_file() and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    if not fam.metrics:  # a family that is never evaluated
        with pytest.raises(UserFacingError, match="has no evaluation set"):
            fam.eval_set(cfg, "test", Layout.from_config(cfg).data_root)
        return
    es = fam.eval_set(cfg, "test", Layout.from_config(cfg).data_root)
    assert es.n >= 2 and es.targets.dtype == torch.uint8 and es.targets.shape[0] == es.n
    first = next(iter(es.batches(2)))
    args = first if isinstance(first, (tuple, list)) else (first,)
    with torch.no_grad():
        out = es.quantize_outputs(G(*args))
    assert out.dtype == torch.uint8 and out.shape == es.targets[: out.shape[0]].shape
    assert len(es.display_inputs([0, 1])) == 2
