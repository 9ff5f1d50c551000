"""Named test values for round trips through the dirty protocol.

``CASES[name] = (sent, expected)``: ``sent`` is what a caller passes to
``execute``; ``expected`` is what gunicorn's TLV codec gives back (tuples
become lists, non-str dict keys become ``str(key)``). Used server-side by the
HTTP apps (so JSON never has to carry bytes or NaN) and by the raw-socket
tests (to compute gunicorn's own encoding of the expected answer).
"""

import math

INT64_MIN = -(2 ** 63)
INT64_MAX = 2 ** 63 - 1


def _nested(depth):
    value = "bottom"
    for i in range(depth):
        value = [i, value] if i % 2 else {"level": i, "child": value}
    return value


def _build():
    all_bytes = bytes(range(256))
    mib_bytes = all_bytes * 4096  # 1 MiB, every byte value
    cases = {
        "none": (None, None),
        "true": (True, True),
        "false": (False, False),
        "int_zero": (0, 0),
        "int_minus_one": (-1, -1),
        "int64_min": (INT64_MIN, INT64_MIN),
        "int64_max": (INT64_MAX, INT64_MAX),
        "float_zero": (0.0, 0.0),
        "float_neg_zero": (-0.0, -0.0),
        "float_pi": (math.pi, math.pi),
        "float_tiny": (5e-324, 5e-324),
        "float_max": (1.7976931348623157e308, 1.7976931348623157e308),
        "float_nan": (math.nan, math.nan),
        "float_inf": (math.inf, math.inf),
        "float_neg_inf": (-math.inf, -math.inf),
        "str_empty": ("", ""),
        "str_unicode": ("h\u00e9llo w\u00f6rld \u2713 \U0001F680 \u65e5\u672c\u8a9e \x00nul \u200d",
                        "h\u00e9llo w\u00f6rld \u2713 \U0001F680 \u65e5\u672c\u8a9e \x00nul \u200d"),
        "str_large_ascii": ("x" * (1 << 20), "x" * (1 << 20)),
        "str_large_unicode": ("\u00fc\u20ac\U0001F600" * 100_000, "\u00fc\u20ac\U0001F600" * 100_000),
        "bytes_empty": (b"", b""),
        "bytes_all_256": (all_bytes, all_bytes),
        "bytes_1mib": (mib_bytes, mib_bytes),
        "list_empty": ([], []),
        "dict_empty": ({}, {}),
        "nested": (
            {"a": [1, 2.5, None, True, {"b": [b"\x00\xff", "y", []]}], "c": {"d": {"e": {}}}},
            {"a": [1, 2.5, None, True, {"b": [b"\x00\xff", "y", []]}], "c": {"d": {"e": {}}}},
        ),
        "nested_deep_40": (_nested(40), _nested(40)),
        "tuple_to_list": ((1, "two", (3.0, None), ()), [1, "two", [3.0, None], []]),
        "dict_nonstr_keys": (
            {1: "int", 2.5: "float", None: "none", False: "bool", (1, 2): "tuple"},
            {"1": "int", "2.5": "float", "None": "none", "False": "bool", "(1, 2)": "tuple"},
        ),
        "dict_order": ({"z": 1, "a": 2, "m": 3, "b": 4}, {"z": 1, "a": 2, "m": 3, "b": 4}),
        "list_mixed_large": (list(range(10_000)) + ["s", b"b", 1.5],
                             list(range(10_000)) + ["s", b"b", 1.5]),
    }
    return cases


CASES = _build()


def strict_equal(a, b):
    """Equality as the protocol guarantees it: exact types (bool is not int,
    int is not float), NaN equals NaN, -0.0 differs from 0.0, dict key order
    matters (Python dicts keep insertion order)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        if math.isnan(a) or math.isnan(b):
            return math.isnan(a) and math.isnan(b)
        return a == b and math.copysign(1.0, a) == math.copysign(1.0, b)
    if isinstance(a, list):
        return len(a) == len(b) and all(strict_equal(x, y) for x, y in zip(a, b))
    if isinstance(a, dict):
        return (list(a.keys()) == list(b.keys())
                and all(strict_equal(a[k], b[k]) for k in a))
    return a == b


def describe(value, limit=200):
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + f"... ({len(text)} chars)"
