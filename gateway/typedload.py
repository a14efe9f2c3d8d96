"""Build frozen dataclasses from YAML data, rejecting unknown keys and naming lines.

The YAML is composed (not loaded) so every value keeps the line it came from; the loader
then walks the dataclass type hints. Errors are collected, not raised one at a time, so a
technician sees every problem in one run.
"""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import math
import re
import sys
import types
import typing
from collections.abc import Mapping
from typing import (
    Annotated,
    Any,
    Literal,
    TypeVar,
    Union,
    get_args,
    get_origin,
    get_type_hints,
)

import yaml

T = TypeVar("T")


@dataclasses.dataclass(frozen=True, slots=True)
class Located:
    """A YAML scalar, list or mapping with the line it started on (1-based)."""

    value: Any
    line: int
    # The text of a plain scalar YAML 1.1 reads as something else: 0101 (octal 65),
    # 0x00158d0001a2b3c4 (Zigbee2MQTT's default device name), 22:00 (1320), ON or no
    # (booleans). A string field takes the text as written.
    text: str | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class Range:
    """Bounds for a config number, as `Annotated[float, Range(0, above=True)]`.

    Ports, periods and rates have values that load as numbers but cannot work: a zero
    rate divides by zero at run time, a port of 70000 fails at every connect. They are
    problems with a line, like a wrong type.
    """

    low: float | None = None
    high: float | None = None
    above: bool = False  # `low` itself is out: the value must be greater
    why: str = ""  # appended to the problem, e.g. what the bound protects
    unit: str = ""  # what the number counts, e.g. "seconds": named in every problem

    def problem(self, value: float, what: str, shown: object = None) -> str | None:
        """None when `value` is in range, else the problem to report (showing `shown`)."""
        if (self.low is None or value > self.low or (value == self.low and not self.above)) and (
            self.high is None or value <= self.high
        ):
            return None
        why = f" ({self.why})" if self.why else ""
        shown = value if shown is None else shown
        return f"expected {what} {self.describe()}, got {shown!r}{why}"

    def describe(self) -> str:
        """The bounds in words: `greater than 0`, `of at least 1`, `from 1 to 65535`."""
        if self.low is not None and self.high is not None and not self.above:
            return f"from {self.low:g} to {self.high:g}"
        parts = []
        if self.low is not None:
            parts.append(f"{'greater than' if self.above else 'at least'} {self.low:g}")
        if self.high is not None:
            parts.append(f"at most {self.high:g}")
        text = " and ".join(parts)
        return text if self.above else f"of {text}"


class LineLoader(yaml.SafeLoader):
    """Safe YAML loader that keeps line numbers on every node."""


class _TreeError(Exception):
    """A problem found while converting the composed tree: a line and what is wrong."""

    def __init__(self, line: int, problem: str, path: str = "") -> None:
        super().__init__(problem)
        self.line = line
        self.problem = problem
        self.path = path  # the key path it is at, when the problem does not name it


_MERGE = "tag:yaml.org,2002:merge"
_BREAKS = re.compile("[\x85\u2028\u2029]")  # line breaks to YAML 1.1, not to editors
_SURROGATE = re.compile("[\ud800-\udfff]")
_NULL = "tag:yaml.org,2002:null"
# Tags a config may carry. Others were read silently as something else: `!include x.yaml`
# on a section as the section itself, `!!binary` as the text "b'...'", `!!set` as a map.
_TAGS = frozenset(
    f"tag:yaml.org,2002:{t}"
    for t in ("str", "int", "float", "bool", "null", "map", "seq", "timestamp", "merge")
)


# More values than any site's config holds: aliases of aliases (`b: [*a, *a, *a]`, ten
# levels deep) expand to billions, which would hang `check` and a reload.
MAX_VALUES = 200_000


class _Budget:
    """Counts the values a tree expands to, aliases followed."""

    def __init__(self) -> None:
        self.left = MAX_VALUES

    def spend(self, line: int) -> None:
        self.left -= 1
        if self.left < 0:
            raise _TreeError(
                line,
                f"the file expands to more than {MAX_VALUES:,} values"
                " (aliases that repeat aliases?)",
            )


def compose(text: str, *, filename: str) -> Located:
    """Parse YAML into a tree of `Located` values; raise ValueError with file:line on syntax.

    The line is followed by the key path the error is in (`rules[0].match`) unless that is
    the top of the file.
    """
    if (odd := _BREAKS.search(text)) is not None:
        # YAML 1.1 counts these as line breaks and editors do not: every later line number
        # would be off, and one in a comment ends it. Invisible, so it is named on its own.
        line = text.count("\n", 0, odd.start()) + 1
        path = _path_at(_BREAKS.sub(" ", text), odd.start())
        where = f"{filename}:{line}: {path}" if path else f"{filename}:{line}"
        raise ValueError(
            f"{where}: invalid YAML: an invisible line break U+{ord(odd.group()):04X}"
            " (pasted from a web page or a document?); delete it"
        )
    try:
        node = yaml.compose(text, Loader=LineLoader)
        # Constructing scalars can fail too (an unknown tag such as `!secret`).
        return Located({}, 1) if node is None else _convert(node, "", set(), set(), _Budget())
    except RecursionError:
        # The parser and the walk recurse per level: [[[[...]]]] hundreds deep.
        raise ValueError(
            f"{filename}: invalid YAML: nested too deep (hundreds of levels of lists or mappings)"
        ) from None
    except _TreeError as exc:
        where = f"{filename}:{exc.line}: {exc.path}" if exc.path else f"{filename}:{exc.line}"
        raise ValueError(f"{where}: invalid YAML: {exc.problem}") from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f"{filename}:{mark.line + 1}" if mark is not None else filename
        path, ended = _path_of_error(text, exc)
        where = f"{where}: {path}" if path else where
        # Where a line's indentation ended `path`, PyYAML's context names the outer mapping.
        raise ValueError(f"{where}: invalid YAML: {_explained(exc, context=not ended)}") from None
    except yaml.reader.ReaderError as exc:  # a control character; has a position, not a mark
        line = text.count("\n", 0, exc.position) + 1
        # The reader refuses the whole text before parsing; with the characters blanked out
        # the parser can say which value held the one reported.
        path = _path_at(yaml.reader.Reader.NON_PRINTABLE.sub(" ", text), exc.position)
        where = f"{filename}:{line}: {path}" if path else f"{filename}:{line}"
        raise ValueError(f"{where}: invalid YAML: {exc.reason}") from None


@dataclasses.dataclass(slots=True)
class _Open:
    """A list or mapping the parser is inside, and which of its entries it is at."""

    mapping: bool
    flow: bool  # [..] or {..}: indentation means nothing inside it
    column: int  # a block list's `-` or block mapping's keys: a line indented less ends it
    start: int  # where it starts in the text: a list or mapping used as a key is named by it
    is_key: bool  # this collection is a mapping key (`? [a, b]`): its contents have no path
    key: str | None = None  # mapping: the key whose value is being read; None while a key is due
    index: int = 0  # list: the items finished


class _Where:
    """Follows the parser's events to know the key path of the place it has reached."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.open: list[_Open] = []
        self.last_end = -1  # where the last node given out ended
        self.last_line = 0  # the line the last event ended on (0-based)

    def feed(self, event: yaml.Event) -> None:
        """Take one event of the parser's stream."""
        self.last_line = event.end_mark.line if event.end_mark is not None else 0
        if isinstance(event, yaml.CollectionEndEvent):
            done = self.open.pop()
            self._finish(self.text[done.start : _index(event.end_mark)] if done.is_key else "")
            return
        self.last_end = _index(event.end_mark)
        if isinstance(event, yaml.CollectionStartEvent):
            mark = event.end_mark  # a block collection's first key or `-`, after any &anchor
            column = mark.column if mark is not None else 0
            self.open.append(
                _Open(
                    mapping=isinstance(event, yaml.MappingStartEvent),
                    flow=bool(event.flow_style),
                    # An indentless list (`key:` then `- a` at its column) ends after its `-`.
                    column=column - 1 if event.flow_style is None else column,
                    start=_index(event.start_mark),
                    is_key=bool(self.open) and self.open[-1].mapping and self.open[-1].key is None,
                )
            )
        elif isinstance(event, yaml.ScalarEvent):
            self._finish(event.value)
        elif isinstance(event, yaml.AliasEvent):
            self._finish(f"*{event.anchor}")

    def _finish(self, key: str) -> None:
        """A node ended: as a mapping's key (`key`, as written), its value, or a list's item."""
        if not self.open:
            return
        top = self.open[-1]
        if not top.mapping:
            top.index += 1
        elif top.key is None:
            top.key = _one_line(key) or "''"  # `: x`: an empty key, not a missing path step
        else:
            top.key = None

    def dedent(self, line: int, column: int) -> bool:
        """A node starts at `line`, `column`: close what its indentation ends; False if it is
        not an item of the list left innermost (it stands where the list's `-` go).

        The scanner reads ahead of the parser: `zones` without its colon at column 0 fails
        while the lists and mappings its indentation closes are still open here.
        """
        if any(o.flow for o in self.open):
            return True  # indentation means nothing inside [..] or {..}
        while self.open and self.open[-1].column > column:
            self.open.pop()
            self._finish("")
        if not self.open:
            return True
        top = self.open[-1]
        if not top.mapping:
            return top.column < column
        if top.key is not None and line > self.last_line and column <= top.column:
            top.key = None  # `key:` then a line at its own column: no value, the next key
        return True

    def path(self, *, entering: bool) -> str:
        """The path of the open collections; `entering`: a node starts in the innermost one."""
        path = ""
        for depth, at in enumerate(self.open):
            if at.is_key:
                break  # inside a list or mapping used as a key: the path ends at its mapping
            if at.mapping:
                if at.key is not None:
                    path = f"{path}.{at.key}" if path else at.key
            elif depth + 1 < len(self.open) or entering:
                # An item is named once it has started; between items the list is the place.
                path = f"{path}[{at.index}]"
        # `[[[[...` a few hundred deep, unclosed, would make a path longer than the file's lines.
        return path if len(path) <= 120 else f"{path[:57]}...{path[-60:]}"


def _path_of_error(text: str, exc: yaml.MarkedYAMLError) -> tuple[str, bool]:
    """The key path (`rules[0].match`) where `exc` stopped the parser ("" for none or the top),
    and whether it names what the error's line ended by its indentation rather than what holds
    that line.
    """
    problem, context = exc.problem_mark, exc.context_mark
    if problem is None:
        return "", False
    try:
        if isinstance(exc, yaml.parser.ParserError):
            return _parser_error_path(text, exc, problem)
        if isinstance(exc, yaml.scanner.ScannerError):
            # The scanner reads ahead of the parser (a `[` may turn out to be a key), so the
            # events before its error are not all out: parse only the text before it.
            in_node = context is not None and _IN_NODE.match(exc.context or "") is not None
            mark = context if in_node and context is not None else problem
            where = _replay(text[: mark.index], mark.index)
            return where.path(entering=in_node and where.dedent(mark.line, mark.column)), False
        # An undefined alias, a duplicate anchor, an unknown tag: the node at the mark.
        return _path_at(text, problem.index), False
    except Exception:  # noqa: BLE001 - the path is a courtesy; the error is reported anyway
        return "", False


def _parser_error_path(
    text: str, exc: yaml.MarkedYAMLError, problem: yaml.Mark
) -> tuple[str, bool]:
    """Replay the events up to the parser's error; exact, as the parser reads no further."""
    where = _Where(text)
    ended = ""  # what the offending line's indentation closed, outermost
    try:
        for event in yaml.parse(text, Loader=LineLoader):
            closes_here = _index(event.start_mark) == problem.index
            if isinstance(event, yaml.CollectionEndEvent) and closes_here:
                ended = where.path(entering=False)
            else:
                ended = ""
            where.feed(event)
    except yaml.MarkedYAMLError as again:
        if not _same(again, exc):
            return "", False  # not the error reported: the text parsed differently
        outer = where.open[-1] if where.open else None
        if ended and outer is not None and not outer.flow and problem.column > outer.column:
            # ` port: 1` under mqtt's two-space keys ends mqtt, then fits nowhere in the
            # mapping around it: it was meant for mqtt.
            return ended, True
        context = exc.context_mark
        if context is not None and context.index >= where.last_end and exc.context in _NODES:
            # `- ]`: where the list's next item was due.
            return where.path(entering=where.dedent(context.line, context.column)), False
        # A missing `,` or `}`, or a line no mapping or list can take: between entries.
        return where.path(entering=False), False
    return "", False


def _replay(text: str, stop: int) -> _Where:
    """The parser's place where `text`, cut short at `stop`, ends."""
    where = _Where(text)
    held: yaml.Event | None = None  # an empty value: the cut text's end, or the whole text's?
    with contextlib.suppress(yaml.MarkedYAMLError):  # the cut text ends where it cannot
        for event in yaml.parse(text, Loader=LineLoader):
            if _index(event.start_mark) >= stop:
                break  # the end of the text closes what is open: not so in the whole text
            if held is not None:
                where.feed(held)
                held = None
            if isinstance(event, yaml.ScalarEvent) and not event.value and event.style is None:
                held = event  # `key:` or `-` just before the cut: its value may follow it
            else:
                where.feed(event)
    return where


def _path_at(text: str, index: int) -> str:
    """The path of the node that starts at, or spans, `index` in `text` ("" if none)."""
    where = _Where(text)
    try:
        for event in yaml.parse(text, Loader=LineLoader):
            if not isinstance(event, yaml.CollectionEndEvent) and (
                _index(event.start_mark) >= index or _index(event.end_mark) > index
            ):
                return where.path(entering=True)
            where.feed(event)
    except yaml.MarkedYAMLError as again:
        if _index(again.problem_mark) >= index:  # a blanked character that cannot stand there
            return where.path(entering=False)
    except Exception:  # noqa: BLE001, S110 - the path is a courtesy; the error is reported anyway
        pass
    return ""


# The scanner's contexts whose mark is the start of one node: a quote, a tag, a key.
_IN_NODE = re.compile(r"while scanning an? ")
# The parser's, where a node was due (`- ]`).
_NODES = ("while parsing a node", "while parsing a block node", "while parsing a flow node")


def _index(mark: yaml.Mark | yaml._yaml.Mark | None) -> int:
    """A mark's offset in the text, -1 for none."""
    return mark.index if mark is not None else -1


def _one_line(text: str) -> str:
    """A key as one short line: a quoted key may hold line breaks, a `? [a, b]` key is text."""
    text = " ".join(text.split())
    return text if len(text) <= 40 else text[:37] + "..."


def _same(one: yaml.MarkedYAMLError, other: yaml.MarkedYAMLError) -> bool:
    """The same problem at the same place."""
    return (type(one), one.problem, _index(one.problem_mark)) == (
        type(other),
        other.problem,
        _index(other.problem_mark),
    )


_WHILE = re.compile(r"while (?:parsing|scanning|constructing) an? (.+)")
# PyYAML's names for what it was reading, in a technician's words.
_NOUNS = {
    "flow mapping": "{ } mapping",
    "flow sequence": "[ ] list",
    "block mapping": "mapping",
    "block collection": "list",
    "quoted scalar": "quoted text",
    "plain scalar": "text",
    "block scalar": "| or > text",
    "simple key": "key",
}


def _explained(exc: yaml.MarkedYAMLError, *, context: bool = True) -> str:
    """PyYAML's problem, with where the list, mapping or quote it was reading started."""
    problem = exc.problem or "not readable"
    mark = exc.context_mark
    if not (context and exc.context) or "next token" in exc.context:
        return problem  # "while scanning for the next token" says nothing the line does not
    # Where the unclosed `{`, `[` or quote opened is the line to look at, not where it ended.
    elsewhere = mark is not None and mark.index != _index(exc.problem_mark)
    line = f"line {mark.line + 1}" if mark is not None else ""
    if found := _WHILE.fullmatch(exc.context):
        what = _NOUNS.get(found[1], found[1])
        return f"{problem} (in the {what} that starts on {line})" if elsewhere else problem
    # "found duplicate anchor 'a'; first occurrence" + "second occurrence"
    return f"{exc.context} on {line}, {problem}" if elsewhere else f"{exc.context}, {problem}"


def _surrogates_joined(value: str, line: int, path: str) -> str:
    r"""`"\ud83d\ude00"` as the one character it stands for; a lone half is refused.

    PyYAML reads each `\u` escape on its own. A lone half is no character: the journal's
    UTF-8 refused it at the first alert, and the daemon died.
    """
    try:
        return value.encode("utf-16-le", "surrogatepass").decode("utf-16-le")
    except UnicodeDecodeError:
        problem = "holds a \\u escape that is no character (half a UTF-16 surrogate pair)"
        raise _TreeError(line, problem, path) from None


def _convert(
    node: yaml.Node, path: str, open_nodes: set[int], flattened: set[int], budget: _Budget
) -> Located:
    line = node.start_mark.line + 1
    budget.spend(line)
    if node.tag not in _TAGS:
        tag = node.tag.replace("tag:yaml.org,2002:", "!!")
        problem = f"the tag {tag} is not supported: alertgw reads plain YAML"
        raise _TreeError(line, problem, path)
    if not isinstance(node, yaml.MappingNode | yaml.SequenceNode):
        try:
            value = LineLoader("").construct_object(node)
        except (ValueError, TypeError, AttributeError, OverflowError) as exc:
            # PyYAML's constructors fail with plain Python errors on a value their tag
            # cannot hold: `!!timestamp x`, a date such as 2024-13-45, `!!int 0x`.
            tag = str(node.tag).rsplit(":", 1)[-1]
            problem = f"{node.value!r} is not a valid {tag}"
            detail = str(exc) if isinstance(exc, ValueError) else ""
            raise _TreeError(line, f"{problem} ({detail})" if detail else problem, path) from None
        if isinstance(value, str) and _SURROGATE.search(value):
            value = _surrogates_joined(value, line, path)
        return Located(value, line, _as_written(node, value))
    if id(node) in open_nodes:
        # `&a [*a]` composes to a node inside itself; following it would never end.
        raise _TreeError(line, f"{path or 'the document'} contains itself through an alias")
    open_nodes.add(id(node))
    try:
        if isinstance(node, yaml.SequenceNode):
            items = [
                _convert(item, f"{path}[{i}]", open_nodes, flattened, budget)
                for i, item in enumerate(node.value)
            ]
            return Located(items, line)
        out: dict[str, Located] = {}
        if id(node) not in flattened:
            _reject_duplicate_keys(node, path)
            # Merge keys (<<) are rare in our configs; SafeLoader's flatten handles them. It
            # rewrites the node in place, so an alias of it must not be checked or flattened
            # a second time (its merged keys would look given twice).
            LineLoader.flatten_mapping(LineLoader(""), node)
            flattened.add(id(node))
        for key_node, value_node in node.value:
            key = _key_text(key_node)
            if isinstance(key_node, yaml.ScalarNode) and key_node.tag == _NULL:
                # `~:` or `: x` would become an id or key named "None".
                raise _TreeError(
                    key_node.start_mark.line + 1, f"{path or 'the document'} has an empty key"
                )
            where = f"{path}.{key}" if path else key
            child = _convert(value_node, where, open_nodes, flattened, budget)
            # A key's problems belong on the key's line, not where a block value starts below.
            out[key] = dataclasses.replace(child, line=key_node.start_mark.line + 1)
        return Located(out, line)
    finally:
        open_nodes.discard(id(node))


def _as_written(node: yaml.Node, value: object) -> str | None:
    """The source text of a plain scalar YAML 1.1 resolved to a number or a yes/on boolean."""
    if not isinstance(node, yaml.ScalarNode) or node.style is not None:
        return None  # quoted: already a string
    if isinstance(value, bool):
        return None if node.value.lower() in ("true", "false") else str(node.value)
    if isinstance(value, int | float):
        return str(node.value)
    return None


def _key_text(key_node: yaml.Node) -> str:
    """A mapping key as written: `0x00158d0001a2b3c4:`, `0101:` or `NO:` stay text."""
    value = LineLoader("").construct_object(key_node)
    written = _as_written(key_node, value)
    return written if written is not None else str(value)


def _reject_duplicate_keys(node: yaml.MappingNode, path: str) -> None:
    """A key given twice would silently drop the first value (a whole rule list, say)."""
    first: dict[str, int] = {}
    for key_node, _ in node.value:
        if key_node.tag == _MERGE:
            continue  # keys merged in with << may be overridden; that is what merging is for
        key = _key_text(key_node)
        line = key_node.start_mark.line + 1
        if key in first:
            where = f"{path}.{key}" if path else key
            raise _TreeError(line, f"{where} is given twice (first on line {first[key]})")
        first[key] = line


def plain(loc: Located) -> Any:  # noqa: ANN401 - YAML data is untyped by nature
    """Strip line information from a composed tree.

    `ON`, `off`, `yes` and `no` stay strings: in untyped values (a device's `raised:`) they
    are what a payload carries ("state": "ON"), not YAML 1.1 booleans.
    """
    if isinstance(loc.value, dict):
        return {k: plain(v) for k, v in loc.value.items()}
    if isinstance(loc.value, list):
        return [plain(v) for v in loc.value]
    if isinstance(loc.value, bool) and loc.text is not None:
        return loc.text
    return loc.value


class Problems:
    """Collects one-line errors: `file:line: key.path: what was expected`."""

    def __init__(self, filename: str) -> None:
        self.filename = filename
        self.lines: list[str] = []

    def add(self, line: int, path: str, message: str) -> None:
        """Record one problem."""
        where = f"{self.filename}:{line}" if line else self.filename
        self.lines.append(f"{where}: {path or '<top>'}: {message}")


def _shown(loc: Located) -> str:
    """A value as the technician wrote it, for a problem line (no parser objects)."""
    if loc.value is None:
        return "nothing"
    shown = _flow(loc)
    return shown if len(shown) <= 80 else shown[:77] + "..."


def _flow(loc: Located) -> str:
    """YAML flow style: `true`, `[a, 'b c']`, `{a: 1}`, not Python's True and ['a']."""
    value = loc.value
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_flow(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(_flow(v) for v in value) + "]"
    if loc.text is not None:
        return loc.text  # as written: ON, 0101, 22:00
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(value)


def _describe(tp: Any, *, plural: bool = False) -> str:  # noqa: ANN401 - any type hint
    """What `tp` asks for in a technician's words: `a whole number`, `a list of text`."""
    origin = get_origin(tp)
    if origin is Annotated:
        return _describe(get_args(tp)[0], plural=plural)
    if origin in (Union, types.UnionType):
        kinds = [_describe(a, plural=plural) for a in get_args(tp) if a is not type(None)]
        return " or ".join(kinds)
    if origin is Literal or (isinstance(tp, type) and issubclass(tp, enum.Enum)):
        values = get_args(tp) if origin is Literal else tuple(m.value for m in tp)
        # Text quoted, numbers not: where 7 is wanted, `bytesize: "7"` is refused.
        choices = [repr(v) for v in values]
        listed = ", ".join(choices[:-1]) + f" or {choices[-1]}" if len(choices) > 1 else choices[0]
        return listed if plural or len(choices) == 1 else f"one of {listed}"
    if origin is tuple:
        items = _describe(get_args(tp)[0], plural=True)
        return f"lists of {items}" if plural else f"a list of {items}"
    if origin is Mapping or origin is dict:
        targets = _describe(get_args(tp)[1], plural=True)
        return f"mappings of names to {targets}" if plural else f"a mapping of names to {targets}"
    if dataclasses.is_dataclass(tp):
        return "sections" if plural else "a section of key: value lines"
    if tp in _WORDS:
        return _WORDS[tp][plural]
    return getattr(tp, "__name__", str(tp))


# A scalar type as a technician writes of it: (one, several).
_WORDS: dict[Any, tuple[str, str]] = {
    str: ("text", "text"),
    int: ("a whole number", "whole numbers"),
    float: ("a number", "numbers"),
    bool: ("true or false", "true or false values"),
    Any: ("any value", "values"),
}


_UNIT_EXAMPLES = {"seconds": " (300 for 5 minutes)", "days": " (90 for three months)"}

_MISSING = object()
_FLOAT_MAX = sys.float_info.max


def load(cls: type[T], loc: Located, problems: Problems, path: str = "") -> T:
    """Convert `loc` into an instance of dataclass `cls`, recording problems."""
    result = _load_value(cls, loc, problems, path)
    return typing.cast("T", result)


def _load_value(tp: Any, loc: Located, problems: Problems, path: str) -> Any:  # noqa: ANN401
    origin = get_origin(tp)
    value = loc.value
    if tp is Any:
        return plain(loc)
    if origin is Annotated:
        base, *extras = get_args(tp)
        unit = next((e.unit for e in extras if isinstance(e, Range) and e.unit), "")
        probe = Problems(problems.filename)
        out = _load_value(base, loc, probe, path)
        if probe.lines:  # a wrong type is one problem, not also one of range
            if unit:  # `5 min`, `-1s`: say what the number counts
                probe.lines = [
                    f"{problems.filename}:{loc.line}: {path or '<top>'}: expected {unit} as a"
                    f" number{_UNIT_EXAMPLES.get(unit, '')}, got {_shown(loc)}"
                ]
            problems.lines.extend(probe.lines)
            return out
        what = unit or _describe(base)
        for extra in extras:
            if isinstance(extra, Range) and (found := extra.problem(out, what, value)):
                problems.add(loc.line, path, found)
        return out
    if origin in (Union, types.UnionType):
        args = get_args(tp)
        if value is None and type(None) in args:
            return None
        non_none = [a for a in args if a is not type(None)]
        if len(non_none) == 1:
            return _load_value(non_none[0], loc, problems, path)
        for arg in non_none:
            probe = Problems(problems.filename)
            out = _load_value(arg, loc, probe, path)
            if not probe.lines:
                return out
        problems.add(loc.line, path, f"expected {_describe(tp)}, got {_shown(loc)}")
        return None
    if origin is Literal:
        if loc.text in get_args(tp):
            return loc.text  # `protocol: 5` is the text "5", as written
        if value not in get_args(tp):
            problems.add(loc.line, path, f"expected {_describe(tp)}, got {_shown(loc)}")
        return value
    if origin is tuple:
        (item_tp, _) = get_args(tp)
        if isinstance(value, str | int | float) and not isinstance(value, bool) and item_tp is str:
            return (str(value),)  # a single item where a list is expected
        if not isinstance(value, list):
            problems.add(loc.line, path, f"expected {_describe(tp)}, got {_shown(loc)}")
            return ()
        return tuple(
            _load_value(item_tp, item, problems, f"{path}[{i}]") for i, item in enumerate(value)
        )
    if origin is Mapping or origin is dict:
        _, val_tp = get_args(tp)
        if not isinstance(value, dict):
            problems.add(loc.line, path, f"expected {_describe(tp)}, got {_shown(loc)}")
            return types.MappingProxyType({})
        return types.MappingProxyType(
            {
                str(k): _load_value(val_tp, v, problems, f"{path}.{k}" if path else str(k))
                for k, v in value.items()
            }
        )
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        return _load_dataclass(tp, loc, problems, path)
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        try:
            return tp(value)
        except ValueError:
            problems.add(loc.line, path, f"expected {_describe(tp)}, got {_shown(loc)}")
            return next(iter(tp))
    if tp is bool:
        if not isinstance(value, bool):
            problems.add(loc.line, path, f"expected {_describe(bool)}, got {_shown(loc)}")
        return bool(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            problems.add(loc.line, path, f"expected {_describe(int)}, got {_shown(loc)}")
            return 0
        return value
    if tp is float:
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or abs(value) > _FLOAT_MAX  # a huge YAML integer would overflow float()
            or not math.isfinite(value)
        ):
            problems.add(loc.line, path, f"expected {_describe(float)}, got {_shown(loc)}")
            return 0.0
        return float(value)
    if tp is str:
        if loc.text is not None:
            return loc.text  # `room: 0101` is room "0101", not octal 65
        if isinstance(value, bool) or value is None or isinstance(value, dict | list):
            problems.add(loc.line, path, f"expected {_describe(str)}, got {_shown(loc)}")
            return ""
        return str(value)  # YAML reads room 101 as an int; ids are strings
    raise TypeError(f"unsupported config type {tp!r} at {path}")


def _load_dataclass(cls: type[Any], loc: Located, problems: Problems, path: str) -> Any:  # noqa: ANN401
    value = loc.value
    if value is None:
        value = {}
    if not isinstance(value, dict):
        problems.add(loc.line, path, f"expected {_describe(cls)}, got {_shown(loc)}")
        value = {}
    hints = get_type_hints(cls, include_extras=True)
    fields = {
        f.name: f for f in dataclasses.fields(cls) if f.init and not f.metadata.get("internal")
    }
    kwargs: dict[str, Any] = {}
    written: dict[str, Located] = {}  # field name -> the key as written (hold-off, hold_off)
    for key, sub in value.items():
        name = key.replace("-", "_")
        sub_path = f"{path}.{key}" if path else key
        if name not in fields:
            known = ", ".join(sorted(fields))
            problems.add(sub.line, sub_path, f"unknown key (expected one of: {known})")
            continue
        if name in written:
            # YAML sees two keys; one would silently replace the other.
            first = written[name]
            problems.add(
                sub.line,
                sub_path,
                f"given twice (first as {first.value} on line {first.line}); keep one",
            )
            continue
        written[name] = Located(key, sub.line)
        kwargs[name] = _load_value(hints[name], sub, problems, sub_path)
    for name, field in fields.items():
        if name in kwargs:
            continue
        if field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
            sub_path = f"{path}.{name}" if path else name
            problems.add(loc.line, sub_path, f"missing required key ({_describe(hints[name])})")
            kwargs[name] = _placeholder(hints[name])
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as exc:
        problems.add(loc.line, path, str(exc))
        return None


def _placeholder(tp: Any) -> Any:  # noqa: ANN401
    if get_origin(tp) is Annotated:
        return _placeholder(get_args(tp)[0])
    if tp is str:
        return ""
    if tp in (int, float):
        return 0
    if get_origin(tp) is tuple:
        return ()
    return None


def json_schema(tp: Any) -> dict[str, Any]:  # noqa: ANN401
    """Return a JSON Schema (draft 2020-12) for a config dataclass type."""
    origin = get_origin(tp)
    if tp is Any:
        return {}
    if origin is Annotated:
        base, *extras = get_args(tp)
        bounded = json_schema(base)
        for extra in extras:
            if isinstance(extra, Range):
                if extra.low is not None:
                    bounded["exclusiveMinimum" if extra.above else "minimum"] = extra.low
                if extra.high is not None:
                    bounded["maximum"] = extra.high
        return bounded
    if origin in (Union, types.UnionType):
        return {"anyOf": [json_schema(a) for a in get_args(tp)]}
    if origin is Literal:
        return {"enum": list(get_args(tp))}
    if origin is tuple:
        item = json_schema(get_args(tp)[0])
        return (
            {"anyOf": [{"type": "array", "items": item}, item]}
            if item.get("type") == "string"
            else {"type": "array", "items": item}
        )
    if origin is Mapping or origin is dict:
        return {"type": "object", "additionalProperties": json_schema(get_args(tp)[1])}
    if tp is type(None):
        return {"type": "null"}
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        hints = get_type_hints(tp, include_extras=True)
        props: dict[str, Any] = {}
        required: list[str] = []
        for f in dataclasses.fields(tp):
            if not f.init or f.metadata.get("internal"):
                continue
            sub = json_schema(hints[f.name])
            doc = f.metadata.get("doc") if f.metadata else None
            if doc:
                sub = {**sub, "description": doc}
            props[f.name] = sub
            if "_" in f.name:
                # The loader takes `hold-off` for `hold_off`: an editor must not flag it.
                dashed = f.name.replace("_", "-")
                props[dashed] = {**sub, "description": f"same as {f.name}"}
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                required.append(f.name)
        schema: dict[str, Any] = {
            "type": "object",
            "properties": props,
            "additionalProperties": False,
        }
        if tp.__doc__:
            schema["description"] = tp.__doc__.strip().splitlines()[0]
        if required:
            schema["required"] = required
        return schema
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return {"enum": [m.value for m in tp]}
    scalars: dict[Any, dict[str, Any]] = {
        bool: {"type": "boolean"},
        int: {"type": "integer"},
        float: {"type": "number"},
        str: {"type": ["string", "integer"]},
    }
    return dict(scalars[tp])
