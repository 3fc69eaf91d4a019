"""Released weights by name (``videoglore/zoo.py``): ``zoo:NAME`` → a cached file, downloaded
once (resumable, atomic) and then read like any weights file.

Every download here comes from an HTTP server on 127.0.0.1 that serves generated files (with
HTTP Range, which ``SimpleHTTPRequestHandler`` lacks); conftest.py points every other test at a
closed local port, so no test contacts a public host.
"""

from __future__ import annotations

import dataclasses
import io
import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import torch
import yaml

from tests.helpers import REPO, tiny_config_dict
from videoglore import zoo
from videoglore.cli import main
from videoglore.config import ModelConfig, load_config
from videoglore.errors import CheckpointError, ConfigError, OutputError
from videoglore.models import build_model, load_model, load_weights
from videoglore.models.weights import read_torch_file

TINY = 0.0625
R50_2D = "resnet50-lite.pth"
R50_3D = "resnet50-lite_3d_8x8_w-glore_2-3_ep-0000.pth"
MFNET_3D = "MFNet3D_Kinetics-400_72.8.pth"


def _saved(obj) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


def _lite_2d(seed: int = 0) -> dict:
    """A 2D "lite" ImageNet state dict (resnet50-lite.pth layout) of a tiny R50: the 3D net's
    keys without GloRe units, kernels summed over time, a 1000-class classifier."""
    torch.manual_seed(seed)
    net = build_model("r50", num_classes=1000, width=TINY)
    return {k: v.sum(2) if v.dim() == 5 else v for k, v in net.state_dict().items()}


def _released_3d(name: str, seed: int = 0) -> tuple[dict, bytes]:
    """(state dict, bytes of the released file format) of a tiny 2-class net ``name``."""
    torch.manual_seed(seed)
    state = build_model(name, num_classes=2, width=TINY).state_dict()
    file = {"epoch": 0, "state_dict": {f"module.{k}": v for k, v in state.items()}}
    return state, _saved(file)


class _Handler(BaseHTTPRequestHandler):
    """GET of the server's files, with ``Range: bytes=N-`` (206 / 416) unless it ignores it;
    ``cut_after`` sends that many bytes of the next body and drops the connection."""

    def do_GET(self):  # noqa: N802 (the name http.server calls)
        server = self.server
        server.requests.append((self.path, self.headers.get("Range")))
        time.sleep(server.delay)
        data = server.files.get(self.path.lstrip("/"))
        if data is None:
            self.send_error(404)
            return
        start = 0
        wanted = self.headers.get("Range", "")
        if wanted.startswith("bytes=") and not server.ignore_range:
            start = int(wanted.removeprefix("bytes=").removesuffix("-"))
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        body = data[start:]
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if server.cut_after is not None:
            body, server.cut_after = body[: server.cut_after], None
            self.close_connection = True
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def server(tmp_path, monkeypatch):
    """A file server on 127.0.0.1 as the zoo mirror, and an empty cache under tmp_path."""
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.files, httpd.requests = {}, []
    httpd.cut_after, httpd.ignore_range, httpd.delay = None, False, 0.0
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv(zoo.URL_ENV, f"http://127.0.0.1:{httpd.server_address[1]}/")
    monkeypatch.setenv(zoo.CACHE_ENV, str(tmp_path / "cache"))
    monkeypatch.setenv("no_proxy", "127.0.0.1")
    yield httpd
    httpd.shutdown()
    httpd.server_close()


def _gets(server) -> list[str]:
    return [path for path, _ in server.requests]


def test_no_test_reaches_a_public_host():
    """conftest.py: a closed local port is the mirror of every test that sets no other."""
    import os

    assert os.environ[zoo.URL_ENV] == "http://127.0.0.1:9"
    assert zoo.download_url("resnet50-lite") == "http://127.0.0.1:9/resnet50-lite.pth"


def test_the_released_urls():
    """The URLs of facebookresearch/GloRe's README; the MF-Net files have none (Google Drive)."""
    base = "https://dl.fbaipublicfiles.com/glore/kinetics/"
    assert {n: e.url for n, e in zoo.ZOO.items()} == {
        "resnet50-lite": base + "pretrained/resnet50-lite.pth",
        "resnet101-lite": base + "pretrained/resnet101-lite.pth",
        "r50_glore_k400": base + R50_3D,
        "r101_glore_k400": base + "resnet101-lite_3d_8x8_w-glore_2-3_ep-0000.pth",
        "mfnet_k400": "",
        "mfnet2d_imagenet": "",
    }
    assert all(zoo.lookup(n).url.rsplit("/", 1)[-1] == e.file for n, e in zoo.ZOO.items() if e.url)


def test_pretrained_by_name_is_downloaded_once_and_inflated(server, tmp_path):
    server.files[R50_2D] = data = _saved(_lite_2d())
    cfg = ModelConfig(glore=False, num_classes=2, width=TINY, pretrained="zoo:resnet50-lite")
    model, _ = load_model(cfg)  # inflates model.pretrained
    cached = tmp_path / "cache" / "weights" / R50_2D
    assert cached.read_bytes() == data and _gets(server) == ["/" + R50_2D]
    local = tmp_path / "local.pth"
    local.write_bytes(data)
    by_path, _ = load_model(dataclasses.replace(cfg, pretrained=str(local)))
    for key, value in by_path.state_dict().items():
        if not key.startswith("classifier"):  # the classifier (other classes) keeps its init
            torch.testing.assert_close(model.state_dict()[key], value, msg=key)
    load_model(cfg)
    assert len(server.requests) == 1  # the second build reads the cache
    assert sorted(p.name for p in cached.parent.iterdir()) == [f".{R50_2D}.lock", R50_2D]


def test_weights_by_name_load_with_keys_and_shapes_checked(server):
    state, server.files[R50_3D] = _released_3d("r50_glore")
    model = build_model("r50_glore", num_classes=2, width=TINY)
    assert load_weights(model, "zoo:r50_glore_k400").format == "official"
    for key, value in state.items():
        torch.testing.assert_close(model.state_dict()[key], value, msg=key)
    with pytest.raises(CheckpointError, match=r"^zoo:r50_glore_k400 \(official format\) does not"):
        load_weights(build_model("r50", num_classes=2, width=TINY), "zoo:r50_glore_k400")
    assert isinstance(read_torch_file("zoo:r50_glore_k400"), dict)
    assert len(server.requests) == 1


def test_the_test_command_takes_a_zoo_checkpoint(server, tiny_videos, tmp_path, capsys):
    """``test --checkpoint zoo:r50_glore_k400``: the released file, read like a local one."""
    _, server.files[R50_3D] = _released_3d("r50_glore")
    raw = tiny_config_dict(tiny_videos, tmp_path / "run")
    raw["model"]["glore"] = True
    path = tmp_path / "test.yaml"
    path.write_text(yaml.safe_dump(raw))
    assert main(["test", "-c", str(path), "--checkpoint", "zoo:r50_glore_k400"]) == 0
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["checkpoint"] == "zoo:r50_glore_k400" and metrics["num_videos"] == 4
    assert "video top-1" in capsys.readouterr().out


def test_an_interrupted_download_resumes_where_it_stopped(server, tmp_path):
    server.files[R50_2D] = data = _saved(_lite_2d())
    server.cut_after = 1000
    cached = tmp_path / "cache" / "weights" / R50_2D
    part = cached.with_name(f".{R50_2D}.part")
    url = f"{zoo.download_url('resnet50-lite')}"
    with pytest.raises(CheckpointError) as err:
        zoo.fetch("resnet50-lite")
    assert str(err.value) == (
        f"zoo:resnet50-lite: cannot download {url} (the connection closed after 1000 of "
        f"{len(data)} bytes); the 1000 bytes received are kept, rerun to resume; without "
        f"network, download it elsewhere and put it at {cached}"
    )
    assert not cached.exists() and part.read_bytes() == data[:1000]  # never a torn file in place
    assert zoo.fetch("resnet50-lite") == cached
    assert cached.read_bytes() == data and not part.exists()
    assert server.requests == [("/" + R50_2D, None), ("/" + R50_2D, "bytes=1000-")]


def test_a_server_without_range_sends_the_whole_file_again(server, tmp_path):
    server.files[R50_2D] = data = _saved(_lite_2d())
    server.ignore_range = True
    part = tmp_path / "cache" / "weights" / f".{R50_2D}.part"
    part.parent.mkdir(parents=True)
    part.write_bytes(b"x" * 500)
    assert zoo.fetch("resnet50-lite").read_bytes() == data
    assert server.requests == [("/" + R50_2D, "bytes=500-")]


def test_a_partial_file_that_is_complete_is_moved_into_place(server, tmp_path):
    """Killed between the last byte and the rename: the server answers 416 with the size."""
    server.files[R50_2D] = data = _saved(_lite_2d())
    part = tmp_path / "cache" / "weights" / f".{R50_2D}.part"
    part.parent.mkdir(parents=True)
    part.write_bytes(data)
    assert zoo.fetch("resnet50-lite").read_bytes() == data
    assert server.requests == [("/" + R50_2D, f"bytes={len(data)}-")]


def test_processes_fetching_the_same_name_download_it_once(server):
    server.files[R50_2D] = _saved(_lite_2d())
    server.delay = 0.3  # both ask while the first download runs
    paths = []
    threads = [
        threading.Thread(target=lambda: paths.append(zoo.fetch("resnet50-lite"))) for _ in "ab"
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(paths) == 2 and paths[0] == paths[1] and len(server.requests) == 1


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_without_network_one_line_names_the_url_and_where_to_put_the_file(
    server, tmp_path, monkeypatch, capsys
):
    port = _closed_port()
    monkeypatch.setenv(zoo.URL_ENV, f"http://127.0.0.1:{port}")
    cached = tmp_path / "cache" / "weights" / R50_2D
    expected = (
        f"zoo:resnet50-lite: cannot download http://127.0.0.1:{port}/{R50_2D} (Connection "
        f"refused); without network, download it elsewhere and put it at {cached}"
    )
    with pytest.raises(CheckpointError) as err:
        load_model(ModelConfig(glore=False, width=TINY, pretrained="zoo:resnet50-lite"))
    assert str(err.value) == expected
    assert main(["download", "resnet50-lite"]) == 2
    assert capsys.readouterr().err == f"error: {expected}\n"
    assert not cached.exists()


def test_a_missing_file_on_the_server_is_one_line(server):
    with pytest.raises(CheckpointError, match=rf"cannot download .*/{R50_3D} \(HTTP 404 Not Found"):
        zoo.fetch("r50_glore_k400")


def test_files_without_a_stable_url_are_put_in_the_cache_by_hand(server, monkeypatch):
    """The MF-Net files are Google Drive links in cypw/PyTorch-MFNet's README."""
    monkeypatch.delenv(zoo.URL_ENV)
    cached = zoo.cached_path("mfnet_k400")
    with pytest.raises(CheckpointError) as err:
        zoo.fetch("mfnet_k400")
    assert str(err.value) == (
        f"zoo:mfnet_k400: {MFNET_3D} is published only as a Google Drive link (https://goo.gl/"
        "QdE85T, cypw/PyTorch-MFNet README (Google Drive)), which cannot be downloaded "
        f"automatically; download it by hand and put it at {cached}, or set "
        "VIDEOGLORE_ZOO_URL to a mirror that has it"
    )
    state, data = _released_3d("mfnet")
    cached.parent.mkdir(parents=True)
    cached.write_bytes(data)
    model = build_model(ModelConfig(arch="mfnet", glore=False, num_classes=2, width=TINY))
    load_weights(model, "zoo:mfnet_k400")
    torch.testing.assert_close(model.state_dict()["classifier.weight"], state["classifier.weight"])
    assert server.requests == []


def test_a_mirror_serves_every_name(server):
    _, server.files[MFNET_3D] = _released_3d("mfnet")
    assert zoo.fetch("zoo:mfnet_k400").name == MFNET_3D
    assert _gets(server) == ["/" + MFNET_3D]


def test_a_cache_that_cannot_be_written_is_an_output_error(server, tmp_path, monkeypatch):
    server.files[R50_2D] = _saved(_lite_2d())
    blocker = tmp_path / "blocker"
    blocker.write_text("a file where the cache folder goes\n")
    monkeypatch.setenv(zoo.CACHE_ENV, str(blocker))
    with pytest.raises(OutputError, match=rf"^cannot write to {blocker}.*\(ENOTDIR\)"):
        zoo.fetch("resnet50-lite")
    assert server.requests == []


ZOO_CONFIG_ERRORS = [
    (["model.pretrained=zoo:resnet50-lit"], "model.pretrained zoo:resnet50-lit is not a zoo "
     "name; did you mean zoo:resnet50-lite? (zoo names: resnet50-lite, resnet101-lite, "),
    (["model.pretrained=zoo:r50_glore_k400"], "model.pretrained zoo:r50_glore_k400 holds a 3D "
     "video net; model.pretrained takes zoo:resnet50-lite, zoo:resnet101-lite, "
     "zoo:mfnet2d_imagenet"),
    (["model.weights=zoo:r101_glore_k400"], "model.weights zoo:r101_glore_k400 holds a "
     "r101_glore net but the model is r50 (model.arch resnet, model.depth 50); model.weights for "
     "it: zoo:r50_glore_k400"),
    (["model.arch=mfnet", "model.pretrained=zoo:resnet50-lite"], "model.pretrained "
     "zoo:resnet50-lite holds a r50 net but the model is mfnet"),
    (["test.checkpoint=zoo:resnet101-lite"], "test.checkpoint zoo:resnet101-lite holds 2D "
     "ImageNet weights; test.checkpoint takes zoo:r50_glore_k400, zoo:r101_glore_k400, "
     "zoo:mfnet_k400"),
]  # fmt: skip


@pytest.mark.parametrize("overrides,message", ZOO_CONFIG_ERRORS, ids=lambda v: str(v)[:40])
def test_zoo_names_are_checked_when_the_config_loads(overrides, message):
    with pytest.raises(ConfigError) as err:
        load_config(None, overrides)
    assert str(err.value).startswith(f"command line: {message}")


def test_names_that_fit_load_and_unknown_ones_fail_where_they_are_read():
    cfg = load_config(None, ["model.depth=101", "model.weights=zoo:r101_glore_k400"])
    assert cfg.model.weights == "zoo:r101_glore_k400"
    assert load_config(None, ["model.pretrained=zoo:resnet50-lite"]).model.glore
    with pytest.raises(ConfigError, match=r"^zoo:nope is not a zoo name \(zoo names: resnet50"):
        read_torch_file("zoo:nope")  # e.g. test --checkpoint zoo:nope


def test_the_k400_recipes_start_from_the_released_imagenet_weights():
    """GloRe train_kinetics.py --pretrained True loads network/pretrained/resnet50-lite.pth
    (resnet101-lite.pth for R101); MF-Net train_kinetics.py --pretrained_2d True loads
    MFNet2D_ImageNet1k-0000.pth."""
    pretrained = {
        name: load_config(REPO / "configs" / f"{name}.yaml").model.pretrained
        for name in ("k400_r50_glore_8x8", "k400_r101_glore_8x8", "k400_mfnet_glore_16x8")
    }
    assert pretrained == {
        "k400_r50_glore_8x8": "zoo:resnet50-lite",
        "k400_r101_glore_8x8": "zoo:resnet101-lite",
        "k400_mfnet_glore_16x8": "zoo:mfnet2d_imagenet",
    }


def test_the_download_command_fills_the_cache(server, tmp_path, capsys):
    server.files[R50_2D] = _saved(_lite_2d())
    _, server.files[R50_3D] = _released_3d("r50_glore")
    assert main(["download", "resnet50-lite", "zoo:r50_glore_k400"]) == 0
    weights = tmp_path / "cache" / "weights"
    assert capsys.readouterr().out.splitlines() == [
        f"zoo:resnet50-lite: {weights / R50_2D}",
        f"zoo:r50_glore_k400: {weights / R50_3D}",
    ]
    assert main(["download"]) == 0
    listed = capsys.readouterr().out.splitlines()
    assert len(listed) == len(zoo.ZOO) + 1 and listed[-1] == f"cache: {weights}"
    assert listed[0].split() == ["zoo:resnet50-lite", "pretrained", "r50", "cached"]
    assert listed[4].split() == ["zoo:mfnet_k400", "weights", "mfnet", "https://goo.gl/QdE85T"]
    assert len(server.requests) == 2


def test_a_plain_path_that_looks_like_no_name_is_read_as_a_path(tmp_path):
    path = tmp_path / "zoo_weights.pt"
    torch.save({"a": torch.ones(1)}, path)
    assert read_torch_file(path)["a"].item() == 1.0
    assert zoo.resolve(Path("rel/zoo:x.pt")) == Path("rel/zoo:x.pt")


def test_a_damaged_file_in_the_cache_says_how_to_fetch_it_again(server):
    cached = zoo.cached_path("r50_glore_k400")
    cached.parent.mkdir(parents=True)
    cached.write_bytes(_released_3d("r50_glore")[1][:1000])  # cut short, e.g. a copy by hand
    with pytest.raises(CheckpointError) as info:
        read_torch_file("zoo:r50_glore_k400")
    message = str(info.value)
    assert message.startswith(f"{cached}: cannot read checkpoint (")
    assert message.endswith(f"delete {cached} and it is fetched again")
    assert server.requests == []
