"""What every benchmark returns and writes: a markdown table, a JSON report, the files written.

Benchmarks never print; ``run.py benchmark NAME`` prints ``BenchmarkResult.table`` and the paths.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from data_prep.files import atomic_write_text, write_json


@dataclass
class BenchmarkResult:
    """The outcome of one benchmark run."""

    table: str  # markdown shown to the user
    report: dict  # everything measured, as written to the JSON file
    files: list[Path] = field(default_factory=list)  # what the run wrote


def fmt(value, spec: str) -> str:
    """A table cell: ``n/a`` for missing values, ``on``/``off`` for switches."""
    if value is None:
        return "n/a"
    if isinstance(value, bool):
        return "on" if value else "off"
    return format(value, spec) if spec else str(value)


def markdown_table(rows: list[dict], columns: list[tuple[str, str, str]]) -> str:
    """Rows as a markdown table; ``columns`` = (header, row key, format spec)."""
    lines = [
        "| " + " | ".join(header for header, _, _ in columns) + " |",
        "|" + "|".join("---" if not spec else "---:" for _, _, spec in columns) + "|",
    ]
    for row in rows:
        cells = [fmt(row[key], spec) if key in row else "" for _, key, spec in columns]
        if "error" in row:  # into the first cell that has no value
            cells[cells.index("")] = row["error"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def finish(report: dict, table: str, out: str | Path | None) -> BenchmarkResult:
    """The result of a benchmark; with ``out``, also writes ``out``.json and ``out``.md."""
    result = BenchmarkResult(table, report)
    if out:
        path = Path(out)
        result.files = [
            write_json(path.with_suffix(".json"), report),
            atomic_write_text(path.with_suffix(".md"), table + "\n"),
        ]
    return result
