"""Config loading: defaults, YAML sections, dotted overrides, and the errors users see."""

from pathlib import Path

import pytest
import yaml

from tests.helpers import REPO
from videoglore.config import Config, config_from_dict, load_config, save_config
from videoglore.errors import ConfigError


def write_yaml(tmp_path, data) -> Path:
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_defaults_without_file():
    cfg = load_config(None)
    assert isinstance(cfg, Config)
    assert (cfg.data.num_frames, cfg.data.frame_interval, cfg.data.crop_size) == (8, 8, 224)
    assert cfg.model.arch == "resnet" and cfg.model.depth == 50 and cfg.model.glore


def test_yaml_values_and_overrides(tmp_path):
    path = write_yaml(tmp_path, {"train": {"epochs": 5, "lr": 0.2}, "model": {"depth": 101}})
    cfg = load_config(path, ["train.epochs=3", "model.depth=50", "data.train_scale=[128, 160]"])
    assert cfg.train.epochs == 3
    assert cfg.train.lr == pytest.approx(0.2)
    assert cfg.model.depth == 50
    assert cfg.data.train_scale == [128, 160]
    # An int where a float is expected is accepted and converted.
    assert isinstance(load_config(path, ["train.lr=1"]).train.lr, float)


def test_unknown_key_names_file_key_and_closest(tmp_path):
    path = write_yaml(tmp_path, {"train": {"epoch": 5}})
    with pytest.raises(ConfigError) as err:
        load_config(path)
    message = str(err.value)
    assert str(path) in message
    assert "train.epoch" in message
    assert "did you mean train.epochs?" in message


def test_unknown_section_suggests_closest(tmp_path):
    path = write_yaml(tmp_path, {"modle": {"depth": 50}})
    with pytest.raises(ConfigError, match="unknown key modle; did you mean model"):
        load_config(path)


def test_wrong_type_names_key(tmp_path):
    path = write_yaml(tmp_path, {"train": {"epochs": "many"}})
    with pytest.raises(ConfigError, match=r"train\.epochs must be int, got str 'many'"):
        load_config(path)
    with pytest.raises(ConfigError, match=r"model\.glore must be bool"):
        load_config(None, ["model.glore=3"])
    with pytest.raises(ConfigError, match=r"data\.train_scale\[1\] must be int"):
        load_config(None, ["data.train_scale=[256, big]"])


def test_override_errors():
    with pytest.raises(ConfigError, match="expected section.key=value"):
        load_config(None, ["train.epochs"])
    with pytest.raises(ConfigError, match="did you mean model.depth"):
        load_config(None, ["model.dept=50"])
    with pytest.raises(ConfigError, match="must be a mapping"):
        load_config(None, ["train=3"])


def test_missing_and_malformed_files(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)


def test_saved_config_round_trips(tmp_path):
    cfg = load_config(None, ["train.epochs=7", "output.dir=somewhere"])
    save_config(cfg, tmp_path / "run" / "config.yaml")
    again = load_config(tmp_path / "run" / "config.yaml")
    assert again == cfg
    assert config_from_dict(yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())) == cfg


@pytest.mark.parametrize("path", sorted((REPO / "configs").glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_configs_load(path):
    cfg = load_config(path)
    assert cfg.model.num_classes > 1
    assert cfg.data.num_frames >= 1
