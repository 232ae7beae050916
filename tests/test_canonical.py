"""Tests for ledger.canonical: RFC 8785 (JCS) bytes via orjson under our preconditions."""

from __future__ import annotations

import dataclasses
import datetime
import enum
import json
import math
import uuid
from decimal import Decimal
from typing import Any

import orjson
import pytest
import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.canonical import MAX_SAFE_INTEGER, canonical_bytes, canonical_loads


def _parse_vector(text: str) -> Any:
    """Parse a test-vector input; integral JSON numbers like ``56.0`` become ints.

    JCS serialises the double 56.0 as ``56``, exactly as it serialises the integer 56, so
    this keeps the published expected output valid while honouring our no-floats rule.
    """

    def integral(s: str) -> int:
        d = Decimal(s)
        assert d == d.to_integral_value(), f"vector uses a non-integral number {s}"
        return int(d)

    return json.loads(text, parse_float=integral)


# ---------------------------------------------------------------------------------------
# (a) Published vectors.
# cyberphone/json-canonicalization testdata/{input,output}/*.json (the reference test
# suite of RFC 8785's author) and the examples in RFC 8785 §3.2.2 / §3.2.3 / Appendix B.
# Float-only material (the "numbers" members, most of Appendix B) is left out: we refuse
# floats by design.
# ---------------------------------------------------------------------------------------

APPLICABLE_VECTORS: list[tuple[str, str, bytes]] = [
    (
        "cyberphone arrays.json",
        '[\n  56,\n  {\n    "d": true,\n    "10": null,\n    "1": [ ]\n  }\n]',
        b'[56,{"1":[],"10":null,"d":true}]',
    ),
    (
        "cyberphone structures.json",
        '{\n  "1": {"f": {"f": "hi","F": 5} ,"\\n": 56.0},\n  "10": { },\n  "": "empty",\n'
        '  "a": { },\n  "111": [ { } ],\n  "A": { }\n}',
        b'{"":"empty","1":{"\\n":56,"f":{"F":5,"f":"hi"}},"10":{},"111":[{}],"A":{},"a":{}}',
    ),
    (
        "cyberphone simpleString.json",
        '    "this is a test string 1235"',
        b'"this is a test string 1235"',
    ),
    (
        "cyberphone unicode.json (no Unicode normalisation)",
        '{\n  "Unnormalized Unicode":"\\u1e0d\\u0307"\n}\n',
        '{"Unnormalized Unicode":"\u1e0d\u0307"}'.encode(),
    ),
    (
        "cyberphone values.json without 'numbers'",
        r"""{
  "escaping": "\u20ac$\u000F\u000aA'\u0042\u0022\u005c\\\"\/",
  "literals": [null, true, false]
}""",
        r"""{"escaping":"€$\u000f\nA'B\"\\\\\"/","literals":[null,true,false]}""".encode(),
    ),
    (
        "RFC 8785 §3.2.2 example without 'numbers'",
        r"""{
  "string": "\u20ac$\u000F\u000aA'\u0042\u0022\u005c\\\"\/",
  "literals": [null, true, false]
}""",
        r"""{"literals":[null,true,false],"string":"€$\u000f\nA'B\"\\\\\"/"}""".encode(),
    ),
    (
        "RFC 8785 Appendix B integral values (0, -0, max safe integer)",
        "[0, -0, 9007199254740991, -9007199254740991]",
        b"[0,0,9007199254740991,-9007199254740991]",
    ),
]


@pytest.mark.parametrize(
    ("text", "expected"),
    [(t, e) for _, t, e in APPLICABLE_VECTORS],
    ids=[n for n, _, _ in APPLICABLE_VECTORS],
)
def test_published_vectors(text: str, expected: bytes) -> None:
    doc = _parse_vector(text)
    assert canonical_bytes(doc) == expected
    assert rfc8785.dumps(doc) == expected  # the reference agrees on the vector
    assert canonical_bytes(canonical_loads(expected)) == expected  # canonical is a fixpoint


# Vectors whose object keys are not ASCII: we refuse them (orjson sorts by code point,
# JCS by UTF-16 code unit). The reference implementation must still match them, and for
# the first two plain orjson sorting demonstrably gets them wrong - the reason for the rule.
NON_ASCII_KEY_VECTORS: list[tuple[str, str, bytes, bool]] = [
    (
        "RFC 8785 §3.2.3 sorting example",
        r"""{
  "\u20ac": "Euro Sign",
  "\r": "Carriage Return",
  "\ufb33": "Hebrew Letter Dalet With Dagesh",
  "1": "One",
  "\ud83d\ude00": "Emoji: Grinning Face",
  "\u0080": "Control",
  "\u00f6": "Latin Small Letter O With Diaeresis"
}""",
        (
            '{"\\r":"Carriage Return","1":"One","\u0080":"Control",'
            '"\u00f6":"Latin Small Letter O With Diaeresis","\u20ac":"Euro Sign",'
            '"\U0001f600":"Emoji: Grinning Face","\ufb33":"Hebrew Letter Dalet With Dagesh"}'
        ).encode(),
        True,
    ),
    (
        "cyberphone weird.json",
        r"""{
  "\u20ac": "Euro Sign",
  "1": "One",
  "\u0080": "Control\u007f",
  "\ud83d\ude02": "Smiley",
  "\u00f6": "Latin Small Letter O With Diaeresis",
  "\ufb33": "Hebrew Letter Dalet With Dagesh",
  "</script>": "Browser Challenge"
}""",
        (
            '{"1":"One","</script>":"Browser Challenge","\u0080":"Control\u007f",'
            '"\u00f6":"Latin Small Letter O With Diaeresis","\u20ac":"Euro Sign",'
            '"\U0001f602":"Smiley","\ufb33":"Hebrew Letter Dalet With Dagesh"}'
        ).encode(),
        True,
    ),
    (
        "cyberphone french.json",
        '{\n  "peach": "This sorting order",\n  "p\u00e9ch\u00e9": "is wrong according to French",'
        '\n  "p\u00eache": "but canonicalization MUST",\n  "sin":   "ingnore locale"\n}\n',
        (
            '{"peach":"This sorting order","p\u00e9ch\u00e9":"is wrong according to French",'
            '"p\u00eache":"but canonicalization MUST","sin":"ingnore locale"}'
        ).encode(),
        False,
    ),
]


@pytest.mark.parametrize(
    ("text", "expected", "orjson_differs"),
    [(t, e, d) for _, t, e, d in NON_ASCII_KEY_VECTORS],
    ids=[n for n, _, _, _ in NON_ASCII_KEY_VECTORS],
)
def test_non_ascii_key_vectors_are_refused(
    text: str, expected: bytes, orjson_differs: bool
) -> None:
    doc = _parse_vector(text)
    assert rfc8785.dumps(doc) == expected
    assert (orjson.dumps(doc, option=orjson.OPT_SORT_KEYS) != expected) is orjson_differs
    with pytest.raises(ValueError, match="not ASCII"):
        canonical_bytes(doc)


def _ecmascript_quote(s: str) -> bytes:
    """Independent model of JCS §3.2.2.2 (ECMAScript QuoteJSONString), UTF-8 encoded."""
    short = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f"}
    short["\r"] = "\\r"
    out = []
    for ch in s:
        if ch in short:
            out.append(short[ch])
        elif ord(ch) < 0x20:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return ('"' + "".join(out) + '"').encode("utf-8")


def test_string_escaping_every_unicode_scalar_value() -> None:
    """Exhaustive: every code point except surrogates, in one string and one at a time."""
    everything = "".join(chr(c) for c in range(0x110000) if not 0xD800 <= c <= 0xDFFF)
    expected = _ecmascript_quote(everything)
    assert canonical_bytes(everything) == expected
    assert rfc8785.dumps(everything) == expected
    for c in [*range(0x00, 0xA0), 0x2028, 0x2029, 0xFEFF, 0xFFFD, 0xFFFF, 0x1F600, 0x10FFFF]:
        assert canonical_bytes(chr(c)) == _ecmascript_quote(chr(c)), hex(c)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("\u000f", b'"\\u000f"'),  # lowercase hex, never \u000F
        ("\n", b'"\\n"'),
        ("\x1f", b'"\\u001f"'),
        ("\x7f", b'"\x7f"'),  # DEL is not escaped
        ("\u2028\u2029", '"\u2028\u2029"'.encode()),  # JSON.stringify leaves these raw
        ("€", '"€"'.encode()),
        ("/", b'"/"'),  # solidus is not escaped
        ("</script>", b'"</script>"'),
        ("金额 3080000.00 元", '"金额 3080000.00 元"'.encode()),
        ("\U0001f600", '"\U0001f600"'.encode()),  # astral: raw UTF-8, not a surrogate pair
    ],
)
def test_string_examples(value: str, expected: bytes) -> None:
    assert canonical_bytes(value) == expected
    assert canonical_bytes({"k": [value]}) == b'{"k":[' + expected + b"]}"


def test_typical_leaf_matches_reference() -> None:
    leaf: dict[str, Any] = {
        "v": 1,
        "log": "gz-fin/2025",
        "index": 1234,
        "kind": "payment.made",
        "subject": "proc-2025-0042",
        "occurred_on": "2025-03-14",
        "recorded_at": "2025-03-14T09:26:53.589793Z",
        "actor": "clerk.wang",
        "visibility": "public",
        "idempotency_key": None,
        "salt": "0123456789abcdef0123456789abcdef",
        "body": {"payee": "广州市某某建设有限公司", "amount": "3080000.00", "currency": "CNY"},
    }
    out = canonical_bytes(leaf)
    assert out == rfc8785.dumps(leaf)
    assert out.startswith(b'{"actor":"clerk.wang","body":{"amount":"3080000.00",')
    assert canonical_loads(out) == leaf


# ---------------------------------------------------------------------------------------
# (b) Property: orjson-based bytes equal the reference implementation.
# ---------------------------------------------------------------------------------------

_SPECIAL_CHARS = [
    *map(chr, range(0x20)),
    '"',
    "\\",
    "/",
    "\x7f",
    "\x80",
    "\u00e9",
    "\u2028",
    "\u2029",
    "\ufeff",
    "\ufb33",
    "\uffff",
    "€",
    "公",
    "开",
    "账",
    "本",
    "\U0001f600",
    "\U00020000",
    "\U0010ffff",
    " ",
    "a",
    "0",
]

_TEXT = st.one_of(
    st.text(st.characters(exclude_categories=["Cs"])),  # arbitrary Unicode, no surrogates
    st.text(st.sampled_from(_SPECIAL_CHARS)),
    st.text(st.characters(min_codepoint=0x4E00, max_codepoint=0x9FFF)),  # CJK ideographs
    st.text(st.characters(min_codepoint=0x10000, max_codepoint=0x10FFFF)),  # astral only
)
_INTS = st.one_of(
    st.integers(-MAX_SAFE_INTEGER, MAX_SAFE_INTEGER),
    st.sampled_from([0, -1, MAX_SAFE_INTEGER, -MAX_SAFE_INTEGER, 2**31, 2**32, 2**53 - 2]),
)
_ASCII_KEYS = st.text(st.characters(max_codepoint=0x7F), max_size=10)
_JSON = st.recursive(
    st.none() | st.booleans() | _INTS | _TEXT,
    lambda children: (
        st.lists(children, max_size=6) | st.dictionaries(_ASCII_KEYS, children, max_size=8)
    ),
    max_leaves=40,
)


@settings(max_examples=1000, deadline=None)
@given(_JSON)
def test_matches_rfc8785_reference(doc: Any) -> None:
    out = canonical_bytes(doc)
    assert out == rfc8785.dumps(doc)
    assert canonical_loads(out) == doc


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(_ASCII_KEYS, st.integers(0, 9), min_size=1, max_size=20))
def test_key_order_is_utf16_code_unit_order(doc: dict[str, int]) -> None:
    out = canonical_bytes(doc)
    assert list(canonical_loads(out)) == sorted(doc, key=lambda k: k.encode("utf-16-be"))


def _contains(doc: Any, pred: Any) -> bool:
    if pred(doc):
        return True
    if isinstance(doc, dict):
        return any(_contains(v, pred) for v in doc.values())
    if isinstance(doc, list):
        return any(_contains(v, pred) for v in doc)
    return False


@settings(max_examples=300, deadline=None)
@given(
    st.recursive(
        st.none() | _INTS | st.text(max_size=3) | st.floats(allow_nan=True),
        lambda children: (
            st.lists(children, max_size=4)
            | st.dictionaries(st.text(max_size=3), children, max_size=4)
        ),
        max_leaves=15,
    )
)
def test_refuses_exactly_when_preconditions_fail(doc: Any) -> None:
    """A float anywhere -> TypeError, a non-ASCII key -> ValueError, neither -> JCS bytes."""

    def has_float(x: Any) -> bool:
        return isinstance(x, float)

    def has_non_ascii_key(x: Any) -> bool:
        return isinstance(x, dict) and not all(k.isascii() for k in x)

    floats, bad_keys = _contains(doc, has_float), _contains(doc, has_non_ascii_key)
    if floats or bad_keys:
        # With both present, whichever the walk meets first is reported.
        expected = (TypeError if floats else ValueError, ValueError if bad_keys else TypeError)
        with pytest.raises(expected):
            canonical_bytes(doc)
    else:
        assert canonical_bytes(doc) == rfc8785.dumps(doc)


# ---------------------------------------------------------------------------------------
# (c) Preconditions are enforced loudly.
# ---------------------------------------------------------------------------------------


class _MyFloat(float):
    pass


@pytest.mark.parametrize(
    "doc",
    [
        1.5,
        1.0,
        0.0,
        -0.0,
        1e16,
        math.nan,
        math.inf,
        -math.inf,
        [1, 2.0],
        {"amount": 3080000.0},
        {"body": {"lots": [{"amount": "1.00"}, {"amount": 2.5}]}},
        (1, 0.5),
        {"x": _MyFloat(1.25)},
    ],
    ids=repr,
)
def test_floats_are_refused(doc: object) -> None:
    with pytest.raises(TypeError, match="float"):
        canonical_bytes(doc)


def test_float_error_names_the_path() -> None:
    with pytest.raises(TypeError, match=r"\$\.body\.lots\[1\]\.amount"):
        canonical_bytes({"body": {"lots": [{"amount": "1.00"}, {"amount": 2.5}]}})


@pytest.mark.parametrize(
    "doc",
    [
        {"é": 1},
        {"\x80": 1},
        {"金额": "1.00"},
        {"a": {"b": {"\u20ac": None}}},
        [{"ok": 1}, {"\U0001f600": 2}],
        {"a": 1, "\ufb33": 2, "\U0001f600": 3},
    ],
    ids=repr,
)
def test_non_ascii_keys_are_refused(doc: object) -> None:
    with pytest.raises(ValueError, match="not ASCII"):
        canonical_bytes(doc)


@pytest.mark.parametrize(
    "n", [2**53, -(2**53), 2**53 + 1, 2**63 - 1, 2**63, -(2**63), 2**64, 10**30, -(10**40)]
)
def test_integers_outside_safe_range_are_refused(n: int) -> None:
    for doc in (n, [n], {"a": {"b": [0, n]}}):
        with pytest.raises(ValueError, match="outside"):
            canonical_bytes(doc)


def test_safe_integer_bounds_are_accepted() -> None:
    doc = [MAX_SAFE_INTEGER, -MAX_SAFE_INTEGER, 0, True, False]
    assert canonical_bytes(doc) == b"[9007199254740991,-9007199254740991,0,true,false]"


def test_lone_surrogates_are_refused() -> None:
    for doc in ("\ud800", {"a": "x\udc00y"}, ["\ud83d"]):
        with pytest.raises(ValueError, match="surrogate"):
            canonical_bytes(doc)


@dataclasses.dataclass
class _Point:
    x: int


@pytest.mark.parametrize(
    "doc",
    [
        Decimal("3080000.00"),  # money must already be a string
        {"amount": Decimal("1.00")},
        datetime.date(2025, 3, 14),
        {"at": datetime.datetime(2025, 3, 14, 9, 0, tzinfo=datetime.UTC)},
        uuid.UUID(int=0),
        _Point(1),  # orjson would serialise this natively; JCS has no such type
        {"p": [_Point(1)]},
        {1, 2},
        b"bytes",
        {1: "int key"},
    ],
    ids=repr,
)
def test_non_json_types_are_refused(doc: object) -> None:
    with pytest.raises(TypeError):
        canonical_bytes(doc)


def test_cycles_are_refused() -> None:
    a: list[object] = []
    a.append(a)
    with pytest.raises(TypeError):
        canonical_bytes(a)


class _Kind(enum.StrEnum):
    PAYMENT = "payment.made"


class _Level(enum.IntEnum):
    HIGH = 3


class _Doc(dict[str, Any]):
    pass


def test_json_subclasses_and_tuples_are_accepted() -> None:
    doc = _Doc(kind=_Kind.PAYMENT, level=_Level.HIGH, pair=("a", 1), nested=[_Doc(z=True)])
    out = canonical_bytes(doc)
    assert out == b'{"kind":"payment.made","level":3,"nested":[{"z":true}],"pair":["a",1]}'
    assert out == rfc8785.dumps(doc)
