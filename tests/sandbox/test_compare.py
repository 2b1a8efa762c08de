"""Comparison modes: lcb (LiveCodeBench's stdio rules) vs lenient, side by side."""

import pytest

from sandbox.core.compare import compare_call, compare_output

# (got, expected, lcb, lenient)
CASES = [
    ("3\n", "3", True, True),
    ("  1 2 3  \n\n", "1 2 3", True, True),             # whole output and each line stripped
    ("1 2\n3 4\n", "1 2\r\n3 4\r\n", True, True),       # \r removed by the per-line strip
    ("1.0\n", "1", True, True),                          # Decimal equality
    ("1.50 2\n", "1.5 2.000", True, True),
    ("1  2\n", "1 2", True, True),                       # tokens as Decimals
    ("a  b\n", "a b", False, True),                      # non-numeric line, inner spaces
    ("YES\n", "yes", False, True),
    ("Yes\nNo\n", "YES\nNO", False, True),
    ("0.3333333\n", "0.33333333", False, True),          # float tolerance only in lenient
    ("0.33\n", "0.333333", False, False),
    ("1\n\n2\n", "1\n2", False, True),                   # inner blank line
    ("1 2\n", "1\n2", False, False),                     # line structure still matters
    ("50000000000000001\n", "50000000000000000", False, False),  # integers exact in both
    ("1\n2\n", "1\n2\n3", False, False),
    ("", "", True, True),
    ("nan\n", "nan", True, True),
    ("yes\n", "no", False, False),
    ("1e3\n", "1000", True, True),
]


@pytest.mark.parametrize("got, expected, lcb, lenient", CASES)
def test_lcb_vs_lenient(got, expected, lcb, lenient):
    assert compare_output(got, expected, "lcb").passed is lcb
    assert compare_output(got, expected, "lenient").passed is lenient


def test_lenient_accepts_everything_lcb_accepts():
    for got, expected, lcb, _ in CASES:
        if lcb:
            assert compare_output(got, expected, "lenient").passed


def test_failure_message_names_the_line():
    res = compare_output("1\n5\n", "1\n2\n", "lcb")
    assert not res.passed and "line 2" in res.message and "'5'" in res.message


def test_unknown_mode():
    with pytest.raises(ValueError, match="'exact'"):
        compare_output("", "", "exact")


def rec(value_json):
    return {"ok": True, "return_json": value_json, "return_repr": value_json}


@pytest.mark.parametrize("record, expected, lcb, lenient", [
    (rec("[1, 2]"), "[1, 2]", True, True),
    (rec("[1, 2]"), "[2, 1]", False, False),
    (rec("true"), "true", True, True),
    (rec("1"), "true", True, True),                       # Python: 1 == True, as LCB
    (rec("0.30000000000000004"), "0.3", False, True),
    (rec("\"abc\""), "\"abc\"", True, True),
    ({"ok": True, "return_json": None, "return_repr": "{1, 2}"}, "[1, 2]", False, False),
    ({"ok": False, "error_type": "ValueError", "error": "x"}, "1", False, False),
    (None, "1", False, False),
])
def test_call_compare(record, expected, lcb, lenient):
    assert compare_call(record, expected, "lcb").passed is lcb
    assert compare_call(record, expected, "lenient").passed is lenient


def test_call_expected_not_json_is_a_spec_error():
    with pytest.raises(ValueError, match="not JSON"):
        compare_call(rec("1"), "[1,", "lcb")
