"""The daily loop of a user watching a run: the start summary, ``runtime.threads`` in train and
test, and the progress bars of training and validation."""

import pytest
import torch

from tests.helpers import tiny_config
from videoglore.data import build_loader
from videoglore.engine import run as run_module
from videoglore.engine import scoring, tester
from videoglore.engine import trainer as trainer_module
from videoglore.engine.forward import FastPath
from videoglore.engine.trainer import train
from videoglore.errors import ConfigError
from videoglore.models import build_model
from videoglore.models.flops import module_flops
from videoglore.threads import torch_threads


def _summary(caplog) -> list[str]:
    [text] = [r.getMessage() for r in caplog.records if r.getMessage().startswith("training\n")]
    return text.splitlines()[1:]


def test_training_starts_with_a_one_screen_summary(tiny_videos, tmp_path, caplog):
    caplog.set_level("INFO", logger="videoglore")
    cfg = tiny_config(tiny_videos, tmp_path / "run", train={"epochs": 1})
    train(cfg)
    model = build_model(cfg.model)
    params = sum(p.numel() for p in model.parameters()) / 1e6
    gflops = module_flops(model, torch.zeros(1, 3, 8, 32, 32))[""] / 1e9
    assert _summary(caplog) == [
        f"run      {tmp_path / 'run'}: new run; 1 epochs of 4 iterations",
        f"model    r50 (width 0.0625, 2 classes): {params:.2f} M parameters, {gflops:.3g} GFLOPs "
        "per 8x32x32 clip",
        "data     8 training videos, 4 validation videos; 8 frames every 1, 0 loader workers per "
        "rank (1 thread each), reader pyav",
        "batch    2 clips x 1 ranks = 2 per step; lr 0.02 (train.lr 0.02 at 2 clips)",
        "device   cpu x 1: float32, channels_last_3d off, torch.compile off; 1 torch threads "
        "(runtime.threads=0)",
    ]
    caplog.clear()
    train(tiny_config(tiny_videos, tmp_path / "run", train={"epochs": 2}))
    last = tmp_path / "run" / "checkpoints" / "epoch_0001.pt"
    assert _summary(caplog)[0] == (
        f"run      {tmp_path / 'run'}: resumed at iteration 4 from {last}; 2 epochs of 4 iterations"
    )


def test_a_gflops_count_that_fails_is_said_in_the_summary(monkeypatch):
    def broken(model, clip):
        raise RuntimeError("tracing failed\nat line 3")

    monkeypatch.setattr(run_module, "module_flops", broken)
    monkeypatch.setattr(run_module, "_GFLOPS", {})
    model = torch.nn.Conv3d(3, 4, 1)
    text = run_module.model_gflops(model, (8, 32, 32), torch.device("cpu"))
    assert text == "GFLOPs not counted (tracing failed)"


def test_runtime_threads_hold_in_train_and_test_and_are_put_back(
    tiny_videos, tmp_path, monkeypatch, caplog
):
    caplog.set_level("INFO", logger="videoglore")
    seen = {"train": set(), "test": set()}
    real_step, real_score = trainer_module.train_step, tester.score_videos

    def step(*args, **kwargs):
        seen["train"].add(torch.get_num_threads())
        return real_step(*args, **kwargs)

    def score(*args, **kwargs):
        seen["test"].add(torch.get_num_threads())
        return real_score(*args, **kwargs)

    monkeypatch.setattr(trainer_module, "train_step", step)
    monkeypatch.setattr(tester, "score_videos", score)
    one = {"threads": 1}  # the caller has 2 (more would only slow the shared test machine)
    with torch_threads(2):
        train(tiny_config(tiny_videos, tmp_path / "run", train={"epochs": 1}, runtime=one))
        assert seen["train"] == {1} and torch.get_num_threads() == 2
        assert _summary(caplog)[-1].endswith("; 1 torch threads (runtime.threads=1)")
        tester.test(tiny_config(tiny_videos, tmp_path / "run", runtime=one))
        assert seen["test"] == {1} and torch.get_num_threads() == 2
        # also when the run stops with an error
        wrong = tiny_config(tiny_videos, tmp_path / "b", model={"num_classes": 3}, runtime=one)
        with pytest.raises(ConfigError, match="model.num_classes=3"):
            train(wrong)
        assert torch.get_num_threads() == 2


class _Bar:
    """A stand-in for tqdm that records what a bar was told."""

    made: list["_Bar"] = []

    def __init__(self, total, initial, disable, desc, unit, leave, **kwargs):
        self.total, self.done, self.disable = total, initial, disable
        self.desc, self.unit, self.leave, self.closed = desc, unit, leave, False
        _Bar.made.append(self)

    def update(self, n=1):
        self.done += n

    def set_postfix(self, **kwargs):
        pass

    def close(self):
        self.closed = True

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def test_training_and_validation_show_progress_bars(tiny_videos, tmp_path, monkeypatch):
    import tqdm

    monkeypatch.setattr(tqdm, "tqdm", _Bar)
    _Bar.made = []
    train(tiny_config(tiny_videos, tmp_path / "run", train={"epochs": 2}))
    bars = [(b.desc, b.unit, b.total, b.done, b.disable, b.leave, b.closed) for b in _Bar.made]
    assert bars == [
        ("epoch 1/2", "it", 4, 4, False, False, True),
        ("validation", "video", 4, 4, False, False, True),
        ("epoch 2/2", "it", 4, 4, False, False, True),
        ("validation", "video", 4, 4, False, False, True),
    ]


def test_the_test_bar_counts_this_ranks_videos(tiny_videos, tmp_path, monkeypatch):
    import tqdm

    monkeypatch.setattr(tqdm, "tqdm", _Bar)
    _Bar.made = []
    cfg = tiny_config(tiny_videos, tmp_path / "run")
    loader = build_loader(cfg, "test", distributed=False, batch_size=3)  # batches of 3 and 1
    model = build_model(cfg.model)
    fp32 = FastPath(None, False, False)
    scoring.score_videos(model, loader, cfg, torch.device("cpu"), fp32, progress=True)
    scoring.score_videos(model, loader, cfg, torch.device("cpu"), fp32)  # ranks other than 0
    bars = [(b.desc, b.unit, b.total, b.done, b.disable, b.leave) for b in _Bar.made]
    assert bars[0] == ("test", "video", 4, 4, False, True)  # kept on screen when done
    assert bars[1][4] is True  # disabled
