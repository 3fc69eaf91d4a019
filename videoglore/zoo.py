"""Released weights by name: ``zoo:NAME`` stands for a released file, downloaded once into a cache.

    model.pretrained=zoo:resnet50-lite ─ZOO─▶ Entry(file, url) ─▶ CACHE/weights/resnet50-lite.pth
        (cached: used as it is; else downloaded, resumable, renamed into place when complete)

Every weights or checkpoint read passes through ``models.weights.read_torch_file``, which calls
``resolve``: a ``zoo:`` name works wherever a path does (``model.pretrained``, ``model.weights``,
``test.checkpoint``, ``test --checkpoint``) and is then read like any file (``weights_only``,
keys and shapes checked). This module needs no torch, so that ``config`` checks the names when
a config loads.

Where files come from:

* ``VIDEOGLORE_ZOO_URL``: a mirror holding the files under their released names
  (``$VIDEOGLORE_ZOO_URL/resnet50-lite.pth``); used for every name when set;
* otherwise the URL in the released README (facebookresearch/GloRe). The MF-Net files are
  published only as Google Drive links (cypw/PyTorch-MFNet README), which give no stable file
  URL: they are fetched by hand (or from a mirror) and put in the cache under their name.

The cache is ``$VIDEOGLORE_CACHE/weights`` (default ``~/.cache/videoglore/weights``). A download
goes to ``.NAME.part`` beside the file and is renamed over it only when complete; an interrupted
one resumes from its partial file (HTTP Range) at the next use. Concurrent processes (torchrun
ranks) wait on a lock while one of them downloads. No sizes or checksums are recorded: none are
published, and the files could not be fetched to measure them.
"""

from __future__ import annotations

import difflib
import fcntl
import http.client
import logging
import os
import re
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from data_prep.files import output_error
from videoglore import __version__
from videoglore.errors import CheckpointError, ConfigError

log = logging.getLogger(__name__)

PREFIX = "zoo:"
URL_ENV = "VIDEOGLORE_ZOO_URL"  # a mirror: $VIDEOGLORE_ZOO_URL/<file name>
CACHE_ENV = "VIDEOGLORE_CACHE"  # default ~/.cache/videoglore; files go to <cache>/weights
TIMEOUT_S = 60  # seconds without an answer (connect, or between two reads) before giving up
CHUNK = 1 << 20

_GLORE = "https://dl.fbaipublicfiles.com/glore/kinetics/"  # facebookresearch/GloRe README.md
_GLORE_README = "facebookresearch/GloRe README"
_MFNET_README = "cypw/PyTorch-MFNet README (Google Drive)"


@dataclass(frozen=True)
class Entry:
    """One released file.

    ``kind``: "pretrained" (2D ImageNet weights, inflated: ``model.pretrained``) or "weights"
    (a 3D net: ``model.weights``, ``test.checkpoint``). ``net``: the ``models.MODELS`` name the
    file fits. ``url``: a stable download URL, "" when the file is only published as a page
    (``page``) that a person opens in a browser.
    """

    file: str
    kind: Literal["pretrained", "weights"]
    net: str
    url: str
    source: str
    page: str = ""


ZOO: dict[str, Entry] = {
    "resnet50-lite": Entry(
        "resnet50-lite.pth", "pretrained", "r50", _GLORE + "pretrained/resnet50-lite.pth",
        _GLORE_README,
    ),
    "resnet101-lite": Entry(
        "resnet101-lite.pth", "pretrained", "r101", _GLORE + "pretrained/resnet101-lite.pth",
        _GLORE_README,
    ),
    "r50_glore_k400": Entry(  # 68.0 % clip top-1 (README)
        "resnet50-lite_3d_8x8_w-glore_2-3_ep-0000.pth", "weights", "r50_glore",
        _GLORE + "resnet50-lite_3d_8x8_w-glore_2-3_ep-0000.pth", _GLORE_README,
    ),
    "r101_glore_k400": Entry(  # 69.2 % clip top-1 (README)
        "resnet101-lite_3d_8x8_w-glore_2-3_ep-0000.pth", "weights", "r101_glore",
        _GLORE + "resnet101-lite_3d_8x8_w-glore_2-3_ep-0000.pth", _GLORE_README,
    ),
    "mfnet_k400": Entry(  # 72.8 % (README)
        "MFNet3D_Kinetics-400_72.8.pth", "weights", "mfnet", "", _MFNET_README,
        page="https://goo.gl/QdE85T",
    ),
    "mfnet2d_imagenet": Entry(
        "MFNet2D_ImageNet1k-0000.pth", "pretrained", "mfnet", "", _MFNET_README,
        page="https://goo.gl/h5jG3B",
    ),
}  # fmt: skip


def is_zoo(path: str | Path) -> bool:
    """Whether ``path`` is a released name (a local file named ``zoo:x`` is ``./zoo:x``)."""
    return str(path).startswith(PREFIX)


def lookup(name: str) -> Entry:
    """The entry of ``name`` (with or without ``zoo:``).

    Raises:
        ConfigError: not a name of ``ZOO``, with the closest one and the list.
    """
    name = name.removeprefix(PREFIX)
    if name in ZOO:
        return ZOO[name]
    close = difflib.get_close_matches(name[:100], list(ZOO), n=1, cutoff=0.4)
    hint = f"; did you mean {PREFIX}{close[0]}?" if close else ""
    shown = name if len(name) <= 60 else name[:57] + "..."
    raise ConfigError(f"{PREFIX}{shown} is not a zoo name{hint} (zoo names: {', '.join(ZOO)})")


def cache_dir() -> Path:
    """Where zoo files are kept: ``$VIDEOGLORE_CACHE/weights``, default ~/.cache/videoglore."""
    root = os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "videoglore"
    return Path(root) / "weights"


def cached_path(name: str) -> Path:
    """The file ``zoo:name`` stands for (present or not)."""
    return cache_dir() / lookup(name).file


def download_url(name: str) -> str:
    """Where ``zoo:name`` is downloaded from: the mirror when set, else the released URL ("" for
    files with no stable URL)."""
    entry = lookup(name)
    mirror = os.environ.get(URL_ENV, "").strip()
    return f"{mirror.rstrip('/')}/{entry.file}" if mirror else entry.url


def resolve(path: str | Path) -> Path:
    """``path`` itself, or for ``zoo:NAME`` the cached file (downloaded first if needed)."""
    return fetch(str(path)) if is_zoo(path) else Path(path)


def fetch(name: str, progress: bool | None = None) -> Path:
    """The cached file of ``zoo:name``, downloaded first when missing (``progress``: a tqdm bar
    on stderr; None = when stderr is a terminal).

    Raises:
        ConfigError: an unknown name.
        CheckpointError: the file cannot be downloaded: one line naming the URL and where to
            put the file by hand.
        OutputError: the cache folder cannot be written (disk full, permission).
    """
    name = name.removeprefix(PREFIX)
    entry, target = lookup(name), cached_path(name)
    if target.is_file():
        return target
    url = download_url(name)
    if not url:
        raise CheckpointError(
            f"{PREFIX}{name}: {entry.file} is published only as a Google Drive link ({entry.page}"
            f", {entry.source}), which cannot be downloaded automatically; download it by hand "
            f"and put it at {target}, or set {URL_ENV} to a mirror that has it"
        )
    with _locked(target):
        if not target.is_file():  # another process may have finished it while we waited
            _download(name, url, target, progress)
    return target


@contextmanager
def _locked(target: Path) -> Iterator[None]:
    """Hold ``.FILE.lock`` beside ``target``: one process downloads, the others wait for it."""
    lock = target.with_name(f".{target.name}.lock")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except OSError as exc:
        raise output_error(exc, lock) from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log.info("waiting for another process that downloads %s", target.name)
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # drops the lock


class _Incomplete(Exception):
    """The server stopped sending before the end of the file."""


def _download(name: str, url: str, target: Path, progress: bool | None) -> None:
    part = target.with_name(f".{target.name}.part")
    try:
        _download_to(url, part, target, progress)
    except (urllib.error.URLError, http.client.HTTPException, OSError, _Incomplete) as exc:
        kept = part.stat().st_size if part.is_file() else 0
        resume = f"; the {kept} bytes received are kept, rerun to resume" if kept else ""
        raise CheckpointError(
            f"{PREFIX}{name}: cannot download {url} ({_reason(exc)}){resume}; without network, "
            f"download it elsewhere and put it at {target}"
        ) from None


def _download_to(url: str, part: Path, target: Path, progress: bool | None) -> None:
    """Download ``url`` into ``part`` (resuming what it holds) and rename it to ``target``."""
    have = part.stat().st_size if part.is_file() else 0
    request = urllib.request.Request(url, headers={"User-Agent": f"videoglore/{__version__}"})
    if have:
        request.add_header("Range", f"bytes={have}-")
    try:
        response = urllib.request.urlopen(request, timeout=TIMEOUT_S)
    except urllib.error.HTTPError as exc:
        if exc.code != 416 or not have:
            raise
        # Range starts at or past the end: the partial is the whole file (killed before the
        # rename) or belongs to another file; keep it only in the first case.
        if _range_total(exc.headers.get("Content-Range", "")) == have:
            return _move(part, target)
        _unlink(part)
        return _download_to(url, part, target, progress)
    with response:
        start, total = _span(response, have)
        if start is None:  # a part we did not ask for: start over at the next run
            _unlink(part)
            raise _Incomplete("the server answered the resume request with another part")
        if start != have:
            log.info("%s: the server sent the whole file; downloading it again", target.name)
        elif have:
            log.info("%s: resuming the download at %d bytes", target.name, have)
        log.info("downloading %s to %s", url, target)
        _receive(response, part, start, total, progress)
    size = part.stat().st_size
    if total is not None and size != total:
        raise _Incomplete(f"the connection closed after {size} of {total} bytes")
    _move(part, target)


def _span(response, have: int) -> tuple[int | None, int | None]:
    """(first byte the response holds: 0, ``have``, or None for another part; size of the whole
    file or None when the server does not say)."""
    if response.status == 206:
        match = re.fullmatch(r"bytes (\d+)-\d+/(\d+|\*)", response.headers.get("Content-Range", ""))
        if not match or int(match.group(1)) != have:
            return None, None
        return have, None if match.group(2) == "*" else int(match.group(2))
    length = response.headers.get("Content-Length")
    return 0, int(length) if length and length.isdigit() else None


def _range_total(content_range: str) -> int | None:
    match = re.fullmatch(r"bytes \*/(\d+)", content_range.strip())
    return int(match.group(1)) if match else None


def _receive(response, part: Path, start: int, total: int | None, progress: bool | None) -> None:
    """Append the response body to ``part`` (truncated to ``start`` bytes first), with a bar.

    Write failures are output errors (``OutputError``, the cache folder named); read failures
    propagate as they are (network errors).
    """
    from tqdm import tqdm

    try:
        f = open(part, "r+b" if start else "wb")
        f.truncate(start)
        f.seek(start)
    except OSError as exc:
        raise output_error(exc, part) from None
    bar = tqdm(
        total=total,
        initial=start,
        unit="B",
        unit_scale=True,
        desc=part.name.removeprefix(".").removesuffix(".part"),
        disable=None if progress is None else not progress,
        dynamic_ncols=True,
    )
    with f, bar:
        while chunk := response.read(CHUNK):
            try:
                f.write(chunk)
            except OSError as exc:
                raise output_error(exc, part) from None
            bar.update(len(chunk))
        try:
            f.flush()
            os.fsync(f.fileno())
        except OSError as exc:
            raise output_error(exc, part) from None


def _move(part: Path, target: Path) -> None:
    try:
        os.replace(part, target)
    except OSError as exc:
        raise output_error(exc, target) from None
    log.info("saved %s", target)


def _unlink(path: Path) -> None:
    try:
        path.unlink(missing_ok=True)
    except OSError as exc:
        raise output_error(exc, path) from None


def _reason(exc: BaseException) -> str:
    if isinstance(exc, urllib.error.HTTPError):
        return f"HTTP {exc.code} {exc.reason}"
    if isinstance(exc, urllib.error.URLError):
        exc = exc.reason if isinstance(exc.reason, BaseException) else exc
    if isinstance(exc, TimeoutError):
        return f"no answer in {TIMEOUT_S} s"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else type(exc).__name__
