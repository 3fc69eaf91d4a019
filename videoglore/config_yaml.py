"""Reading config YAML: PyYAML's safe loader, stricter where a config needs it.

* Anchors and aliases (``&name``, ``*name``) are refused: our configs have no use for them, and
  a few lines of aliases ("billion laughs") stand for billions of values.
* A key given twice in one mapping (two ``train:`` sections, ``lr`` twice) is an error naming
  both lines; PyYAML keeps the last one silently, dropping the first section whole.
* Every failure is one ``ConfigError`` line with the file, line and column: syntax errors, a
  value YAML cannot build (an int of 5000 digits, a 13th month), a tag that would build an
  object.

Numbers stay as YAML 1.1 reads them (``1e-3`` is a string there); ``config`` turns the strings
people write for numbers into numbers for its float and int settings.
"""

from __future__ import annotations

from typing import Any

import yaml
from yaml.constructor import ConstructorError
from yaml.nodes import MappingNode, ScalarNode, SequenceNode

from data_prep.errors import bounded_repr
from data_prep.files import first_line
from videoglore.errors import ConfigError

_NO_ANCHORS = "anchors and aliases (&name, *name) are not allowed in configs; write the value out"
_SYNTAX = (yaml.scanner.ScannerError, yaml.parser.ParserError, yaml.reader.ReaderError)


def parse_yaml(text: str, source: str, lenient: bool = False) -> Any:
    """The data of the YAML document ``text`` (``source`` names it in messages).

    ``lenient``: a syntax error gives ``text`` back as a plain string (command-line values
    such as ``data.root=a:b``); refused anchors, repeated keys and unbuildable values still fail.

    Raises:
        ConfigError: one line, ``SOURCE: not valid YAML at line L, column C: PROBLEM``, or the
            refused anchor, or the key given twice with both lines.
    """
    try:
        return _load(text, source)
    except _Refused as exc:
        raise ConfigError(f"{source}: {exc}") from None
    except yaml.YAMLError as exc:
        if lenient and isinstance(exc, _SYNTAX):
            return text
        raise ConfigError(f"{source}: not valid YAML {_where_and_what(exc, text)}") from None


def _load(text: str, source: str) -> Any:
    loader = _ConfigLoader(text)  # ReaderError here for a character YAML refuses
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _refuse_repeated_keys(loader, node, source, "")
        return loader.construct_document(node)
    finally:
        loader.dispose()


class _Refused(Exception):
    """A config-specific rule broken (anchor, repeated key); the message says where."""


class _ConfigLoader(yaml.SafeLoader):
    def compose_node(self, parent, index):
        event = self.peek_event()
        anchor = getattr(event, "anchor", None)  # an alias event names its anchor here too
        if anchor is not None:
            kind = "alias *" if isinstance(event, yaml.AliasEvent) else "anchor &"
            raise _Refused(f"YAML {kind}{anchor[:40]} at {_at(event.start_mark)}: {_NO_ANCHORS}")
        return super().compose_node(parent, index)

    def construct_object(self, node, deep=False):
        try:
            return super().construct_object(node, deep)
        except (ValueError, OverflowError) as exc:  # int() of 5000 digits, a date of month 13
            shown = bounded_repr(node.value, 60) if isinstance(node, ScalarNode) else "the value"
            raise ConstructorError(
                None, None, f"cannot read {shown} ({first_line(exc, 120)})", node.start_mark
            ) from None


def _refuse_repeated_keys(loader: _ConfigLoader, node, source: str, path: str) -> None:
    """ConfigError for the first key given twice in one mapping of the tree under ``node``
    (aliases are refused, so it is a tree: each node is seen once)."""
    if isinstance(node, SequenceNode):
        for i, item in enumerate(node.value):
            _refuse_repeated_keys(loader, item, source, f"{path.removesuffix('.')}[{i}].")
        return
    if not isinstance(node, MappingNode):
        return
    marks: dict[Any, Any] = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        name = f"{path}{_key_text(key)}"
        try:
            seen = key in marks
        except TypeError:  # an unhashable key: PyYAML's construct_mapping names it
            continue
        if seen:
            first, again = marks[key], key_node.start_mark
            where = f"lines {first.line + 1} and {again.line + 1}"
            if first.line == again.line:  # a flow mapping: {lr: 1, lr: 2}
                where = f"line {first.line + 1}, columns {first.column + 1} and {again.column + 1}"
            advice = "merge them into one" if isinstance(value_node, MappingNode) else "keep one"
            raise ConfigError(f"{source}: {name} is given twice ({where}); {advice}")
        marks[key] = key_node.start_mark
        _refuse_repeated_keys(loader, value_node, source, f"{name}.")


def _key_text(key: Any) -> str:
    text = key if isinstance(key, str) else bounded_repr(key, 60)
    return text if len(text) <= 60 else text[:57] + "..."


def _at(mark) -> str:
    return f"line {mark.line + 1}, column {mark.column + 1}"


def _where_and_what(exc: yaml.YAMLError, text: str) -> str:
    """``at line L, column C: PROBLEM (CONTEXT)`` of a PyYAML error, on one line."""
    if isinstance(exc, yaml.reader.ReaderError):
        line = text.count("\n", 0, exc.position) + 1
        return f"at line {line}: {first_line(exc)}"
    if not isinstance(exc, yaml.MarkedYAMLError) or exc.problem_mark is None:
        return f": {first_line(exc)}"
    context = ""
    if exc.context and exc.context_mark is not None:
        context = f" ({exc.context} started at line {exc.context_mark.line + 1})"
    elif exc.context:
        context = f" ({exc.context})"
    problem = " ".join(str(exc.problem).split())[:200]
    return f"at {_at(exc.problem_mark)}: {problem}{context}"
