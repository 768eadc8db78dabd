#!/usr/bin/env bash
# Runs Istio's sample matrix against the compose rig and prints expected against got, as
# `make demo` does: every path with no token, the demo token and three bad ones (tampered,
# expired, unknown issuer), each token sent in the Authorization header and as
# ?access_token=; then the sidecar scenario, whose keys come from nginx-proxy's /get_jwks.
# Start the rig first, from the repository root:
#   docker compose -f docker/docker-compose.yaml up -d --build
#   docker/run-matrix.sh
# Every request is sent from the `sleep` container, inside the compose network; the bad
# tokens are minted in the `extauthz` container (extauthz.rig.tokens, Istio's sample key), so
# the host needs nothing but Docker. COMPOSE_PROJECT_NAME selects another project, as it does
# for compose itself.
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
# A token that is present but invalid is rejected with 401 on every path, before any
# AuthorizationPolicy is consulted, as Istio's RequestAuthentication does.
bad_tokens=(tampered expired unknown-issuer)

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

# The bad tokens, minted where the package is installed: the extauthz container.
mint_code='
import sys
from extauthz.rig.tokens import invalid_tokens
for name, (token, _) in invalid_tokens(sys.argv[1]).items():
    print(name, token)
'
tampered="" expired="" unknown_issuer=""
mint_bad_tokens() {
  local minted name value
  if ! minted="$("${compose[@]}" exec -T extauthz python -c "$mint_code" "$token")"; then
    echo "run-matrix: could not mint the bad tokens in the extauthz container" >&2
    exit 2
  fi
  while read -r name value; do
    case "$name" in
      tampered) tampered="$value" ;;
      expired) expired="$value" ;;
      unknown-issuer) unknown_issuer="$value" ;;
    esac
  done <<<"$minted"
}

token_named() { # token_named NAME: the token text ("" for none)
  case "$1" in
    none) echo "" ;;
    demo) echo "$token" ;;
    tampered) echo "$tampered" ;;
    expired) echo "$expired" ;;
    unknown-issuer) echo "$unknown_issuer" ;;
  esac
}

# request URL TOKEN_NAME VIA [CURL ARGS...]: the token in the Authorization header
# (VIA=header) or as ?access_token= (VIA=query), Istio's two default locations.
request() {
  local url="$1" token_text via="$3"
  token_text="$(token_named "$2")"
  shift 3
  local auth=()
  if [[ -n "$token_text" && "$via" == header ]]; then
    auth=(--header "Authorization: Bearer $token_text")
  elif [[ -n "$token_text" ]]; then
    url="$url?access_token=$token_text"
  fi
  # ${auth[@]+...}: an empty array is "unbound" for `set -u` in bash before 4.4 (macOS).
  curl_in_sleep "$@" ${auth[@]+"${auth[@]}"} "$url"
}

status_of() { # status_of URL TOKEN_NAME [VIA]
  request "$1" "$2" "${3:-header}" --output /dev/null --write-out '%{http_code}'
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
mint_bad_tokens

passed=0
failures=0
row() { # row WHERE PATH TOKEN VIA EXPECTED GOT
  local verdict=ok
  if [[ "$5" != "$6" ]]; then
    verdict=MISMATCH
    failures=$((failures + 1))
  else
    passed=$((passed + 1))
  fi
  printf '%-8s %-28s %-15s %-7s %8s %5s  %s\n' "$1" "$2" "$3" "$4" "$5" "$6" "$verdict"
}

# cells WHERE BASE_URL PATH TOKEN_NAME EXPECTED: one row per place the token can be sent.
cells() {
  local via
  if [[ "$4" == none ]]; then
    row "$1" "$3" none - "$5" "$(status_of "$2$3" none)"
    return
  fi
  for via in header query; do
    row "$1" "$3" "$4" "$via" "$5" "$(status_of "$2$3" "$4" "$via")"
  done
}

printf '%-8s %-28s %-15s %-7s %8s %5s\n' where path token "sent as" expected got
printf '%s\n' "-------------------------------------------------------------------------------"
paths=()
for line in "${gateway_matrix[@]}"; do
  read -r path token_name expected <<<"$line"
  cells gateway "$gateway" "$path" "$token_name" "$expected"
  if [[ "$token_name" == none ]]; then
    paths+=("$path")
  fi
done
for token_name in "${bad_tokens[@]}"; do
  for path in "${paths[@]}"; do
    cells gateway "$gateway" "$path" "$token_name" 401
  done
done

# Scenario 2, the sidecar: sidecar-policies.yaml only authenticates (no AuthorizationPolicy),
# so no token passes and a bad one is 401; the keys come from nginx-proxy, so the demo
# token's 200 shows the jwksUri fetch worked.
for token_name in none demo "${bad_tokens[@]}"; do
  expected=200
  if [[ "$token_name" != none && "$token_name" != demo ]]; then
    expected=401
  fi
  cells sidecar "$sidecar" /headers "$token_name" "$expected"
done
# As Envoy's jwt_authn does with forwardOriginalToken false, the Authorization header never
# reaches httpbin, whose /headers echoes what it received.
response="$(request "$sidecar/headers" demo header --write-out '\n%{http_code}')"
forwarded=absent
if grep -qi '"authorization"' <<<"${response%$'\n'*}"; then
  forwarded=present
fi
row sidecar "/headers: Authorization" demo header absent "$forwarded"

echo
echo "$passed passed, $failures failed"
if ((failures > 0)); then
  exit 1
fi
