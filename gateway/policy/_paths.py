"""Field paths and path patterns for the policy (``pcf.geographyCountry``, ``a[*].b.**.c``).

Every leaf of a record has a concrete *path* (``extensions[0].data.x``) and a *shape*, the path with
indices written ``[*]``. Patterns match shapes, so classification is decided once per shape.

Records of one producer share a handful of layouts (the same keys, the same list lengths), so
:func:`compile_extractor` turns one record's layout into a small generated function that checks a
record has exactly that layout (every mapping's keys in order, every list's length, every leaf a
``str``/``int``/``bool``, every skipped ``None`` still ``None``) and returns its leaf values in
document order, or ``None`` when anything differs. It does per record what :func:`leaf_paths`
does, without building one path string: the paths are the layout's, known once.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from functools import lru_cache
from typing import Any

__all__ = [
    "FLOAT_SHAPE",
    "NON_STRING_KEY",
    "NON_STRING_SHAPE",
    "PATTERN_RE",
    "Pattern",
    "bind_indices",
    "compile_extractor",
    "get_path",
    "iter_leaves",
    "leaf_paths",
    "parse_path",
]

_SIMPLE_KEY = re.compile(r"[A-Za-z0-9_$@-]+\Z")
_SEGMENT = r"(?:\*\*|\*|[A-Za-z0-9_$@-]+)(?:\[\*\])*"
PATTERN_RE = re.compile(rf"{_SEGMENT}(?:\.{_SEGMENT})*\Z")
"""What a field pattern may look like: dotted keys, ``*`` (one key), ``**`` (any depth), ``[*]``."""

# Tokens: ("k", name) key, ("i", n) index (n = -1 in shapes), ("*",) any key, ("**",) any depth.
Token = tuple[Any, ...]
_ANY_INDEX: Token = ("i", -1)
_ANY_KEY: Token = ("*",)
_ANY_DEPTH: Token = ("**",)
_PATH_TOKEN = re.compile(r'\.?([A-Za-z0-9_$@-]+)|\[(\*|\d+)\]|\[("(?:[^"\\]|\\.)*")\]')


_KEYS: dict[str, str] = {}
FLOAT_SHAPE = "\x00float"
"""Shape given to a binary-float leaf (PACT decimals are strings): no pattern can match it."""
NON_STRING_SHAPE = "[?]"
"""Shape given to a mapping key that is not a string: no pattern can match it."""


def _render_key(key: str) -> str:
    """``.name`` for plain keys, ``["odd.key"]`` otherwise (patterns cannot name those: deny)."""
    out = _KEYS.get(key)
    if out is None:
        out = "." + key if _SIMPLE_KEY.match(key) else "[" + json.dumps(key) + "]"
        if len(_KEYS) < 65536:
            _KEYS[key] = out
    return out


def iter_leaves(record: Mapping[str, Any]) -> list[tuple[str, str, Any]]:
    """``(path, shape, value)`` for every leaf (scalar) of *record*, in document order.

    ``None`` values are skipped: PACT v3 treats null as undefined, and nothing is sent for them.
    A key that is not a string is reported with the value ``NON_STRING_KEY`` (the policy denies it).
    """
    out: list[tuple[str, str, Any]] = []
    if type(record) is dict or isinstance(record, Mapping):
        for key, value in record.items():
            if type(key) is not str:
                out.append(("[?]", NON_STRING_SHAPE, NON_STRING_KEY))
                continue
            part = _render_key(key)
            name = part[1:] if part[0] == "." else part
            _walk(value, name, name, out)
    return out


def _walk(node: Any, path: str, shape: str, out: list[tuple[str, str, Any]]) -> None:
    kind = type(node)
    if kind is dict or (kind is not list and kind is not str and isinstance(node, Mapping)):
        for key, value in node.items():
            if type(key) is not str:
                out.append((path + "[?]", NON_STRING_SHAPE, NON_STRING_KEY))
                continue
            part = _KEYS.get(key) or _render_key(key)
            vkind = type(value)
            if vkind is str or vkind is int or vkind is bool:
                out.append((path + part, shape + part, value))
            elif vkind is float:
                out.append((path + part, FLOAT_SHAPE, value))
            elif value is not None:
                _walk(value, path + part, shape + part, out)
    elif kind is list or kind is tuple:
        child_shape = shape + "[*]"
        for i, value in enumerate(node):
            vkind = type(value)
            if vkind is str or vkind is int or vkind is bool:
                out.append((f"{path}[{i}]", child_shape, value))
            elif vkind is float:
                out.append((f"{path}[{i}]", FLOAT_SHAPE, value))
            elif value is not None:
                _walk(value, f"{path}[{i}]", child_shape, out)
    elif kind is float:
        out.append((path, FLOAT_SHAPE, node))
    elif node is not None:
        out.append((path, shape, node))


def leaf_paths(record: Mapping[str, Any]) -> tuple[list[str], list[Any]] | None:
    """``(paths, values)`` of every leaf of *record*, in the order of :func:`iter_leaves`.

    The policy's per-layout cache keys on the paths alone, so this walk builds no shapes.
    ``None`` when a leaf's shape is not its path's (a binary float, a non-string key): those
    records take :func:`iter_leaves` and the uncached way.
    """
    paths: list[str] = []
    values: list[Any] = []
    if type(record) is not dict and not isinstance(record, Mapping):
        return paths, values
    for key, value in record.items():
        if type(key) is not str:
            return None
        part = _render_key(key)
        if not _walk_paths(value, part[1:] if part[0] == "." else part, paths, values):
            return None
    return paths, values


def _walk_paths(node: Any, path: str, paths: list[str], values: list[Any]) -> bool:
    """:func:`_walk` without shapes; ``False`` on a float or a non-string key."""
    kind = type(node)
    if kind is dict or (kind is not list and kind is not str and isinstance(node, Mapping)):
        for key, value in node.items():
            if type(key) is not str:
                return False
            part = _KEYS.get(key) or _render_key(key)
            vkind = type(value)
            if vkind is str or vkind is int or vkind is bool:
                paths.append(path + part)
                values.append(value)
            elif value is None:
                continue
            elif vkind is float or not _walk_paths(value, path + part, paths, values):
                return False
    elif kind is list or kind is tuple:
        for i, value in enumerate(node):
            vkind = type(value)
            if vkind is str or vkind is int or vkind is bool:
                paths.append(f"{path}[{i}]")
                values.append(value)
            elif value is None:
                continue
            elif vkind is float or not _walk_paths(value, f"{path}[{i}]", paths, values):
                return False
    elif kind is float:
        return False
    elif node is not None:
        paths.append(path)
        values.append(node)
    return True


Extractor = Callable[[Any], list[Any] | None]
"""Leaf values of a record of the compiled layout, in document order; ``None`` otherwise."""
_EXTRACT_LEAVES = 2_000
"""Layouts larger than this are not compiled (they take :func:`leaf_paths`)."""


def compile_extractor(record: Any) -> Extractor | None:
    """An :data:`Extractor` for the layout of *record* (see the module docstring).

    For any record ``r`` it returns either ``None`` or ``leaf_paths(r)[1]``, and it returns the
    values exactly when ``leaf_paths(r)[0] == leaf_paths(record)[0]`` and ``r`` is built of the
    same container types with ``str``/``int``/``bool`` leaves (a property test pins it). Returns
    ``None`` (nothing to compile) for a record whose leaves are not all ``str``/``int``/``bool``
    or that is not made of ``dict``/``list``/``tuple``.
    """
    lines: list[str] = []
    consts: dict[str, Any] = {"_L": _LEAF_TYPES}
    leaves: list[str] = []
    counter = [0]

    def name() -> str:
        counter[0] += 1
        return f"n{counter[0]}"

    def emit(node: Any, var: str) -> bool:
        kind = type(node)
        if kind is dict:
            keys = tuple(node)
            if any(type(k) is not str for k in keys):
                return False
            key_const = f"K{len(consts)}"
            consts[key_const] = keys
            lines.append(
                f"    if type({var}) is not dict or tuple({var}) != {key_const}: return None"
            )
            items: list[tuple[str, Any]] = [(repr(k), v) for k, v in node.items()]
        elif kind is list or kind is tuple:
            lines.append(
                f"    if type({var}) is not {kind.__name__} or len({var}) != {len(node)}:"
                " return None"
            )
            items = [(str(i), v) for i, v in enumerate(node)]
        else:
            return False
        for sub, value in items:
            child = name()
            lines.append(f"    {child} = {var}[{sub}]")
            vkind = type(value)
            if value is None:
                lines.append(f"    if {child} is not None: return None")
            elif vkind is str or vkind is int or vkind is bool:
                lines.append(f"    if type({child}) not in _L: return None")
                leaves.append(child)
            elif not emit(value, child):
                return False
            if len(leaves) > _EXTRACT_LEAVES:
                return False
        return True

    if type(record) is not dict or not emit(record, "r"):
        return None
    source = "def extract(r):\n" + "\n".join(lines) + f"\n    return [{', '.join(leaves)}]\n"
    namespace: dict[str, Any] = dict(consts)
    exec(compile(source, "<gateway layout extractor>", "exec"), namespace)
    extract: Extractor = namespace["extract"]
    return extract


_LEAF_TYPES = frozenset({str, int, bool})


class _NonStringKey:
    """Marker value for a mapping key that is not a string (no pattern matches ``[?]``)."""

    def __repr__(self) -> str:
        return "<non-string key>"


NON_STRING_KEY = _NonStringKey()


@lru_cache(maxsize=65536)
def parse_path(text: str) -> tuple[Token, ...]:
    """Tokens of a concrete path or a shape (``[*]`` becomes an any-index token)."""
    tokens: list[Token] = []
    pos = 0
    while pos < len(text):
        m = _PATH_TOKEN.match(text, pos)
        if m is None:
            raise ValueError(f"'{text}' is not a field path (stuck at offset {pos})")
        key, index, quoted = m.groups()
        if key is not None:
            tokens.append(("k", key))
        elif quoted is not None:
            tokens.append(("k", json.loads(quoted)))
        else:
            tokens.append(_ANY_INDEX if index == "*" else ("i", int(index)))
        pos = m.end()
    return tuple(tokens)


class Pattern:
    """A compiled field pattern, e.g. ``extensions[*].data.lineage.**.supplierId``."""

    __slots__ = ("_tokens", "text")

    def __init__(self, text: str) -> None:
        if not PATTERN_RE.match(text):
            raise ValueError(
                f"'{text}' must be dotted keys with optional '*', '**' and '[*]' segments"
            )
        self.text = text
        tokens: list[Token] = []
        for segment in text.split("."):
            head = segment.partition("[")[0]
            tokens.append(_ANY_DEPTH if head == "**" else _ANY_KEY if head == "*" else ("k", head))
            tokens.extend(_ANY_INDEX for _ in range(segment.count("[*]")))
        self._tokens = tuple(tokens)

    def __repr__(self) -> str:
        return f"Pattern({self.text!r})"

    @property
    def has_wildcard_key(self) -> bool:
        return any(t in (_ANY_KEY, _ANY_DEPTH) for t in self._tokens)

    def matches(self, shape: str) -> bool:
        """Does this pattern match the shape (indices as ``[*]``) of a leaf?"""
        try:
            target = parse_path(shape)
        except ValueError:
            return False
        return _match(self._tokens, target)


def _match(pattern: Sequence[Token], target: Sequence[Token]) -> bool:
    memo: dict[tuple[int, int], bool] = {}

    def go(i: int, j: int) -> bool:
        key = (i, j)
        if key in memo:
            return memo[key]
        if i == len(pattern):
            result = j == len(target)
        elif pattern[i] == _ANY_DEPTH:
            result = any(go(i + 1, k) for k in range(j, len(target) + 1))
        elif j == len(target):
            result = False
        else:
            p, t = pattern[i], target[j]
            if p == _ANY_KEY:
                ok = t[0] == "k"
            elif p[0] == "i":
                ok = t[0] == "i"
            else:
                ok = p == t
            result = ok and go(i + 1, j + 1)
        memo[key] = result
        return result

    return go(0, 0)


@lru_cache(maxsize=65536)
def bind_indices(pattern: str, path: str) -> str | None:
    """Fill the ``[*]`` of *pattern* with the indices of the concrete *path*, left to right.

    Used for related fields: the denominator of ``facility.energy[2].quantity`` is named by the
    pattern ``facility.productionVolume.quantity`` (no index) or ``inputs[*].mass`` (index bound
    from the path). Returns ``None`` when the path has fewer indices than the pattern needs.
    """
    indices = [t[1] for t in parse_path(path) if t[0] == "i"]
    parts = pattern.split("[*]")
    if len(parts) - 1 > len(indices):
        return None
    out = parts[0]
    for index, part in zip(indices, parts[1:], strict=False):
        out += f"[{index}]{part}"
    return out


def get_path(record: Any, path: str) -> Any:
    """The value at a concrete path, or ``None`` when any step is missing."""
    node = record
    for token in parse_path(path):
        kind = token[0]
        if kind == "k":
            if not (type(node) is dict or isinstance(node, Mapping)) or token[1] not in node:
                return None
            node = node[token[1]]
        elif kind == "i":
            if not (type(node) is list or isinstance(node, tuple)) or not 0 <= token[1] < len(node):
                return None
            node = node[token[1]]
        else:
            return None
    return node
