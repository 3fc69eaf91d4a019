"""export: ONNX and TorchScript files reproduce the eager network's logits (R50+GloRe and
MF-Net+GloRe at tiny widths), carry the classes, clip, normalisation and test protocol, and
``predict --model FILE.onnx`` gives the torch path's views and scores without importing torch."""

import contextlib
import json
import os
import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from torch import nn

from data_prep.codec import probe_video, write_video
from data_prep.lists import VideoRecord
from tests.helpers import REPO, tiny_config
from videoglore.cli import main
from videoglore.config import config_to_dict, save_config
from videoglore.data import build_dataset, normalize
from videoglore.data.transforms import NORMALIZATIONS
from videoglore.engine import export, inference
from videoglore.engine.checkpoint import save_checkpoint
from videoglore.engine.onnx_predict import OnnxVideoModel, normalize_views, predict_onnx
from videoglore.errors import CheckpointError, ConfigError
from videoglore.models import GloRe, build_model

pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:FutureWarning")

CLASSES = ["walking the dog", "café au lait"]  # non-ASCII: the metadata is JSON text
TOLERANCE = 1e-4  # max |exported - eager| relative to max |eager logit|

# Each case exercises another test protocol (3 or 5 crops of a 36 px short side, either sampler).
CASES = {
    "r50_glore": {
        "model": {"arch": "resnet", "glore": True, "width": 0.0625},
        "data": {"test_scale": 36},
        "test": {"num_clips": 2, "num_crops": 3, "sampling": "uniform"},
    },
    "mfnet_glore": {
        "model": {"arch": "mfnet", "glore": True, "width": 0.0625},
        "data": {"test_scale": 36, "frame_interval": 2},
        "test": {"num_clips": 3, "num_crops": 5, "sampling": "released"},
    },
}


def like_trained(model: nn.Module, clip_shape: tuple[int, ...]) -> nn.Module:
    """GloRe units that are not the identity (a fresh unit's output BN weight is 0, so its
    matmuls would not reach the logits) and BatchNorm statistics of clips of random pixels (the
    kind export checks with), so that the eval-mode outputs are finite and depend on every
    unit."""
    for module in model.modules():
        if isinstance(module, GloRe):
            nn.init.uniform_(module.blocker.weight, 0.5, 1.0)
        if isinstance(module, nn.BatchNorm3d):
            module.reset_running_stats()
            module.momentum = None  # cumulative average
    model.train()
    with torch.no_grad():
        for _ in range(2):
            model(normalize(torch.randint(0, 256, (4, *clip_shape), dtype=torch.uint8)))
    return model.eval()


def clip_shape(cfg) -> tuple[int, int, int, int]:
    return (3, cfg.data.num_frames, cfg.data.crop_size, cfg.data.crop_size)


@contextlib.contextmanager
def cudnn_conv_precision(value: str):
    """cuDNN conv's TF32 setting through torch's new API (torch >= 2.9), restored afterwards.
    torch.export raised on it (a legacy TF32 flag check) until export set it aside."""
    conv = torch.backends.cudnn.conv
    before = conv.fp32_precision
    conv.fp32_precision = value
    try:
        yield
    finally:
        conv.fp32_precision = before


@pytest.fixture(scope="module", params=list(CASES))
def exported(request, tiny_videos, tmp_path_factory):
    """A checkpoint of a like-trained tiny network, exported once to ONNX and TorchScript."""
    name = request.param
    tmp = tmp_path_factory.mktemp(name)
    cfg = tiny_config(tiny_videos, tmp / "run", **CASES[name])
    torch.manual_seed(0)
    model = like_trained(build_model(cfg.model), clip_shape(cfg))
    state = {"model": model.state_dict(), "config": config_to_dict(cfg), "classes": CLASSES}
    checkpoint = str(save_checkpoint(state, tmp / "model.pt"))
    onnx_path, ts_path = tmp / "model.onnx", tmp / "model.ts"
    with cudnn_conv_precision("ieee"):  # as benchmarks/speed leaves it in the test process
        assert main(["export", checkpoint, "--out", str(onnx_path)]) == 0
        assert torch.backends.cudnn.conv.fp32_precision == "ieee"  # export restored it
    assert main(["export", checkpoint, "--format", "torchscript", "--out", str(ts_path)]) == 0
    return SimpleNamespace(
        name=name, cfg=cfg, model=model, checkpoint=checkpoint, onnx=onnx_path, ts=ts_path
    )


@pytest.fixture(scope="module")
def wide_video(tmp_path_factory):
    """A 44×32 video of 20 frames: 3 and 5 crops of its rescaled frame are all different."""
    rng = np.random.default_rng(1)
    frames = np.zeros((20, 32, 44, 3), np.uint8)
    frames[:] = np.linspace(0, 200, 44, dtype=np.uint8)[None, None, :, None]
    for t in range(20):
        top, left = int(rng.integers(0, 20)), int(rng.integers(0, 32))
        frames[t, top : top + 12, left : left + 12] = rng.integers(0, 256, 3)
    path = tmp_path_factory.mktemp("wide") / "wide.mp4"
    write_video(path, frames, fps=25)
    return str(path)


def test_exported_logits_match_the_eager_model(exported):
    cfg, model = exported.cfg, exported.model
    session = ort.InferenceSession(str(exported.onnx), providers=["CPUExecutionProvider"])
    assert isinstance(session.get_inputs()[0].shape[0], str)  # the batch axis is symbolic
    scripted = torch.jit.load(str(exported.ts))
    generator = torch.Generator().manual_seed(5)
    for batch in (1, 3, 4):  # the export traced 2 clips: other batch sizes must work
        pixels = torch.randint(0, 256, (batch, *clip_shape(cfg)), generator=generator)
        clips = normalize(pixels.to(torch.uint8))
        with torch.no_grad():
            eager = model(clips)
            ts_logits = scripted(clips)
        onnx_logits = torch.from_numpy(session.run(["logits"], {"clips": clips.numpy()})[0])
        scale = float(eager.abs().max())
        assert onnx_logits.shape == ts_logits.shape == (batch, len(CLASSES))
        assert float((onnx_logits - eager).abs().max()) <= TOLERANCE * scale
        assert float((ts_logits - eager).abs().max()) <= TOLERANCE * scale
    # the GloRe units shape the logits, so their matmuls are part of what was compared
    plain = build_model(cfg.model)
    plain.load_state_dict(model.state_dict())
    for module in plain.modules():
        if isinstance(module, GloRe):
            module.zero_blocker()
    with torch.no_grad():
        assert float((plain.eval()(clips) - eager).abs().max()) > 0.05 * scale


def test_metadata_carries_classes_clip_normalisation_and_protocol(exported):
    cfg = exported.cfg
    mean, std = NORMALIZATIONS["official"]
    expected = {
        "format_version": 1,
        "model": exported.name,
        "input": {"name": "clips", "shape": ["N", 3, "T", "S", "S"], "dtype": "float32"},
        "output": {"name": "logits", "shape": ["N", "classes"], "dtype": "float32"},
        "classes": CLASSES,
        "clip": {"num_frames": 8, "frame_interval": cfg.data.frame_interval, "crop_size": 32},
        "normalization": {
            "name": "official",
            "mean": list(mean),
            "std": list(std),
            "formula": "(x_uint8 - 255 * mean) / (255 * std), per RGB channel",
        },
        "protocol": {"test_scale": 36, **CASES[exported.name]["test"]},
    }
    proto = onnx.load(str(exported.onnx))
    props = {entry.key: entry.value for entry in proto.metadata_props}
    assert json.loads(props["videoglore"]) == expected
    dims = proto.graph.input[0].type.tensor_type.shape.dim
    assert dims[0].dim_param and [d.dim_value for d in dims[1:]] == [3, 8, 32, 32]
    # TorchScript: the same JSON beside the file and inside the archive
    assert json.loads((exported.ts.parent / "model.ts.json").read_text()) == expected
    assert export.read_torchscript_info(exported.ts).to_dict() == expected


def test_onnx_views_and_scores_match_the_torch_path(exported, wide_video):
    net = OnnxVideoModel(exported.onnx, device="cpu")
    info = probe_video(wide_video)
    record = VideoRecord(wide_video, 0, "", info.frame_count, info.fps, info.width, info.height)
    torch_views = build_dataset(exported.cfg, "test", records=[record]).eval_views(record)
    views = net.views(wide_video)  # uint8 (K*C, 3, T, S, S), numpy only
    test = CASES[exported.name]["test"]
    assert views.shape == (test["num_clips"] * test["num_crops"], 3, 8, 32, 32)
    assert len({view.tobytes() for view in views}) == len(views)  # every clip × crop differs
    np.testing.assert_array_equal(views, torch_views.numpy())  # same frames, resize and crops
    np.testing.assert_array_equal(
        normalize_views(views, net.info.mean, net.info.std), normalize(torch_views).numpy()
    )
    (ours,) = predict_onnx([wide_video], exported.onnx, topk=2, device="cpu")
    (theirs,) = inference.predict([wide_video], exported.checkpoint, topk=2, device="cpu")
    assert ours.error == theirs.error == ""
    assert [name for name, _ in ours.labels] == [name for name, _ in theirs.labels]
    np.testing.assert_allclose(
        [p for _, p in ours.labels], [p for _, p in theirs.labels], rtol=0, atol=1e-5
    )


# Runs the CLI and reports, at the very end, which torch modules the process imported.
NO_TORCH = """
import json, sys
from videoglore.cli import main
code = main(sys.argv[1:])
print(json.dumps({"code": code, "torch": [m for m in sys.modules if m.split(".")[0] == "torch"]}))
"""


def test_predict_with_an_onnx_model_never_imports_torch(exported, tiny_videos, tmp_path):
    video = str(tiny_videos["root"] / "videos" / "val" / "class_1" / "000.mp4")
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"not a video" * 10)
    out = tmp_path / "labels.json"
    argv = ["predict", video, str(broken), "--model", str(exported.onnx), "--out", str(out)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-c", NO_TORCH, *argv], cwd=REPO, env=env, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout.splitlines()[-1]) == {"code": 2, "torch": []}
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and errors[0].startswith(f"error: {broken}: cannot open or decode")
    scored, failed = json.loads(out.read_text())
    assert failed["video"] == str(broken) and failed["labels"] == []
    (theirs,) = inference.predict([video], exported.checkpoint, topk=5, device="cpu")
    assert scored["video"] == video and scored["error"] == ""
    assert [label["label"] for label in scored["labels"]] == [name for name, _ in theirs.labels]
    np.testing.assert_allclose(
        [label["probability"] for label in scored["labels"]],
        [p for _, p in theirs.labels],
        rtol=0,
        atol=1e-5,
    )


@pytest.fixture(scope="module")
def plain_checkpoint(tiny_videos, tmp_path_factory):
    """The tiny R50 of tests/helpers.py (no GloRe), fresh weights."""
    tmp = tmp_path_factory.mktemp("plain")
    cfg = tiny_config(tiny_videos, tmp / "run")
    torch.manual_seed(0)
    state = {"model": build_model(cfg.model).state_dict(), "config": config_to_dict(cfg)}
    return str(save_checkpoint(state, tmp / "model.pt"))


def test_an_export_that_does_not_reproduce_the_model_writes_nothing(
    plain_checkpoint, tmp_path, monkeypatch
):
    real = export._torchscript_bytes

    def slightly_off(model, example, info):
        data, loaded = real(model, example, info)
        return data, lambda clips: loaded(clips) + 0.01  # ~half the logit scale of this net

    monkeypatch.setattr(export, "_torchscript_bytes", slightly_off)
    out = tmp_path / "model.ts"
    with pytest.raises(CheckpointError, match=r"torchscript export gives logits 0.01 away .*"):
        export.export_model(plain_checkpoint, "torchscript", out)
    assert list(tmp_path.iterdir()) == []  # neither the file, its sidecar nor a temp file


def test_model_files_predict_cannot_use_are_one_line_errors(
    exported, tiny_videos, tmp_path, capsys
):
    video = str(tiny_videos["root"] / "videos" / "val" / "class_0" / "000.mp4")
    missing = tmp_path / "missing.onnx"
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"\x08\x07 not protobuf at all" * 20)
    proto = onnx.load(str(exported.onnx))
    (entry,) = proto.metadata_props
    meta = json.loads(entry.value)
    edited = tmp_path / "edited.onnx"  # metadata asking for 4 crops, which no view builder makes
    entry.value = json.dumps({**meta, "protocol": {**meta["protocol"], "num_crops": 4}})
    onnx.save(proto, str(edited))
    foreign = tmp_path / "foreign.onnx"  # an ONNX model exported by someone else
    del proto.metadata_props[:]
    onnx.save(proto, str(foreign))
    expected = {
        missing: f"error: {missing}: no such model file",
        garbage: f"error: {garbage}: cannot load as an ONNX model (",
        foreign: f"error: {foreign}: an ONNX model without videoglore metadata",
        edited: f"error: {edited}: its videoglore metadata cannot be used (num_crops 4 is not "
        "one of (1, 3, 5))",
    }
    for path, message in expected.items():
        assert main(["predict", video, "--model", str(path)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith(message), err


def test_export_command_prints_what_it_wrote_and_the_parity(
    plain_checkpoint, tmp_path, capsys, monkeypatch
):
    blocked = tmp_path / "a_file"
    blocked.write_text("")
    with monkeypatch.context() as m:
        m.setattr(export, "load_model_from_checkpoint", None)  # never reached
        argv = ["export", plain_checkpoint, "--format", "torchscript"]
        assert main([*argv, "--out", str(blocked / "model.ts")]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: cannot write to {blocked}: ")
    blocked.unlink()
    out = tmp_path / "model.ts"
    assert main(["export", plain_checkpoint, "--format", "torchscript", "--out", str(out)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"wrote {out} and {out}.json"
    assert lines[1].startswith("logits vs the checkpoint's model on 1 random clip(s): max |diff| ")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.ts", "model.ts.json"]


def test_a_weights_only_file_exports_with_the_config_that_describes_its_net(
    tiny_videos, tmp_path, capsys
):
    """A released .pth or a bare state dict holds no config: ``-c`` describes the net, as for
    ``predict``, and overrides change the stored protocol."""
    cfg = tiny_config(tiny_videos, tmp_path / "run")
    torch.manual_seed(0)
    model = build_model(cfg.model).eval()
    bare = save_checkpoint(model.state_dict(), tmp_path / "bare.pt")
    out = tmp_path / "bare.ts"
    assert main(["export", str(bare), "--format", "torchscript", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "holds weights only" in err[0] and "pass -c CONFIG" in err[0]
    config = tmp_path / "net.yaml"
    save_config(cfg, config)
    command = ["export", str(bare), "-c", str(config), "test.num_clips=3", "--out", str(out)]
    assert main([*command, "--format", "torchscript"]) == 0
    info = export.read_torchscript_info(out)
    assert (info.model, info.num_clips, info.num_crops) == ("r50", 3, cfg.test.num_crops)
    assert info.classes == ["class_0", "class_1"]  # classes.json beside the config's lists
    clips = export.example_clips(info, 2, seed=3)
    with torch.no_grad():
        torch.testing.assert_close(torch.jit.load(str(out))(clips), model(clips))


def test_missing_onnx_packages_are_named_before_any_work(
    exported, tiny_videos, tmp_path, monkeypatch
):
    video = str(tiny_videos["root"] / "videos" / "val" / "class_0" / "000.mp4")
    monkeypatch.setitem(sys.modules, "onnxscript", None)  # `import onnxscript` now fails
    with pytest.raises(ConfigError, match=r"needs onnxscript: pip install 'videoglore\[export\]'"):
        export.export_model(tmp_path / "not-read.pt", "onnx", tmp_path / "model.onnx")
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    with pytest.raises(ConfigError, match=r"--model needs onnxruntime: pip install"):
        list(predict_onnx([video], exported.onnx))
    assert list(tmp_path.iterdir()) == []
