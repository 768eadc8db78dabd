#!/usr/bin/env bash
# Runs Istio's sample matrix against the compose rig and prints expected against got.
# Start the rig first, from the repository root:
#   docker compose -f docker/docker-compose.yaml up -d --build
#   docker/run-matrix.sh
# Every request is sent from the `sleep` container, inside the compose network.
# Exit status: 0 when every cell matches, 1 on a mismatch, 2 when the rig cannot be reached.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
compose_file="$repo/docker/docker-compose.yaml"
token="$(tr -d '[:space:]' <"$repo/extauthz/samples/demo.jwt")"
gateway="http://envoy:8080"
sidecar="http://httpbin:8000"
deadline_seconds="${MATRIX_WAIT_SECONDS:-120}"

# Scenario 1, the gateway: the same rows as extauthz/samples/matrix.yaml
# (tests/packaging/test_docker_files.py fails when they drift apart).
#   path                 token  status
gateway_matrix=(
  "/productpage          none   200"
  "/api/v1/products/0    none   403"
  "/api/v1/products/1    none   403"
  "/productpage          demo   200"
  "/api/v1/products/0    demo   200"
  "/api/v1/products/1    demo   200"
)

if docker compose version >/dev/null 2>&1; then
  compose=(docker compose -f "$compose_file")
elif command -v docker-compose >/dev/null 2>&1; then
  compose=(docker-compose -f "$compose_file")
else
  echo "run-matrix: neither 'docker compose' nor 'docker-compose' is installed" >&2
  exit 2
fi

# curl_in_sleep ARGS... : runs curl in the sleep container; prints what curl printed (with
# `-w '%{http_code}'`, 000 when nothing answered) even when curl fails.
curl_in_sleep() {
  "${compose[@]}" exec -T sleep curl --silent --max-time 10 "$@" || true
}

status_of() { # status_of URL TOKEN_NAME
  local url="$1" token_name="$2"
  local auth=()
  if [[ "$token_name" == demo ]]; then
    auth=(--header "Authorization: Bearer $token")
  fi
  # ${auth[@]+...}: an empty array is "unbound" for `set -u` in bash before 4.4 (macOS).
  curl_in_sleep --output /dev/null --write-out '%{http_code}' ${auth[@]+"${auth[@]}"} "$url"
}

# The containers start in seconds, but Envoy, extauthz and the apps answer a little later:
# poll until both Envoys pass a request through (or the deadline passes), never sleep blindly.
wait_for() { # wait_for URL TOKEN_NAME
  local url="$1" token_name="$2" got=""
  local until=$((SECONDS + deadline_seconds))
  while ((SECONDS < until)); do
    got="$(status_of "$url" "$token_name")"
    if [[ "$got" == 200 ]]; then
      return 0
    fi
    sleep 1
  done
  echo "run-matrix: $url did not answer 200 within ${deadline_seconds}s (last: ${got:-none})." >&2
  echo "Is the rig up? docker compose -f docker/docker-compose.yaml up -d --build" >&2
  exit 2
}

wait_for "$gateway/productpage" none
wait_for "$sidecar/headers" demo

failures=0
row() { # row WHERE PATH TOKEN EXPECTED GOT
  local verdict=ok
  if [[ "$4" != "$5" ]]; then
    verdict=MISMATCH
    failures=$((failures + 1))
  fi
  printf '%-8s %-28s %-6s %-9s %-9s %s\n' "$1" "$2" "$3" "$4" "$5" "$verdict"
}

printf '%-8s %-28s %-6s %-9s %-9s %s\n' where path token expected got ""
for line in "${gateway_matrix[@]}"; do
  read -r path token_name expected <<<"$line"
  row gateway "$path" "$token_name" "$expected" "$(status_of "$gateway$path" "$token_name")"
done

# Scenario 2, the sidecar: the demo token is accepted and, as Envoy's jwt_authn does with
# forwardOriginalToken false, the Authorization header never reaches httpbin, whose /headers
# echoes what it received.
response="$(curl_in_sleep --write-out '\n%{http_code}' \
  --header "Authorization: Bearer $token" "$sidecar/headers")"
row sidecar /headers demo 200 "${response##*$'\n'}"
forwarded=absent
if grep -qi '"authorization"' <<<"${response%$'\n'*}"; then
  forwarded=present
fi
row sidecar "/headers: Authorization" demo absent "$forwarded"

if ((failures > 0)); then
  echo "$failures mismatch(es)"
  exit 1
fi
echo "all cells match"
