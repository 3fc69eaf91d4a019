"""What ``prepare`` is asked to do: :class:`PrepareOptions` and the ``run.py prepare`` flags.

``data_prep.prepare`` re-exports all three names; the library takes a ``PrepareOptions``,
the command line builds one with :func:`add_arguments` + :func:`options_from_args`.
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass, field, fields

from data_prep.encode import EncodeSettings
from data_prep.errors import ConfigError
from data_prep.lists import clip_span
from data_prep.sources import KINETICS400, VIDEO_EXTENSIONS, normalize_split, parse_split_path


@dataclass
class PrepareOptions:
    out_dir: str
    csv_files: list[str] = field(default_factory=list)  # official Kinetics annotation CSVs
    video_root: str | None = None  # searched for the CSV clips; base of relative list paths
    lists: dict[str, str] = field(default_factory=dict)  # split -> plain list file
    folders: dict[str, str] = field(default_factory=dict)  # split -> folder-per-class tree
    classes: str | None = None  # class list file or "kinetics400"; default: sorted labels
    reencode: bool = EncodeSettings.reencode  # encode defaults: EncodeSettings (one source)
    short_side: int = EncodeSettings.short_side
    keyframe_interval: int = EncodeSettings.keyframe_interval
    crf: int = EncodeSettings.crf
    reencode_changed: bool = False  # re-encode videos finished earlier with other settings
    min_frames: int = 8  # fewer frames → skipped as too short
    clip_frames: int = 8  # T and τ of the training clip (data.num_frames, data.frame_interval):
    clip_interval: int = 8  # kept videos shorter than one clip are counted (they get looped)
    workers: int | None = None  # default os.cpu_count(); 1 = in this process
    extensions: tuple[str, ...] = VIDEO_EXTENSIONS
    progress: bool = False  # tqdm bar with ETA on stderr (the CLI turns it on)

    def encode_settings(self) -> EncodeSettings:
        """How each video is re-encoded (the ledger's signature of a finished video)."""
        return EncodeSettings(self.reencode, self.short_side, self.keyframe_interval, self.crf)

    @property
    def clip_span(self) -> int:
        """Frames one training clip covers (:func:`data_prep.lists.clip_span`)."""
        return clip_span(self.clip_frames, self.clip_interval)

    def check(self) -> None:
        """Raise ConfigError naming the flag of the first value out of range (DataError for a
        split that is not a plain name: splits name output files)."""
        for split in (*self.lists, *self.folders):
            normalize_split(split)
        lows = {"short_side": 2, "keyframe_interval": 1, "min_frames": 1, "crf": 0}
        lows |= {"clip_frames": 1, "clip_interval": 1}
        for name, low in lows.items():
            if getattr(self, name) < low:
                flag = "--" + name.replace("_", "-")
                raise ConfigError(f"{flag} must be at least {low}, got {getattr(self, name)}")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of ``run.py prepare``; :func:`options_from_args` turns them into options.

    Defaults are ``PrepareOptions``' (``dest`` is the field's name), except the progress bar,
    which the command line draws and the library does not.
    """
    defaults = PrepareOptions(out_dir="")
    inputs = parser.add_argument_group("inputs (any mix)")
    inputs.add_argument(
        "--csv",
        nargs="+",
        action="extend",
        default=[],
        metavar="FILE",
        dest="csv_files",
        help="official Kinetics annotation CSV(s) "
        "(label,youtube_id,time_start,time_end,split[,is_cc]); clips are found by "
        "file name anywhere under --root (a file name starting with '-' must be "
        "written --csv=FILE)",
    )
    inputs.add_argument(
        "--root",
        dest="video_root",
        metavar="DIR",
        help="folder with the downloaded videos, any layout (searched "
        "recursively for --csv; base of the relative paths in --list, default: "
        "the list's folder)",
    )
    inputs.add_argument(
        "--list",
        action="append",
        default=[],
        metavar="SPLIT=FILE",
        dest="lists",
        help="plain list, one 'relative/path label' per line "
        "(label = class name or index) or the released GloRe format 'id label "
        "relative/path'; repeat per split, e.g. --list train=train.txt",
    )
    inputs.add_argument(
        "--folder",
        action="append",
        default=[],
        metavar="SPLIT=DIR",
        dest="folders",
        help="folder-per-class tree DIR/<class>/<video>; repeat "
        "per split, e.g. --folder train=videos/train --folder val=videos/val",
    )
    inputs.add_argument(
        "--classes",
        metavar="FILE",
        help="class names in index order: a .txt (one a line), a .json list, or "
        f"'{KINETICS400}' (bundled standard list). Default: sorted label names",
    )
    parser.add_argument(
        "--out",
        required=True,
        dest="out_dir",
        metavar="DIR",
        help="output folder: train.csv, val.csv, classes.json, skipped.csv, videos/",
    )
    enc = parser.add_argument_group("checking and re-encoding")
    enc.add_argument(
        "--no-reencode",
        dest="reencode",
        action="store_false",
        default=defaults.reencode,
        help="keep the original files (lists point to them); videos are still "
        "checked with PyAV and decord",
    )
    enc.add_argument(
        "--short-side",
        type=int,
        default=defaults.short_side,
        help="shorter side of the re-encoded videos in pixels, never upscaled "
        "(default %(default)s)",
    )
    enc.add_argument(
        "--keyframe-interval",
        type=int,
        default=defaults.keyframe_interval,
        metavar="FRAMES",
        help="frames between keyframes (default %(default)s; 1 = every frame a keyframe). "
        "Training decodes one random clip per video and decoding must start at the keyframe "
        "before each kept frame: with 1 only the kept frames are decoded, ~1.5x the clips per "
        "CPU core of 8, for ~3x the disk (benchmarks/RESULTS.md). 8 when disk is short; x264's "
        "default is 250",
    )
    enc.add_argument(
        "--reencode-changed",
        action="store_true",
        default=defaults.reencode_changed,
        help="re-encode the videos an earlier run finished with other encode settings (without "
        "it, such a rerun stops and says which flags continue the earlier run)",
    )
    enc.add_argument(
        "--crf",
        type=int,
        default=defaults.crf,
        help="x264 quality, lower = better and bigger (default %(default)s)",
    )
    enc.add_argument(
        "--min-frames",
        type=int,
        default=defaults.min_frames,
        help="videos with fewer frames are skipped as too short (default %(default)s, the "
        "8-frame clips of the GloRe recipes)",
    )
    clip = parser.add_argument_group(
        "clip length (counts only)",
        "Kept videos shorter than one training clip, (T - 1) x interval + 1 frames, are counted "
        "per split in the summary (under_one_clip): the loaders loop their frames. Give the "
        "recipe's data.num_frames and data.frame_interval.",
    )
    clip.add_argument(
        "--clip-frames",
        type=int,
        default=defaults.clip_frames,
        metavar="T",
        help="frames per clip (default %(default)s)",
    )
    clip.add_argument(
        "--clip-interval",
        type=int,
        default=defaults.clip_interval,
        metavar="TAU",
        help="stride between sampled frames (default %(default)s: one clip spans "
        f"{defaults.clip_span} frames)",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=defaults.workers,
        help=f"worker processes (default: all {os.cpu_count()} cores)",
    )
    parser.add_argument(
        "--no-progress", dest="progress", action="store_false", help="no progress bar"
    )


def options_from_args(args: argparse.Namespace) -> PrepareOptions:
    """The options of parsed :func:`add_arguments` flags (each flag's ``dest`` is a field)."""
    given = {f.name: getattr(args, f.name) for f in fields(PrepareOptions) if hasattr(args, f.name)}
    given["lists"] = dict(parse_split_path(v) for v in args.lists)
    given["folders"] = dict(parse_split_path(v) for v in args.folders)
    return PrepareOptions(**given)
