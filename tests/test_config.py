"""Config loading: defaults, YAML sections, dotted overrides, and the errors users see."""

import subprocess
import sys
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
    """Given on the command line, over a valid file: the command line is named, not the file."""
    path = write_yaml(tmp_path, {"train": {"epochs": 3}})
    with pytest.raises(ConfigError) as err:
        load_config(path, [override])
    text = str(err.value)
    assert text.startswith("command line: ") and message in text
    assert "\n" not in text
    key, value = override.split("=", 1)
    section, name = key.split(".", 1)
    in_file = tmp_path / "in_file.yaml"
    in_file.write_text(yaml.safe_dump({section: {name: yaml.safe_load(value)}}))
    with pytest.raises(ConfigError) as err:
        load_config(in_file)
    assert str(err.value).startswith(f"{in_file}: ") and message in str(err.value)


def test_an_override_can_mend_the_file_and_a_key_given_twice_is_refused(tmp_path):
    path = write_yaml(tmp_path, {"train": {"lr": 0, "epochs": 3}})
    with pytest.raises(ConfigError, match=rf"^{path}: train\.lr must be > 0, got 0\.0$"):
        load_config(path)
    assert load_config(path, ["train.lr=1e-3"]).train.lr == 0.001  # the file's value replaced
    with pytest.raises(ConfigError) as err:
        load_config(path, ["train.lr=0.1", "train.epochs=2", "train.lr=0.2"])
    assert str(err.value) == (
        "command line: train.lr is given twice ('train.lr=0.1', 'train.lr=0.2'); keep one"
    )


def test_a_bad_value_in_the_file_names_the_file(tmp_path):
    path = write_yaml(tmp_path, {"data": {"num_frames": 0}})
    with pytest.raises(ConfigError, match=rf"^{path}: data\.num_frames must be >= 1, got 0$"):
        load_config(path)


def test_too_many_test_views_fail_at_load_with_the_size():
    """1000 clips x 3 crops of 8x224x224 frames: 3.4 GiB of uint8 pixels for one video."""
    with pytest.raises(ConfigError) as err:
        load_config(None, ["test.num_clips=1000"])
    text = str(err.value)
    assert text.startswith("command line: test.num_clips 1000 x test.num_crops 3 views")
    assert "3.4 GiB" in text and "limit 2 GiB" in text
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


# --- issue 17: configs that are hostile or written the way people write them -------------------


def bomb(levels: int = 9, width: int = 9) -> str:
    """A YAML "billion laughs" flow list: level k holds ``width`` aliases of level k - 1, so the
    last of its ``levels`` items stands for width**levels (9**9 = 387 M) strings."""
    items = [f"&l0 [{', '.join(['lol'] * width)}]"]
    items += [f"&l{k} [{', '.join([f'*l{k - 1}'] * width)}]" for k in range(1, levels)]
    return "[" + ", ".join(items) + "]"


def run_isolated(code: str, timeout: float = 10) -> str:
    """Run ``code`` in a fresh Python (1 GiB of address space, ``timeout`` seconds): a hang or
    a runaway allocation fails the test instead of the machine. Returns its stdout."""
    limit = "import resource; resource.setrlimit(resource.RLIMIT_AS, (2**30, 2**30))\n"
    done = subprocess.run(
        [sys.executable, "-c", limit + code],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout.strip()


REPORT = (
    "from videoglore.config import load_config\n"
    "try:\n    load_config({path!r}, {overrides!r})\n"
    "except Exception as exc:\n    print(type(exc).__name__, exc, sep=': ')\n"
)


@pytest.mark.parametrize(
    "text,where",
    [
        ("data:\n  root: {bomb}\n", "line 2, column 10"),
        ("train:\n  lr_mult: {{'*': {bomb}}}\n", "line 2, column 19"),
    ],
    ids=["data.root", "train.lr_mult"],
)
def test_an_alias_bomb_in_a_file_is_refused_at_once(tmp_path, text, where):
    """Formatting a 9-level alias tree for the type error never ended; anchors are refused."""
    path = tmp_path / "bomb.yaml"
    path.write_text(text.format(bomb=bomb()))
    said = run_isolated(REPORT.format(path=str(path), overrides=[]))
    assert said == (
        f"ConfigError: {path}: YAML anchor &l0 at {where}: anchors and aliases (&name, *name) "
        "are not allowed in configs; write the value out"
    )


def test_an_alias_bomb_on_the_command_line_is_refused_at_once():
    said = run_isolated(REPORT.format(path=None, overrides=[f"data.root={bomb()}"]))
    assert said.startswith("ConfigError: override 'data.root=[&l0 [lol, lol")
    assert said.endswith(
        "...: YAML anchor &l0 at line 1, column 2: anchors and aliases (&name, *name) are not "
        "allowed in configs; write the value out"
    )
    assert len(said) < 400


def test_a_huge_value_from_a_checkpoint_is_quoted_in_a_few_hundred_characters():
    """Shared references (a pickle can hold them like YAML aliases) and long strings: the
    message quotes them through ``bounded_repr``."""
    code = (
        "from videoglore.config import config_from_dict\n"
        "tree = ['lol'] * 9\n"
        "for _ in range(8):\n    tree = [tree] * 9\n"
        "for raw in ({'data': {'root': tree}}, {'train': {'lr_mult': {'*': tree}}},\n"
        "            {'data': {'reader': tree}}, {'data': {'train_scale': tree}}):\n"
        "    try:\n        config_from_dict(raw, 'ckpt.pt:config')\n"
        "    except Exception as exc:\n        print(type(exc).__name__, exc, sep=': ')\n"
    )
    lines = run_isolated(code).splitlines()
    assert len(lines) == 4 and all(len(line) < 400 for line in lines)
    assert lines[0].startswith(
        "ConfigError: ckpt.pt:config: data.root must be str, got list [[[[[[[[['lol', 'lol',"
    )
    assert lines[0].endswith("...")
    assert lines[1].startswith("ConfigError: ckpt.pt:config: train.lr_mult.* must be float")
    assert lines[2].startswith(
        "ConfigError: ckpt.pt:config: data.reader must be one of pyav, decord, got [[[[[[[[['lol',"
    )
    assert lines[3].startswith("ConfigError: ckpt.pt:config: data.train_scale[0] must be int")


def test_bounded_repr():
    from data_prep.errors import bounded_repr

    loop: list = [1]
    loop.append(loop)
    assert bounded_repr(loop) == repr(loop) == "[1, [...]]"
    assert bounded_repr({"a": (1,), "b": [2.5, None]}) == "{'a': (1,), 'b': [2.5, None]}"
    assert bounded_repr("x" * 1000, limit=20) == "'xxxxxxxxxxxxxxxx..."
    assert len(bounded_repr(list(range(10**6)))) == 200
    assert bounded_repr(10**5000, limit=30) == "<int of 16610 bits>"
    tree = ["lol"]
    for _ in range(30):  # 2**30 leaves
        tree = [tree, tree]
    assert bounded_repr(tree, 40) == ("[" * 31 + "'lol'], ['lol']")[:37] + "..."


def test_a_section_given_twice_fails_naming_both_lines(tmp_path):
    """The first ``train`` section was dropped silently (lr back to 0.04, device to auto)."""
    path = tmp_path / "twice.yaml"
    path.write_text("train: {lr: 0.01, device: cpu}\nmodel: {depth: 50}\ntrain: {epochs: 1}\n")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert str(err.value) == (f"{path}: train is given twice (lines 1 and 3); merge them into one")


def test_a_key_given_twice_fails_naming_both_lines(tmp_path):
    path = tmp_path / "twice.yaml"
    path.write_text("train:\n  lr: 0.1\n  epochs: 3\n  'lr': 0.2\nmodel: {depth: 50, depth: 101}\n")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert str(err.value) == f"{path}: train.lr is given twice (lines 2 and 4); keep one"
    path.write_text("train:\n  lr_mult: {'*conv*': 0.5, '*conv*': 1}\n")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert str(err.value) == (
        f"{path}: train.lr_mult.*conv* is given twice (line 2, columns 13 and 28); keep one"
    )


NUMBERS = [("1e-3", 1e-3), ("1E-3", 1e-3), (".5", 0.5), ("1_000", 1000.0), ("2e1", 20.0),
           ("1.5e+2", 150.0), ("+3", 3.0), ("0.25", 0.25)]  # fmt: skip


@pytest.mark.parametrize("text,value", NUMBERS, ids=[t for t, _ in NUMBERS])
def test_float_settings_take_every_way_of_writing_a_number(tmp_path, text, value):
    """YAML 1.1 reads 1e-3 (no dot, no exponent sign) as a string: ``must be float, got str``."""
    assert load_config(None, [f"train.lr={text}"]).train.lr == value
    path = tmp_path / "lr.yaml"
    path.write_text(f"train:\n  lr: {text}\n  lr_steps: [{text}]\n")
    cfg = load_config(path)
    assert cfg.train.lr == value and cfg.train.lr_steps == [value]
    assert type(cfg.train.lr) is float


@pytest.mark.parametrize("text", ["1_000", "1e3", "1E+3", "1000.0", "1.0e3"])
def test_int_settings_take_whole_numbers_written_any_way(tmp_path, text):
    cfg = load_config(None, [f"train.epochs={text}", f"data.train_scale=[256, {text}]"])
    assert cfg.train.epochs == 1000 and cfg.data.train_scale == [256, 1000]
    assert type(cfg.train.epochs) is int
    path = tmp_path / "epochs.yaml"
    path.write_text(f"train:\n  epochs: {text}\n")
    assert load_config(path).train.epochs == 1000


def test_int_settings_refuse_fractions():
    with pytest.raises(ConfigError, match=r"train\.epochs must be int, got float 1\.5$"):
        load_config(None, ["train.epochs=1.5"])
    with pytest.raises(ConfigError, match=r"train\.epochs must be int, got float 0\.001$"):
        load_config(None, ["train.epochs=1e-3"])


NON_FINITE = ["train.lr=.inf", "train.lr=inf", "train.lr=.nan", "train.lr=nan", "train.lr=-.inf",
              "train.lr_steps=[.nan]", "train.lr_steps=[10, .inf]", "train.warmup_epochs=.inf",
              "train.clip_grad=.inf", "train.momentum=.inf", "model.glore_nodes=.inf",
              "train.lr_mult={'*': .inf}", "train.epochs=.inf"]  # fmt: skip


@pytest.mark.parametrize("override", NON_FINITE)
def test_no_setting_takes_a_non_finite_number(override):
    """.inf passed every lower bound and NaN passed unbounded settings (train.lr_steps)."""
    with pytest.raises(ConfigError, match=r"must be (a finite number|int), got .*(inf|nan)"):
        load_config(None, [override])


def test_a_non_finite_number_in_a_file(tmp_path):
    path = tmp_path / "inf.yaml"
    path.write_text("train:\n  lr: .inf\n")
    with pytest.raises(ConfigError, match=rf"^{path}: train\.lr must be a finite number, got inf$"):
        load_config(path)


def test_a_yaml_syntax_error_is_one_line_with_line_and_column(tmp_path):
    """PyYAML's own message is 8 lines with a caret drawing; ours is one."""
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: [1, 2\n")
    with pytest.raises(ConfigError) as err:
        load_config(bad)
    assert str(err.value) == (
        f"{bad}: not valid YAML at line 2, column 1: expected ',' or ']', but got '<stream end>' "
        "(while parsing a flow sequence started at line 1)"
    )
    bad.write_text("train:\n\tepochs: 3\n")
    with pytest.raises(ConfigError) as err:
        load_config(bad)
    assert str(err.value) == (
        f"{bad}: not valid YAML at line 2, column 1: found character '\\t' that cannot start "
        "any token (while scanning for the next token)"
    )
    bad.write_text("data:\n  root: \x07\n")
    with pytest.raises(ConfigError) as err:
        load_config(bad)
    assert str(err.value) == (
        f"{bad}: not valid YAML at line 2: unacceptable character #x0007: special characters "
        "are not allowed"
    )


@pytest.mark.parametrize(
    "text,message",
    [
        ("train:\n  epochs: " + "1" * 5000 + "\n", "line 2, column 11: cannot read '1111"),
        ("data:\n  root: 2024-13-01\n", "line 2, column 9: cannot read '2024-13-01' (month must"),
        ("data:\n  root: !!python/object:os.system x\n", "line 2, column 9: could not determine"),
    ],
    ids=["5000 digits", "bad date", "python tag"],
)
def test_values_yaml_cannot_build_are_one_line(tmp_path, text, message):
    """int() of 5000 digits and a 13th month raised ValueError tracebacks from PyYAML."""
    path = tmp_path / "value.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    text = str(err.value)
    assert text.startswith(f"{path}: not valid YAML at {message}")
    assert "\n" not in text and len(text) < 400


# Upper bounds on sizes: each row a value past the bound and the message.
TOO_BIG = [
    ("model.width=100000", "model.width must be <= 4, got 100000.0"),
    ("model.num_classes=1000000", "model.num_classes must be <= 100000, got 1000000"),
    ("model.glore_nodes=100", "model.glore_nodes must be <= 16, got 100.0"),
    ("data.num_frames=100000", "data.num_frames must be <= 1024, got 100000"),
    ("data.frame_interval=100000", "data.frame_interval must be <= 1000, got 100000"),
    ("data.crop_size=100000", "data.crop_size must be <= 2048, got 100000"),
    ("data.train_scale=[256, 100000]", "data.train_scale[1] must be <= 4096, got 100000"),
    ("data.test_scale=100000", "data.test_scale must be <= 4096, got 100000"),
    ("data.num_workers=100000", "data.num_workers must be <= 256, got 100000"),
    ("data.prefetch_factor=1000", "data.prefetch_factor must be <= 64, got 1000"),
    ("train.batch_size=100000", "train.batch_size must be <= 4096, got 100000"),
    ("train.lr_batch=10000000", "train.lr_batch must be <= 1048576, got 10000000"),
    ("train.precise_bn=10000000", "train.precise_bn must be <= 100000, got 10000000"),
    ("test.batch_size=100000", "test.batch_size must be <= 1024, got 100000"),
    ("test.num_clips=100000", "test.num_clips must be <= 1000, got 100000"),
    ("test.max_views_per_forward=1000000", "test.max_views_per_forward must be <= 10000"),
    ("runtime.threads=100000", "runtime.threads must be <= 1024, got 100000"),
]


@pytest.mark.parametrize("override,message", TOO_BIG, ids=[o for o, _ in TOO_BIG])
def test_sizes_have_upper_bounds(override, message):
    """model.width=100000 went on to an allocator traceback (or the OOM killer)."""
    with pytest.raises(ConfigError) as err:
        load_config(None, [override])
    assert str(err.value).startswith(f"command line: {message}")


def test_the_largest_sizes_load():
    cfg = load_config(
        None,
        ["model.width=4", "model.num_classes=100000", "model.glore_nodes=16",
         "data.num_frames=1024", "data.frame_interval=1000", "data.num_workers=256",
         "train.batch_size=4096", "test.batch_size=1024", "test.num_clips=1", "test.num_crops=1"],
    )  # fmt: skip
    assert (cfg.model.width, cfg.data.num_frames, cfg.train.batch_size) == (4.0, 1024, 4096)
    big = ["data.train_scale=[2048, 4096]", "data.crop_size=2048", "data.test_scale=4096"]
    big += ["test.num_clips=1", "test.num_crops=1"]
    assert load_config(None, big).data.crop_size == 2048
