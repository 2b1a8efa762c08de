"""The runner that executes INSIDE the isolation boundary (stdlib only; copied into the worker image).

- :mod:`~sandbox.runner.job`: the RunJob/RunOutcome protocol, ``python3 -m sandbox.runner.job --serve``.
- :mod:`~sandbox.runner.zygote`: the fork server every test is forked from.
- :mod:`~sandbox.runner.execution`: one test execution (rlimits, uid drop, clean-up, result).
- :mod:`~sandbox.runner.session`: shared-process sessions (a job's tests in one child).
- :mod:`~sandbox.runner.harness`: runs a Python program in-process (stdio, call, assert).
- :mod:`~sandbox.runner.socket_server`: the runner on a unix socket (compose workers).

Import order is one way: ``job -> zygote -> session -> execution``; ``harness`` imports nothing
of the package. ``sandbox/docker/worker_files.py`` checks that this closure stays stdlib-only.
"""
