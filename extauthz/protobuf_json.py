"""A JWT header or payload read as JSON the way Envoy reads it: protobuf's JSON parser into a
`google.protobuf.Struct`, in its legacy (lenient) mode. Measured against Envoy 1.40:

- accepted beyond RFC 8259: 'single-quoted' strings, bare-word keys, trailing commas in
  objects and arrays, raw control characters in strings, the escapes \\' and \\UXXXX;
  a top-level `null` (an empty Struct);
- refused although RFC 8259 allows it: a key named twice in one object, a number that is
  not a finite double (1e400), a lone or reversed surrogate escape (and the pair that makes
  U+10FFFF), more than 100 nested objects and arrays.

Python's own decoder takes the common case; whatever it refuses, or whatever could hold a
difference it would not see (surrogate escapes, deep nesting), goes to `_LegacyParser`, a
port of protobuf's json_internal::JsonLexer, which has the last word.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

MAX_DEPTH = 100  # protobuf's ParseOptions::kDefaultDepth: objects and arrays, together
_WHITESPACE = " \t\r\n"  # JsonLexer::SkipToToken
_DIGITS = frozenset("0123456789")
_SIMPLE_ESCAPES = {
    '"': '"', "\\": "\\", "/": "/", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t",
    "'": "'",  # legacy syntax only, which Envoy's parser runs with
}  # fmt: skip
_BARE_WORD = re.compile(r"[A-Za-z0-9_]*")
_NUMBER_CHARS = frozenset("0123456789.eE+-")
# How every RFC 8259 object starts (JSON whitespace, a brace, then a key or the closing
# brace). Python's decoder refuses any other text, raising an error that costs more than
# the exact parser takes to refuse junk (or to read legacy syntax or a top-level null), so
# such text goes straight to the exact parser.
_STRICT_OBJECT_START = re.compile(r'[ \t\n\r]*\{[ \t\n\r]*["}]')
# An escape the fast path might judge differently: a surrogate, or \U.
_SURROGATE_OR_U_ESCAPE = re.compile(r"\\(?:[uU][dD][89a-fA-F]|U)")


class _Invalid(ValueError):
    pass


def _reject_constant(name: str) -> Any:
    raise _Invalid(f"{name} is not JSON")


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # A Struct's fields are a map: protobuf's parser refuses an object naming a key twice.
    result = dict(pairs)
    if len(result) != len(pairs):
        raise _Invalid("duplicate key")
    return result


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):  # every JSON number is a double in a Struct
        raise _Invalid(f"number {text} is not a finite double")
    return value


# An integer of up to this many digits is a finite double (the largest is 309 digits long).
_SAFE_INT_DIGITS = 300


def _finite_int(text: str) -> int:
    if len(text) > _SAFE_INT_DIGITS and not math.isfinite(float(text)):
        raise _Invalid(f"number {text} is not a finite double")
    return int(text)


# One decoder for every token (json.loads with options would build a new one per call).
# strict=False: raw control characters in strings are accepted, as in legacy syntax.
_DECODER = json.JSONDecoder(
    parse_constant=_reject_constant,
    object_pairs_hook=_unique_keys,
    parse_float=_finite_float,
    parse_int=_finite_int,
    strict=False,
)
# A text no longer than that holds no integer _finite_int could refuse: it is read without
# that hook (a Python call per integer, two in most payloads: iat and exp).
_SHORT_DECODER = json.JSONDecoder(
    parse_constant=_reject_constant,
    object_pairs_hook=_unique_keys,
    parse_float=_finite_float,
    strict=False,
)


def parse_struct(text: str) -> dict[str, Any] | None:
    """The object `text` holds, {} for a top-level null, None when Envoy finds no Struct."""
    if (
        _STRICT_OBJECT_START.match(text) is not None
        and text.count("{") + text.count("[") <= MAX_DEPTH
        and _SURROGATE_OR_U_ESCAPE.search(text) is None
    ):
        try:
            value = (_SHORT_DECODER if len(text) <= _SAFE_INT_DIGITS else _DECODER).decode(text)
        except (ValueError, RecursionError):
            pass  # maybe legacy syntax: the exact parser decides
        else:
            return _as_struct(value)
    try:
        return _as_struct(_LegacyParser(text).document())
    except (_Invalid, RecursionError):
        return None


def _as_struct(value: object) -> dict[str, Any] | None:
    if value is None:
        return {}
    return value if isinstance(value, dict) else None


class _LegacyParser:
    """protobuf's JsonLexer with allow_legacy_nonconformant_behavior, over decoded text."""

    __slots__ = ("_depth", "_pos", "_text")

    def __init__(self, text: str) -> None:
        self._text = text
        self._pos = 0
        self._depth = 0

    def document(self) -> Any:
        kind = self._peek()
        if kind not in "{n":
            raise _Invalid("a Struct is an object")
        value = self._value()
        self._skip()
        if self._pos != len(self._text):
            raise _Invalid("data after the object")
        return value

    def _skip(self) -> None:
        text, pos = self._text, self._pos
        while pos < len(text) and text[pos] in _WHITESPACE:
            pos += 1
        self._pos = pos

    def _peek(self) -> str:
        self._skip()
        if self._pos >= len(self._text):
            raise _Invalid("unexpected end")
        return self._text[self._pos]

    def _take(self, literal: str) -> bool:
        """Peek(literal): consume it (after whitespace) when it is next."""
        self._skip()
        if self._text.startswith(literal, self._pos):
            self._pos += len(literal)
            return True
        return False

    def _expect(self, literal: str) -> None:
        if not self._take(literal):
            raise _Invalid(f"expected {literal!r}")

    def _value(self) -> Any:
        c = self._peek()
        if c == "{":
            return self._object()
        if c == "[":
            return self._array()
        if c in "\"'":
            return self._string()
        if c == "-" or c in _DIGITS:
            return self._number()
        for literal, value in (("true", True), ("false", False), ("null", None)):
            if c == literal[0]:
                self._expect(literal)
                return value
        raise _Invalid(f"unexpected character {c!r}")

    def _push(self) -> None:
        self._depth += 1
        if self._depth > MAX_DEPTH:
            raise _Invalid("nested too deeply")

    def _object(self) -> dict[str, Any]:
        self._expect("{")
        self._push()
        result: dict[str, Any] = {}
        if not self._take("}"):
            has_comma = True
            while True:  # VisitObject: a trailing comma is accepted
                if not has_comma:
                    raise _Invalid("expected ','")
                key = self._string() if self._peek() in "\"'" else self._bare_word()
                self._expect(":")
                if key in result:
                    raise _Invalid("duplicate key")
                result[key] = self._value()
                has_comma = self._take(",")
                if self._take("}"):
                    break
        self._depth -= 1
        return result

    def _array(self) -> list[Any]:
        self._expect("[")
        self._push()
        result: list[Any] = []
        if not self._take("]"):
            has_comma = True
            while True:  # VisitArray: a trailing comma is accepted
                if not has_comma:
                    raise _Invalid("expected ','")
                result.append(self._value())
                has_comma = self._take(",")
                if self._take("]"):
                    break
        self._depth -= 1
        return result

    def _bare_word(self) -> str:
        match = _BARE_WORD.match(self._text, self._pos)
        word = match.group() if match else ""
        if not word or word[0] in _DIGITS or word in ("null", "true", "false"):
            raise _Invalid("expected a key")
        self._pos += len(word)
        return word

    def _string(self) -> str:
        text = self._text
        quote = text[self._pos]
        pos = self._pos + 1
        out: list[str] = []
        while True:
            if pos >= len(text):
                raise _Invalid("end inside a string")
            c = text[pos]
            pos += 1
            if c == quote:
                self._pos = pos
                return "".join(out)
            if c != "\\":
                out.append(c)  # control characters included (legacy syntax)
                continue
            if pos >= len(text):
                raise _Invalid("end inside a string")
            escape = text[pos]
            pos += 1
            if escape in "uU":
                self._pos = pos
                out.append(self._unicode_escape())
                pos = self._pos
            elif escape in _SIMPLE_ESCAPES:
                out.append(_SIMPLE_ESCAPES[escape])
            else:
                raise _Invalid(f"invalid escape {escape!r}")

    def _hex4(self) -> int:
        digits = self._text[self._pos : self._pos + 4]
        if len(digits) != 4 or not all(c in "0123456789abcdefABCDEF" for c in digits):
            raise _Invalid("invalid unicode escape")
        self._pos += 4
        return int(digits, 16)

    def _unicode_escape(self) -> str:
        rune = self._hex4()
        if 0xD800 <= rune <= 0xDBFF:
            self._expect("\\u")  # (after whitespace, as Expect skips it)
            low = self._hex4()
            if not 0xDC00 <= low <= 0xDFFF:
                raise _Invalid("invalid low surrogate")
            rune = 0x10000 + ((rune & 0x3FF) << 10 | (low & 0x3FF))
        elif 0xDC00 <= rune <= 0xDFFF:
            raise _Invalid("unpaired low surrogate")
        if rune >= 0x10FFFF:
            raise _Invalid("invalid codepoint")
        return chr(rune)

    def _number(self) -> int | float:
        """ParseRawNumber: the longest run its state machine takes, then SimpleAtod."""
        text, start = self._text, self._pos
        pos, state, prev = start, "int", ""
        while pos < len(text) and text[pos] in _NUMBER_CHARS:
            c, last_was_digit = text[pos], prev in _DIGITS
            if c in _DIGITS:
                pass
            elif state == "int" and c == "-":
                if last_was_digit:
                    break
            elif state == "int" and last_was_digit and c == ".":
                state = "fraction"
            elif state != "exponent" and last_was_digit and c in "eE":
                state = "exponent"
            elif not (prev in ("e", "E") and c in "+-"):
                break
            prev = c
            pos += 1
        number = text[start:pos]
        digits = number.removeprefix("-")
        if not digits or (len(digits) > 1 and digits[0] == "0" and digits[1] in _DIGITS):
            raise _Invalid(f"invalid number {number!r}")
        if number.endswith("."):
            raise _Invalid("number ends with '.'")
        try:
            value = _finite_float(number)
        except ValueError as exc:
            raise _Invalid(f"invalid number {number!r}") from exc
        self._pos = pos
        if pos < len(text) and self._peek() not in ",]}":
            raise _Invalid("unexpected character after a number")
        return int(number) if state == "int" else value
