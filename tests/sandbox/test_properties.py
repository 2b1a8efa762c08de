"""Property-based tests (hypothesis) of the test-spec parser and the output comparison.

- ``TestSpec.from_dict`` on any JSON-like value: a spec or :class:`SpecError`, nothing else; valid specs
  round-trip through ``to_dict``.
- ``compare_output`` (``lcb``, ``lenient``) on any strings: never raises; reflexive; symmetric; ``lenient``
  accepts all that ``lcb`` accepts; trailing whitespace never matters.
- ``compare_call`` on any JSON values: a result, or ``ValueError`` for a non-JSON expected value; symmetric.
"""

from __future__ import annotations

import json

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from sandbox.core.compare import compare_call, compare_output, lcb_equal, lenient_equal
from sandbox.core.errors import SpecError
from sandbox.core.spec import SPEC_KINDS, TestSpec

SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

json_scalars = st.none() | st.booleans() | st.integers() | st.integers(10**300, 10**400) | st.floats(allow_nan=True, allow_infinity=True) | st.text(
    max_size=20)
json_values = st.recursive(json_scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
    st.text(max_size=8), inner, max_size=4), max_leaves=12)
spec_keys = st.sampled_from(["kind", "cases", "fn_name", "test_code", "prelude", "time_limit_s", "memory_limit_mb",
                             "input", "output", "other"])
case_like = st.dictionaries(st.sampled_from(["input", "output", "x"]), json_values | st.text(max_size=30),
                            max_size=3)
spec_like = st.dictionaries(spec_keys, json_values | st.sampled_from(SPEC_KINDS) | st.lists(case_like, max_size=3),
                            max_size=6)

# outputs made of the pieces that matter to the comparators: numbers, yes/no words, whitespace, line ends
tokens = st.sampled_from(["1", "1.0", "1.50", "1.5", "-0", "0", "1e3", "1000", "YES", "yes", "No", "nan", "NaN",
                          "inf", "-inf", "sNaN", "1e999999", "0.333333", "0.3333333", "abc", "", " ", "\t"])
outputs = st.lists(st.lists(tokens, max_size=4).map(" ".join), max_size=5).map("\n".join) | st.text(max_size=40)
line_ends = st.sampled_from(["", "\n", "\n\n", "  \n", "\r\n"])


@SETTINGS
@given(spec_like | json_values)
def test_spec_parser_raises_only_spec_error(data):
    try:
        spec = TestSpec.from_dict(data)
    except SpecError as exc:
        assert str(exc)  # the message says what is wrong
        return
    assert spec.kind in SPEC_KINDS
    assert TestSpec.from_dict(spec.to_dict()) == spec


json_lines = st.lists(json_values.map(json.dumps), min_size=1, max_size=3).map("\n".join)


@st.composite
def valid_specs(draw):
    kind = draw(st.sampled_from(SPEC_KINDS))
    limits = {"time_limit_s": draw(st.none() | st.floats(0.01, 100)),
              "memory_limit_mb": draw(st.none() | st.floats(1, 4096))}
    if kind == "assert":
        return {"kind": kind, "test_code": draw(st.text(min_size=1).filter(str.strip)), **limits}
    if kind == "call":
        cases = st.builds(lambda i, o: {"input": i, "output": o}, json_lines, json_values.map(json.dumps))
        return {"kind": kind, "fn_name": draw(st.from_regex(r"[a-z_][a-z0-9_]{0,10}", fullmatch=True)),
                "cases": draw(st.lists(cases, min_size=1, max_size=3)), **limits}
    cases = st.builds(lambda i, o: {"input": i, "output": o}, st.text(max_size=20), st.text(max_size=20))
    return {"kind": kind, "cases": draw(st.lists(cases, min_size=1, max_size=3)), **limits}


@SETTINGS
@given(valid_specs())
def test_valid_specs_parse_and_round_trip(data):
    spec = TestSpec.from_dict(data)
    assert spec.num_tests == (1 if data["kind"] == "assert" else len(data["cases"]))
    assert TestSpec.from_dict(spec.to_dict()) == spec


@SETTINGS
@given(outputs, outputs, st.sampled_from(["lcb", "lenient"]))
@example("sNaN", "1", "lcb")  # found by this test: a signalling NaN raised InvalidOperation in the judge
@example("2 sNaN", "2.0 1", "lenient")
def test_compare_never_raises_and_is_symmetric(got, expected, mode):
    forward = compare_output(got, expected, mode)
    backward = compare_output(expected, got, mode)
    assert forward.passed == backward.passed, (got, expected, mode, forward, backward)
    assert forward.passed or forward.message  # a failure says where


@SETTINGS
@given(outputs, line_ends, line_ends)
def test_compare_is_reflexive_and_ignores_trailing_whitespace(text, end_a, end_b):
    for mode in ("lcb", "lenient"):
        assert compare_output(text, text, mode).passed
    if "\r" not in end_a + end_b:
        assert lcb_equal(text + end_a, text + end_b).passed
    assert lenient_equal(text + end_a, text + end_b).passed


@SETTINGS
@given(outputs, outputs)
def test_lenient_accepts_everything_lcb_accepts(got, expected):
    if lcb_equal(got, expected).passed:
        assert lenient_equal(got, expected).passed


@SETTINGS
@given(json_values, json_values | st.text(max_size=10), st.sampled_from(["lcb", "lenient"]))
@example(10**400, 1.5, "lenient")  # found: an int beyond float range raised OverflowError in lenient mode
@example([10**400], [float("inf")], "lenient")
def test_compare_call_is_total_and_symmetric(returned, expected, mode):
    expected_text = expected if isinstance(expected, str) and not _is_json(expected) else json.dumps(expected)
    record = {"ok": True, "return_json": json.dumps(returned)}
    try:
        forward = compare_call(record, expected_text, mode)
    except ValueError:
        assert not _is_json(expected_text)  # the documented error: expected is not JSON
        return
    backward = compare_call({"ok": True, "return_json": expected_text}, json.dumps(returned), mode)
    assert forward.passed == backward.passed, (returned, expected_text, mode)
    if returned == returned:  # NaN is never equal to itself, in LiveCodeBench either
        assert compare_call(record, json.dumps(returned), mode).passed or _has_nan(returned)


def _is_json(text: str) -> bool:
    try:
        json.loads(text)
    except ValueError:
        return False
    return True


def _has_nan(value) -> bool:
    if isinstance(value, float):
        return value != value
    if isinstance(value, list):
        return any(_has_nan(v) for v in value)
    if isinstance(value, dict):
        return any(_has_nan(v) for v in value.values())
    return False
