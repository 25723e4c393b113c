"""One naming convention for the points of a sweep inside one run.

A run that sweeps an axis itself (a density, an init scale, a generation, a sequence length) records each point's
metrics as ``<axis>=<value>/.../<metric>``, written by :func:`point_name` and read back by :func:`points`; a stage
prefix (``<stage>/``) may stand before the axes. Metric names never contain a segment of the form ``name=value``
(radii are written ``robust_acc@eps=0.1``, whose ``@`` keeps it from parsing as an axis).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

_AXIS = re.compile(r"^([A-Za-z_][A-Za-z0-9_.]*)=([^/@=]+)$")


def format_value(value: Any) -> str:
    """How a point's value is written: floats with ``:g`` (0.3, 1e-05), everything else with ``str``."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:g}"
    text = str(value)
    if "/" in text or "=" in text or "@" in text or not text:
        raise ValueError(f"a sweep value cannot be empty or contain '/', '=' or '@': {text!r}")
    return text


def point_name(metric: str, **axes: Any) -> str:
    """``point_name("test/acc", density=0.3, method="el2n") == "density=0.3/method=el2n/test/acc"`` (axes in the
    order given)."""
    for axis in axes:
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.]*", axis):
            raise ValueError(f"bad sweep axis name {axis!r}")
    return "/".join([*(f"{a}={format_value(v)}" for a, v in axes.items()), metric])


def point_prefix(**axes: Any) -> str:
    """The prefix of a point's metric names, ``"m=64/c=0.5/"`` (``""`` without axes): for code that writes many
    metrics of one point, or names a stage after it."""
    return point_name("", **axes) if axes else ""


def parse_point(name: str) -> tuple[dict[str, str], str]:
    """``"density=0.3/method=el2n/test/acc" -> ({"density": "0.3", "method": "el2n"}, "test/acc")``: the leading
    ``axis=value`` segments and the metric after them (axes are empty for a plain metric)."""
    parts = name.split("/")
    axes: dict[str, str] = {}
    i = 0
    while i < len(parts) - 1 and (m := _AXIS.match(parts[i])):
        axes[m.group(1)] = m.group(2)
        i += 1
    return axes, "/".join(parts[i:])


def points(metrics: Mapping[str, Any], metric: str, stage: str | None = None) -> list[tuple[dict[str, str], Any]]:
    """Every sweep point of ``metric`` in a record's ``metrics``, as ``(axes, value)`` sorted by name; with
    ``stage``, only names under ``<stage>/``."""
    out = []
    for name in sorted(metrics):
        rest = name
        if stage is not None:
            if not name.startswith(stage + "/"):
                continue
            rest = name[len(stage) + 1 :]
        axes, m = parse_point(rest)
        if axes and m == metric:
            out.append((axes, metrics[name]))
    return out


def axis_values(pts: list[tuple[dict[str, str], Any]], axis: str, cast: type = float) -> list:
    """The sorted distinct values of ``axis`` among ``pts`` (cast, default float)."""
    return sorted({cast(a[axis]) for a, _ in pts if axis in a})
