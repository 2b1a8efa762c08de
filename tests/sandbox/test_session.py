"""Shared-process sessions (``share_process: true``): the tests of one job in one forked child."""

import os
import textwrap

import pytest

from sandbox.runner.job import run_job

ROOT = os.geteuid() == 0
FAST = {"cpu_time_limit_s": 1.0, "wall_time_limit_s": 3.0}
PID_AND_ECHO = "import os\nprint(os.getpid(), input())\n"


def run(source, stdins, share=True, **job):
    job.setdefault("limits", FAST)
    job.setdefault("stop_on_first_failure", False)
    out = run_job({"source": textwrap.dedent(source), "tests": [{"stdin": s} for s in stdins],
                   "share_process": share, **job})
    assert out["status"] == "ok", out
    return out["tests"]


def pids(tests):
    return [t["stdout"].split()[0] if t["stdout"] else None for t in tests]


def test_tests_share_one_process_with_fresh_io_and_main():
    source = "import os\nprint(os.getpid(), input(), globals().get('seen', 'fresh'))\nseen = 1\n"
    tests = run(source, ["a", "b", "c"])
    assert [t["status"] for t in tests] == ["OK"] * 3
    assert [t["stdout"].split()[1:] for t in tests] == [["a", "fresh"], ["b", "fresh"], ["c", "fresh"]]
    assert len(set(pids(tests))) == 1
    assert all(t["peak_memory_bytes"] > 1 << 20 and t["cpu_time_s"] >= 0 for t in tests)


def test_without_share_process_every_test_is_a_fresh_child():
    tests = run(PID_AND_ECHO, ["a", "b"], share=False)
    assert len(set(pids(tests))) == 2


def test_a_failed_test_is_judged_in_a_fresh_child_and_later_tests_run_fresh():
    source = "import os, sys\nx = input()\nprint(os.getpid(), x)\nif x == 'die': sys.exit(3)\n"
    tests = run(source, ["a", "die", "b", "c"])
    assert [t["status"] for t in tests] == ["OK", "RE", "OK", "OK"]
    p = pids(tests)
    assert len({p[0], p[1], p[2]}) == 3 and p[2] == p[3]  # RE re-run in a fresh child, then a new session


def test_a_crash_caused_by_state_an_earlier_test_left_is_rejudged_in_a_fresh_child():
    # test "a" breaks the shared interpreter (json, also used by nothing in the session loop) for later
    # tests; "b" crashes in the session and gets the verdict of a fresh child
    source = "import json\nx = input()\nprint(json.dumps(x))\nif x == 'a': json.dumps = None\n"
    tests = run(source, ["a", "b"])
    assert [(t["status"], t["stdout"]) for t in tests] == [("OK", '"a"\n'), ("OK", '"b"\n')]


def test_tle_in_the_middle_is_killed_and_the_rest_still_pass():
    source = "import os\nx = input()\nwhile x == 'spin': pass\nprint(os.getpid(), x)\n"
    tests = run(source, ["a", "spin", "b"], limits={"cpu_time_limit_s": 0.5, "wall_time_limit_s": 1.0})
    assert [t["status"] for t in tests] == ["OK", "TLE", "OK"]
    assert tests[1]["wall_time_s"] < 2.5 and tests[2]["stdout"].split()[1] == "b"


def test_closing_the_session_socket_and_sleeping_is_still_a_tle():
    source = """\
        import os, time
        x = input()
        if x == 'b':
            os.closerange(3, 1 << 16)
            time.sleep(30)
        print(x)
    """
    tests = run(source, ["a", "b", "c"], limits={"cpu_time_limit_s": 0.5, "wall_time_limit_s": 1.0})
    assert [t["status"] for t in tests] == ["OK", "TLE", "OK"]
    assert tests[1]["wall_time_s"] < 2.5


def test_cpu_limit_is_per_test_not_per_session():
    source = """\
        import time
        end = time.process_time() + 0.6
        while time.process_time() < end:
            pass
        print(input())
    """
    tests = run(source, ["1", "2", "3"], limits={"cpu_time_limit_s": 1.0, "wall_time_limit_s": 8.0})
    assert [t["status"] for t in tests] == ["OK"] * 3, tests
    assert all(0.4 < t["cpu_time_s"] < 1.0 for t in tests)


@pytest.mark.parametrize("leftover", [
    "import subprocess\nsubprocess.Popen(['sleep', '30'])",              # a child process
    "import threading, time\nthreading.Thread(target=time.sleep, args=(30,), daemon=True).start()",
    "open('left.txt', 'w').write('x')",                                    # a file in the work dir
])
def test_anything_left_behind_ends_the_session(leftover):
    source = f"import os\nprint(os.getpid(), os.listdir('.'), input())\n{leftover}\n"
    tests = run(source, ["a", "b"])
    assert [t["status"] for t in tests] == ["OK", "OK"]
    assert pids(tests)[0] != pids(tests)[1]
    assert "[]" in tests[1]["stdout"]


def test_call_harness_records_are_per_test_and_checked():
    source = "class Solution:\n    def f(self, x):\n        return x * 2\n"
    out = run_job({"source": source, "harness": {"kind": "call", "fn_name": "f"}, "share_process": True,
                   "tests": [{"input": str(i), "expected": str(2 * i)} for i in range(3)], "limits": FAST})
    assert [(t["status"], t["matched"]) for t in out["tests"]] == [("OK", True)] * 3
    assert [t["record"]["return_json"] for t in out["tests"]] == ["0", "2", "4"]


def test_a_printed_fake_record_does_not_pass():
    source = ("import os\nclass Solution:\n    def f(self, x):\n"
              "        os.write(3, b'x\\n{\"ok\": true}')\n        os._exit(0)\n")
    out = run_job({"source": source, "harness": {"kind": "call", "fn_name": "f"}, "share_process": True,
                   "tests": [{"input": "1"}, {"input": "2"}], "limits": FAST, "stop_on_first_failure": False})
    assert [t["status"] for t in out["tests"]] == ["RE", "RE"]


@pytest.mark.skipif(not ROOT, reason="MLE by RSS needs a fresh limit per test; checked as root like the runner tests")
def test_memory_over_the_limit_is_mle_and_the_next_test_is_fresh():
    source = ("import os\nx = input()\nif x == 'big': y = [bytearray(1 << 20) for _ in range(300)]\n"
              "print(os.getpid(), x)\n")
    tests = run(source, ["a", "big", "b"], limits={**FAST, "memory_limit_bytes": 256 << 20})
    assert [t["status"] for t in tests] == ["OK", "MLE", "OK"]
    assert tests[2]["peak_memory_bytes"] < 256 << 20


def test_share_process_must_be_a_bool():
    out = run_job({"source": "print(1)", "tests": [{}], "share_process": "yes"})
    assert out["status"] == "error" and "share_process" in out["error"]
