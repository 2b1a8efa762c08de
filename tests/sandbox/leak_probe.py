"""A submitted program that hunts for secrets: its environment, every file it can read, the host's listening ports.

The program never holds a secret: it gets, per secret, a label, the first 6 characters, the length and the
SHA-256 of the whole, and reports a secret found when a window of that length starting with that prefix has
that hash. What it searches:

- ``os.environ`` (names and values);
- ``/proc/*/environ`` and ``/proc/*/cmdline`` of every process it can see (``/proc/1`` included);
- files under its working directory, ``/tmp``, ``/dev/shm``, ``$HOME``, ``/root``, ``/run``, ``/var/run``,
  ``/etc/er``, after the secret files' own paths and directories (up to 4000 regular files, the first 256 KiB
  of each);
- every TCP port listening on the loopback it can see in ``/proc/net/tcp{,6}``, plus the given ports: it
  connects, sends ``GET /metrics`` and ``GET /`` with no key, and searches the answers.

It prints one JSON line: ``{"found": [labels], "files_read": n, "ports_reached": [...]}``.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from typing import Iterable

_BODY = r'''
import hashlib, json, os, socket, sys
FPS = json.loads(__FPS__)
EXTRA_PATHS = json.loads(__PATHS__)
PORTS = json.loads(__PORTS__)
found, files_read, reached = set(), 0, []

def scan(blob):
    if isinstance(blob, str):
        blob = blob.encode("utf-8", "surrogateescape")
    for fp in FPS:
        start, prefix, n = 0, fp["prefix"].encode(), fp["length"]
        while True:
            i = blob.find(prefix, start)
            if i < 0:
                break
            if hashlib.sha256(blob[i:i + n]).hexdigest() == fp["sha256"]:
                found.add(fp["label"])
                break
            start = i + 1

for k, v in os.environ.items():
    scan(k + "=" + v)

def read(path, limit=1 << 20):
    global files_read
    try:
        with open(path, "rb") as f:
            data = f.read(limit)
    except OSError:
        return
    files_read += 1
    scan(data)

try:
    pids = [p for p in os.listdir("/proc") if p.isdigit()]
except OSError:
    pids = []
for pid in pids:
    read(f"/proc/{pid}/environ")
    read(f"/proc/{pid}/cmdline")

seen, budget = set(), [4000]
def walk(top, depth=0):
    if budget[0] <= 0 or depth > 6:
        return
    try:
        real = os.path.realpath(top)
    except OSError:
        return
    if real in seen or real.startswith(("/proc", "/sys", "/dev/")) and not real.startswith("/dev/shm"):
        return
    seen.add(real)
    if os.path.isfile(top):
        budget[0] -= 1
        read(top, 256 << 10)
        return
    try:
        entries = os.listdir(top)
    except OSError:
        return
    for name in entries:
        walk(os.path.join(top, name), depth + 1)

# the secrets' own files and directories first: the file budget must not run out on a busy /tmp before them
roots = [q for p in EXTRA_PATHS for q in (p, os.path.dirname(p))]
roots += [os.getcwd(), "/tmp", "/dev/shm", os.path.expanduser("~"), "/root", "/run", "/var/run", "/etc/er"]
for root in roots:
    walk(root)

ports = set(PORTS)
for name in ("/proc/net/tcp", "/proc/net/tcp6"):
    try:
        lines = open(name).read().splitlines()[1:]
    except OSError:
        continue
    for line in lines:
        parts = line.split()
        if len(parts) > 3 and parts[3] == "0A":  # LISTEN
            ports.add(int(parts[1].rsplit(":", 1)[1], 16))
for port in sorted(ports):
    for host in ("127.0.0.1", "::1"):
        for path in ("/metrics", "/"):
            try:
                family = socket.AF_INET6 if ":" in host else socket.AF_INET
                with socket.socket(family, socket.SOCK_STREAM) as s:
                    s.settimeout(0.5)
                    s.connect((host, port))
                    reached.append(port)
                    s.sendall(f"GET {path} HTTP/1.0\r\nHost: x\r\n\r\n".encode())
                    data = b""
                    while len(data) < (1 << 16):
                        chunk = s.recv(4096)
                        if not chunk:
                            break
                        data += chunk
                    scan(data)
            except OSError:
                pass
print(json.dumps({"found": sorted(found), "files_read": files_read, "ports_reached": sorted(set(reached))}))
'''


def fingerprint(label: str, secret: str) -> dict:
    """What the probe needs to recognise ``secret`` without holding it."""
    if len(secret) < 12:
        raise ValueError(f"secret {label!r} too short to fingerprint safely")
    return {"label": label, "prefix": secret[:6], "length": len(secret.encode()),
            "sha256": hashlib.sha256(secret.encode()).hexdigest()}


def probe_source(secrets: dict[str, str], paths: Iterable[str] = (), ports: Iterable[int] = ()) -> str:
    """The probe program for ``{label: secret}``, also looking at ``paths`` and connecting to ``ports``."""
    fps = [fingerprint(label, s) for label, s in secrets.items()]
    source = (_BODY.replace("__FPS__", repr(json.dumps(fps))).replace("__PATHS__", repr(json.dumps(list(paths))))
              .replace("__PORTS__", repr(json.dumps(list(ports)))))
    for secret in secrets.values():
        assert secret not in source
    return source


def run_unsandboxed(source: str, cwd: str) -> dict:
    """The probe run as a plain child of the test (the positive control: it must find planted secrets)."""
    proc = subprocess.run([sys.executable, "-c", source], capture_output=True, text=True, timeout=120, cwd=cwd)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])
