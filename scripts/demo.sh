#!/usr/bin/env bash
# Starts Envoy with envoy/demo.yaml (certificate-bound tokens) and another with
# envoy/dpop.yaml (DPoP), and prints requests to try. Ctrl-C stops both.
set -euo pipefail
cd "$(dirname "$0")/.."
envoy="${ENVOY_BIN:-.venv/bin/envoy}"
log=.demo/envoy.log
dpop_log=.demo/envoy-dpop.log

"$envoy" -c envoy/demo.yaml --use-dynamic-base-id --concurrency 2 -l info >"$log" 2>&1 &
pid=$!
"$envoy" -c envoy/dpop.yaml --use-dynamic-base-id --concurrency 2 -l info >"$dpop_log" 2>&1 &
dpop_pid=$!
trap 'kill $pid $dpop_pid 2>/dev/null; wait $pid $dpop_pid 2>/dev/null' EXIT INT TERM

wait_ready() { # pid admin-port log
  for _ in $(seq 100); do
    if ! kill -0 "$1" 2>/dev/null; then
      echo "Envoy exited; its log ($3):"; tail -20 "$3"; exit 1
    fi
    [ "$(curl -s "localhost:$2/ready" 2>/dev/null)" = LIVE ] && return
    sleep 0.2
  done
}
wait_ready $pid 9901 "$log"
wait_ready $dpop_pid 9902 "$dpop_log"

curl_base="curl -s --cacert .demo/ca.pem"
c1="--cert .demo/client-1.pem --key .demo/client-1.key"
c2="--cert .demo/client-2.pem --key .demo/client-2.key"
url="https://localhost:10443/orders/7"
bearer() { echo "-H \"authorization: Bearer \$(cat .demo/$1)\""; }
proof_bin="${CARGO_TARGET_DIR:-target}/debug/examples/dpop_proof"
dpop_url="https://localhost:10444/orders/7"
# A fresh proof for every request: dpop <METHOD> <token file> [url]
dpop() {
  echo "-H \"authorization: DPoP \$(cat .demo/$2)\" -H \"dpop: \$($proof_bin .demo/dpop-key.jwk $1 ${3:-$dpop_url} .demo/$2)\""
}

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

DPoP (RFC 9449) on https://localhost:10444 (envoy/dpop.yaml; log: $dpop_log).
Each line makes a fresh proof with .demo/dpop-key.jwk, the key the tokens are bound to:

# 8. allowed: DPoP token with a proof for this request -> 200
$curl_base $(dpop GET token-dpop.jwt) $dpop_url

# 9. dpop-replay: the same proof twice -> 200, then 401
p=\$($proof_bin .demo/dpop-key.jwk GET $dpop_url .demo/token-dpop.jwt); for i in 1 2; do $curl_base -H "authorization: DPoP \$(cat .demo/token-dpop.jwt)" -H "dpop: \$p" $dpop_url; echo; done

# 10. dpop-proof-invalid: a proof made for POST, sent with GET -> 401
$curl_base $(dpop POST token-dpop.jwt) $dpop_url

# 11. dpop-required: the DPoP-bound token sent as a bearer token -> 401
$curl_base $(bearer token-dpop.jwt) $dpop_url

# 12. bound to the key and to client-1's certificate: both must be right -> 200, then 401 with client-2
$curl_base $c1 $(dpop GET token-dpop-and-client-1.jwt) $dpop_url
$curl_base $c2 $(dpop GET token-dpop-and-client-1.jwt) $dpop_url

# counters (flushed every second) and the denial log lines
curl -s localhost:9901/stats?filter=cnf_guard; curl -s localhost:9902/stats?filter=cnf_guard
grep -h 'wasm log' $log $dpop_log | grep -E 'denied|configured'

Press Ctrl-C to stop both Envoys.
TXT
wait $pid $dpop_pid
