"""TestSpec parsing/round trip and statement limits."""

import pytest

from sandbox.core.spec import SpecError, TestSpec, limits_from_statement


def test_each_kind_round_trips():
    specs = [
        {"kind": "stdio", "cases": [{"input": "1 2\n", "output": "3\n"}], "time_limit_s": 2.0, "memory_limit_mb": 256},
        {"kind": "call", "fn_name": "maxSum", "cases": [{"input": "[1, 2]\n3", "output": "5"}],
         "time_limit_s": None, "memory_limit_mb": None},
        {"kind": "assert", "test_code": "def check(c):\n    assert c(1) == 1\n\ncheck(Solution().f)", "prelude": None,
         "time_limit_s": None, "memory_limit_mb": None},
    ]
    for data in specs:
        spec = TestSpec.from_dict(data)
        assert spec.kind == data["kind"]
        assert spec.to_dict() == data
        assert TestSpec.from_dict(spec.to_dict()) == spec
    assert TestSpec.from_dict(specs[2]).num_tests == 1
    assert TestSpec.from_dict(specs[0]).cases[0].output == "3\n"


@pytest.mark.parametrize("data, quoted", [
    ({"kind": "stdin", "cases": []}, "'stdin'"),
    ({"kind": "stdio", "cases": []}, "[]"),
    ({"kind": "stdio", "cases": [{"input": 1, "output": "2"}]}, "'input': 1"),
    ({"kind": "stdio", "cases": [{"in": "1", "out": "2"}]}, "'in'"),
    ({"kind": "call", "fn_name": "not valid", "cases": [{"input": "1", "output": "1"}]}, "'not valid'"),
    ({"kind": "call", "fn_name": "f", "cases": [{"input": "[1,", "output": "1"}]}, "'[1,'"),
    ({"kind": "call", "fn_name": "f", "cases": [{"input": "1", "output": "nope"}]}, "'nope'"),
    ({"kind": "assert", "test_code": ""}, "''"),
    ({"kind": "stdio", "cases": [{"input": "", "output": ""}], "time_limit_s": -1}, "-1"),
    ({"kind": "stdio", "cases": [{"input": "", "output": ""}], "time_limit": 1}, "'time_limit'"),
    ("not a dict", "'not a dict'"),
])
def test_malformed_specs_quote_the_bad_value(data, quoted):
    with pytest.raises(SpecError) as err:
        TestSpec.from_dict(data)
    assert quoted in str(err.value)


def test_limits_from_statement_codeforces_lines(shared_data):
    import json

    rows = json.loads((shared_data / "code" / "codeforces_test.json").read_text())
    parsed = [limits_from_statement(r["problem"]) for r in rows]
    assert all(t is not None and m is not None for t, m in parsed)
    assert parsed[0] == (1.0, 256.0)
    assert {t for t, _ in parsed} >= {1.0, 2.0, 3.0}


@pytest.mark.parametrize("text, expected", [
    ("Time Limit: 1500 ms\nMemory Limit: 512 MB", (1.5, 512.0)),
    ("time limit per test: 2 seconds\nmemory limit per test: 256 megabytes", (2.0, 256.0)),
    ("Memory Limit: 1 GB", (None, 1024.0)),
    ("no limits here", (None, None)),
])
def test_limits_from_statement_variants(text, expected):
    assert limits_from_statement(text) == expected
