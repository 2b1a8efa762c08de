"""Head-of-line blocking: a hanging, an output-flooding and a fork-bombing submission, judged at the same time as a
stream of ordinary ones, cost only their own limits; the ordinary ones never wait for them."""

from __future__ import annotations

import threading
import time

import pytest

from sandbox.service.service import SandboxService, ServiceConfig
from sandbox.service.wire import JudgeRequest

pytestmark = pytest.mark.slow

ONE = {"kind": "stdio", "time_limit_s": 1, "cases": [{"input": "3", "output": "6"}]}
BAD = {
    "hang": "import time\ntime.sleep(3600)",
    "flood": "import sys\nsys.stdout.write('A' * (80 << 20))",
    "fork_bomb": "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass",
}
# the spec's 1 s CPU limit gives a wall limit of 1 * 2 + 1 = 3 s (JudgeConfig.wall_time_factor)
OWN_LIMIT_S = 3.0


def test_bad_submissions_do_not_delay_others():
    config = ServiceConfig(judge_workers=len(BAD) + 1, math_workers=1,
                           isolation_options={"workers": len(BAD) + 1},
                           judge_options={"output_limit_bytes": 16 << 20, "max_processes": 32})
    with SandboxService(config) as service:
        service.judge(JudgeRequest(code="print(int(input()) * 2)", tests=ONE))  # warm every layer up
        bad: dict[str, tuple[str, float]] = {}

        def judge_bad(name: str) -> None:
            start = time.monotonic()
            res = service.judge(JudgeRequest(code=BAD[name], tests=ONE)).results[0]
            bad[name] = (res["verdict"], time.monotonic() - start)

        threads = [threading.Thread(target=judge_bad, args=(name,)) for name in BAD]
        for t in threads:
            t.start()
        time.sleep(0.3)  # the bad ones hold their workers now
        good: list[tuple[str, float]] = []
        deadline = time.monotonic() + 30
        while any(t.is_alive() for t in threads) and len(good) < 300 and time.monotonic() < deadline:
            start = time.monotonic()
            res = service.judge(JudgeRequest(code="print(int(input()) * 2)", tests=ONE)).results[0]
            good.append((res["verdict"], time.monotonic() - start))
        for t in threads:
            t.join(60)
    print({"bad": bad, "good_n": len(good), "good_max_s": max((t for _, t in good), default=None)})
    assert bad["hang"][0] == "TLE" and bad["flood"][0] == "OLE", bad
    assert bad["fork_bomb"][0] in ("TLE", "RE", "AC", "WA"), bad  # whatever it is, it ends within its limits
    for name, (_, took) in bad.items():
        assert took < OWN_LIMIT_S + 8, f"{name} took {took:.1f} s, its own limit is {OWN_LIMIT_S} s"
    assert len(good) >= 3, good  # several ordinary submissions were judged while the bad ones ran
    assert all(v == "AC" for v, _ in good), good
    slowest = max(t for _, t in good)
    assert slowest < OWN_LIMIT_S, f"an ordinary submission waited {slowest:.1f} s (>= the hang's own limit): {good}"
