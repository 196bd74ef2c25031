#!/usr/bin/env bash
# Starts Envoy with envoy/demo.yaml and prints requests to try. Ctrl-C stops it.
set -euo pipefail
cd "$(dirname "$0")/.."
envoy="${ENVOY_BIN:-.venv/bin/envoy}"
log=.demo/envoy.log

"$envoy" -c envoy/demo.yaml --use-dynamic-base-id --concurrency 2 -l info >"$log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null' EXIT INT TERM

for _ in $(seq 100); do
  if ! kill -0 $pid 2>/dev/null; then
    echo "Envoy exited; its log ($log):"; tail -20 "$log"; exit 1
  fi
  [ "$(curl -s localhost:9901/ready 2>/dev/null)" = LIVE ] && break
  sleep 0.2
done

curl_base="curl -s --cacert .demo/ca.pem"
c1="--cert .demo/client-1.pem --key .demo/client-1.key"
c2="--cert .demo/client-2.pem --key .demo/client-2.key"
url="https://localhost:10443/orders/7"
bearer() { echo "-H \"authorization: Bearer \$(cat .demo/$1)\""; }

cat <<TXT

cnf-guard demo: Envoy is listening on https://localhost:10443 (admin: http://localhost:9901)
Envoy log: $log. Paste these from the repository root:

# 1. allowed: token bound to client-1, presented by client-1 -> 200 from the upstream
$curl_base $c1 $(bearer token-client-1.jwt) $url

# 2. mtls-binding-mismatch: client-1 presents client-2's token (a stolen token) -> 401
$curl_base $c1 $(bearer token-client-2.jwt) $url

# 3. mtls-required: a bound token without any client certificate -> 401
$curl_base $(bearer token-client-1.jwt) $url

# 4. token-unbound: a token with no cnf claim -> 401
$curl_base $c1 $(bearer token-unbound.jwt) $url

# 5. token-invalid: cnf.x5t#S256 written as hex instead of base64url -> 401
$curl_base $c1 $(bearer token-hex-thumbprint.jwt) $url

# 6. signed by a key the issuer's JWKS doesn't have: jwt_authn rejects it first -> 401
$curl_base $c1 $(bearer token-rogue-signer.jwt) $url

# 7. client-2 with its own token -> 200
$curl_base $c2 $(bearer token-client-2.jwt) $url

# counters (flushed every second) and the denial log lines
curl -s localhost:9901/stats?filter=cnf_guard
grep 'wasm log' $log | grep -E 'denied|configured'

Press Ctrl-C to stop Envoy.
TXT
wait $pid
