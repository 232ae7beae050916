"""RFC 8785 (JSON Canonicalization Scheme, JCS) bytes for ledger documents.

Leaf bytes (SPEC §4) are the JCS form of a small JSON document. We produce them with
``orjson.dumps(obj, option=OPT_SORT_KEYS | OPT_STRICT_INTEGER)``, which is byte-for-byte
JCS *provided* the document meets our preconditions:

* **no floats** (money is a decimal string such as ``"3080000.00"``),
* **all object keys are ASCII** strings,
* **integers lie within ±(2**53 - 1)**,
* only JSON types: ``dict`` (str keys), ``list``/``tuple``, ``str``, ``int``, ``bool``,
  ``None`` (and subclasses of those that orjson serialises by value, e.g. ``IntEnum``).

Why orjson is then equivalent to RFC 8785 §3.2:

* *Whitespace*: orjson emits no insignificant whitespace, as JCS requires.
* *Literals*: ``null``, ``true``, ``false`` are spelled identically.
* *Strings* (§3.2.2.2, i.e. ECMAScript ``JSON.stringify``): ``"`` and ``\\`` are escaped,
  U+0008/0009/000A/000C/000D use the short forms ``\\b \\t \\n \\f \\r``, every other
  U+0000..U+001F becomes ``\\u00xx`` with *lowercase* hex, and everything else (U+007F,
  U+2028/U+2029, ``/``, CJK, astral characters) is written raw as UTF-8. orjson does exactly
  this; ``tests/test_canonical.py`` checks it exhaustively over every Unicode scalar value.
  Lone surrogates are not valid UTF-8 / I-JSON and both orjson and JCS reject them.
* *Numbers* (§3.2.2.3): JCS prints the ECMAScript shortest form of an IEEE-754 double.
  For integers of magnitude <= 2**53 - 1 that is the plain decimal digits, which is what
  orjson writes for ``int``; ``OPT_STRICT_INTEGER`` makes orjson itself refuse anything
  larger (2**53 and beyond are not exactly representable by every JSON reader). orjson's
  *float* formatting is not ECMAScript's (``1e16`` -> ``1e+16`` instead of
  ``10000000000000000``; ``-0.0`` -> ``-0.0`` instead of ``0``; NaN -> ``null`` instead of
  an error), so floats are refused outright.
* *Key order* (§3.2.3): JCS sorts member names by their UTF-16 code units; orjson sorts by
  code point. The two orders agree on ASCII but not in general (U+FB33 sorts before
  U+1F600 by code point, after it in UTF-16 because the latter is the surrogate pair
  D83D DE00), hence the ASCII-key rule. Python dicts cannot carry duplicate keys.

Enforcement is cheap: orjson runs first (it already rejects non-str keys, lone surrogates,
out-of-range integers, cycles and excessive nesting), then a tight type-only walk over the
(small) document checks for floats, non-ASCII keys and non-JSON types. Only when either
step objects does a slower walk run to raise a precise error naming the offending path.
"""

from __future__ import annotations

from typing import Any

import orjson

__all__ = ["MAX_SAFE_INTEGER", "canonical_bytes", "canonical_loads"]

MAX_SAFE_INTEGER = 2**53 - 1
"""Largest integer magnitude allowed in a canonical document (I-JSON / RFC 8785)."""

_OPTIONS = orjson.OPT_SORT_KEYS | orjson.OPT_STRICT_INTEGER
_MAX_DEPTH = 255  # orjson refuses nesting deeper than 254; stop the diagnostic walk there.


def canonical_bytes(obj: object) -> bytes:
    """Return the RFC 8785 canonical JSON bytes of ``obj``.

    Raises:
        TypeError: a float anywhere (including NaN/inf), a non-string key, or a value that is
            not a JSON type (datetime, UUID, dataclass, ...).
        ValueError: a non-ASCII key, an integer outside ±(2**53 - 1), or a string holding a
            lone surrogate.
    """
    try:
        out = orjson.dumps(obj, option=_OPTIONS)
    except orjson.JSONEncodeError:
        _diagnose(obj, "$", 0)  # raises a precise TypeError/ValueError when it can
        raise
    t = type(obj)
    if t is dict or t is list:
        ok = _fast_ok(obj)  # type: ignore[arg-type]
    else:
        ok = t is str or t is int or t is bool or obj is None
    if not ok:
        _diagnose(obj, "$", 0)
    return out


def canonical_typed(obj: object) -> bytes:
    """Canonical bytes of a document built from typed values (the sequencer's leaves).

    Leaf fields and msgspec-validated bodies cannot hold floats or non-ASCII keys, so
    the walk that proves those preconditions is skipped; orjson still refuses
    integers beyond ±(2**53 - 1) and lone surrogates (``orjson.JSONEncodeError``,
    a ``TypeError``).
    """
    return orjson.dumps(obj, option=_OPTIONS)


def canonical_loads(b: bytes | bytearray | memoryview | str) -> Any:
    """Parse JSON text (e.g. leaf bytes) with orjson.

    This does not check that the input is canonical; compare
    ``canonical_bytes(canonical_loads(b)) == b`` for that.
    """
    return orjson.loads(b)


def _fast_ok(obj: dict[str, object] | list[object]) -> bool:
    """Exact-type walk. True iff only plain JSON types, no floats and only ASCII keys.

    False means "look closer" (it may be a harmless subclass); never raises.
    """
    if type(obj) is dict:
        if not "".join(obj).isascii():
            return False
        values: Any = obj.values()
    else:
        values = obj
    for v in values:
        t = type(v)
        if t is str or t is int or v is None or t is bool:
            continue
        if t is dict or t is list:
            if not _fast_ok(v):
                return False
        else:
            return False
    return True


def _diagnose(obj: object, path: str, depth: int) -> None:
    """Slow, precise validation; raises with the JSON path of the first offending value."""
    if depth > _MAX_DEPTH:
        return  # orjson's own "Recursion limit reached" error is the better message
    if obj is None or isinstance(obj, bool):
        return
    if isinstance(obj, float):
        raise TypeError(
            f"{path}: float {obj!r} is not allowed in canonical JSON; "
            "use a decimal string (money) or an integer"
        )
    if isinstance(obj, int):
        if not -MAX_SAFE_INTEGER <= int(obj) <= MAX_SAFE_INTEGER:
            raise ValueError(f"{path}: integer {int(obj)} is outside ±(2**53 - 1)")
        return
    if isinstance(obj, str):
        try:
            obj.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise ValueError(f"{path}: string is not valid Unicode (lone surrogate)") from exc
        return
    if isinstance(obj, dict):
        for key, value in obj.items():
            if not isinstance(key, str):
                raise TypeError(f"{path}: object key {key!r} is not a string")
            if not key.isascii():
                raise ValueError(
                    f"{path}: object key {key!r} is not ASCII "
                    "(JCS sorts keys by UTF-16 code units; only ASCII keys are supported)"
                )
            _diagnose(value, f"{path}.{key}", depth + 1)
        return
    if isinstance(obj, (list, tuple)):
        for i, item in enumerate(obj):
            _diagnose(item, f"{path}[{i}]", depth + 1)
        return
    raise TypeError(f"{path}: {type(obj).__name__} is not a JSON type")
