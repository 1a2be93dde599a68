"""Reading and writing protocol YAML, and finding where a field sits in the file.

Protocols are read with ruamel.yaml's round-trip loader, which remembers the line and
column of every key and list item; :func:`locate` turns a pydantic error location
(``("arms", 1, "allocation")``) into that position. Two choices matter:

- YAML timestamps are kept as the text written (``2027-02-30`` stays a string), so an
  impossible date becomes a located field error instead of a loader crash; the
  protocol models parse dates themselves.
- Aliases (``*name``, and the merge keys ``<<: *name`` that use them) are refused at the
  first one, with its position: a protocol is short and written out in full, and a
  few hundred bytes of nested aliases expand to a tree of billions of nodes (an "alias
  bomb" took 8.8 s and 284 MB to validate before this check).
- The validated data is a plain copy (``dict``, ``list``, ``str``...) of the tree, so the
  models never see ruamel's subclasses.
"""

from __future__ import annotations

import io
import re
from collections.abc import Mapping, Sequence
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.composer import Composer, ComposerError
from ruamel.yaml.constructor import RoundTripConstructor
from ruamel.yaml.error import MarkedYAMLError, YAMLError
from ruamel.yaml.events import AliasEvent
from ruamel.yaml.nodes import ScalarNode
from ruamel.yaml.representer import SafeRepresenter

__all__ = ["Location", "YamlSyntaxError", "dump_yaml", "format_field", "locate", "read_yaml"]

Location = tuple[int | str, ...]


class _Constructor(RoundTripConstructor):
    """Round-trip constructor that keeps timestamps as the text written."""


_Constructor.add_constructor("tag:yaml.org,2002:timestamp", _Constructor.construct_yaml_str)


class _Composer(Composer):
    """Composer that refuses aliases before expanding any (see the module's docstring)."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.parser.check_event(AliasEvent):
            event = self.parser.peek_event()
            raise ComposerError(
                None, None,
                f"alias *{event.anchor} is not allowed in a protocol: write the value out",
                event.start_mark,
            )
        return super().compose_node(parent, index)


class YamlSyntaxError(Exception):
    """The text is not YAML; ``line`` and ``col`` are 1-based."""

    def __init__(self, message: str, line: int, col: int) -> None:
        super().__init__(message)
        self.message = message
        self.line = line
        self.col = col


def read_yaml(text: str) -> tuple[Any, Any]:
    """Parse YAML text into ``(plain, tree)``.

    Parameters
    ----------
    text:
        The YAML document.

    Returns
    -------
    tuple
        ``plain`` is built of ``dict``, ``list``, ``str``, ``int``, ``float``, ``bool`` and
        ``None``; ``tree`` is ruamel's round-trip tree, used by :func:`locate`.

    Raises
    ------
    YamlSyntaxError
        With the position of the syntax error (duplicate keys included).

    Examples
    --------
    >>> read_yaml("a: [1, 2]")[0]
    {'a': [1, 2]}
    """
    yaml = YAML(typ="rt")
    yaml.Constructor = _Constructor
    yaml.Composer = _Composer
    try:
        tree = yaml.load(text)
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark is not None else (1, 1)
        what = "; ".join(p for p in (exc.context, exc.problem) if p)
        raise YamlSyntaxError(f"YAML syntax error: {what}", line, col) from exc
    except YAMLError as exc:
        raise YamlSyntaxError(f"YAML syntax error: {exc}", 1, 1) from exc
    return _plain(tree), tree


def _plain(node: Any) -> Any:
    if isinstance(node, Mapping):
        return {_plain(k): _plain(v) for k, v in node.items()}
    if isinstance(node, list | tuple):
        return [_plain(v) for v in node]
    if isinstance(node, bool) or node is None:
        return node
    if isinstance(node, int):
        return int(node)
    if isinstance(node, float):
        return float(node)
    if isinstance(node, str):
        return str(node)
    return node


def locate(tree: Any, loc: Sequence[int | str]) -> tuple[Location, int, int]:
    """Where ``loc`` points in the file.

    Walks ``loc`` down the round-trip tree. Parts that name a key or an item present in
    the file are kept; a missing key (a required field left out) is kept as the last
    part and placed at its parent; parts below a scalar (pydantic's union tags) are
    dropped.

    Returns
    -------
    tuple
        ``(path, line, col)``: the kept parts of ``loc`` and the 1-based position of the
        deepest key or item found (``1, 1`` for the document itself).
    """
    node = tree
    line, col = 1, 1
    kept: list[int | str] = []
    for part in loc:
        if isinstance(node, CommentedMap) and isinstance(part, str):
            kept.append(part)
            if part not in node:
                break
            line, col = (v + 1 for v in node.lc.key(part))
            node = node[part]
        elif isinstance(node, CommentedSeq) and isinstance(part, int):
            kept.append(part)
            if not 0 <= part < len(node):
                break
            line, col = (v + 1 for v in node.lc.item(part))
            node = node[part]
        else:
            # Below a scalar, or a key of a list: the error is reported on this node.
            break
    return tuple(kept), line, col


def format_field(path: Sequence[int | str]) -> str:
    """``("arms", 1, "allocation")`` → ``"arms[1].allocation"``.

    Examples
    --------
    >>> format_field(("periods", "baseline", "start"))
    'periods.baseline.start'
    """
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


# Characters a plain or single-quoted YAML scalar cannot carry unchanged (C0/C1 controls,
# NEL and the Unicode line separators are line breaks or non-printable in YAML 1.2).
_NEEDS_ESCAPES = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\ufeff\ufffe\uffff]")


def _represent_str(representer: SafeRepresenter, value: str) -> ScalarNode:
    # Double quotes are the only style with escapes: use them when a character needs one.
    style = '"' if _NEEDS_ESCAPES.search(value) else None
    return representer.represent_scalar("tag:yaml.org,2002:str", value, style=style)


def dump_yaml(data: Mapping[str, Any]) -> str:
    """Write plain data (``model_dump(mode="json")``) as block-style YAML, keys in order.

    Examples
    --------
    >>> print(dump_yaml({"id": "x", "levels": ["CP"]}), end="")
    id: x
    levels:
    - CP
    """
    yaml = YAML(typ="safe", pure=True)
    yaml.default_flow_style = False
    # Keep the sections in the language's order rather than sorted.
    yaml.sort_base_mapping_type_on_output = False  # type: ignore[assignment]
    yaml.allow_unicode = True
    yaml.width = 100
    yaml.representer.add_representer(str, _represent_str)  # after the options: it builds it
    buffer = io.StringIO()
    yaml.dump(dict(data), buffer)
    return buffer.getvalue()
