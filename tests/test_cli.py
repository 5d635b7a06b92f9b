import subprocess
import sys

import numpy as np
import pytest
import yaml
from PIL import Image

from unetprune.cli import main
from unetprune.layout import CHECKPOINT_NAME, TRAIN_LOG_NAME


def test_unknown_config_key_is_a_one_line_error(tmp_path, capsys):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump({"model": {"pix2pix": {"ngf": 8}, "widht": 3}}))
    rc = main(["train", "--config", str(cfg), "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert rc == 2
    assert "unetprune train: error: config error at 'model.widht': unknown key" in err
    assert "Traceback" not in err


def test_missing_checkpoint_is_a_clear_error(tmp_path, capsys):
    rc = main(
        [
            "translate",
            "--checkpoint",
            str(tmp_path / "none.pt"),
            "--input",
            str(tmp_path),
            "--output",
            str(tmp_path / "o"),
        ]
    )
    assert rc == 2
    assert "none.pt does not exist" in capsys.readouterr().err


def test_corrupt_checkpoint_is_a_clear_error(tmp_path, capsys):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"garbage")
    rc = main(
        ["translate", "--checkpoint", str(bad), "--input", str(tmp_path), "--output", str(tmp_path / "o")]
    )
    assert rc == 2 and "cannot read checkpoint" in capsys.readouterr().err


def test_train_learns_then_translate_writes_images(tiny_demo, tmp_path):
    """Short training on the tiny demo: test-split L1 clearly drops; `translate` writes
    one PNG per input at the training size."""
    cfg = {
        "experiment": "t",
        "seed": 0,
        "data": {"dataset": "folder", "root": str(tiny_demo), "load_size": 32, "crop_size": 32},
        "model": {"pix2pix": {"num_downs": 5, "ngf": 8, "ndf": 8}},
        "train": {
            "n_epochs": 8,
            "n_epochs_decay": 0,
            "threads": 1,
            "save_every": 8,
            "eval_images": 4,
            "lr": 0.002,
        },
    }
    p = tmp_path / "c.yaml"
    p.write_text(yaml.safe_dump(cfg))
    run = tmp_path / "run"
    assert main(["train", "--config", str(p), "--out", str(run), "--quiet"]) == 0
    import json

    ev = json.loads((run / TRAIN_LOG_NAME).read_text())["eval"]
    assert ev["split"] == "test" and ev["n_images"] == 4
    assert ev["l1_final"] < 0.8 * ev["l1_init"], ev
    out = tmp_path / "gen"
    assert (
        main(
            [
                "translate",
                "--checkpoint",
                str(run / CHECKPOINT_NAME),
                "--input",
                str(tiny_demo / "test"),
                "--output",
                str(out),
            ]
        )
        == 0
    )
    files = sorted(out.glob("*.png"))
    assert len(files) == 4
    assert np.asarray(Image.open(files[0])).shape == (32, 32, 3)


def test_demo_data_command_is_idempotent(tmp_path):
    cmd = [
        sys.executable,
        "-m",
        "unetprune.cli",
        "demo-data",
        "--config",
        "config/config.yaml",
        "--out",
        str(tmp_path / "d"),
        "--set",
        "demo.n_train=3",
        "--set",
        "demo.n_val=1",
        "--set",
        "demo.n_test=2",
    ]
    first = subprocess.run(cmd, capture_output=True, text=True, check=True)
    assert "train 3, val 1, test 2" in first.stdout
    second = subprocess.run(cmd, capture_output=True, text=True, check=True)
    assert "up to date" in second.stdout


@pytest.mark.parametrize("argv", [["--help"], ["train", "--help"]])
def test_help(argv, capsys):
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 0


def test_every_family_adds_its_own_commands(tmp_path, capsys):
    """The core's commands, then each family's (ModelFamily.command_modules), a family
    registered in this process included."""
    import types

    from unetprune.cli import build_parser, command_modules
    from unetprune.families.pix2pix.family import Pix2PixFamily
    from unetprune.family import get_family, register_family, unregister_family

    mods = command_modules()
    assert mods[0] == "unetprune.commands.config"
    for family in ("pix2pix", "wav2lip"):
        assert get_family(family).command_modules() and set(get_family(family).command_modules()) <= set(mods)
    assert not [
        m
        for m in mods
        if not m.startswith("unetprune.commands.")
        and not any(m in f.command_modules() for f in map(get_family, ("pix2pix", "wav2lip")))
    ]

    module = types.ModuleType("cli_extra_test")

    def register(sub):
        p = sub.add_parser("hello-test")
        p.set_defaults(func=lambda args: print("hello") or 0)

    module.register = register
    sys.modules[module.__name__] = module

    class Extra(Pix2PixFamily):
        name = "cli-extra-test"

        def command_modules(self):
            return [module.__name__]

    register_family(Extra())
    try:
        choices = next(a for a in build_parser()._actions if a.dest == "command").choices
        assert {"hello-test", "import", "lipsync", "sample-video", "demo-data"} <= set(choices)
        assert main(["hello-test"]) == 0 and capsys.readouterr().out == "hello\n"
    finally:
        unregister_family("cli-extra-test")
        del sys.modules[module.__name__]
