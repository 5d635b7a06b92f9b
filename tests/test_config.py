import pytest
import yaml

from unetprune.config import ConfigError, load_config, load_schema, parse_overrides


def test_default_config_is_valid_and_complete(repo_root):
    cfg = load_config(repo_root / "config" / "config.yaml")
    assert cfg["experiment"] == "demo" and cfg["data"]["dataset"] == "demo"
    assert cfg["train"]["lambda_l1"] == 100.0 and cfg["model"]["pix2pix"]["num_downs"] == 6
    assert cfg["data"]["num_workers"] == 0  # filled from the schema default


def test_every_schema_key_has_a_description():
    def walk(node, path):
        for key, sub in node.get("properties", {}).items():
            assert sub.get("description"), f"schema key {path}{key} has no description"
            walk(sub, f"{path}{key}.")

    walk(load_schema(), "")


def test_unknown_key_is_named(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text(yaml.safe_dump({"train": {"n_epoch": 3}}))
    with pytest.raises(ConfigError, match=r"'train\.n_epoch': unknown key \(allowed here: .*n_epochs"):
        load_config(p)
    with pytest.raises(ConfigError, match=r"'trian': unknown key"):
        load_config(None, {"trian": {}})


def test_wrong_type_is_named():
    with pytest.raises(ConfigError, match=r"'train\.batch_size': 'four' is not of type 'integer'"):
        load_config(None, {"train": {"batch_size": "four"}})
    with pytest.raises(ConfigError, match=r"'data\.direction': 'AtoC' is not one of"):
        load_config(None, {"data": {"direction": "AtoC"}})
    with pytest.raises(ConfigError, match=r"'train\.lr': 0 is less than or equal to the minimum"):
        load_config(None, {"train": {"lr": 0}})


def test_semantic_checks_name_the_key():
    with pytest.raises(ConfigError, match=r"'data\.crop_size': 300 exceeds data\.load_size=286"):
        load_config(None, {"data": {"dataset": "facades", "crop_size": 300}})
    with pytest.raises(ConfigError, match=r"'model\.pix2pix\.num_downs': images of 96px"):
        load_config(None, {"data": {"dataset": "facades", "crop_size": 96, "load_size": 100}})


def test_overrides_are_parsed_as_yaml():
    assert parse_overrides(["train.n_epochs=3", "data.no_flip=true", "experiment=x"]) == {
        "train": {"n_epochs": 3},
        "data": {"no_flip": True},
        "experiment": "x",
    }
    with pytest.raises(ConfigError, match="must look like key.sub=value"):
        parse_overrides(["train.n_epochs"])


def test_missing_and_invalid_yaml(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)


def test_schema_defaults_are_valid_on_their_own():
    """Every default validates against its own sub-schema, and an empty config (all
    defaults) passes the whole validation, semantic checks included."""
    import jsonschema

    from unetprune.config import validate

    def walk(node, path):
        if "default" in node:
            errors = list(jsonschema.Draft202012Validator(node).iter_errors(node["default"]))
            assert not errors, f"default of {path} is invalid: {errors[0].message}"
        for key, sub in node.get("properties", {}).items():
            walk(sub, f"{path}.{key}" if path else key)

    walk(load_schema(), "")
    cfg = validate({})
    assert cfg["data"]["crop_size"] == cfg["demo"]["image_size"] == 2 ** cfg["model"]["pix2pix"]["num_downs"]


def test_list_items_are_named_one_way_by_schema_and_semantic_checks():
    with pytest.raises(ConfigError, match=r"config error at 'variants\[0\]\.strategy': 'innr' is not one of"):
        load_config(None, {"variants": [{"strategy": "innr", "ratio": 0.5}]})
    with pytest.raises(ConfigError, match=r"config error at 'variants\[0\]\.k'"):
        load_config(None, {"variants": [{"strategy": "cut", "k": 9}]})


def test_cli_config_check(tmp_path, capsys, repo_root):
    from unetprune.cli import main

    assert main(["config", "check", str(repo_root / "config" / "tiny.yaml")]) == 0
    assert "experiment 'tiny' -> results/tiny" in capsys.readouterr().out
    assert main(["config", "check", str(repo_root / "config" / "tiny.yaml"), "--experiment", "demo"]) == 2
    assert "registered as 'demo'" in capsys.readouterr().err


def test_non_editable_install_ships_the_schema(tmp_path, repo_root):
    """`pip install .` (not editable): the schema is package data, so `unetprune --help`
    and a config validation work from the installed copy, outside the repository."""
    import subprocess
    import sys

    target = tmp_path / "site"
    p = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--target",
            str(target),
            str(repo_root),
        ],
        capture_output=True,
        text=True,
    )
    assert p.returncode == 0, p.stderr[-2000:]
    assert (target / "unetprune" / "schema.yaml").is_file()
    assert not (target / "unetprune" / "__editable__").exists()
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        "experiment: elsewhere\nmodel: {pix2pix: {num_downs: 7}}\ndata: {crop_size: 128, load_size: 143}\n"
        "demo: {image_size: 128}\n"
    )
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(target), "HOME": str(tmp_path)}
    code = (
        "import sys, unetprune; from unetprune.cli import main; "
        "assert unetprune.__file__.startswith(sys.argv[1]), unetprune.__file__; "
        "sys.exit(main(sys.argv[2:]))"
    )
    run = [sys.executable, "-c", code, str(target)]  # PYTHONPATH puts the installed copy first
    h = subprocess.run([*run, "--help"], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert h.returncode == 0 and "config" in h.stdout and "prune" in h.stdout, h.stderr[-2000:]
    c = subprocess.run(
        [*run, "config", "check", str(cfg)], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert c.returncode == 0, c.stderr[-2000:]
    assert "experiment 'elsewhere' -> results/elsewhere" in c.stdout
    bad = subprocess.run(
        [*run, "config", "check", str(cfg), "--set", "train.n_epoch=1"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 2 and "'train.n_epoch': unknown key" in bad.stderr


def test_every_family_schema_fragment_key_has_a_description():
    from unetprune.family import all_families

    fragments = [f.schema_fragment() for f in all_families() if f.schema_fragment()]
    assert fragments, "no family ships a schema fragment"
    for path in fragments:
        node = yaml.safe_load(path.read_text())
        assert node["type"] == "object" and node["additionalProperties"] is False, path
        for key, sub in node["properties"].items():
            assert sub.get("description"), f"{path}: key {key} has no description"


@pytest.mark.parametrize(
    "key, value",
    [("width_mult", 0.25), ("expert_width_mult", 0.5), ("hq", True), ("expert_checkpoint", "expert.pt")],
)
def test_a_family_key_in_the_old_place_fails_with_one_line_naming_its_new_place(repo_root, key, value):
    with pytest.raises(ConfigError) as e:
        load_config(repo_root / "config" / "wav2lip_demo.yaml", {"model": {key: value}})
    msg = str(e.value)
    assert "\n" not in msg
    assert msg.startswith(f"config error at 'model.{key}': moved to 'model.wav2lip.{key}'")


def test_family_keys_are_validated_under_model_family(repo_root):
    cfg = load_config(repo_root / "config" / "wav2lip_demo.yaml")
    assert cfg["model"]["wav2lip"] == {
        "width_mult": 0.25,
        "expert_width_mult": 0.25,
        "hq": False,
        "expert_checkpoint": None,
        "init_weights": None,
        "expert_init_weights": None,
        "disc_init_weights": None,
    }  # defaults filled from the fragment
    with pytest.raises(
        ConfigError,
        match=r"'model\.wav2lip\.width_mul': unknown key \(allowed here: "
        r"disc_init_weights, expert_checkpoint, expert_init_weights, expert_width_mult, hq, init_weights, "
        r"width_mult\)",
    ):
        load_config(None, {"model": {"family": "wav2lip", "wav2lip": {"width_mul": 0.5}}})
    with pytest.raises(
        ConfigError, match=r"'model\.wav2lip\.width_mult': 0 is less than or equal to the minimum"
    ):
        load_config(None, {"model": {"family": "wav2lip", "wav2lip": {"width_mult": 0}}})
    # another family's section is not part of this family's config
    pix = load_config(repo_root / "config" / "config.yaml")
    assert "wav2lip" not in pix["model"]
    with pytest.raises(ConfigError, match=r"'model\.wav2lip': unknown key"):
        load_config(repo_root / "config" / "config.yaml", {"model": {"wav2lip": {"hq": True}}})


@pytest.mark.parametrize(
    "key, value",
    [
        ("num_downs", 6),
        ("ngf", 32),
        ("ndf", 32),
        ("n_layers_d", 3),
        ("norm", "instance"),
        ("use_dropout", False),
        ("bias_mode", "reference"),
        ("init_weights", "latest_net_G.pth"),
    ],
)
def test_a_unet_key_in_the_old_place_fails_with_one_line_naming_its_new_place(key, value):
    with pytest.raises(ConfigError) as e:
        load_config(None, {"model": {"family": "pix2pix", key: value}})
    msg = str(e.value)
    assert "\n" not in msg
    assert msg == f"config error at 'model.{key}': moved to 'model.pix2pix.{key}'"


def test_an_old_shape_pix2pix_config_names_every_moved_key(repo_root):
    old = yaml.safe_load((repo_root / "config" / "config.yaml").read_text())
    old["model"] = old["model"]["pix2pix"]  # the keys written directly under model
    with pytest.raises(ConfigError) as e:
        load_config(None, old)
    keys = sorted(old["model"])
    assert keys == ["bias_mode", "n_layers_d", "ndf", "ngf", "norm", "num_downs", "use_dropout"]
    assert str(e.value) == (
        f"config error at '{', '.join(f'model.{k}' for k in keys)}': "
        f"moved to '{', '.join(f'model.pix2pix.{k}' for k in keys)}'"
    )


def test_unet_keys_are_validated_under_model_pix2pix(repo_root):
    schema = yaml.safe_load(
        (repo_root / "src" / "unetprune" / "families" / "pix2pix" / "schema.yaml").read_text()
    )
    defaults = {k: v["default"] for k, v in schema["properties"].items()}
    assert defaults == {
        "num_downs": 8,
        "ngf": 64,
        "ndf": 64,
        "n_layers_d": 3,
        "norm": "batch",
        "use_dropout": True,
        "bias_mode": "paper",
        "init_weights": None,
    }
    assert load_config(None, {})["model"] == {"family": "pix2pix", "pix2pix": defaults}
    cfg = load_config(repo_root / "config" / "config.yaml")
    assert cfg["model"]["pix2pix"] == {**defaults, "num_downs": 6, "ngf": 32, "ndf": 32}
    assert set(cfg["model"]) == {"family", "pix2pix"}
    with pytest.raises(
        ConfigError, match=r"'model\.pix2pix\.num_downs': 11 is greater than the maximum of 10"
    ):
        load_config(None, {"model": {"pix2pix": {"num_downs": 11}}})
    with pytest.raises(ConfigError, match=r"'model\.pix2pix\.ngf': 0 is less than the minimum of 1"):
        load_config(None, {"model": {"pix2pix": {"ngf": 0}}})
    with pytest.raises(
        ConfigError, match=r"'model\.pix2pix\.norm': 'group' is not one of \['batch', 'instance'\]"
    ):
        load_config(None, {"model": {"pix2pix": {"norm": "group"}}})
    with pytest.raises(
        ConfigError,
        match=r"'model\.pix2pix\.ngff': unknown key \(allowed here: bias_mode, "
        r"init_weights, n_layers_d, ndf, ngf, norm, num_downs, use_dropout\)",
    ):
        load_config(None, {"model": {"pix2pix": {"ngff": 8}}})
    # the section of another family is not part of a wav2lip config
    w2l = load_config(repo_root / "config" / "wav2lip_demo.yaml")
    assert "pix2pix" not in w2l["model"] and "num_downs" not in w2l["model"]
    with pytest.raises(ConfigError, match=r"'model\.pix2pix': unknown key"):
        load_config(repo_root / "config" / "wav2lip_demo.yaml", {"model": {"pix2pix": {"num_downs": 6}}})


def test_unknown_family_names_the_installed_ones():
    with pytest.raises(
        ConfigError, match=r"'model\.family': unknown model family 'cyclegan' \(installed: .*pix2pix"
    ):
        load_config(None, {"model": {"family": "cyclegan"}})


def test_semantic_checks_come_from_the_configured_family():
    """The core's checks apply to every family; a family's checks only to its own configs."""
    from unetprune.families.pix2pix.family import Pix2PixFamily
    from unetprune.family import register_family, unregister_family

    seen = []

    class Lenient(Pix2PixFamily):  # pix2pix's networks, none of its config checks
        name = "lenient-test"

        def check_config(self, cfg):
            seen.append(cfg["model"]["family"])

    bad_crop = {"data": {"crop_size": 512, "load_size": 256}}
    with pytest.raises(ConfigError, match=r"'data\.crop_size': 512 exceeds data\.load_size=256"):
        load_config(None, bad_crop)
    register_family(Lenient())
    try:
        cfg = load_config(None, {**bad_crop, "model": {"family": "lenient-test"}})
        assert cfg["data"]["crop_size"] == 512 and seen == ["lenient-test"]
        with pytest.raises(ConfigError, match=r"'train\.target': model\.family lenient-test has no expert"):
            load_config(None, {"model": {"family": "lenient-test"}, "train": {"target": "expert"}})
    finally:
        unregister_family("lenient-test")


def test_finetune_train_overrides_are_checked_as_train_keys():
    """finetune.train: train keys that differ when fine-tuning, under the train section's schema
    (unknown keys and bounds refused, no defaults filled in); finetune_config applies them, with
    finetune's own epochs taking precedence."""
    from unetprune.train import finetune_config

    cfg = load_config(
        "config/wav2lip_demo.yaml", {"finetune": {"train": {"sync_boost": 0.05, "n_epochs": 9}}}
    )
    assert cfg["finetune"]["train"] == {"sync_boost": 0.05, "n_epochs": 9}
    ft = finetune_config(cfg)["train"]
    assert ft["sync_boost"] == 0.05 and ft["n_epochs"] == cfg["finetune"]["n_epochs"] == 1
    assert cfg["train"]["sync_boost"] == 0.2  # training from scratch keeps its own
    assert load_config("config/config.yaml")["finetune"]["train"] == {}
    with pytest.raises(ConfigError, match=r"finetune\.train\.sync_bost': unknown key"):
        load_config("config/wav2lip_demo.yaml", {"finetune": {"train": {"sync_bost": 0.1}}})
    with pytest.raises(
        ConfigError, match=r"finetune\.train\.sync_boost': 2 is greater than the maximum of 1"
    ):
        load_config("config/wav2lip_demo.yaml", {"finetune": {"train": {"sync_boost": 2}}})
