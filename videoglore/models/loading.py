"""The one way a model is made from a file: ``load_model`` builds the net a ``ModelConfig``
describes and loads a weights file of any accepted format into it (ours, released GloRe / MF-Net,
a bare state dict; ``weights.read_model_file`` tells them apart), for train, test, predict and
export alike::

    ModelConfig ─registry.build_model─▶ net ─pretrained (2D ImageNet): inflate_2d_weights─▶
      ─weights file: read_model_file ─▶ exact (test, predict, export): every tensor, or an error
                                     └▶ fine_tune (training, model.weights): the rules below

Fine-tuning rules (``fine_tune=True``): every tensor whose name and shape fit is loaded. When the
file's classifier has another class count than the model, the classifier keeps its fresh
initialisation and one log line says so (file, classes before → after). When the counts agree
and both sides have class names, the names must be the same (in any order: the classifier rows
are then put in the run's order, with a log line), so that predictions keep their names; other
names of the same count are an error (``model.weights_skip: ["classifier.*"]`` asks for a new
classifier). Any other missing, unexpected or misshapen tensor is an error unless its name
matches a glob of ``model.weights_skip``. What was loaded is a ``WeightsSource``, which training
records in every checkpoint of the run (``weights_source``).
"""

from __future__ import annotations

import fnmatch
import logging
from dataclasses import dataclass, field
from pathlib import Path

from data_prep.errors import bounded_repr
from videoglore.config import ModelConfig
from videoglore.errors import CheckpointError
from videoglore.models.registry import build_model
from videoglore.models.videonet import VideoNet
from videoglore.models.weights import (
    FIT_ADVICE,
    LoadReport,
    ModelFile,
    describe_misfit,
    inflate_2d_weights,
    load_weights,
    match_weights,
    read_model_file,
)

log = logging.getLogger(__name__)

CLASSIFIER = ("classifier.weight", "classifier.bias")  # VideoNet's head


@dataclass
class WeightsSource:
    """Where a trained net's initial weights came from (``model.weights``)."""

    path: str
    format: str
    classes: list[str] | None  # the file's class names (ours), None when it has none
    num_classes: int | None  # rows of the file's classifier
    classifier: str  # "kept", "reordered" (rows put in the run's order) or "new"
    skipped: list[str] = field(default_factory=list)  # tensors left at init (model.weights_skip)

    def record(self) -> dict:
        """Plain data for checkpoints."""
        return {
            "path": self.path,
            "format": self.format,
            "classes": self.classes,
            "num_classes": self.num_classes,
            "classifier": self.classifier,
            "skipped": self.skipped,
        }


def load_model(
    cfg: ModelConfig,
    weights: str | Path | ModelFile | None = None,
    *,
    classes: list[str] | None = None,
    fine_tune: bool = False,
    advice: str = FIT_ADVICE,
) -> tuple[VideoNet, WeightsSource | None]:
    """The net of ``cfg`` (2D ``cfg.pretrained`` inflated into it), then the tensors of
    ``weights`` (a path or a file already read; ``cfg.weights`` is not looked at).

    Args:
        classes: the run's class names (fine-tuning: checked against the file's, see above).
        fine_tune: the rules of ``model.weights`` (module doc); otherwise every tensor of the
            file must fit and nothing else is loaded.
        advice: what an exact load's error tells the user to do.

    Returns:
        The net (on the CPU, train mode) and what was loaded (None without ``weights``).

    Raises:
        CheckpointError: a file that is missing, unreadable, refused or does not fit (one line,
            naming the file and the keys).
    """
    model = build_model(cfg)
    if cfg.pretrained:
        inflate_2d_weights(model, cfg.pretrained)
    if weights is None:
        return model, None
    file = weights if isinstance(weights, ModelFile) else read_model_file(weights)
    if not fine_tune:
        load_weights(model, file, advice=advice)
        return model, _source(file, "kept")
    return model, _fine_tune(model, file, classes, cfg.weights_skip)


def _fine_tune(
    model: VideoNet, file: ModelFile, classes: list[str] | None, skip: list[str]
) -> WeightsSource:
    report = match_weights(model, file)
    skipped = _skippable(report, skip)
    action, rows = _classifier_rule(model, file, classes, skipped)
    excused = skipped | set(CLASSIFIER) if action == "new" else skipped
    left = LoadReport(
        format=file.format,
        missing=[k for k in report.missing if k not in excused],
        unexpected=[k for k in report.unexpected if k not in excused],
        mismatched=[m for m in report.mismatched if _key(m) not in excused],
    )
    if left.missing or left.unexpected or left.mismatched:
        raise CheckpointError(describe_misfit(file, left, FIT_ADVICE))
    fitting = {k: file.weights[k] for k in report.loaded if k not in excused}
    if rows is not None:
        fitting.update({k: file.weights[k][rows] for k in CLASSIFIER if k in fitting})
    model.load_state_dict(fitting, strict=False)
    if action == "new" and not set(CLASSIFIER) & skipped:
        log.info(
            "%s: its classifier has %d classes, the model %d: the classifier starts from a fresh "
            "initialisation (%d → %d classes), every other tensor from the file",
            file.path,
            file.num_classes,
            model.num_classes,
            file.num_classes,
            model.num_classes,
        )
    source = _source(file, action)
    source.skipped = sorted(k for k in model.state_dict() if k in skipped)
    log.info(
        "loaded %d tensors from %s (%s format); %d left at their initialisation",
        len(fitting),
        file.path,
        file.format,
        len(model.state_dict().keys() - fitting.keys()),
    )
    return source


def _skippable(report: LoadReport, skip: list[str]) -> set[str]:
    """The keys ``model.weights_skip`` leaves at their initialisation (fitting or not)."""
    keys = [*report.loaded, *report.missing, *report.unexpected, *map(_key, report.mismatched)]
    return {k for k in keys if any(fnmatch.fnmatchcase(k, pattern) for pattern in skip)}


def _classifier_rule(
    model: VideoNet, file: ModelFile, classes: list[str] | None, skipped: set[str]
) -> tuple[str, list[int] | None]:
    """("kept" | "reordered" | "new", the file's row of each run class or None)."""
    if set(CLASSIFIER) & skipped:
        return "new", None
    rows = file.num_classes
    if rows is None:  # no classifier in the file: a missing key, reported as such
        return "kept", None
    if rows != model.num_classes:  # logged once the rest is known to fit
        return "new", None
    if not file.classes or not classes or file.classes == list(classes):
        return "kept", None
    if sorted(file.classes) != sorted(classes):
        only_file = bounded_repr([c for c in file.classes if c not in classes][:3])
        only_run = bounded_repr([c for c in classes if c not in file.classes][:3])
        raise CheckpointError(
            f"{file.path}: its {rows} classes are not the run's (only in the file: {only_file}, "
            f"only in the run: {only_run}); "
            "its classifier would name predictions wrongly. To train a new classifier, set "
            "model.weights_skip=[classifier.*]; or point data.classes at the file's classes"
        )
    log.info(
        "%s: the same %d classes in another order: the classifier rows are reordered to the "
        "run's class order",
        file.path,
        rows,
    )
    return "reordered", [file.classes.index(c) for c in classes]


def _source(file: ModelFile, classifier: str) -> WeightsSource:
    return WeightsSource(file.path, file.format, file.classes, file.num_classes, classifier)


def _key(mismatch: str) -> str:
    return mismatch.split(":", 1)[0]  # "key: file (..) vs model (..)"
