"""data.on_device (src/unetprune/data/gpu_data.py): the device-resident training split gives
the CPU loader's samples bit for bit, in the CPU loader's order (checked on the CPU and, marked
``gpu``, on CUDA); the on-device resize is within two levels of PIL's; train() with it equals
train() without it."""

import json

import pytest
import torch
from torch.utils.data import DataLoader

from unetprune.config import load_config
from unetprune.data.aligned import AlignedDataset
from unetprune.data.gpu_data import AUTO_MAX_BYTES, DeviceAlignedDataset, on_device_for
from unetprune.layout import CHECKPOINT_NAME, TRAIN_LOG_NAME
from unetprune.train import epoch_seed, train


def cpu_batches(ds, batch_size, seed, epoch):
    ds.set_epoch(epoch)
    g = torch.Generator()
    g.manual_seed(epoch_seed(seed, epoch))
    return list(DataLoader(ds, batch_size=batch_size, shuffle=True, generator=g))


def device_batches(dds, batch_size, seed, epoch):
    dds.set_epoch(epoch)
    g = torch.Generator()
    g.manual_seed(epoch_seed(seed, epoch))
    return list(dds.batch_loader(batch_size, g))


def assert_same(cpu, dev):
    assert len(cpu) == len(dev)
    for c, d in zip(cpu, dev):
        assert c["path"] == d["path"]  # same order
        assert torch.equal(c["A"], d["A"].cpu()) and torch.equal(c["B"], d["B"].cpu())  # same pixels


@pytest.mark.parametrize("direction,flip", [("AtoB", True), ("BtoA", False)])
def test_same_samples_and_order_as_the_cpu_loader(tiny_demo, direction, flip):
    """Resize (36 from 32: PIL, on the host, once), crops and flips (on the device, from the CPU
    loader's own (seed, epoch, index) parameters), batch order: all identical, every epoch."""
    base = AlignedDataset(tiny_demo, "train", direction, 36, 32, train=True, flip=flip, seed=5)
    dds = DeviceAlignedDataset(
        AlignedDataset(tiny_demo, "train", direction, 36, 32, train=True, flip=flip, seed=5), "cpu"
    )
    assert dds.A.dtype == torch.uint8 and dds.A.shape == (6, 3, 36, 36) and dds.nbytes == 2 * 6 * 3 * 36 * 36
    flips = set()
    for epoch in range(3):
        for bs in (1, 4):  # 4: a last partial batch of 2
            assert_same(cpu_batches(base, bs, 5, epoch), device_batches(dds, bs, 5, epoch))
        flips |= {base.transform_params(i)[2] for i in range(len(base))}
    assert flips == ({True, False} if flip else {False})  # both branches were exercised
    # single items too
    base.set_epoch(1), dds.set_epoch(1)
    assert torch.equal(base[3]["A"], dds[3]["A"]) and base[3]["path"] == dds[3]["path"]


def test_evaluation_mode_is_the_cpu_loaders(tiny_demo):
    base = AlignedDataset(tiny_demo, "test", "AtoB", 36, 32, train=False)
    dds = DeviceAlignedDataset(AlignedDataset(tiny_demo, "test", "AtoB", 36, 32, train=False), "cpu")
    assert dds.A.shape[-1] == 32
    for i in range(len(base)):
        assert torch.equal(base[i]["A"], dds[i]["A"]) and torch.equal(base[i]["B"], dds[i]["B"])


def test_device_resize_is_within_two_levels_of_pil(tiny_demo):
    """resize='device' (PIL's two-pass bicubic emulated with torch): the same crops and flips,
    pixels within two uint8 levels of the CPU loader's (off by one on at most 2 % of the values, by
    two on at most 0.1 %: PIL rounds its horizontal pass with fixed-point weights)."""
    base = AlignedDataset(tiny_demo, "train", "AtoB", 36, 32, seed=1)
    dds = DeviceAlignedDataset(
        AlignedDataset(tiny_demo, "train", "AtoB", 36, 32, seed=1), "cpu", resize="device"
    )
    assert dds.A.shape[-1] == 32  # stored at the images' own size
    diffs = []
    for epoch in range(2):
        base.set_epoch(epoch), dds.set_epoch(epoch)
        for i in range(len(base)):
            a_cpu, b_cpu = base.pair_uint8(i)
            a_dev, b_dev = dds.pair_uint8([i])
            diffs += [(a_cpu.int() - a_dev[0].int()).abs(), (b_cpu.int() - b_dev[0].int()).abs()]
    d = torch.cat([x.flatten() for x in diffs])
    assert (
        int(d.max()) <= 2 and float((d > 0).float().mean()) <= 0.02 and float((d > 1).float().mean()) <= 1e-3
    )


def test_on_device_setting(monkeypatch):
    cfg = load_config(None, {"train": {"device": "cpu"}})
    assert cfg["data"]["on_device"] == "auto"
    assert on_device_for(cfg, 400) is None  # auto: CUDA only; CPU keeps the DataLoader
    assert on_device_for(
        load_config(None, {"train": {"device": "cpu"}, "data": {"on_device": True}}), 4
    ) == torch.device("cpu")
    assert on_device_for(load_config(None, {"data": {"on_device": False}})) is None
    import unetprune.devices

    monkeypatch.setattr(unetprune.devices, "resolve_device", lambda *a, **k: torch.device("cuda"))
    facades = load_config(None, {"data": {"load_size": 286}})
    assert on_device_for(facades, 400) == torch.device("cuda")  # 196 MB
    too_big = AUTO_MAX_BYTES // (6 * 286**2) + 1
    assert on_device_for(facades, too_big) is None


def test_train_with_the_split_on_the_device_equals_the_dataloader(tiny_demo, tmp_path):
    """train() through the device-resident split (here: on the CPU) gives the DataLoader
    run's losses and weights exactly: same samples, same order, same RNG draws."""

    def run(on_device, out):
        cfg = load_config(
            None,
            {
                "data": {
                    "dataset": "folder",
                    "root": str(tiny_demo),
                    "load_size": 36,
                    "crop_size": 32,
                    "on_device": on_device,
                },
                "model": {"pix2pix": {"num_downs": 5, "ngf": 4, "ndf": 4}},
                "train": {
                    "device": "cpu",
                    "n_epochs": 1,
                    "n_epochs_decay": 1,
                    "batch_size": 4,
                    "threads": 1,
                    "eval_images": 0,
                    "log_every": 1,
                },
            },
        )
        train(cfg, out, progress=False)
        return json.loads((out / TRAIN_LOG_NAME).read_text()), torch.load(
            out / CHECKPOINT_NAME, weights_only=True
        )

    (la, ca), (lb, cb) = run(False, tmp_path / "a"), run(True, tmp_path / "b")
    assert [{k: v for k, v in s.items()} for s in la["steps"]] == lb["steps"]
    sa, sb = ca["generator"]["state_dict"], cb["generator"]["state_dict"]
    assert all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.mark.gpu
def test_gpu_resident_split_matches_the_cpu_loader(tiny_demo):
    base = AlignedDataset(tiny_demo, "train", "AtoB", 36, 32, seed=5)
    dds = DeviceAlignedDataset(AlignedDataset(tiny_demo, "train", "AtoB", 36, 32, seed=5), "cuda")
    assert dds.A.is_cuda
    for epoch in range(2):
        dev = device_batches(dds, 4, 5, epoch)
        assert all(d["A"].is_cuda for d in dev)
        assert_same(cpu_batches(base, 4, 5, epoch), dev)
    res = DeviceAlignedDataset(
        AlignedDataset(tiny_demo, "train", "AtoB", 36, 32, seed=5), "cuda", resize="device"
    )
    base.set_epoch(0), res.set_epoch(0)
    d = torch.cat(
        [
            (base.pair_uint8(i)[0].int() - res.pair_uint8([i])[0][0].cpu().int()).abs().flatten()
            for i in range(len(base))
        ]
    )
    assert int(d.max()) <= 2 and float((d > 0).float().mean()) <= 0.02


def test_from_uint8_table_is_the_cpu_division():
    """The device path of from_uint8 looks the 256 values up in a table computed on the CPU, so
    a batch made on a GPU holds the CPU loader's floats bit for bit."""
    from unetprune.data.aligned import _LEVELS, from_uint8

    u = torch.arange(256, dtype=torch.uint8)
    assert torch.equal(_LEVELS, u.float() / 127.5 - 1) and torch.equal(from_uint8(u), _LEVELS)
    x = torch.randint(0, 256, (2, 3, 5, 5), dtype=torch.uint8)
    assert torch.equal(_LEVELS[x.long()], from_uint8(x))
