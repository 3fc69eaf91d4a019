"""What ``prepare`` is asked to do: :class:`PrepareOptions` and the ``run.py prepare`` flags.

``data_prep.prepare`` re-exports all three names; the library takes a ``PrepareOptions``,
the command line builds one with :func:`add_arguments` + :func:`options_from_args`.
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass, field, fields

from data_prep.classes import STANDARD_CLASSES
from data_prep.encode import EncodeSettings
from data_prep.errors import ConfigError
from data_prep.lists import clip_span
from data_prep.shards import Shard, parse_shard
from data_prep.sources import VIDEO_EXTENSIONS, normalize_split, parse_split_path

DATASETS = ("ucf101", "hmdb51", "ssv2")  # --ucf101 DIR etc.: a standard dataset's own files
SPLIT_DATASETS = ("ucf101", "hmdb51")  # their splits go to OUT/split{N}/, videos shared


@dataclass
class PrepareOptions:
    out_dir: str
    csv_files: list[str] = field(default_factory=list)  # official Kinetics annotation CSVs
    video_root: str | None = None  # searched for the CSV clips; base of relative list paths
    lists: dict[str, str] = field(default_factory=dict)  # split -> plain list file
    folders: dict[str, str] = field(default_factory=dict)  # split -> folder-per-class tree
    classes: str | None = None  # class list file or "kinetics400/600/700"; default: sorted labels
    ucf101: str | None = None  # UCF101 split files (ucfTrainTestlist/), videos under video_root
    hmdb51: str | None = None  # HMDB51 split files (testTrainMulti_7030_splits/)
    ssv2: str | None = None  # Something-Something v2 labels folder (labels.json, train.json, ...)
    split: int | None = None  # UCF101 / HMDB51 split number, default 1
    shard: Shard | None = None  # do only this part of the videos; lists are not written
    merge: bool = False  # write the lists from the recorded results only; process nothing
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

    @property
    def dataset(self) -> str | None:
        """The standard dataset given (``"ucf101"``, ...), or None."""
        return next((name for name in DATASETS if getattr(self, name)), None)

    @property
    def lists_folder(self) -> str:
        """Where the lists go, relative to OUT: ``split{N}`` for UCF101 / HMDB51, else OUT."""
        return f"split{self.split or 1}" if self.dataset in SPLIT_DATASETS else ""

    def check(self) -> None:
        """Raise ConfigError naming the flag of the first value out of range or combination
        that does not fit (DataError for a split that is not a plain name: splits name output
        files)."""
        for split in (*self.lists, *self.folders):
            normalize_split(split)
        self._check_inputs()
        if self.shard is not None:
            self.shard.check()
            if self.merge:
                raise ConfigError("--merge writes the lists of all shards: give it without --shard")
        if self.merge and self.reencode_changed:
            raise ConfigError(
                "--merge processes no video: --reencode-changed needs a run that does"
            )
        ranges = {  # (lowest, highest or None); crf: libx264's range for 8-bit video
            "short_side": (2, 4096),
            "keyframe_interval": (1, None),
            "min_frames": (1, None),
            "crf": (0, 51),
            "clip_frames": (1, None),
            "clip_interval": (1, None),
        }
        for name, (low, high) in ranges.items():
            value, flag = getattr(self, name), "--" + name.replace("_", "-")
            if value < low:
                raise ConfigError(f"{flag} must be at least {low}, got {value}")
            if high is not None and value > high:
                raise ConfigError(f"{flag} must be at most {high}, got {value}")

    def _check_inputs(self) -> None:
        given = [f"--{name}" for name in DATASETS if getattr(self, name)]
        if given and (self.csv_files or self.lists or self.folders or len(given) > 1):
            others = given[1:] or ["--csv/--list/--folder"]
            raise ConfigError(f"{given[0]} is a dataset of its own: give it without {others[0]}")
        if given and self.classes:
            raise ConfigError(f"{given[0]} brings its own class list: give it without --classes")
        if self.split is not None and self.dataset not in SPLIT_DATASETS:
            raise ConfigError("--split chooses a split of --ucf101 or --hmdb51")
        if self.split is not None and self.split < 1:
            raise ConfigError(f"--split must be at least 1, got {self.split}")


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
        f"{'/'.join(STANDARD_CLASSES)} (standard order; kinetics400/600 bundled, kinetics700 "
        "read from the CSVs and checked: 700 classes, val labels among the train labels). "
        "Default: sorted label names",
    )
    standard = parser.add_argument_group(
        "standard datasets, each from its official files (alone; videos under --root)",
        "UCF101, HMDB51: OUT/split{N}/{train,val}.csv, classes.json, skipped.csv; the splits\n"
        "share OUT/videos/. SSv2: OUT/{train,val}.csv, like Kinetics. Test / validation split:\n"
        "val.csv.",
    )
    standard.add_argument(
        "--ucf101",
        metavar="DIR",
        help="UCF101's ucfTrainTestlist folder (classInd.txt, trainlist0N.txt, testlist0N.txt)",
    )
    standard.add_argument(
        "--hmdb51",
        metavar="DIR",
        help="HMDB51's testTrainMulti_7030_splits folder (<class>_test_split<N>.txt)",
    )
    standard.add_argument(
        "--ssv2",
        metavar="DIR",
        help="Something-Something v2's labels folder (labels.json, train.json, validation.json)",
    )
    standard.add_argument(
        "--split", type=int, metavar="N", help="split of --ucf101 / --hmdb51 (default 1)"
    )
    cluster = parser.add_argument_group(
        "many machines (README: Preparing on a cluster)",
        "Run --shard 0/N ... --shard N-1/N at once on machines sharing --out (same flags\n"
        "otherwise), then the same command without --shard to write the lists.",
    )
    cluster.add_argument(
        "--shard",
        metavar="I/N",
        help="do part I of N (0-based, e.g. $SLURM_ARRAY_TASK_ID/N) of the videos, chosen by a "
        "stable hash of each output name; writes no lists",
    )
    cluster.add_argument(
        "--merge",
        action="store_true",
        help="only write the lists from the videos the shards recorded (process none) and name "
        "the unfinished shards; without it, a run reuses every shard's work and does the rest",
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
    given["shard"] = parse_shard(args.shard) if args.shard is not None else None
    return PrepareOptions(**given)
