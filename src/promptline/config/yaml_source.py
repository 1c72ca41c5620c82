"""Read one YAML config file into plain data plus the line of every key, or say what is wrong.

Keys are taken as written (``on:`` stays the string "on"); duplicate keys are errors, since YAML
would silently keep the last one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from promptline.config.issues import ConfigIssue, Origin
from promptline.config.keypath import KeyPath

_Loader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_MERGE_TAG = "tag:yaml.org,2002:merge"
_MAX_DEPTH = 64
_PLAIN_TAGS = ("tag:yaml.org,2002:map", "tag:yaml.org,2002:seq")


@dataclass
class YamlDocument:
    """A parsed file: its top-level mapping and the 1-based line of every key path."""

    path: Path
    data: dict[str, Any] = field(default_factory=dict)
    lines: dict[KeyPath, int] = field(default_factory=dict)
    issues: list[ConfigIssue] = field(default_factory=list)

    def origin(self, path: KeyPath) -> Origin:
        """Where ``path`` was written (the nearest enclosing key when it was not)."""
        for size in range(len(path), 0, -1):
            line = self.lines.get(path[:size])
            if line is not None:
                return Origin(file=self.path, line=line)
        return Origin(file=self.path)


def read_yaml_file(path: Path) -> YamlDocument:
    """Parse ``path``; problems are returned in ``issues`` rather than raised."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        return _failed(path, f"is not UTF-8 text ({exc.reason} at byte {exc.start})")
    except OSError as exc:
        return _failed(path, f"cannot be read: {exc.strerror or exc}")
    return parse_yaml(text, path)


def parse_yaml(text: str, path: Path) -> YamlDocument:
    """Parse ``text`` (the content of ``path``) into a `YamlDocument`."""
    doc = YamlDocument(path=path)
    loader = _Loader(text)
    try:
        root = loader.get_single_node()
        if root is None:
            return doc
        if not isinstance(root, MappingNode):
            kind = "a list" if isinstance(root, SequenceNode) else f"the value {root.value!r}"
            doc.issues.append(
                ConfigIssue(
                    "the top level must be a mapping of sections (gateway:, models:, ...), "
                    f"got {kind}",
                    origin=Origin(file=path, line=root.start_mark.line + 1),
                )
            )
            return doc
        data = _Builder(loader, doc).build(root, (), 0)
        doc.data = data if isinstance(data, dict) else {}
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = exc.problem or "invalid YAML"
        if exc.context:
            problem = f"{problem} ({exc.context})"
        doc.issues.append(
            ConfigIssue(
                f"invalid YAML: {problem}",
                origin=Origin(
                    file=path,
                    line=mark.line + 1 if mark else None,
                    column=mark.column + 1 if mark else None,
                ),
            )
        )
    except yaml.YAMLError as exc:
        doc.issues.append(ConfigIssue(f"invalid YAML: {exc}", origin=Origin(file=path)))
    finally:
        loader.dispose()
    return doc


def _failed(path: Path, why: str) -> YamlDocument:
    return YamlDocument(path=path, issues=[ConfigIssue(why, origin=Origin(file=path))])


class _Builder:
    """Turns composed nodes into dicts/lists/scalars while recording key lines."""

    def __init__(self, loader: yaml.SafeLoader, doc: YamlDocument) -> None:
        self._loader = loader
        self._doc = doc

    def build(self, node: Node, path: KeyPath, depth: int) -> Any:
        if depth > _MAX_DEPTH:
            self._issue(path, node, "is nested too deeply (a recursive alias?)")
            return None
        if not isinstance(node, ScalarNode) and node.tag not in _PLAIN_TAGS:
            # Scalars are checked by the safe constructor; collections must be checked here.
            self._issue(path, node, f"unsupported YAML tag {node.tag!r}")
            return None
        if isinstance(node, MappingNode):
            return self._mapping(node, path, depth)
        if isinstance(node, SequenceNode):
            items = []
            for index, item in enumerate(node.value):
                self._doc.lines[(*path, index)] = item.start_mark.line + 1
                items.append(self.build(item, (*path, index), depth + 1))
            return items
        return self._loader.construct_object(node, deep=True)

    def _mapping(self, node: MappingNode, path: KeyPath, depth: int) -> dict[str, Any]:
        first_line: dict[str, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == _MERGE_TAG or not isinstance(key_node, ScalarNode):
                continue
            line = key_node.start_mark.line + 1
            if key_node.value in first_line:
                self._issue(
                    (*path, key_node.value),
                    key_node,
                    f"duplicate key (first written at line {first_line[key_node.value]}); "
                    "YAML would silently keep only the last one",
                )
            first_line.setdefault(key_node.value, line)
        # Apply `<<: *anchor` merges the way YAML does; explicit keys override merged ones.
        self._loader.flatten_mapping(node)
        result: dict[str, Any] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, ScalarNode):
                self._issue(path, key_node, "keys must be plain names, not lists or mappings")
                continue
            key = key_node.value
            child = (*path, key)
            self._doc.lines[child] = key_node.start_mark.line + 1
            result[key] = self.build(value_node, child, depth + 1)
        return result

    def _issue(self, path: KeyPath, node: Node, message: str) -> None:
        origin = Origin(file=self._doc.path, line=node.start_mark.line + 1)
        self._doc.issues.append(ConfigIssue(message, key=path or None, origin=origin))
