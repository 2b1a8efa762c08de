"""``er sandbox``: run the reward service, or judge one program from the command line.

Examples::

    er sandbox serve --port 8000                        # 127.0.0.1:8000, process isolation
    er sandbox serve --host 10.0.0.5 --api-key-file /etc/er/keys --tls-certfile c.pem --tls-keyfile k.pem
    ER_SANDBOX_ISOLATION=docker er sandbox serve         # every flag has an ER_SANDBOX_* variable
    er sandbox judge --problem problem.json --code solution.py
    er sandbox judge --problem problem.json --completion out.txt --endpoint http://127.0.0.1:8000
    er sandbox health --endpoint http://127.0.0.1:8000

``--problem`` is a JSON file holding either a Problem dict (``{"id": ..., "task": "code",
"tests": {...}}``) or a bare test spec (``{"kind": "stdio", "cases": [...]}``).
Clients (``judge``, ``health``) send the key in ``$ER_API_KEY`` or the file ``$ER_API_KEY_FILE``.
``judge`` prints the JudgeResult as JSON; exit status 0 for AC, 1 for any other verdict,
3 when the judge itself failed (internal error).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from pathlib import Path
from typing import Any

from er_cli import add_dataclass_args, dataclass_from_args

__all__ = ["register", "load_spec"]

EXIT_AC, EXIT_NOT_AC, EXIT_INTERNAL_ERROR = 0, 1, 3
_PER_REQUEST = ("cpu_time_limit_s", "wall_time_limit_s", "memory_limit_bytes", "output_limit_bytes")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``er sandbox`` (``serve``, ``judge``, ``health``) to the ``er`` parser."""
    from sandbox.core.judge import JudgeConfig
    from sandbox.service.config import ServerConfig

    group = subparsers.add_parser("sandbox", help="Reward service: serve it, or judge one program.",
                                  description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    group.set_defaults(func=lambda ns: group.print_help() or 2)
    actions = group.add_subparsers(dest="sandbox_action", metavar="ACTION")

    serve = actions.add_parser("serve", help="Run the HTTP reward service (uvicorn).",
                               description="Every flag mirrors an environment variable ER_SANDBOX_<FLAG>; "
                                           "flags win over the environment.")
    add_dataclass_args(serve, ServerConfig)
    for action in serve._actions:  # name each flag's mirroring environment variable
        if action.dest in {f.name for f in dataclasses.fields(ServerConfig)}:
            action.help = f"{action.help} [env {ServerConfig.env_name(action.dest)}]"
        if action.dest in ("insecure_no_auth", "metrics_open"):  # `--insecure-no-auth` alone means true
            action.nargs, action.const = "?", True
    try:
        serve.set_defaults(**ServerConfig.env_values())
        serve.set_defaults(func=_serve)
    except ValueError as exc:  # reported when `serve` runs, so `er --help` still works
        message = str(exc)
        serve.set_defaults(func=lambda ns: _fail(message))

    judge = actions.add_parser("judge", help="Judge one program against a problem's tests; print JSON.")
    judge.add_argument("--problem", required=True, type=Path, help="JSON file: a Problem dict or a bare test spec.")
    source = judge.add_mutually_exclusive_group(required=True)
    source.add_argument("--code", type=Path, help="Program source file.")
    source.add_argument("--completion", type=Path, help="Model completion file (the code block is extracted).")
    judge.add_argument("--language", choices=("python", "cpp"), default="python", help="Program language.")
    judge.add_argument("--endpoint", default=None, help="Reward server URL; default: judge in-process.")
    judge.add_argument("--isolation", default="process", help="In-process isolation backend (process|docker).")
    judge.add_argument("--isolation-options", default="{}", metavar="JSON",
                       help="In-process backend kwargs as a JSON object, e.g. '{\"workers\": 1}'.")
    add_dataclass_args(judge, JudgeConfig)
    judge.set_defaults(func=_judge)

    health = actions.add_parser("health", help="Print a reward server's health report.")
    health.add_argument("--endpoint", default="http://127.0.0.1:8000", help="Reward server URL.")
    health.set_defaults(func=_health)


def _fail(message: str) -> int:
    print(f"er sandbox serve: error: {message}", file=sys.stderr)
    return 2


def _serve(ns: argparse.Namespace) -> int:
    import uvicorn

    from sandbox.service.config import ServerConfig
    from sandbox.service.server import EXTRA_ROUTES_ENV, create_app, route_factories

    config = dataclass_from_args(ServerConfig, ns)
    try:  # routes of layers above the sandbox, e.g. er_integrations.openrlhf_reward:routes
        routes = route_factories(os.environ.get(EXTRA_ROUTES_ENV, ""))
    except ValueError as exc:
        return _fail(str(exc))
    try:  # key file, bind address and TLS files are checked before anything starts
        app = create_app(config, routes=routes)
    except ValueError as exc:
        return _fail(str(exc))
    if config.insecure_no_auth and not config.api_key_file:
        print(f"er sandbox serve: warning: {config.host}:{config.port} has no authentication "
              "(--insecure-no-auth): anyone who reaches it runs code", file=sys.stderr)
    tls = {"ssl_certfile": config.tls_certfile, "ssl_keyfile": config.tls_keyfile} if config.tls else {}
    uvicorn.run(app, host=config.host, port=config.port, log_level=config.log_level, **tls)
    return 0


def load_spec(path: Path) -> dict[str, Any]:
    """The test spec in ``path``: a Problem dict's ``tests``, or the file itself when it is a bare spec.

    Args:
        path: a JSON file.

    Returns:
        The spec dict.

    Raises:
        ValueError: not JSON, or neither a problem with tests nor a spec (the message quotes it).

    """
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path} is not valid JSON: {exc}") from None
    if isinstance(data, dict) and isinstance(data.get("tests"), dict):
        return data["tests"]
    if isinstance(data, dict) and "kind" in data:
        return data
    raise ValueError(f"{path} holds neither a Problem dict with 'tests' nor a test spec with 'kind': {data!r:.200}")


def _judge(ns: argparse.Namespace) -> int:
    from sandbox.core.judge import JudgeConfig
    from sandbox.service.client import SandboxClient
    from sandbox.service.service import ServiceConfig

    config = dataclass_from_args(JudgeConfig, ns)
    changed = {f.name: getattr(config, f.name) for f in dataclasses.fields(JudgeConfig)
               if getattr(config, f.name) != f.default}
    options: dict[str, Any] = {"compare_mode": config.compare_mode,
                               "stop_on_first_failure": config.stop_on_first_failure}
    limits = {k: v for k, v in changed.items() if k in _PER_REQUEST}
    if limits:
        options["limits"] = limits
    server_side = sorted(set(changed) - set(_PER_REQUEST) - {"compare_mode", "stop_on_first_failure"})
    if ns.endpoint and server_side:
        raise ValueError(f"{server_side} are the server's settings; drop them or judge in-process (no --endpoint)")
    text_key = "code" if ns.code is not None else "completion"
    submission = {text_key: (ns.code or ns.completion).read_text(), "tests": load_spec(ns.problem),
                  "language": ns.language}
    service = None if ns.endpoint else ServiceConfig(isolation=ns.isolation, isolation_options=ns.isolation_options,
                                                     judge_options=changed, judge_workers=1, math_workers=1)
    with SandboxClient(ns.endpoint, service_config=service) as client:
        result = client.judge(submission, **options)
    json.dump(result.to_dict(), sys.stdout, indent=2, ensure_ascii=False)
    sys.stdout.write("\n")
    if result.is_error:
        return EXIT_INTERNAL_ERROR
    return EXIT_AC if result.verdict.name == "AC" else EXIT_NOT_AC


def _health(ns: argparse.Namespace) -> int:
    from sandbox.service.client import SandboxClient

    with SandboxClient(ns.endpoint, max_retries=1, backoff_s=0.2) as client:
        report = client.health()
    json.dump(report, sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0 if report.get("ok") else 1
