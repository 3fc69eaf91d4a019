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
    overrides = ["train.epochs=3", "model.depth=50", "data.train_scale=[128, 160]"]
    cfg = load_config(path, overrides + ["data.crop_size=112"])
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


def test_a_config_saved_with_a_byte_order_mark_loads(tmp_path):
    """Windows editors save UTF-8 with a BOM; it is dropped (data_prep.files.read_utf8)."""
    path = tmp_path / "bom.yaml"
    path.write_bytes(b"\xef\xbb\xbf" + "train:\n  epochs: 3  # café\n".encode())
    assert load_config(path).train.epochs == 3
    path.write_bytes(b"\xef\xbb\xbftrain:\n  epochs: 3  # caf\xe9\n")
    with pytest.raises(
        ConfigError, match=r"^.*bom\.yaml: not UTF-8 text \(byte 0xe9 at offset 28, line 2\)"
    ):
        load_config(path)


def test_a_bare_off_means_the_word_off(tmp_path):
    """YAML 1.1 reads a bare ``off`` as false; ``runtime.amp: off`` (file or override) is "off"."""
    assert load_config(None, ["runtime.amp=off"]).runtime.amp == "off"
    path = tmp_path / "amp.yaml"
    path.write_text("runtime:\n  amp: off\n  channels_last: off\n")
    cfg = load_config(path)
    assert cfg.runtime.amp == "off"
    assert cfg.runtime.channels_last is False  # a switch keeps the bool
    with pytest.raises(
        ConfigError, match="runtime.amp must be one of auto, bf16, fp16, off, got True"
    ):
        load_config(None, ["runtime.amp=on"])


def test_keys_that_moved_to_runtime_are_read_from_train(tmp_path):
    """Configs and checkpoints written before the runtime section keep working: train.amp,
    train.device, train.channels_last and train.compile are read as runtime.*; a runtime key
    given as well wins."""
    path = tmp_path / "old.yaml"
    path.write_text("train:\n  amp: bf16\n  device: cpu\n  compile: false\n  epochs: 3\n")
    cfg = load_config(path, ["runtime.compile=true"])
    assert (cfg.runtime.amp, cfg.runtime.device, cfg.runtime.compile) == ("bf16", "cpu", True)
    assert cfg.train.epochs == 3 and not hasattr(cfg.train, "amp")


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


# One bad value per row: the override, then what the one-line error must say after the file name.
BAD_VALUES = [
    ("data.num_frames=0", "data.num_frames must be >= 1, got 0"),
    ("data.frame_interval=0", "data.frame_interval must be >= 1, got 0"),
    ("data.normalization=imagnet", "data.normalization must be one of official, imagenet, got "
     "'imagnet'; did you mean imagenet?"),
    ("data.reader=decrd", "data.reader must be one of pyav, decord, got 'decrd'; did you mean "
     "decord?"),
    ("data.num_workers=-1", "data.num_workers must be >= 0, got -1"),
    ("data.train_scale=[320, 256]", "data.train_scale must be [low, high] with 1 <= low <= high, "
     "got [320, 256]"),
    ("data.train_scale=[256]", "data.train_scale must be [low, high]"),
    ("data.crop_size=300", "data.crop_size 300 is larger than the smallest scale 256 "
     "(data.train_scale[0] 256, data.test_scale 256)"),
    ("data.test_scale=200", "data.crop_size 224 is larger than the smallest scale 200"),
    ("model.arch=resnt", "model.arch must be one of resnet, mfnet, got 'resnt'; did you mean "
     "resnet?"),
    ("model.depth=34", "model.depth must be one of 50, 101, got 34"),
    ("model.width=0", "model.width must be > 0, got 0.0"),
    ("model.dropout=1", "model.dropout must be >= 0 and < 1, got 1.0"),
    ("model.glore_nodes=0", "model.glore_nodes must be > 0, got 0.0"),
    ("model.num_classes=0", "model.num_classes must be >= 1, got 0"),
    ("train.schedule=cosin", "train.schedule must be one of step, cosine, got 'cosin'; did you "
     "mean cosine?"),
    ("runtime.amp=bf15", "runtime.amp must be one of auto, bf16, fp16, off, got 'bf15'; did you "
     "mean bf16?"),
    ("runtime.device=gpu", "runtime.device must be one of auto, cpu, cuda, got 'gpu'"),
    ("runtime.threads=-1", "runtime.threads must be >= 0, got -1"),
    ("train.batch_size=0", "train.batch_size must be >= 1, got 0"),
    ("train.lr=0", "train.lr must be > 0, got 0.0"),
    ("train.lr=-0.1", "train.lr must be > 0, got -0.1"),
    ("train.epochs=-1", "train.epochs must be >= 0, got -1"),
    ("train.lr_steps=[65, 45]", "train.lr_steps must be increasing epochs >= 0, got [65.0, 45.0]"),
    ('train.lr_mult={"*": -1}', "train.lr_mult.* must be >= 0, got -1.0"),
    ('train.lr_mult={"classifier.*": x}', "train.lr_mult.classifier.* must be float, got str 'x'"),
    ("test.num_clips=0", "test.num_clips must be >= 1, got 0"),
    ("test.num_crops=2", "test.num_crops must be one of 1, 3, 5, got 2"),
    ("test.aggregate=softmx", "test.aggregate must be one of softmax, logits, got 'softmx'; did "
     "you mean softmax?"),
    ("test.batch_size=0", "test.batch_size must be >= 1, got 0"),
]  # fmt: skip


@pytest.mark.parametrize("override,message", BAD_VALUES, ids=[o for o, _ in BAD_VALUES])
def test_bad_values_fail_at_load_with_file_and_key(tmp_path, override, message):
    path = write_yaml(tmp_path, {"train": {"epochs": 3}})
    with pytest.raises(ConfigError) as err:
        load_config(path, [override])
    text = str(err.value)
    assert text.startswith(f"{path}: ") and message in text
    assert "\n" not in text


def test_a_bad_value_in_the_file_names_the_file(tmp_path):
    path = write_yaml(tmp_path, {"data": {"num_frames": 0}})
    with pytest.raises(ConfigError, match=rf"^{path}: data\.num_frames must be >= 1, got 0$"):
        load_config(path)


def test_too_many_test_views_fail_at_load_with_the_size():
    """10^6 clips x 3 crops of 8x224x224 frames: 3364.6 GiB of uint8 pixels for one video."""
    with pytest.raises(ConfigError) as err:
        load_config(None, ["test.num_clips=1000000"])
    text = str(err.value)
    assert text.startswith("<defaults>: test.num_clips 1000000 x test.num_crops 3 views")
    assert "3364.6 GiB" in text and "limit 2 GiB" in text
    # the released 10 x 3 views of 8 x 224² (36 MB) and a large 30 x 5 x 32 x 256² setting load
    assert load_config(None).test.num_clips == 10
    big = ["test.num_clips=30", "test.num_crops=5", "data.num_frames=32", "data.crop_size=256"]
    assert load_config(None, big + ["data.train_scale=[256, 320]"]).test.num_crops == 5


def test_valid_edge_values_load():
    cfg = load_config(
        None,
        [
            "data.crop_size=256",  # == the smallest scale
            "data.train_scale=[256, 256]",
            "model.dropout=0",
            "train.epochs=0",
            "train.schedule=cosine",
            "train.lr_steps=[9, 3]",  # ignored by the cosine schedule
            "test.num_crops=5",
            "model.arch=mfnet",
        ],
    )
    assert (cfg.data.crop_size, cfg.test.num_crops, cfg.model.arch) == (256, 5, "mfnet")


def test_shipped_config_in_a_checkout_is_the_top_level_file():
    from videoglore.config import shipped_config

    assert shipped_config("demo.yaml") == REPO / "configs" / "demo.yaml"
