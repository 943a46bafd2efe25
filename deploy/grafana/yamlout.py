"""A small YAML writer for the provisioning files (plain dicts, lists and scalars; no PyYAML needed).

Strings are always double-quoted in JSON syntax, which YAML 1.1 and 1.2 read the same way, so no
value can turn into a number, a boolean or a null by accident.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence

Value = None | bool | int | float | str | Mapping[str, "Value"] | Sequence["Value"]


def dump(value: Value, header: str = "") -> str:
    """``value`` as a block-style YAML document, with ``header`` as leading ``#`` comment lines."""
    lines = [f"# {line}".rstrip() for line in header.splitlines()]
    lines += _block(value, 0)
    return "\n".join(lines) + "\n"


def _scalar(value: Value) -> str:
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if value is None or isinstance(value, bool | int | float):
        return json.dumps(value)
    raise TypeError(f"not a YAML scalar: {value!r}")


def _is_empty_collection(value: Value) -> bool:
    return isinstance(value, Mapping | list | tuple) and not value


def _block(value: Value, indent: int) -> list[str]:
    pad = " " * indent
    if isinstance(value, Mapping):
        out: list[str] = []
        for key, item in value.items():
            head = f"{pad}{_scalar(str(key)) if not _plain_key(str(key)) else key}:"
            if _is_empty_collection(item):
                out.append(f"{head} {'{}' if isinstance(item, Mapping) else '[]'}")
            elif isinstance(item, Mapping | list | tuple):
                out.append(head)
                out += _block(item, indent + 2)
            else:
                out.append(f"{head} {_scalar(item)}")
        return out
    if isinstance(value, list | tuple):
        out = []
        for item in value:
            if isinstance(item, Mapping | list | tuple) and item:
                # "- " followed by the item's first line, the rest indented under it.
                inner = _block(item, indent + 2)
                out.append(f"{pad}- {inner[0].lstrip()}")
                out += inner[1:]
            elif _is_empty_collection(item):
                out.append(f"{pad}- {'{}' if isinstance(item, Mapping) else '[]'}")
            else:
                out.append(f"{pad}- {_scalar(item)}")
        return out
    return [f"{pad}{_scalar(value)}"]


def _plain_key(key: str) -> bool:
    """Keys that need no quotes: identifiers as Grafana's own examples write them."""
    return bool(key) and all(c.isalnum() or c in "_-." for c in key) and not key[0].isdigit()
