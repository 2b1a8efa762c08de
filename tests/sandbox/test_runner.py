"""The in-boundary runner (sandbox.runner.job.run_job), in-process, on every test status."""

import os
import shutil
import textwrap

import pytest

from sandbox.runner.job import _world_executable, run_job

ROOT = os.geteuid() == 0
FAST = {"cpu_time_limit_s": 1.0, "wall_time_limit_s": 3.0}


def run(source, stdins=("",), **job):
    job.setdefault("limits", FAST)
    out = run_job({"source": textwrap.dedent(source), "tests": [{"stdin": s} for s in stdins], **job})
    assert out["protocol"] == 1
    return out


def one(source, stdin="", **job):
    out = run(source, (stdin,), **job)
    assert out["status"] == "ok", out
    return out["tests"][0]


def test_ok_and_io():
    t = one("print(int(input()) * 2)", "21\n")
    assert (t["status"], t["stdout"], t["exit_code"]) == ("OK", "42\n", 0)
    assert t["peak_memory_bytes"] > 1 << 20 and t["wall_time_s"] > 0


@pytest.mark.parametrize("source, status", [
    ("raise ValueError('boom')", "RE"),
    ("import sys; sys.exit(3)", "RE"),
    ("import os, signal; os.kill(os.getpid(), signal.SIGSEGV)", "RE"),
    ("while True: pass", "TLE"),
    ("import time; time.sleep(10)", "TLE"),
    ("x = bytearray(3 << 30)", "MLE"),
    ("x = [bytearray(1 << 20) for _ in range(300)]", "MLE"),  # RSS over the limit, AS not hit
    ("import sys\nwhile True: sys.stdout.write('x' * 65536)", "OLE"),
])
def test_failure_statuses(source, status):
    limits = {**FAST, "memory_limit_bytes": 256 << 20, "output_limit_bytes": 1 << 20}
    t = one(source, limits=limits)
    assert t["status"] == status, t
    if status == "RE" and "boom" in source:
        assert "ValueError: boom" in t["stderr"] and "harness" not in t["stderr"]
    if status == "TLE":
        assert t["wall_time_s"] <= 3.5


def test_compile_error_quotes_the_syntax_error():
    out = run("def f(:\n    pass")
    assert out["status"] == "compile_error" and out["tests"] == []
    assert "SyntaxError" in out["compile"]["stderr"]


@pytest.mark.parametrize("source, stdin, expected", [
    ("import sys\nfor line in sys.stdin.buffer:\n    print(int(line) + 1)", "1\n2\n", "2\n3\n"),
    ("import sys\nn = int(sys.stdin.readline())\nprint(sum(int(sys.stdin.readline()) for _ in range(n)))",
     "2\n5\n6\n", "11\n"),
    ("import sys\ndata = sys.stdin.buffer.read().split()\nprint(len(data))", "1 2 3", "3\n"),
    ("total = 0\ndef add(x):\n    global total\n    total += x\nglobal n\nn = 2\nadd(n)\nprint(total)", "", "2\n"),
    ("print(len(str(10 ** 5000)))\nprint(int('9' * 5000) % 7)", "", "5001\n" + str((pow(10, 5000, 7) - 1) % 7) + "\n"),
    ("def main():\n    print('main ran')\n\nif __name__ == '__main__':\n    main()", "", "main ran\n"),
    ("import sys\nprint('a')\nsys.exit(0)\nprint('b')", "", "a\n"),
    ("exit()", "", ""),
    ("from typing import List\nimport threading\nthreading.Thread(target=lambda: print('thread')).start()", "",
     "thread\n"),
    ("import atexit\natexit.register(lambda: print('bye'))\nprint('hi', end='')", "", "hibye\n"),
])
def test_lcb_false_negatives_do_not_happen(source, stdin, expected):
    t = one(source, stdin)
    assert (t["status"], t["stdout"]) == ("OK", expected), t


def test_fresh_private_workdir_per_test_and_uid_drop():
    source = """
        import os
        print(os.path.exists('mark'), os.getuid(), os.getcwd())
        open('mark', 'w').write('x')
    """
    out = run(source, ("", ""))
    lines = [t["stdout"].split() for t in out["tests"]]
    assert [l[0] for l in lines] == ["False", "False"]
    assert lines[0][2] != lines[1][2] and not os.path.exists(lines[0][2])
    if ROOT:
        assert lines[0][1] == "65534"


@pytest.mark.skipif(not ROOT, reason="uid-wide sweep needs root (uid drop)")
def test_double_forked_daemon_does_not_survive():
    uid = 61990
    source = """
        import os, time
        if os.fork() == 0:
            os.setsid()
            if os.fork() == 0:
                time.sleep(60)
            os._exit(0)
        print('parent done')
    """
    t = one(source, sandbox_uid=uid, sandbox_gid=uid)
    assert t["status"] == "OK"
    survivors = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/status") as f:
                if any(l.startswith("Uid:") and l.split()[1] == str(uid) for l in f):
                    survivors.append(pid)
        except OSError:
            pass
    assert survivors == []


def test_pid_namespace_option():
    from sandbox.runner.execution import pid_namespace_available

    if not pid_namespace_available():
        pytest.skip("unshare(CLONE_NEWPID) not permitted here")
    out = run("import os\nprint(os.getpid())", pid_namespace=True)
    assert out["tests"][0]["stdout"] == "2\n" and out["runner"]["pid_namespace"] is True


def test_call_harness_record():
    src = "class Solution:\n    def f(self, a, b):\n        return (a + b, [a])"
    out = run_job({"source": src, "harness": {"kind": "call", "fn_name": "f"}, "limits": FAST,
                   "tests": [{"input": "1\n2"}]})
    t = out["tests"][0]
    assert t["status"] == "OK" and t["record"]["ok"] and t["record"]["return_json"] == "[3, [1]]"


def test_assert_harness_pass_fail_and_forgery():
    test_code = "def check(c):\n    assert c(list_node([1, 2])).val == 1\n\ncheck(Solution().f)"
    job = {"harness": {"kind": "assert", "test_code": test_code}, "limits": FAST, "tests": [{}]}
    good = run_job({**job, "source": "class Solution:\n    def f(self, head: Optional[ListNode]):\n        return head"})
    bad = run_job({**job, "source": "class Solution:\n    def f(self, head):\n        return head.next"})
    early = run_job({**job, "source": "import os\nprint('passed')\nos._exit(0)"})
    forged = run_job({**job, "source": "import os, json\nos.write(3, b'x\\n{\"ok\": true}')\nos._exit(0)"})
    assert good["tests"][0]["status"] == "OK" and good["tests"][0]["record"] == {"ok": True}
    assert bad["tests"][0]["status"] == "RE" and bad["tests"][0]["record"]["error_type"] == "AssertionError"
    for out in (early, forged):
        assert out["tests"][0]["status"] == "RE" and out["tests"][0]["record"] is None


def test_stop_on_first_failure():
    tests = [{"stdin": "1", "expected": "9"}, {"stdin": "2", "expected": "2"}]
    stop = run_job({"source": "print(input())", "tests": tests, "limits": FAST})
    full = run_job({"source": "print(input())", "tests": tests, "limits": FAST, "stop_on_first_failure": False})
    assert len(stop["tests"]) == 1 and stop["stopped_early"] and stop["tests"][0]["matched"] is False
    assert [t["matched"] for t in full["tests"]] == [False, True]


def test_malformed_job_is_an_error_not_a_verdict():
    for job in ({"source": "x", "tests": []}, {"source": 1, "tests": [{}]}, {"source": "", "tests": [{}], "bogus": 1},
                {"source": "", "tests": [{}], "limits": {"cpu_time_limit_s": -1}}):
        out = run_job(job)
        assert out["status"] == "error" and out["error"]


def _exec_python_available():
    return any(_world_executable(p) for p in ("/usr/local/bin/python3", "/usr/bin/python3"))


@pytest.mark.skipif(not _exec_python_available(), reason="no python3 executable by the sandbox uid")
def test_exec_mode_matches_fork_mode():
    sources = [("import sys\nprint(sum(map(int, sys.stdin.buffer.read().split())))", "1 2 3"),
               ("raise SystemExit(4)", ""), ("print(10 ** 5000 > 0)", "")]
    for source, stdin in sources:
        fork, exe = one(source, stdin), one(source, stdin, python_mode="exec")
        assert (fork["status"], fork["stdout"], fork["exit_code"]) == (exe["status"], exe["stdout"], exe["exit_code"])
    job = {"harness": {"kind": "assert", "test_code": "assert Solution().f() == 1"}, "limits": FAST, "tests": [{}],
           "python_mode": "exec"}
    assert run_job({**job, "source": "class Solution:\n    def f(self): return 1"})["tests"][0]["status"] == "OK"
    assert run_job({**job, "source": "class Solution:\n    def f(self): return 2"})["tests"][0]["status"] == "RE"


@pytest.mark.skipif(shutil.which("g++") is None, reason="g++ not installed")
def test_cpp_compile_run_and_compile_error():
    src = "#include <cstdio>\nint main(){long long a,b;scanf(\"%lld %lld\",&a,&b);printf(\"%lld\\n\",a+b);}"
    out = run_job({"language": "cpp", "source": src, "tests": [{"stdin": "2 3"}, {"stdin": "5 5"}]})
    assert out["compile"]["ok"] and [t["stdout"] for t in out["tests"]] == ["5\n", "10\n"]
    bad = run_job({"language": "cpp", "source": "int main( {", "tests": [{"stdin": ""}]})
    assert bad["status"] == "compile_error" and "error" in bad["compile"]["stderr"]


def test_forked_programs_look_like_fresh_scripts():
    source = """
        import os, random, sys
        print(random.random())
        print(sys.argv[0] == __file__, sys.path[0] == os.path.dirname(__file__), __name__)
    """
    out = run(source, ("", ""))
    first, second = (t["stdout"].splitlines() for t in out["tests"])
    assert first[0] != second[0]  # random is reseeded per test, as in a fresh interpreter
    assert first[1] == "True True __main__"


def test_output_limit_truncates_and_reports_size():
    t = one("import sys\nsys.stdout.write('y' * 5000)", limits={**FAST, "output_limit_bytes": 1000})
    assert t["status"] == "OLE" and t["stdout_truncated"] and len(t["stdout"]) == 1000


def test_output_over_the_limit_is_not_collected():
    # issue 11: past the limit the output is a verdict, not data: only its first 4 KiB come back
    t = one("import sys\nsys.stdout.write('z' * (3 << 20))", limits={**FAST, "output_limit_bytes": 1 << 20})
    assert t["status"] == "OLE" and t["stdout_truncated"] and t["stdout_bytes"] > 1 << 20
    assert t["stdout"] == "z" * 4096
    t = one("import sys\nsys.stdout.write('z' * (1 << 20))", limits={**FAST, "output_limit_bytes": 1 << 20})
    assert t["status"] == "OK" and len(t["stdout"]) == 1 << 20 and not t["stdout_truncated"]  # at the limit: all


def test_concurrent_in_process_calls_are_serialised_safely():
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(4) as pool:
        outs = list(pool.map(lambda i: one(f"print({i})"), range(8)))
    assert [o["stdout"] for o in outs] == [f"{i}\n" for i in range(8)]


def test_lone_surrogates_are_not_internal_errors():
    t = one("print(input()[::-1])", "ab\ud800\n")
    assert t["status"] in ("OK", "RE")
    out = run("s = '\ud800'\nprint(len(s))")  # not encodable as UTF-8: python3 rejects such a file too
    assert out["status"] == "compile_error"
