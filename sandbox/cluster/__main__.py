"""``python -m sandbox.cluster {deploy,shutdown,check}``: put the reward service on a running Ray cluster.

``check`` connects and says whether the cluster enforces Ray token authentication (exit 0) or not
(exit 1, with the warning ``deploy`` also prints); ``--ray-token-file`` gives the token.

Flags are the :class:`~sandbox.cluster.config.ClusterConfig` fields (``--http-port``,
``--service '{"judge_workers": 16}'`` ...); each defaults to ``$ER_CLUSTER_<FIELD>`` when set.
``deploy`` waits until ``/health`` answers 200 through the proxy and prints the URL.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import os
import sys
import time
from typing import Any

from sandbox.cluster.config import ClusterConfig
from sandbox.service.config import parse_bool


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m sandbox.cluster", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=("deploy", "shutdown", "check"))
    for f in dataclasses.fields(ClusterConfig):
        raw = os.environ.get(f"ER_CLUSTER_{f.name.upper()}")
        flag, help_text = f"--{f.name.replace('_', '-')}", f.metadata["help"]
        if isinstance(f.default, bool):  # `--insecure-no-auth` alone, or with true/false
            on = f.default if raw is None else parse_bool(f"ER_CLUSTER_{f.name.upper()}", raw)
            parser.add_argument(flag, type=functools.partial(parse_bool, flag), nargs="?", const=True,
                                default=on, help=f"{help_text} (default: {on!r})")
            continue
        default: Any = f.default if raw is None else raw
        kind = {int: int, float: float}.get(type(f.default), str)
        parser.add_argument(flag, type=kind, default=default, help=f"{help_text} (default: {default!r})")
    parser.add_argument("--wait-judge-nodes", type=int, default=0, help="Judge nodes to wait for before deploying.")
    parser.add_argument("--timeout-s", type=float, default=300.0, help="Wait for nodes and /health this long.")
    return parser


def _trust(certfile: str) -> Any:
    """The ``verify`` of httpx for the deployment's own certificate: the system CAs plus that certificate itself."""
    import ssl

    if not certfile:
        return True
    context = ssl.create_default_context()
    context.load_verify_locations(certfile)
    context.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN  # the leaf is a trust anchor too (self-signed or not)
    return context


def _wait_healthy(url: str, timeout_s: float, certfile: str = "") -> None:
    import httpx

    deadline, last = time.monotonic() + timeout_s, ""
    verify = _trust(certfile)
    while time.monotonic() < deadline:
        try:
            resp = httpx.get(f"{url}/health", timeout=30, verify=verify)
            if resp.status_code == 200:
                return
            last = f"HTTP {resp.status_code}: {resp.text[:300]}"
        except httpx.TransportError as exc:
            last = f"{type(exc).__name__}: {exc}"
        time.sleep(0.5)
    raise SystemExit(f"{url}/health did not answer 200 within {timeout_s} s (last: {last})")


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit status."""
    args = _parser().parse_args(argv)
    fields = {f.name: getattr(args, f.name) for f in dataclasses.fields(ClusterConfig)}
    try:
        config = ClusterConfig(**fields)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if config.ray_token_file:  # before `import ray`, which reads RAY_AUTH_MODE once
        os.environ.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN_PATH=os.path.abspath(config.ray_token_file))
        os.environ.pop("RAY_AUTH_TOKEN", None)
    from sandbox.cluster import deployment

    if args.command == "shutdown":
        deployment.shutdown(config)
        return 0
    if args.command == "check":  # is this Ray cluster locked down? 0 yes, 1 no (with the warning)
        return 0 if deployment.check_ray_auth(config) is None else 1
    url = deployment.deploy(config, wait_judge_nodes=args.wait_judge_nodes, timeout_s=args.timeout_s)
    _wait_healthy(url, args.timeout_s, config.tls_certfile)
    print(url)
    return 0


if __name__ == "__main__":
    sys.exit(main())
