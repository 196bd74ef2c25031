#!/usr/bin/env python3
"""Writes the fuzz seed corpora from the demo material (`make demo-material`).

Seeds are real examples of what each parser sees: Envoy's own XFCC element,
RFC 9440 and ALB headers, PEM certificates, token payloads, Envoy's metadata
map encoding and the configurations the README and envoy/ show.
Run from the repository root: python3 fuzz/make_seeds.py
"""
import base64, hashlib, json, os, pathlib, re, struct, subprocess, tempfile, urllib.parse

root = pathlib.Path(".")
demo = root / ".demo"
out = root / "fuzz" / "seeds"


def write(target, name, data):
    directory = out / target
    directory.mkdir(parents=True, exist_ok=True)
    (directory / name).write_bytes(data if isinstance(data, bytes) else data.encode())


def der_of(pem):
    body = "".join(l for l in pem.splitlines() if "-----" not in l)
    return base64.b64decode(body)


pem1 = (demo / "client-1.pem").read_text()
pem2 = (demo / "client-2.pem").read_text()
der1 = der_of(pem1)
digest1 = hashlib.sha256(der1).hexdigest()
x5t1 = base64.urlsafe_b64encode(hashlib.sha256(der1).digest()).rstrip(b"=").decode()
envoy_cert = urllib.parse.quote(pem1, safe="-_.~!*'()")  # escapes newline, space, + / =
alb_cert = urllib.parse.quote(pem1, safe="-_.~!*'()+/=")

# XFCC as Envoy 1.40 writes it (SANITIZE_SET, cert/subject/uri/dns).
element = f'Hash={digest1};Cert="{envoy_cert}";Subject="CN=client-1";URI=spiffe://cnf-guard.test/client-1'
write("xfcc", "envoy-element", element)
write("xfcc", "two-elements", f'By=spiffe://edge;Hash=00;Subject="CN=a,O=b, Inc.",{element}')
write("xfcc", "escaped-quote", 'Hash=aa;Subject="O=\\"q\\",CN=z";DNS=a.test;DNS=b.test')
for name, value in [("xfcc", element), ("client-cert", f":{base64.b64encode(der1).decode()}:"),
                    ("envoy-pem", envoy_cert), ("alb-pem", alb_cert), ("plain-pem", pem1),
                    ("crlf-pem", urllib.parse.quote(pem1.replace("\n", "\r\n"))),
                    ("der", base64.b64encode(der1).decode()),
                    ("two-pems", urllib.parse.quote(pem1 + pem2))]:
    write("forwarded", name, value)

write("x5t", "valid", x5t1)
write("x5t", "padded", x5t1 + "=")
write("x5t", "hex", digest1)
write("x5t", "standard-base64", x5t1.replace("-", "+").replace("_", "/"))

payloads = {
    "bound": {"iss": "https://issuer.cnf-guard.test", "sub": "client-1", "cnf": {"x5t#S256": x5t1}},
    "unbound": {"sub": "client-1", "scope": "orders:read"},
    "cnf-null": {"cnf": None},
    "jkt-only": {"cnf": {"jkt": "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"}},
    "both": {"cnf": {"x5t#S256": x5t1, "jkt": "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"}},
}
for name, payload in payloads.items():
    write("claims", name, json.dumps(payload))
token = (demo / "token-client-1.jwt").read_text().strip()
write("claims", "bearer-header", f"Bearer {token}")


def pairs(items):
    data = struct.pack("<I", len(items))
    for key, value in items:
        data += struct.pack("<II", len(key), len(value))
    for key, value in items:
        data += key + b"\0" + value + b"\0"
    return data


write("pairs", "payload", pairs([(b"sub", b"client-1"), (b"cnf", pairs([(b"x5t#S256", x5t1.encode())]))]))
write("pairs", "number", pairs([(b"exp", struct.pack("<d", 1.8e9))]))
write("pairs", "empty", pairs([]))

write("certificate", "pem", pem1)
write("certificate", "url-encoded-pem", envoy_cert)
write("certificate", "der", der1)
write("certificate", "source-address", "127.0.0.1:4242")
write("certificate", "source-address-v6", "[::ffff:10.0.0.1]:1")
write("certificate", "cidr", "10.0.0.0/8")

# Every plugin configuration the examples ship.
for path in sorted((root / "envoy").glob("*.yaml")):
    for i, match in enumerate(re.finditer(r"value: \|\n((?:\s{20}.*\n)+)", path.read_text())):
        write("config", f"{path.stem}-{i}", match.group(1))
write("config", "empty-object", "{}")
write("config", "alb", json.dumps({"certificate": {"source": "pem_header", "header": "x-amzn-mtls-clientcert",
                                                    "trusted_proxy": {"source_cidrs": ["10.0.0.0/16"]},
                                                    "remove_header": True}}))

# DPoP: proofs by the demo key for the request fuzz_targets/dpop.rs checks
# against, made by examples/dpop_proof (built by `make demo-material`).
proof_bin = pathlib.Path(os.environ.get("CARGO_TARGET_DIR", "target")) / "debug" / "examples" / "dpop_proof"
with tempfile.NamedTemporaryFile("w", suffix=".jwt") as token:
    token.write("fuzz-access-token")
    token.flush()
    def proof(method, url):
        return subprocess.run([str(proof_bin), str(demo / "dpop-key.jwk"), method, url, token.name],
                              env={**os.environ, "DPOP_IAT": "1800000000"},
                              check=True, capture_output=True, text=True).stdout.strip()
    write("dpop", "valid-proof", proof("GET", "https://localhost:10444/orders/7"))
    write("dpop", "proof-htu-spelling", proof("GET", "HTTPS://LOCALHOST:10444/orders/./7?x=1"))
    write("dpop", "proof-wrong-method", proof("POST", "https://localhost:10444/orders/7"))
private_jwk = json.loads((demo / "dpop-key.jwk").read_text())
write("dpop", "private-jwk", json.dumps(private_jwk))
write("dpop", "public-jwk", json.dumps({k: v for k, v in private_jwk.items() if k != "d"}))
write("dpop", "rsa-jwk", json.dumps({"kty": "RSA", "e": "AQAB", "n": base64.urlsafe_b64encode(b"\xc1" * 256).rstrip(b"=").decode()}))
write("dpop", "okp-jwk", json.dumps({"kty": "OKP", "crv": "Ed25519", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}))
write("dpop", "htu", "https://API.example.com:443/a/b/../c/%7e?q#f")
write("dpop", "htu-ipv6", "http://[::1]:80")
write("dpop", "duplicate-members", '{"typ":"dpop+jwt","typ":"JWT"}')
