import pytest
import yaml

from unetprune.config import ConfigError, load_config, load_schema, parse_overrides


def test_default_config_is_valid_and_complete(repo_root):
    cfg = load_config(repo_root / "config" / "config.yaml")
    assert cfg["experiment"] == "demo" and cfg["data"]["dataset"] == "demo"
    assert cfg["train"]["lambda_l1"] == 100.0 and cfg["model"]["num_downs"] == 6
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
    with pytest.raises(ConfigError, match=r"'model\.num_downs'"):
        load_config(None, {"data": {"dataset": "facades", "crop_size": 96, "load_size": 100}})


def test_overrides_are_parsed_as_yaml():
    assert parse_overrides(["train.n_epochs=3", "data.no_flip=true", "experiment=x"]) == {
        "train": {"n_epochs": 3}, "data": {"no_flip": True}, "experiment": "x"}
    with pytest.raises(ConfigError, match="must look like key.sub=value"):
        parse_overrides(["train.n_epochs"])


def test_missing_and_invalid_yaml(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)
