"""Configuration layers and their deep merge, keeping track of where each value came from.

Later layers win. Mappings merge key by key; anything else (scalars, lists, null) replaces what
was there, so a list in a profile replaces the base list rather than extending it.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

from promptline.config.issues import Origin
from promptline.config.keypath import KeyPath


@dataclass
class Layer:
    """One source of values (defaults, a file, a profile block, the environment)."""

    data: dict[str, Any] = field(default_factory=dict)
    origins: dict[KeyPath, Origin] = field(default_factory=dict)
    """Where each key path of ``data`` was written."""


@dataclass
class MergedLayers:
    """The result of merging: one data tree, and the origin of every key path in it."""

    data: dict[str, Any] = field(default_factory=dict)
    origins: dict[KeyPath, Origin] = field(default_factory=dict)

    def origin(self, path: KeyPath) -> Origin:
        """Where ``path`` (or the nearest enclosing key that has a known origin) came from."""
        for size in range(len(path), -1, -1):
            found = self.origins.get(path[:size])
            if found is not None:
                return found
        return Origin()


def merge_layers(layers: list[Layer]) -> MergedLayers:
    """Deep-merge ``layers`` in order (the inputs are not modified)."""
    merged = MergedLayers()
    for layer in layers:
        if () in layer.origins:
            merged.origins[()] = layer.origins[()]
        _merge(merged, merged.data, layer.data, (), layer)
    return merged


def _merge(
    merged: MergedLayers, base: dict[str, Any], overlay: dict[str, Any], path: KeyPath, layer: Layer
) -> None:
    for key, value in overlay.items():
        here = (*path, key)
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            if here in layer.origins:
                merged.origins[here] = layer.origins[here]
            _merge(merged, base[key], value, here, layer)
            continue
        base[key] = copy.deepcopy(value)
        # The old subtree is gone; so are the origins of its keys.
        for stale in [p for p in merged.origins if p[: len(here)] == here]:
            del merged.origins[stale]
        for fresh, origin in layer.origins.items():
            if fresh[: len(here)] == here:
                merged.origins[fresh] = origin
