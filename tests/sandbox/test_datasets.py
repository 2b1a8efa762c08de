"""The judge on real data (process backend): reference solutions pass, mutants fail.

LeetCode (leetcode_train.json): the first 200 problems' reference solutions must be AC;
two mutants per problem must be rejected where they change behaviour:

- ``sentinel``: the tested method's body becomes ``return '__mutant__'`` (reliably wrong:
  no LeetCode answer is that string); every one must be rejected.
- ``off_by_one``: the first integer constant in the method body is incremented; it may
  leave the program correct (e.g. an unused bound), so only the count is reported and most
  must be rejected.

Codeforces / CodeContests: hand-written correct and wrong solutions for easy problems,
judged on the sample tests with the statement's limits.
"""

import ast
import json
import re
import time

import pytest

from sandbox.core.judge import Judge, JudgeConfig, Submission
from sandbox.core.verdicts import Verdict
from sandbox.isolation import get_backend

N_LEETCODE = 200
pytestmark = pytest.mark.shared_data


@pytest.fixture(scope="module")
def judge():
    backend = get_backend("process", workers=2)
    # 3 s CPU per test (the references need < 0.1 s) keeps looping mutants cheap
    yield Judge(JudgeConfig(cpu_time_limit_s=3.0, wall_time_limit_s=6.0, max_concurrency=2), backend)
    backend.close()


@pytest.fixture(scope="module")
def leetcode(shared_data):
    rows = json.loads((shared_data / "code" / "leetcode_train.json").read_text())[:N_LEETCODE]
    out = []
    for row in rows:
        tests = row["tests"] if isinstance(row["tests"], dict) else ast.literal_eval(row["tests"])
        fn = re.search(r"check\(Solution\(\)\.(\w+)\)", tests["functional"]).group(1)
        out.append((row["solutions"], {"kind": "assert", "test_code": tests["functional"]}, fn))
    return out


def _method(tree: ast.Module, fn: str) -> ast.FunctionDef:
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and node.name == "Solution":
            for item in node.body:
                if isinstance(item, ast.FunctionDef) and item.name == fn:
                    return item
    raise LookupError(fn)


def mutate_sentinel(source: str, fn: str) -> str:
    tree = ast.parse(source)
    method = _method(tree, fn)
    method.body = [ast.Return(ast.Constant("__mutant__"))]
    return ast.unparse(tree)


def mutate_off_by_one(source: str, fn: str) -> str | None:
    tree = ast.parse(source)
    for node in ast.walk(_method(tree, fn)):
        if isinstance(node, ast.Constant) and type(node.value) is int:
            node.value += 1
            return ast.unparse(tree)
    return None


@pytest.mark.slow
def test_leetcode_references_accepted_and_mutants_rejected(judge, leetcode):
    start = time.monotonic()
    refs = judge.judge_batch([Submission(spec=spec, code=src) for src, spec, _ in leetcode])
    ref_s = time.monotonic() - start
    failures = [(i, r.verdict.name, r.tests[0].stderr[-300:] if r.tests else r.error) for i, r in enumerate(refs)
                if r.verdict is not Verdict.AC]
    assert failures == [], failures

    sentinel = judge.judge_batch([Submission(spec=spec, code=mutate_sentinel(src, fn)) for src, spec, fn in leetcode])
    assert [i for i, r in enumerate(sentinel) if r.verdict is Verdict.AC] == []
    assert all(not r.is_error for r in sentinel)

    obo_src = [(mutate_off_by_one(src, fn), spec) for src, spec, fn in leetcode]
    obo_src = [(src, spec) for src, spec in obo_src if src is not None]
    obo = judge.judge_batch([Submission(spec=spec, code=src) for src, spec in obo_src])
    rejected = sum(r.verdict is not Verdict.AC for r in obo)
    assert all(not r.is_error for r in obo)
    total_s = time.monotonic() - start
    print(f"\nleetcode: {len(refs)} references AC in {ref_s:.1f}s; sentinel mutants rejected "
          f"{sum(r.verdict is not Verdict.AC for r in sentinel)}/{len(sentinel)}; off-by-one mutants rejected "
          f"{rejected}/{len(obo)} (rest still correct); total {total_s:.1f}s")
    assert rejected >= 0.6 * len(obo)


CF_SOLUTIONS = {
    # problem index in codeforces_test.json: (correct, wrong)
    0: ("for _ in range(int(input())):\n    x, y = map(int, input().split())\n    print(min(x, y), max(x, y))",
        "for _ in range(int(input())):\n    x, y = map(int, input().split())\n    print(x, y)"),
    2: ("import sys\ndata = sys.stdin.read().split()\nt = int(data[0])\nfor i in range(t):\n"
        "    a, b, c, d = map(int, data[1 + 4 * i: 5 + 4 * i])\n    lo, hi = min(a, b), max(a, b)\n"
        "    print('YES' if (lo < c < hi) != (lo < d < hi) else 'NO')",
        "import sys\ndata = sys.stdin.read().split()\nt = int(data[0])\nfor i in range(t):\n"
        "    a, b, c, d = map(int, data[1 + 4 * i: 5 + 4 * i])\n    print('YES' if a < c < b else 'NO')"),
    3: ("for _ in range(int(input())):\n    s = input().strip()\n"
        "    changes = sum(s[i] != s[i + 1] for i in range(len(s) - 1))\n    print(changes + 1 - ('01' in s))",
        "for _ in range(int(input())):\n    s = input().strip()\n"
        "    print(sum(s[i] != s[i + 1] for i in range(len(s) - 1)) + 1)"),
}
CC_SOLUTIONS = {
    0: ("n, m = map(int, input().split())\nbooks = [input().strip() for _ in range(n)]\n"
        "key = lambda i: [ord(c) if j % 2 == 0 else -ord(c) for j, c in enumerate(books[i])]\n"
        "print(*[i + 1 for i in sorted(range(n), key=key)])",
        "n, m = map(int, input().split())\nbooks = [input().strip() for _ in range(n)]\n"
        "print(*[i + 1 for i in sorted(range(n), key=lambda i: books[i])])"),
}


def _cf_spec(row):
    from sandbox.core.spec import limits_from_statement

    time_s, mem_mb = limits_from_statement(row["problem"])
    return {"kind": "stdio", "cases": [{"input": t["input"], "output": t["output"]} for t in row["tests"]],
            "time_limit_s": time_s, "memory_limit_mb": mem_mb}


def _cc_spec(row):
    cases = [{"input": i, "output": o} for i, o in zip(row["tests"]["inputs"], row["tests"]["outputs"])]
    return {"kind": "stdio", "cases": cases}


def test_contest_problems_correct_accepted_wrong_rejected(judge, shared_data):
    cf = json.loads((shared_data / "code" / "codeforces_test.json").read_text())
    cc = json.loads((shared_data / "code" / "code_contests_test.json").read_text())
    items = [(_cf_spec(cf[i]), good, bad) for i, (good, bad) in CF_SOLUTIONS.items()]
    items += [(_cc_spec(cc[i]), good, bad) for i, (good, bad) in CC_SOLUTIONS.items()]
    assert len(items) >= 4
    for spec, good, bad in items:
        completion = f"Let me think.</think>\nHere is my solution:\n```python\n{good}\n```\n"
        ok = judge.judge(Submission(spec=spec, completion=completion))
        assert ok.verdict is Verdict.AC, (spec["cases"][0]["input"][:50], ok.to_dict())
        assert ok.reward == 1.0 and ok.pass_fraction == 1.0
        wrong = judge.judge(Submission(spec=spec, code=bad))
        assert wrong.verdict is Verdict.WA, wrong.to_dict()
        assert wrong.reward == 0.0
