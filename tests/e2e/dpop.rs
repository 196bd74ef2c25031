//! DPoP (RFC 9449) end to end: jwt_authn verifies `Authorization: DPoP`
//! tokens, cnf-guard verifies the proof. Every proof is made here, at request
//! time, with a fresh `jti`, by ES256, RS256 and EdDSA keys.

use super::assertions::{assert_allowed, assert_detail_contains, assert_problem, wait_for_counter};
use super::examples::{demo_workdir, start_example};
use super::{NamedTrial, World};
use crate::support::bootstrap::{bootstrap, JwtAuthn, Listener};
use crate::support::client::Client;
use crate::support::client::{Request, Response};
use crate::support::dpop::{claims, fresh_jti, now, TestKey};
use crate::support::envoy::Envoy;
use crate::support::material::Issuer;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jwt_simple::prelude::Duration;
use serde_json::{json, Value};

/// DPoP keys and the tokens bound to them.
pub struct DpopTokens {
    /// (key, token bound to it by `cnf.jkt`), one per algorithm.
    pub bound: Vec<(TestKey, String)>,
    /// Bound to the ES256 key and to client 1's certificate.
    pub dual: String,
    /// A key no token is bound to.
    pub stranger: TestKey,
}

impl DpopTokens {
    pub fn new(issuer: &Issuer, client_1_x5t: &str) -> DpopTokens {
        let token =
            |cnf: Value| issuer.token("client-1", json!({"cnf": cnf}), Duration::from_hours(1));
        let bound: Vec<(TestKey, String)> = [TestKey::es256(), TestKey::rs256(), TestKey::eddsa()]
            .into_iter()
            .map(|key| {
                let jkt = key.jkt().to_jkt();
                (key, token(json!({"jkt": jkt})))
            })
            .collect();
        let dual = token(json!({"jkt": bound[0].0.jkt().to_jkt(), "x5t#S256": client_1_x5t}));
        DpopTokens {
            bound,
            dual,
            stranger: TestKey::es256(),
        }
    }

    fn es256(&self) -> (&TestKey, &str) {
        let (key, token) = &self.bound[0];
        (key, token)
    }
}

/// `CNF_GUARD_DPOP_VERIFIER=in_module` runs every DPoP listener with the
/// signature verifier compiled into the module instead of Envoy's BoringSSL
/// (`make test` runs the DPoP trials both ways).
fn verifier() -> &'static str {
    match std::env::var("CNF_GUARD_DPOP_VERIFIER").as_deref() {
        Ok("in_module") => "in_module",
        _ => "auto",
    }
}

/// The `dpop` block of a listener, with the verifier under test.
fn dpop_block(mut block: serde_json::Value) -> serde_json::Value {
    block["verifier"] = json!(verifier());
    block
}

pub fn listeners() -> Vec<Listener> {
    let dpop_jwt = || JwtAuthn {
        dpop_scheme: true,
        ..JwtAuthn::default()
    };
    vec![
        Listener::new(
            "dpop",
            dpop_jwt(),
            json!({"dpop": dpop_block(json!({"policy": "optional"})), "stat_prefix": "dpop"}).to_string(),
        ),
        Listener::new(
            "dpop_required",
            dpop_jwt(),
            json!({"dpop": dpop_block(json!({"policy": "required"})), "stat_prefix": "dpop_required"}).to_string(),
        ),
        Listener::new(
            "dpop_per_route",
            dpop_jwt(),
            json!({
                "dpop": dpop_block(json!({"policy": "optional"})),
                "stat_prefix": "dpop_per_route",
                "rules": [{"name": "writes", "match": {"methods": ["POST"]}, "dpop": "required"}]
            })
            .to_string(),
        ),
        Listener::new(
            "dpop_nonce",
            dpop_jwt(),
            json!({"dpop": dpop_block(json!({"policy": "optional", "nonce": {"enabled": true}})), "stat_prefix": "dpop_nonce"})
                .to_string(),
        ),
    ]
}

pub fn trials() -> Vec<NamedTrial> {
    vec![
        (
            "dpop::start_up_log_says_who_verifies_each_algorithm",
            signature_paths_logged,
        ),
        (
            "dpop::valid_proofs_pass_es256_rs256_eddsa_over_http1_and_http2",
            valid_proofs_pass,
        ),
        (
            "dpop::every_inverted_check_gets_its_slug_and_challenge",
            inversions,
        ),
        (
            "dpop::a_replayed_proof_is_refused_by_every_worker",
            replay_across_workers,
        ),
        (
            "dpop::a_token_bound_both_ways_needs_certificate_and_proof",
            dual_bound,
        ),
        ("dpop::nonce_is_issued_then_accepted", nonce_flow),
        (
            "dpop::required_policy_refuses_bearer_tokens",
            required_policy,
        ),
        (
            "dpop::jwt_authn_still_verifies_dpop_scheme_tokens",
            rogue_dpop_token,
        ),
        ("examples::dpop_yaml_serves_dpop", dpop_yaml_serves),
        (
            "dpop::a_rule_requires_dpop_on_one_route_only",
            per_route_policy,
        ),
        (
            "dpop::with_dpop_off_a_dual_bound_token_is_checked_by_its_certificate",
            dual_bound_with_dpop_off,
        ),
        (
            "dpop::per_replica_nonces_stop_a_replay_at_another_replica",
            replicas_and_nonces,
        ),
    ]
}

/// What one request carries.
struct Proof<'a> {
    key: &'a TestKey,
    token: &'a str,
    scheme: &'static str,
    header: Value,
    claims: Value,
}

const PATH: &str = "/orders/7?page=2";

fn htu(world: &World, listener: &str) -> String {
    format!("https://localhost:{}/orders/7", world.envoy.port(listener))
}

fn proof<'a>(world: &World, listener: &str, key: &'a TestKey, token: &'a str) -> Proof<'a> {
    Proof {
        key,
        token,
        scheme: "DPoP",
        header: key.header(),
        claims: claims("GET", &htu(world, listener), token, now(), &fresh_jti()),
    }
}

impl Proof<'_> {
    fn signed(&self) -> String {
        self.key.sign(&self.header, &self.claims)
    }

    fn request(&self, world: &World, listener: &str, http2: bool) -> Request<'static> {
        self.request_with(world, listener, http2, vec![self.signed()])
    }

    fn request_with(
        &self,
        world: &World,
        listener: &str,
        http2: bool,
        proofs: Vec<String>,
    ) -> Request<'static> {
        let mut request = Request::new(world.envoy.port(listener))
            .path(PATH)
            .http2(http2)
            .header("authorization", format!("{} {}", self.scheme, self.token));
        for proof in proofs {
            request = request.header("dpop", proof);
        }
        request
    }
}

fn assert_dpop_problem(world: &World, response: &Response, slug: &str, error: &str) -> Value {
    let document = assert_problem(world, response, slug);
    let challenge = response.header("www-authenticate").unwrap_or_default();
    assert!(
        challenge.starts_with(&format!("DPoP error=\"{error}\", error_description=\""))
            && challenge.ends_with("algs=\"ES256 RS256 PS256 EdDSA\""),
        "{slug}: {challenge}"
    );
    document
}

fn valid_proofs_pass(world: &World) {
    for http2 in [false, true] {
        for (key, token) in &world.tokens.dpop.bound {
            let response = world
                .client
                .send(proof(world, "dpop", key, token).request(world, "dpop", http2));
            assert_allowed(world, &response);
            assert_eq!(response.version, if http2 { "HTTP/2" } else { "HTTP/1.1" });
        }
    }
}

/// RFC 9449 §4.3's checks, each inverted, over HTTP/1.1 and HTTP/2.
fn inversions(world: &World) {
    let dpop = &world.tokens.dpop;
    let (key, token) = dpop.es256();
    let listener = "dpop";
    type Change = for<'a> fn(&mut Proof<'a>, &'a World);
    let rows: Vec<(&str, &str, &str, &str, Change)> = vec![
        (
            "wrong htm",
            "dpop-proof-invalid",
            "invalid_dpop_proof",
            "htm",
            |p, _| p.claims["htm"] = json!("POST"),
        ),
        (
            "wrong htu path",
            "dpop-proof-invalid",
            "invalid_dpop_proof",
            "htu",
            |p, w| {
                p.claims["htu"] = json!(format!(
                    "https://localhost:{}/orders/8",
                    w.envoy.port("dpop")
                ))
            },
        ),
        (
            "wrong htu port",
            "dpop-proof-invalid",
            "invalid_dpop_proof",
            "htu",
            |p, _| p.claims["htu"] = json!("https://localhost:1/orders/7"),
        ),
        (
            "stale iat",
            "dpop-proof-invalid",
            "invalid_dpop_proof",
            "too long ago",
            |p, _| p.claims["iat"] = json!(now() - 120),
        ),
        (
            "future iat",
            "dpop-proof-invalid",
            "invalid_dpop_proof",
            "in the future",
            |p, _| p.claims["iat"] = json!(now() + 120),
        ),
        (
            "ath of another token",
            "dpop-proof-invalid",
            "invalid_dpop_proof",
            "ath",
            |p, w| {
                p.claims["ath"] =
                    json!(cnf_guard::dpop::proof::access_token_hash(&w.tokens.bound_1))
            },
        ),
        (
            "typ JWT",
            "dpop-proof-invalid",
            "invalid_dpop_proof",
            "typ",
            |p, _| p.header["typ"] = json!("JWT"),
        ),
        (
            "private key in jwk",
            "dpop-proof-invalid",
            "invalid_dpop_proof",
            "private key member `d`",
            |p, _| p.header["jwk"]["d"] = json!(URL_SAFE_NO_PAD.encode([1u8; 32])),
        ),
        (
            "crit header",
            "dpop-proof-invalid",
            "invalid_dpop_proof",
            "critical",
            |p, _| p.header["crit"] = json!(["exp"]),
        ),
        (
            "missing jti",
            "dpop-proof-invalid",
            "invalid_dpop_proof",
            "jti",
            |p, _| {
                p.claims.as_object_mut().unwrap().remove("jti");
            },
        ),
        (
            "proof key is not the token's jkt",
            "dpop-binding-mismatch",
            "invalid_token",
            "different key",
            |p, w| {
                p.key = &w.tokens.dpop.stranger;
                p.header = w.tokens.dpop.stranger.header();
            },
        ),
        (
            "bearer downgrade",
            "dpop-required",
            "invalid_token",
            "not as a bearer token",
            |p, _| p.scheme = "Bearer",
        ),
    ];
    let mut failures = Vec::new();
    for http2 in [false, true] {
        for (name, slug, error, detail, change) in &rows {
            let mut proof = proof(world, listener, key, token);
            change(&mut proof, world);
            let response = world.client.send(proof.request(world, listener, http2));
            let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                let document = assert_dpop_problem(world, &response, slug, error);
                assert_detail_contains(&document, detail);
            }));
            if outcome.is_err() {
                failures.push(format!("{name} (http2={http2}): {response:?}"));
            }
        }
        // Not a signature by the jwk's key.
        let mut forged = proof(world, listener, key, token);
        forged.key = &dpop.stranger;
        let response = world.client.send(forged.request(world, listener, http2));
        assert_detail_contains(
            &assert_dpop_problem(world, &response, "dpop-proof-invalid", "invalid_dpop_proof"),
            "signature does not verify",
        );
        // `alg: none` with no signature, and HMAC keyed with the public key.
        for (alg, signature) in [("none", Vec::new()), ("HS256", vec![7u8; 32])] {
            let mut unsigned = proof(world, listener, key, token);
            unsigned.header["alg"] = json!(alg);
            let encode = |v: &Value| URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).unwrap());
            let jws = format!(
                "{}.{}.{}",
                encode(&unsigned.header),
                encode(&unsigned.claims),
                URL_SAFE_NO_PAD.encode(signature)
            );
            let response =
                world
                    .client
                    .send(unsigned.request_with(world, listener, http2, vec![jws]));
            assert_detail_contains(
                &assert_dpop_problem(world, &response, "dpop-proof-invalid", "invalid_dpop_proof"),
                &format!("alg {alg} is not accepted"),
            );
        }
        // No proof, and two proofs.
        let fresh = proof(world, listener, key, token);
        let response = world
            .client
            .send(fresh.request_with(world, listener, http2, vec![]));
        assert_detail_contains(
            &assert_dpop_problem(world, &response, "dpop-proof-invalid", "invalid_dpop_proof"),
            "no DPoP header",
        );
        let (one, two) = (
            proof(world, listener, key, token),
            proof(world, listener, key, token),
        );
        let response = world.client.send(one.request_with(
            world,
            listener,
            http2,
            vec![one.signed(), two.signed()],
        ));
        assert_detail_contains(
            &assert_dpop_problem(world, &response, "dpop-proof-invalid", "invalid_dpop_proof"),
            "more than one DPoP proof",
        );
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Envoy runs this listener with `--concurrency 2`: the second and later uses
/// of a proof arrive on new connections, which the kernel spreads over both
/// workers. A cache per worker VM would let about half of them through.
fn replay_across_workers(world: &World) {
    let (key, token) = world.tokens.dpop.es256();
    let proof = proof(world, "dpop", key, token);
    let signed = proof.signed();
    assert_allowed(
        world,
        &world
            .client
            .send(proof.request_with(world, "dpop", false, vec![signed.clone()])),
    );
    for attempt in 0..8 {
        let response = world.client.send(proof.request_with(
            world,
            "dpop",
            attempt % 2 == 1,
            vec![signed.clone()],
        ));
        assert_detail_contains(
            &assert_dpop_problem(world, &response, "dpop-replay", "invalid_dpop_proof"),
            "used before",
        );
    }
    wait_for_counter(
        &world.envoy,
        "wasmcustom.cnf_guard.dpop.denied.dpop_replay",
        8,
    );
}

fn dual_bound(world: &World) {
    let dpop = &world.tokens.dpop;
    let (key, _) = dpop.es256();
    let token = dpop.dual.as_str();
    let send = |certificate: u8, key: &TestKey| {
        let mut proof = proof(world, "dpop", key, token);
        proof.header = key.header();
        world.client.send(
            proof
                .request(world, "dpop", false)
                .certificate(Some(certificate)),
        )
    };
    assert_allowed(world, &send(1, key));
    assert_problem(world, &send(2, key), "mtls-binding-mismatch");
    assert_dpop_problem(
        world,
        &send(1, &dpop.stranger),
        "dpop-binding-mismatch",
        "invalid_token",
    );
    let no_proof = proof(world, "dpop", key, token).request_with(world, "dpop", false, vec![]);
    assert_dpop_problem(
        world,
        &world.client.send(no_proof),
        "dpop-proof-invalid",
        "invalid_dpop_proof",
    );
}

fn nonce_flow(world: &World) {
    let (key, token) = world.tokens.dpop.es256();
    let first = proof(world, "dpop_nonce", key, token);
    let response = world.client.send(first.request(world, "dpop_nonce", false));
    assert_dpop_problem(world, &response, "dpop-nonce-required", "use_dpop_nonce");
    let nonce = response
        .header("dpop-nonce")
        .expect("a DPoP-Nonce header")
        .to_owned();
    let mut retry = proof(world, "dpop_nonce", key, token);
    retry.claims["nonce"] = json!(nonce);
    assert_allowed(
        world,
        &world.client.send(retry.request(world, "dpop_nonce", true)),
    );
    let mut forged = proof(world, "dpop_nonce", key, token);
    forged.claims["nonce"] = json!("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA");
    let response = world
        .client
        .send(forged.request(world, "dpop_nonce", false));
    assert_detail_contains(
        &assert_dpop_problem(world, &response, "dpop-nonce-required", "use_dpop_nonce"),
        "not one this resource issued",
    );
}

fn required_policy(world: &World) {
    let response = world
        .client
        .send(Request::new(world.envoy.port("dpop_required")).bearer(&world.tokens.bound_1));
    assert_detail_contains(
        &assert_dpop_problem(world, &response, "dpop-required", "invalid_token"),
        "only accepts DPoP-bound access tokens",
    );
    let (key, token) = world.tokens.dpop.es256();
    let proof = proof(world, "dpop_required", key, token);
    assert_allowed(
        world,
        &world
            .client
            .send(proof.request(world, "dpop_required", false)),
    );
}

/// `dpop: required` on POST only: a certificate-bound bearer token reads but
/// cannot write, and a DPoP-bound token with its proof can.
fn per_route_policy(world: &World) {
    let port = world.envoy.port("dpop_per_route");
    let bearer = |method: &'static str| {
        world.client.send(
            Request::new(port)
                .method(method)
                .bearer(&world.tokens.bound_1),
        )
    };
    assert_allowed(world, &bearer("GET"));
    let response = bearer("POST");
    assert_dpop_problem(world, &response, "dpop-required", "invalid_token");
    assert!(world.envoy.wait_for_log(&format!(
        "request_id={} token_jkt=- proof_jkt=- rule=writes",
        response.request_id
    )));
    let (key, token) = world.tokens.dpop.es256();
    let mut write = proof(world, "dpop_per_route", key, token);
    write.claims["htm"] = json!("POST");
    assert_allowed(
        world,
        &world
            .client
            .send(write.request(world, "dpop_per_route", false).method("POST")),
    );
}

/// DPoP off (the default listener): a token bound both ways is checked
/// against its certificate, and a token bound only to a key is refused.
fn dual_bound_with_dpop_off(world: &World) {
    let dual = &world.tokens.dpop.dual;
    let send = |certificate: u8, token: &str| {
        world.client.send(
            Request::new(world.envoy.port("default"))
                .certificate(Some(certificate))
                .bearer(token),
        )
    };
    assert_allowed(world, &send(1, dual));
    assert_problem(world, &send(2, dual), "mtls-binding-mismatch");
    let (_, key_only) = world.tokens.dpop.es256();
    assert_detail_contains(
        &assert_problem(world, &send(1, key_only), "token-invalid"),
        "does not check DPoP proofs",
    );
}

/// The proof is only half: the token itself is jwt_authn's to verify.
fn rogue_dpop_token(world: &World) {
    let (key, _) = world.tokens.dpop.es256();
    let rogue = Issuer::new().token(
        "client-1",
        json!({"cnf": {"jkt": key.jkt().to_jkt()}}),
        Duration::from_hours(1),
    );
    let proof = proof(world, "dpop", key, &rogue);
    let response = world.client.send(proof.request(world, "dpop", false));
    assert_eq!(response.status, 401, "{response:?}");
    assert!(!world.upstream.saw(&response.request_id));
}

/// envoy/dpop.yaml, as `make run` starts it: a fresh proof passes once.
fn dpop_yaml_serves(world: &World) {
    let dir = demo_workdir(world);
    let envoy = start_example(dir.path(), "dpop.yaml");
    let client = Client {
        material: dir.path().join(".demo"),
    };
    let port = envoy.port("protected");
    let (key, token) = world.tokens.dpop.es256();
    let htu = format!("https://localhost:{port}/orders/7");
    let signed = key.proof("GET", &htu, token, now(), &fresh_jti());
    let request = || {
        Request::new(port)
            .path("/orders/7")
            .header("authorization", format!("DPoP {token}"))
            .header("dpop", signed.clone())
    };
    let ok = client.send(request());
    assert_eq!(ok.status, 200, "{ok:?}");
    assert!(ok.body.starts_with("hello from the upstream"), "{ok:?}");
    let replayed = client.send(request());
    assert_eq!(replayed.json()["type"], "urn:cnf-guard:problem:dpop-replay");
    let downgraded = client.send(Request::new(port).bearer(token));
    assert_eq!(
        downgraded.json()["type"],
        "urn:cnf-guard:problem:dpop-required"
    );
}

/// Two replicas behind one origin. With each Envoy's own nonce key (no
/// `secret`), a proof is good at the replica whose nonce it carries only, so
/// a replay sent to the other replica fails; with a shared `secret`, it would
/// pass there once, which is the replica gap the README describes.
fn replicas_and_nonces(world: &World) {
    const ORIGIN: &str = "https://api.cnf-guard.test";
    let replicas = |nonce: Value| -> Vec<(tempfile::TempDir, Envoy)> {
        (0..2)
            .map(|_| {
                let dir = tempfile::tempdir().expect("tempdir");
                let config = json!({"dpop": {"policy": "optional", "external_origin": ORIGIN, "nonce": nonce}});
                let listener = Listener::new(
                    "replica",
                    JwtAuthn {
                        dpop_scheme: true,
                        ..JwtAuthn::default()
                    },
                    config.to_string(),
                );
                let yaml = bootstrap(
                    &world.material,
                    &crate::support::wasm_path(),
                    world.upstream.port,
                    &[listener],
                );
                let envoy = Envoy::start(dir.path(), &yaml, 1);
                (dir, envoy)
            })
            .collect()
    };
    let (key, token) = world.tokens.dpop.es256();
    let send = |envoy: &Envoy, signed: &str| {
        world.client.send(
            Request::new(envoy.port("replica"))
                .path("/orders/7")
                .header("authorization", format!("DPoP {token}"))
                .header("dpop", signed.to_owned()),
        )
    };
    let with_nonce = |nonce: Option<&str>| {
        let mut body = claims(
            "GET",
            &format!("{ORIGIN}/orders/7"),
            token,
            now(),
            &fresh_jti(),
        );
        if let Some(nonce) = nonce {
            body["nonce"] = json!(nonce);
        }
        key.sign(&key.header(), &body)
    };
    let nonce_from = |envoy: &Envoy| {
        let response = send(envoy, &with_nonce(None));
        assert_dpop_problem(world, &response, "dpop-nonce-required", "use_dpop_nonce");
        response.header("dpop-nonce").expect("a nonce").to_owned()
    };

    let own_keys = replicas(json!({"enabled": true}));
    let (a, b) = (&own_keys[0].1, &own_keys[1].1);
    let captured = with_nonce(Some(&nonce_from(a)));
    assert_allowed(world, &send(a, &captured));
    assert_dpop_problem(
        world,
        &send(a, &captured),
        "dpop-replay",
        "invalid_dpop_proof",
    );
    assert_dpop_problem(
        world,
        &send(b, &captured),
        "dpop-nonce-required",
        "use_dpop_nonce",
    );
    // A client moved to the other replica pays one round trip for its nonce.
    assert_allowed(world, &send(b, &with_nonce(Some(&nonce_from(b)))));

    let secret = base64::engine::general_purpose::STANDARD.encode([7u8; 32]);
    let shared = replicas(json!({"enabled": true, "secret": secret}));
    let (a, b) = (&shared[0].1, &shared[1].1);
    let captured = with_nonce(Some(&nonce_from(a)));
    assert_allowed(world, &send(a, &captured));
    assert_allowed(world, &send(b, &captured));
}

/// Envoy 1.40's `verify_signature` (BoringSSL `EVP_DigestVerify` with a
/// digest) verifies ES256 and RS256, and fails the probe for PS256 (no PSS
/// padding) and EdDSA (no digest allowed): those stay in the module. With
/// `verifier: in_module` nothing is asked of Envoy (the listeners in
/// tests/e2e/bypass.rs keep `auto`, so "by Envoy" lines stay in the shared
/// log either way). This pins the mock's
/// model of `verify_signature` (src/host/mock.rs) to the real Envoy.
fn signature_paths_logged(world: &World) {
    let log = world.envoy.log();
    let said = |algorithm: &str, how: &str| {
        log.lines()
            .any(|line| line.contains(&format!("DPoP {algorithm} signatures are verified {how}")))
    };
    match verifier() {
        "in_module" => {
            for algorithm in ["ES256", "RS256", "PS256", "EdDSA"] {
                assert!(
                    said(algorithm, "in the module (dpop.verifier: in_module)"),
                    "{algorithm}"
                );
            }
        }
        _ => {
            for algorithm in ["ES256", "RS256"] {
                assert!(
                    said(algorithm, "by Envoy (BoringSSL, verify_signature)"),
                    "{algorithm}"
                );
            }
            for algorithm in ["PS256", "EdDSA"] {
                assert!(
                    said(
                        algorithm,
                        &format!("in the module (Envoy's verify_signature does not verify {algorithm}: it refused a known-good signature)")
                    ),
                    "{algorithm}"
                );
            }
        }
    }
}
