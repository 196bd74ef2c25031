//! End-to-end tests: the release wasm in a real Envoy, real mTLS, real JWTs.
//!
//! One Envoy serves a listener per plugin configuration; a recording upstream
//! in this process proves which requests got past the filter. Every Envoy
//! started here is stopped before the process exits.

// Test tooling: a failed expectation panics, which is how a test reports.
// The filter crate itself denies these lints (Cargo.toml [lints]).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod support;

#[path = "hostile/matrix.rs"]
mod hostile;

#[path = "e2e/dpop.rs"]
mod dpop;

#[path = "e2e/bypass.rs"]
mod bypass;

#[path = "e2e/observability.rs"]
mod observability;

use jwt_simple::prelude::Duration;
use libtest_mimic::{Arguments, Failed, Trial};
use serde_json::json;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock, PoisonError, RwLock};
use support::bootstrap::{
    bootstrap, edge_bootstrap, lds_bootstrap, lds_resources, upstream_cluster, JwtAuthn, Listener,
};
use support::client::{Client, Request, Response};
use support::envoy::{validate, Envoy};
use support::material::{make_pki, write, write_pki, Issuer, Pki, EDGE_SAN};
use support::upstream::{Upstream, BODY};

/// Tokens minted for this run.
struct Tokens {
    bound_1: String,
    bound_2: String,
    unbound: String,
    /// Unbound, with claims Envoy's metadata encoding finds awkward.
    unbound_odd_claims: String,
    spki_1: String,
    rogue_signer: String,
    expired: String,
    /// Tokens whose `cnf` is malformed, by name.
    malformed: Vec<(&'static str, String)>,
    dpop: dpop::DpopTokens,
}

struct World {
    _dir: tempfile::TempDir,
    issuer: Issuer,
    material: PathBuf,
    pki: Pki,
    tokens: Tokens,
    upstream: Upstream,
    client: Client,
    envoy: Envoy,
    /// A TLS-terminating proxy in front of the `behind_edge` listener.
    edge: Envoy,
}

fn listeners() -> Vec<Listener> {
    let plugin = |name, jwt_authn, config: serde_json::Value| {
        Listener::new(name, jwt_authn, config.to_string())
    };
    let default_jwt = JwtAuthn::default;
    let mut listeners = vec![
        Listener::new("default", default_jwt(), "{}".to_owned()),
        plugin(
            "optional",
            default_jwt(),
            json!({"binding": "optional", "stat_prefix": "optional"}),
        ),
        plugin(
            "dry_run",
            default_jwt(),
            json!({"mode": "dry_run", "stat_prefix": "dry_run"}),
        ),
        plugin(
            "spki",
            default_jwt(),
            json!({"thumbprint": "spki", "stat_prefix": "spki"}),
        ),
        plugin(
            "header_source",
            JwtAuthn {
                payload_in_metadata: None,
                ..default_jwt()
            },
            json!({"claims": {"source": "authorization_header"}, "stat_prefix": "header_source"}),
        ),
        plugin(
            "header_source_failures",
            JwtAuthn {
                payload_in_metadata: None,
                failed_status_in_metadata: Some("jwt_failure"),
                allow: Some("allow_missing_or_failed"),
                dpop_scheme: false,
                forward: true,
            },
            json!({
                "claims": {"source": "authorization_header", "failed_status_key": "jwt_failure"},
                "stat_prefix": "header_source_failures"
            }),
        ),
        plugin(
            "custom_key",
            JwtAuthn {
                payload_in_metadata: Some("jwt_claims"),
                ..default_jwt()
            },
            json!({"claims": {"metadata_key": "jwt_claims"}, "stat_prefix": "custom_key"}),
        ),
        plugin(
            "key_mismatch",
            JwtAuthn {
                payload_in_metadata: Some("jwt_claims"),
                ..default_jwt()
            },
            json!({"stat_prefix": "key_mismatch"}),
        ),
        plugin(
            "type_base",
            default_jwt(),
            json!({"problem_type_base": "https://docs.example.com/problems/", "stat_prefix": "type_base"}),
        ),
        plugin(
            "failures",
            JwtAuthn {
                failed_status_in_metadata: Some("jwt_failure"),
                allow: Some("allow_missing_or_failed"),
                ..default_jwt()
            },
            json!({"claims": {"failed_status_key": "jwt_failure"}, "stat_prefix": "failures"}),
        ),
        plugin(
            "allow_missing",
            JwtAuthn {
                allow: Some("allow_missing"),
                ..default_jwt()
            },
            json!({"stat_prefix": "allow_missing"}),
        ),
        plugin("metrics", default_jwt(), json!({"stat_prefix": "metrics"})),
        plugin(
            "behind_edge",
            default_jwt(),
            json!({
                "certificate": {
                    "source": "xfcc_cert",
                    "trusted_proxy": {"peer_sans": [EDGE_SAN]},
                    "remove_header": true
                },
                "stat_prefix": "behind_edge",
                "rules": [{
                    "name": "by-hash",
                    "match": {"path": {"prefix": "/hash/"}},
                    "certificate": {"source": "xfcc_hash", "trusted_proxy": {"peer_sans": [EDGE_SAN]}}
                }, {
                    "name": "by-subject",
                    "match": {"path": {"prefix": "/subject/"}},
                    "certificate": {"source": "xfcc_cert", "trusted_proxy": {"peer_subjects": ["CN=edge"]}}
                }, {
                    "name": "wrong-subject",
                    "match": {"path": {"prefix": "/wrong-subject/"}},
                    "certificate": {"source": "xfcc_cert", "trusted_proxy": {"peer_subjects": ["CN=edge,O=Other"]}}
                }]
            }),
        )
        .forward_client_cert(),
        plugin(
            "forwarded_by_address",
            default_jwt(),
            json!({
                "certificate": {"source": "client_cert", "trusted_proxy": {"source_cidrs": ["127.0.0.0/8", "::1"]}},
                "stat_prefix": "forwarded_by_address",
                "rules": [
                    {"name": "pem", "match": {"path": {"prefix": "/pem/"}}, "certificate": {
                        "source": "pem_header", "header": "X-Amzn-Mtls-Clientcert",
                        "trusted_proxy": {"source_cidrs": ["127.0.0.1"]}}},
                    {"name": "der", "match": {"path": {"prefix": "/der/"}}, "certificate": {
                        "source": "der_header", "header": "x-client-cert-der",
                        "trusted_proxy": {"source_cidrs": ["127.0.0.1"]}}},
                    {"name": "spki", "match": {"path": {"prefix": "/spki/"}}, "thumbprint": "spki"}
                ]
            }),
        )
        .forward_client_cert(),
        plugin(
            "untrusted_network",
            default_jwt(),
            json!({
                "certificate": {"source": "xfcc_hash", "trusted_proxy": {"source_cidrs": ["10.0.0.0/8"]}},
                "stat_prefix": "untrusted_network"
            }),
        )
        .forward_client_cert(),
        plugin(
            "per_route",
            default_jwt(),
            json!({
                "binding": "optional",
                "stat_prefix": "per_route",
                "rules": [
                    {"name": "health", "match": {"path": {"prefix": "/healthz"}}, "skip": true},
                    {"name": "admin", "match": {"route": "admin"}, "binding": "required"},
                    {"name": "rollout", "match": {"route": "rollout"}, "binding": "required", "mode": "dry_run"},
                    {"name": "writes", "match": {"methods": ["POST", "DELETE"]}, "binding": "required"}
                ]
            }),
        )
        .routes(&[
            ("health", "/healthz"),
            ("admin", "/admin"),
            ("rollout", "/rollout"),
            ("api", "/"),
        ]),
    ];
    listeners.extend(dpop::listeners());
    listeners.extend(bypass::listeners());
    listeners
}

fn build_world() -> World {
    let dir = tempfile::tempdir().expect("tempdir");
    let material = dir.path().join("material");
    let pki = make_pki();
    write_pki(&pki, &material);
    let issuer = Issuer::new();
    write(&material, "jwks.json", &issuer.jwks());
    let [client_1, client_2] = &pki.clients;
    let hour = Duration::from_hours(1);
    let with_cnf = |cnf: serde_json::Value| issuer.token("client-1", json!({"cnf": cnf}), hour);
    let hex_thumbprint: String = {
        use sha2::Digest;
        sha2::Sha256::digest(&client_1.cert_der)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    };
    let tokens = Tokens {
        dpop: dpop::DpopTokens::new(&issuer, &client_1.x5t()),
        bound_1: issuer.bound_token("client-1", &client_1.x5t()),
        bound_2: issuer.bound_token("client-2", &client_2.x5t()),
        unbound: issuer.token("client-1", json!({"scope": "orders:read"}), hour),
        unbound_odd_claims: issuer.token(
            "client-1",
            json!({"nonce": null, "scope": ["a", "b"], "act": {}, "n": 1.5}),
            hour,
        ),
        spki_1: issuer.bound_token("client-1", &client_1.spki_x5t()),
        rogue_signer: Issuer::new().bound_token("client-1", &client_1.x5t()),
        expired: issuer.expired_bound_token("client-1", &client_1.x5t()),
        malformed: vec![
            (
                "hex_thumbprint",
                with_cnf(json!({"x5t#S256": hex_thumbprint})),
            ),
            (
                "padded_thumbprint",
                with_cnf(json!({"x5t#S256": format!("{}=", client_1.x5t())})),
            ),
            (
                "standard_base64",
                with_cnf(
                    json!({"x5t#S256": client_1.x5t().replace('-', "+").replace('_', "/") + "+"}),
                ),
            ),
            (
                "short_thumbprint",
                with_cnf(json!({"x5t#S256": &client_1.x5t()[..42]})),
            ),
            ("thumbprint_number", with_cnf(json!({"x5t#S256": 12345}))),
            (
                "thumbprint_object",
                with_cnf(json!({"x5t#S256": {"v": client_1.x5t()}})),
            ),
            ("cnf_string", with_cnf(json!(client_1.x5t()))),
            ("cnf_list", with_cnf(json!([client_1.x5t()]))),
            ("cnf_null", with_cnf(json!(null))),
            ("cnf_empty_object", with_cnf(json!({}))),
            (
                "cnf_jkt_only",
                with_cnf(json!({"jkt": "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"})),
            ),
        ],
    };
    let upstream = Upstream::start();
    let config = bootstrap(
        &material,
        &support::wasm_path(),
        upstream.port,
        &listeners(),
    );
    let envoy = Envoy::start(dir.path(), &config, 2);
    let edge_dir = dir.path().join("edge");
    std::fs::create_dir_all(&edge_dir).expect("mkdir");
    let edge = Envoy::start(
        &edge_dir,
        &edge_bootstrap(&material, envoy.port("behind_edge")),
        1,
    );
    let client = Client {
        material: material.clone(),
    };
    World {
        _dir: dir,
        issuer,
        material,
        pki,
        tokens,
        upstream,
        client,
        envoy,
        edge,
    }
}

/// Envoy asks the kernel for SIGTERM when the thread that started it exits
/// (`PR_SET_PDEATHSIG`), so the shared Envoy must not be started by a test
/// thread that may finish while other tests still use it: a thread that lives
/// as long as the process starts it.
fn build_world_on_keeper_thread() -> World {
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        sender.send(build_world()).expect("send the world");
        loop {
            std::thread::park();
        }
    });
    receiver.recv().expect("the world was built")
}

type Shared = Arc<OnceLock<World>>;

fn main() {
    let args = Arguments::from_args();
    let world: Shared = Arc::new(OnceLock::new());
    let trials = trials(&world);
    let conclusion = libtest_mimic::run(&args, trials);
    // The trials (and their clones of `world`) are gone: stop Envoy now,
    // because `exit` skips destructors.
    drop(Arc::try_unwrap(world).ok().and_then(OnceLock::into_inner));
    conclusion.exit();
}

/// Every trial holds this shared, except the few that must run alone
/// (`bypass::RUN_ALONE`: timing-sensitive), which hold it exclusively.
static TURN: RwLock<()> = RwLock::new(());

fn trials(world: &Shared) -> Vec<Trial> {
    let mut trials = Vec::new();
    let mut add = |name: &str, test: fn(&World)| {
        let world = Arc::clone(world);
        let alone = bypass::RUN_ALONE.contains(&name);
        trials.push(Trial::test(name.to_owned(), move || {
            // A failed trial poisons nothing worth keeping: the lock guards no data.
            if alone {
                let _alone = TURN.write().unwrap_or_else(PoisonError::into_inner);
                test(world.get_or_init(build_world_on_keeper_thread));
            } else {
                let _shared = TURN.read().unwrap_or_else(PoisonError::into_inner);
                test(world.get_or_init(build_world_on_keeper_thread));
            }
            Ok::<(), Failed>(())
        }));
    };
    add(
        "default::allows_token_bound_to_the_presented_certificate",
        allows_bound,
    );
    add(
        "default::denies_token_bound_to_another_certificate",
        denies_mismatch,
    );
    add(
        "default::denies_bound_token_without_client_certificate",
        denies_mtls_required,
    );
    add("default::denies_unbound_token", denies_unbound);
    add(
        "default::denies_every_malformed_cnf_as_token_invalid",
        denies_malformed,
    );
    add(
        "default::instance_is_the_path_without_query",
        instance_without_query,
    );
    add("default::echoes_the_request_id", echoes_request_id);
    add(
        "default::jwt_authn_rejects_unknown_signing_key_before_the_filter",
        unknown_key_rejected_by_jwt_authn,
    );
    add(
        "optional::unbound_token_passes_without_certificate",
        optional_unbound_passes,
    );
    add(
        "optional::bound_token_must_still_match",
        optional_bound_must_match,
    );
    add(
        "dry_run::would_be_denials_pass_and_are_counted",
        dry_run_passes_and_counts,
    );
    add("spki::public_key_thumbprint_binds", spki_allows);
    add(
        "spki::certificate_thumbprint_does_not_bind_in_spki_mode",
        spki_rejects_certificate_thumbprint,
    );
    add(
        "authorization_header::reads_claims_from_the_forwarded_token",
        header_source,
    );
    add(
        "authorization_header::forged_token_is_not_believed_when_jwt_authn_lets_failures_through",
        header_source_forged_token,
    );
    add("metadata_key::custom_key_is_read", custom_metadata_key);
    add("metadata_key::wrong_key_fails_closed", wrong_metadata_key);
    add(
        "problem_type_base::prefixes_the_type_uri",
        problem_type_base,
    );
    add(
        "jwt_authn_failures::missing_token_is_a_problem_reply",
        failures_missing_token,
    );
    add(
        "jwt_authn_failures::unknown_signing_key_is_a_problem_reply",
        failures_unknown_key,
    );
    add(
        "jwt_authn_failures::expired_token_is_a_problem_reply",
        failures_expired,
    );
    add(
        "jwt_authn_failures::valid_bound_token_passes",
        failures_valid_passes,
    );
    add(
        "allow_missing::no_token_is_authentication_failed",
        allow_missing_no_token,
    );
    add(
        "metrics::one_counter_per_outcome_in_stats_and_prometheus",
        metrics_per_outcome,
    );
    add(
        "behind_edge::bound_token_passes_and_xfcc_is_removed_before_upstream",
        edge_bound_passes,
    );
    add(
        "behind_edge::token_bound_to_another_certificate_is_denied",
        edge_mismatch_denied,
    );
    add(
        "behind_edge::xfcc_injected_by_the_client_at_the_edge_has_no_effect",
        edge_injected_xfcc_replaced,
    );
    add(
        "behind_edge::xfcc_from_an_untrusted_hop_is_ignored_and_counted",
        untrusted_hop_ignored,
    );
    add(
        "behind_edge::rule_switches_to_the_xfcc_hash",
        edge_rule_uses_hash,
    );
    add(
        "behind_edge::edge_trusted_by_its_certificate_subject",
        edge_trusted_by_subject,
    );
    add(
        "forwarded::rfc9440_client_cert_from_a_trusted_address",
        client_cert_header,
    );
    add(
        "forwarded::url_encoded_pem_header_alb_style",
        pem_header_alb_style,
    );
    add("forwarded::base64_der_header", der_header);
    add(
        "forwarded::spki_thumbprint_of_a_forwarded_certificate",
        forwarded_spki,
    );
    add("per_route::skip_rule_checks_nothing", per_route_skip);
    add(
        "per_route::strict_route_overrides_optional_binding",
        per_route_strict,
    );
    add(
        "per_route::dry_run_route_logs_and_passes",
        per_route_dry_run,
    );
    add("per_route::method_match", per_route_method);
    add(
        "hostile::every_request_in_the_matrix_gets_its_slug_over_http1_and_http2",
        hostile::run,
    );
    for (name, test) in dpop::trials() {
        add(name, test);
    }
    for (name, test) in observability::trials() {
        add(name, test);
    }
    for (name, test) in bypass::trials() {
        add(name, test);
    }
    add(
        "reload::new_plugin_configuration_applies_without_dropping_in_flight_requests",
        lds_reload,
    );
    add(
        "fail_closed::a_failed_vm_denies_with_fail_closed_and_fail_reload",
        failed_vm,
    );
    add(
        "config::unreachable_rules_are_logged_at_start",
        unreachable_rules_logged,
    );
    add(
        "examples::edge_and_behind_edge_serve_together",
        edge_examples_serve,
    );
    add("examples::per_route_yaml_serves", per_route_example_serves);
    add(
        "config::rejected_configurations_fail_plugin_start_naming_the_field",
        rejected_configs,
    );
    add(
        "config::empty_configuration_means_defaults",
        empty_config_accepted,
    );
    add("examples::every_envoy_yaml_validates", examples_validate);
    add("examples::demo_yaml_serves_the_demo", demo_yaml_serves);
    add(
        "examples::problem_json_for_every_failure_yaml_serves",
        every_failure_yaml_serves,
    );
    add("cli::inspect_verdict_equals_envoys", cli_agrees_with_envoy);
    trials
}

// ---- helpers ----------------------------------------------------------------

fn send(world: &World, listener: &str, certificate: Option<u8>, token: Option<&str>) -> Response {
    let mut request = Request::new(world.envoy.port(listener)).certificate(certificate);
    if let Some(token) = token {
        request = request.bearer(token);
    }
    world.client.send(request)
}

/// Client 1's token passes with client 1's certificate and is a mismatch with
/// client 2's: the binding is checked on this listener.
fn expect_binding_enforced(world: &World, listener: &str) {
    expect_allowed(world, listener, Some(1), Some(&world.tokens.bound_1));
    expect_problem(
        world,
        listener,
        Some(2),
        Some(&world.tokens.bound_1),
        "mtls-binding-mismatch",
    );
}

/// Sends one request and expects the upstream to answer it.
fn expect_allowed(world: &World, listener: &str, certificate: Option<u8>, token: Option<&str>) {
    assert_allowed(world, &send(world, listener, certificate, token));
}

/// Sends one request and expects the problem reply with `slug`.
fn expect_problem(
    world: &World,
    listener: &str,
    certificate: Option<u8>,
    token: Option<&str>,
    slug: &str,
) -> serde_json::Value {
    assert_problem(world, &send(world, listener, certificate, token), slug)
}

fn assert_allowed(world: &World, response: &Response) {
    assert_eq!(
        response.status, 200,
        "expected the upstream's 200: {response:?}"
    );
    assert_eq!(response.body, BODY);
    assert!(
        world.upstream.saw(&response.request_id),
        "upstream did not see {}",
        response.request_id
    );
}

/// Checks the whole problem contract and returns the document.
fn assert_problem(world: &World, response: &Response, slug: &str) -> serde_json::Value {
    assert_problem_with_base(world, response, "urn:cnf-guard:problem:", slug)
}

fn assert_problem_with_base(
    world: &World,
    response: &Response,
    base: &str,
    slug: &str,
) -> serde_json::Value {
    assert_problem_reply(world, response, base, 401, slug)
}

/// The whole problem contract for a reply with another status than 401
/// (e.g. 400 for a malformed request).
fn assert_problem_status(
    world: &World,
    response: &Response,
    status: u16,
    slug: &str,
) -> serde_json::Value {
    assert_problem_reply(world, response, "urn:cnf-guard:problem:", status, slug)
}

fn assert_problem_reply(
    world: &World,
    response: &Response,
    base: &str,
    status: u16,
    slug: &str,
) -> serde_json::Value {
    assert_eq!(response.status, status, "{response:?}");
    assert_eq!(
        response.header("content-type"),
        Some("application/problem+json"),
        "{response:?}"
    );
    assert!(
        response
            .header("www-authenticate")
            .is_some_and(|v| v.starts_with("Bearer") || v.starts_with("DPoP ")),
        "{response:?}"
    );
    assert!(
        !world.upstream.saw(&response.request_id),
        "a denied request reached the upstream"
    );
    let document = response.json();
    assert_eq!(document["type"], format!("{base}{slug}"), "{document}");
    assert!(document["title"].as_str().is_some_and(|t| !t.is_empty()));
    assert_eq!(document["status"], json!(status));
    assert!(document["detail"].as_str().is_some_and(|d| !d.is_empty()));
    assert_eq!(document["request_id"], response.request_id.as_str());
    assert!(
        is_rfc3339_utc(document["timestamp"].as_str().unwrap_or_default()),
        "{document}"
    );
    assert!(document["instance"].is_string(), "{document}");
    document
}

/// The problem's `detail` says `needle`.
fn assert_detail_contains(document: &serde_json::Value, needle: &str) {
    let detail = document["detail"].as_str().unwrap_or_default();
    assert!(detail.contains(needle), "{needle:?} not in {document}");
}

fn assert_invalid_token_challenge(response: &Response) {
    let challenge = response.header("www-authenticate").unwrap_or_default();
    assert!(
        challenge.starts_with("Bearer error=\"invalid_token\", error_description=\""),
        "{challenge}"
    );
}

fn is_rfc3339_utc(value: &str) -> bool {
    let shape = "dddd-dd-ddTdd:dd:ddZ";
    value.len() == shape.len()
        && value
            .chars()
            .zip(shape.chars())
            .all(|(c, s)| if s == 'd' { c.is_ascii_digit() } else { c == s })
}

// ---- default configuration ---------------------------------------------------

fn allows_bound(world: &World) {
    let response = send(world, "default", Some(1), Some(&world.tokens.bound_1));
    assert_allowed(world, &response);
    let response = send(world, "default", Some(2), Some(&world.tokens.bound_2));
    assert_allowed(world, &response);
}

fn denies_mismatch(world: &World) {
    let response = send(world, "default", Some(1), Some(&world.tokens.bound_2));
    let document = assert_problem(world, &response, "mtls-binding-mismatch");
    assert_eq!(document["title"], "Certificate binding mismatch");
    assert_invalid_token_challenge(&response);
    // One info line with slug, request id and both thumbprints, never the token.
    let [client_1, client_2] = &world.pki.clients;
    let line = format!(
        "denied slug=mtls-binding-mismatch request_id={} token_x5t={} certificate_x5t={}",
        response.request_id,
        client_2.x5t(),
        client_1.x5t()
    );
    assert!(world.envoy.wait_for_log(&line), "no log line {line}");
    let signature = world.tokens.bound_2.rsplit('.').next().unwrap_or_default();
    assert!(
        !world.envoy.log().contains(signature),
        "the token leaked into the log"
    );
}

fn denies_mtls_required(world: &World) {
    let response = send(world, "default", None, Some(&world.tokens.bound_1));
    let document = assert_problem(world, &response, "mtls-required");
    assert_eq!(document["title"], "Client certificate required");
    assert_invalid_token_challenge(&response);
}

fn denies_unbound(world: &World) {
    let response = send(world, "default", Some(1), Some(&world.tokens.unbound));
    assert_problem(world, &response, "token-unbound");
    assert_invalid_token_challenge(&response);
    let response = send(
        world,
        "default",
        Some(1),
        Some(&world.tokens.unbound_odd_claims),
    );
    assert_problem(world, &response, "token-unbound");
    // Without a certificate the answer is the same: the token is judged first.
    let response = send(world, "default", None, Some(&world.tokens.unbound));
    assert_problem(world, &response, "token-unbound");
}

fn denies_malformed(world: &World) {
    for (name, token) in &world.tokens.malformed {
        for certificate in [Some(1), None] {
            let response = send(world, "default", certificate, Some(token));
            assert_eq!(response.status, 401, "{name}: {response:?}");
            let document = assert_problem(world, &response, "token-invalid");
            assert_invalid_token_challenge(&response);
            assert!(
                !document["detail"]
                    .as_str()
                    .unwrap_or_default()
                    .contains(token.as_str()),
                "{name}"
            );
        }
    }
    let hex = &world.tokens.malformed[0].1;
    let detail = send(world, "default", Some(1), Some(hex)).json()["detail"].clone();
    assert!(
        detail.as_str().unwrap_or_default().contains("hexadecimal"),
        "{detail}"
    );
}

fn instance_without_query(world: &World) {
    let request = Request::new(world.envoy.port("default"))
        .path("/orders/7?q=secret&page=2")
        .bearer(&world.tokens.bound_2);
    let response = world.client.send(request);
    assert_eq!(
        assert_problem(world, &response, "mtls-binding-mismatch")["instance"],
        "/orders/7"
    );
}

fn echoes_request_id(world: &World) {
    let request = Request::new(world.envoy.port("default"))
        .header("x-request-id", "client-chosen-id-42")
        .bearer(&world.tokens.unbound);
    let response = world.client.send(request);
    assert_eq!(response.request_id, "client-chosen-id-42");
    assert_problem(world, &response, "token-unbound");
}

fn unknown_key_rejected_by_jwt_authn(world: &World) {
    let response = send(world, "default", Some(1), Some(&world.tokens.rogue_signer));
    assert_eq!(response.status, 401);
    assert_eq!(response.body, "Jwt verification fails");
    assert!(!world.upstream.saw(&response.request_id));
    let response = send(world, "default", Some(1), None);
    assert_eq!(response.status, 401);
    assert_eq!(response.body, "Jwt is missing");
}

// ---- binding: optional ------------------------------------------------------

fn optional_unbound_passes(world: &World) {
    expect_allowed(world, "optional", Some(1), Some(&world.tokens.unbound));
    expect_allowed(world, "optional", None, Some(&world.tokens.unbound));
}

fn optional_bound_must_match(world: &World) {
    expect_binding_enforced(world, "optional");
    expect_problem(
        world,
        "optional",
        None,
        Some(&world.tokens.bound_1),
        "mtls-required",
    );
    let malformed = &world.tokens.malformed[0].1;
    expect_problem(world, "optional", Some(1), Some(malformed), "token-invalid");
}

// ---- mode: dry_run ------------------------------------------------------------

fn dry_run_passes_and_counts(world: &World) {
    expect_allowed(world, "dry_run", Some(1), Some(&world.tokens.bound_2));
    expect_allowed(world, "dry_run", Some(1), Some(&world.tokens.unbound));
    expect_allowed(world, "dry_run", Some(1), Some(&world.tokens.bound_1));
    let envoy = &world.envoy;
    assert_eq!(
        envoy.wait_for_stat(
            "wasmcustom.cnf_guard.dry_run.dry_run.mtls_binding_mismatch",
            1
        ),
        1
    );
    assert_eq!(
        envoy.wait_for_stat("wasmcustom.cnf_guard.dry_run.dry_run.token_unbound", 1),
        1
    );
    assert_eq!(
        envoy.wait_for_stat("wasmcustom.cnf_guard.dry_run.allowed", 1),
        1
    );
    assert_eq!(
        envoy.stat("wasmcustom.cnf_guard.dry_run.denied.mtls_binding_mismatch"),
        Some(0)
    );
    assert!(envoy.wait_for_log("would deny (dry run) slug=mtls-binding-mismatch"));
}

// ---- thumbprint: spki ---------------------------------------------------------

fn spki_allows(world: &World) {
    expect_allowed(world, "spki", Some(1), Some(&world.tokens.spki_1));
    expect_problem(
        world,
        "spki",
        Some(2),
        Some(&world.tokens.spki_1),
        "mtls-binding-mismatch",
    );
    expect_problem(
        world,
        "spki",
        None,
        Some(&world.tokens.spki_1),
        "mtls-required",
    );
}

fn spki_rejects_certificate_thumbprint(world: &World) {
    expect_problem(
        world,
        "spki",
        Some(1),
        Some(&world.tokens.bound_1),
        "mtls-binding-mismatch",
    );
}

// ---- claims sources -----------------------------------------------------------

fn header_source(world: &World) {
    expect_binding_enforced(world, "header_source");
    expect_problem(
        world,
        "header_source",
        Some(1),
        Some(&world.tokens.unbound),
        "token-unbound",
    );
    let malformed = &world.tokens.malformed[0].1;
    expect_problem(
        world,
        "header_source",
        Some(1),
        Some(malformed),
        "token-invalid",
    );
}

fn header_source_forged_token(world: &World) {
    // Signed by an unknown key but bound to the presenter's own certificate:
    // jwt_authn fails it and forwards it anyway; its recorded failure must win.
    let response = send(
        world,
        "header_source_failures",
        Some(1),
        Some(&world.tokens.rogue_signer),
    );
    let document = assert_problem(world, &response, "authentication-failed");
    assert_detail_contains(&document, "Jwt verification fails");
    assert_allowed(
        world,
        &send(
            world,
            "header_source_failures",
            Some(1),
            Some(&world.tokens.bound_1),
        ),
    );
}

fn custom_metadata_key(world: &World) {
    expect_binding_enforced(world, "custom_key");
}

fn wrong_metadata_key(world: &World) {
    // jwt_authn writes `jwt_claims`, the plugin reads `payload`: nothing is
    // verified as far as the filter can tell, so it denies.
    let response = send(world, "key_mismatch", Some(1), Some(&world.tokens.bound_1));
    assert_problem(world, &response, "authentication-failed");
    assert_invalid_token_challenge(&response);
}

fn problem_type_base(world: &World) {
    let response = send(world, "type_base", Some(1), Some(&world.tokens.unbound));
    assert_problem_with_base(
        world,
        &response,
        "https://docs.example.com/problems/",
        "token-unbound",
    );
}

// ---- jwt_authn allow_missing_or_failed + failed_status_in_metadata -------------

fn failures_missing_token(world: &World) {
    let response = send(world, "failures", Some(1), None);
    let document = assert_problem(world, &response, "authentication-failed");
    assert_eq!(response.header("www-authenticate"), Some("Bearer"));
    assert_detail_contains(&document, "Jwt is missing");
}

fn failures_unknown_key(world: &World) {
    let response = send(world, "failures", Some(1), Some(&world.tokens.rogue_signer));
    let document = assert_problem(world, &response, "authentication-failed");
    assert_invalid_token_challenge(&response);
    assert_detail_contains(&document, "Jwt verification fails");
}

fn failures_expired(world: &World) {
    let response = send(world, "failures", Some(1), Some(&world.tokens.expired));
    let document = assert_problem(world, &response, "authentication-failed");
    assert_detail_contains(&document, "Jwt is expired");
}

fn failures_valid_passes(world: &World) {
    expect_binding_enforced(world, "failures");
}

fn allow_missing_no_token(world: &World) {
    let response = send(world, "allow_missing", Some(1), None);
    assert_problem(world, &response, "authentication-failed");
    assert_eq!(response.header("www-authenticate"), Some("Bearer"));
}

// ---- observability ------------------------------------------------------------

fn metrics_per_outcome(world: &World) {
    for _ in 0..2 {
        expect_allowed(world, "metrics", Some(1), Some(&world.tokens.bound_1));
    }
    send(world, "metrics", Some(1), Some(&world.tokens.bound_2));
    send(world, "metrics", None, Some(&world.tokens.bound_1));
    send(world, "metrics", Some(1), Some(&world.tokens.unbound));
    send(
        world,
        "metrics",
        Some(1),
        Some(&world.tokens.malformed[0].1),
    );
    let envoy = &world.envoy;
    let expected = [
        ("allowed", 2),
        ("denied.mtls_binding_mismatch", 1),
        ("denied.mtls_required", 1),
        ("denied.token_unbound", 1),
        ("denied.token_invalid", 1),
    ];
    for (outcome, count) in expected {
        let name = format!("wasmcustom.cnf_guard.metrics.{outcome}");
        assert_eq!(envoy.wait_for_stat(&name, count), count, "{name}");
    }
    assert_eq!(
        envoy.stat("wasmcustom.cnf_guard.metrics.denied.authentication_failed"),
        Some(0)
    );
    let prometheus = support::client::admin_get(envoy.admin_port, "/stats/prometheus");
    let line = prometheus
        .lines()
        .find(|l| l.contains("cnf_guard_metrics_allowed") && !l.starts_with('#'))
        .unwrap_or_else(|| panic!("no prometheus series for cnf_guard_metrics_allowed"));
    assert!(line.ends_with(" 2"), "{line}");
}

// ---- configuration ------------------------------------------------------------

fn single_listener_config(world: &World, plugin_config: &str) -> String {
    let listener = Listener::new("only", JwtAuthn::default(), plugin_config.to_owned());
    bootstrap(
        &world.material,
        &support::wasm_path(),
        world.upstream.port,
        &[listener],
    )
}

fn rejected_configs(world: &World) {
    let cases = [
        (
            r#"{"mode": "enforcing"}"#,
            "mode",
            "unknown variant `enforcing`",
        ),
        (
            r#"{"binding": "sometimes"}"#,
            "binding",
            "unknown variant `sometimes`",
        ),
        (
            r#"{"thumbprint": "sha1"}"#,
            "thumbprint",
            "unknown variant `sha1`",
        ),
        (
            r#"{"claims": {"source": "cookie"}}"#,
            "claims.source",
            "unknown variant `cookie`",
        ),
        (
            r#"{"claims": {"metadata_key": ""}}"#,
            "claims.metadata_key",
            "must be a non-empty",
        ),
        (
            r#"{"problem_type_base": "not a uri"}"#,
            "problem_type_base",
            "absolute URI",
        ),
        (r#"{"strict": true}"#, "strict", "unknown field `strict`"),
        (
            r#"{"claims": {"key": "payload"}}"#,
            "claims.key",
            "unknown field `key`",
        ),
        (
            r#"{"certificate": {"source": "xfcc_cert"}}"#,
            "certificate.trusted_proxy",
            "only believed from a trusted proxy",
        ),
        (
            r#"{"thumbprint": "spki", "certificate": {"source": "xfcc_hash", "trusted_proxy": {"source_cidrs": ["10.0.0.0/8"]}}}"#,
            "certificate.source",
            "cannot give the `spki` thumbprint",
        ),
        (
            r#"{"certificate": {"source": "pem_header", "trusted_proxy": {"source_cidrs": ["10.0.0.0/8"]}}}"#,
            "certificate.header",
            "is required for this source",
        ),
        (
            r#"{"certificate": {"source": "client_cert", "trusted_proxy": {"source_cidrs": ["10.0.0.1/8"]}}}"#,
            "certificate.trusted_proxy.source_cidrs",
            "did you mean `10.0.0.0/8`",
        ),
        (
            r#"{"certificate": {"trusted_proxy": {"source_cidrs": ["10.0.0.0/8"]}}}"#,
            "certificate.source",
            "apply to forwarded sources only",
        ),
        (
            r#"{"rules": [{"match": {"path": {"prefix": "healthz"}}, "skip": true}]}"#,
            "rules[0].match.path.prefix",
            "must start with `/`",
        ),
        (r#"["enforce"]"#, ".", "must be a JSON object"),
        (r#"{"mode": "enforce""#, ".", "EOF"),
    ];
    let dir = tempfile::tempdir().expect("tempdir");
    for (index, (plugin_config, field, reason)) in cases.iter().enumerate() {
        let path = dir.path().join(format!("rejected-{index}.yaml"));
        std::fs::write(&path, single_listener_config(world, plugin_config)).expect("write");
        let output = validate(dir.path(), &path);
        let log = String::from_utf8_lossy(&output.stderr).into_owned()
            + &String::from_utf8_lossy(&output.stdout);
        assert!(!output.status.success(), "{plugin_config} was accepted");
        let line = log
            .lines()
            .find(|l| l.contains(&format!("invalid configuration at `{field}`")))
            .unwrap_or_else(|| panic!("no log line naming `{field}` for {plugin_config}:\n{log}"));
        assert!(
            line.contains("[error]") || line.contains("[critical]"),
            "{line}"
        );
        assert!(line.contains(reason), "{line} lacks {reason}");
    }
}

fn empty_config_accepted(world: &World) {
    let dir = tempfile::tempdir().expect("tempdir");
    for (index, plugin_config) in ["", "{}", "  {}  "].iter().enumerate() {
        let path = dir.path().join(format!("empty-{index}.yaml"));
        std::fs::write(&path, single_listener_config(world, plugin_config)).expect("write");
        let output = validate(dir.path(), &path);
        assert!(
            output.status.success(),
            "{plugin_config:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

// ---- the shipped example configurations ---------------------------------------

fn example_configs() -> Vec<PathBuf> {
    let mut configs: Vec<PathBuf> = std::fs::read_dir(support::repo_root().join("envoy"))
        .expect("envoy/")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        // The compose file runs demo.yaml in a container; it is no Envoy config.
        .filter(|p| !p.ends_with("docker-compose.yaml"))
        .collect();
    configs.sort();
    assert!(!configs.is_empty());
    configs
}

/// A working directory laid out like the repository for the examples'
/// relative paths: `.demo/` material and the built wasm under `target/`.
fn demo_workdir(world: &World) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    let demo = dir.path().join(".demo");
    std::fs::create_dir_all(&demo).expect("mkdir");
    for entry in std::fs::read_dir(&world.material)
        .expect("material")
        .flatten()
    {
        std::fs::copy(entry.path(), demo.join(entry.file_name())).expect("copy");
    }
    let wasm_dir = dir.path().join("target/wasm32-wasip1/release");
    std::fs::create_dir_all(&wasm_dir).expect("mkdir");
    std::fs::copy(support::wasm_path(), wasm_dir.join("cnf_guard.wasm")).expect("copy wasm");
    dir
}

fn examples_validate(world: &World) {
    let dir = demo_workdir(world);
    for config in example_configs() {
        let output = validate(dir.path(), &config);
        assert!(
            output.status.success(),
            "{} does not validate:\n{}",
            config.display(),
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

/// A port no other test in this process was given. Envoy binds listeners with
/// SO_REUSEPORT, so two example Envoys handed the same free port would both
/// bind it and share its connections.
fn free_port() -> u16 {
    static HANDED_OUT: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    loop {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .expect("bind")
            .local_addr()
            .expect("addr")
            .port();
        let mut handed_out = HANDED_OUT.lock().expect("lock");
        if !handed_out.contains(&port) {
            handed_out.push(port);
            return port;
        }
    }
}

/// Starts an example config with each of its fixed ports (admin included)
/// moved to a free one, so tests never clash with `make run`.
fn start_example(dir: &std::path::Path, file: &str) -> Envoy {
    start_examples(dir, &[file]).pop().expect("one Envoy")
}

/// Starts example configs that refer to each other's ports (in order), with
/// every fixed port moved to the same free one in all of them. Each Envoy
/// keeps its files in a subdirectory; the examples' relative paths are made
/// absolute under `dir`.
fn start_examples(dir: &std::path::Path, files: &[&str]) -> Vec<Envoy> {
    let configs: Vec<String> = files
        .iter()
        .map(|file| {
            std::fs::read_to_string(support::repo_root().join("envoy").join(file)).expect("example")
        })
        .collect();
    let fixed: std::collections::BTreeSet<String> = configs
        .iter()
        .flat_map(|config| {
            config
                .split("port_value: ")
                .skip(1)
                .filter_map(|rest| rest.split('}').next().map(str::to_owned))
                .collect::<Vec<_>>()
        })
        .collect();
    let moved: Vec<(String, u16)> = fixed.into_iter().map(|port| (port, free_port())).collect();
    configs
        .into_iter()
        .enumerate()
        .map(|(index, mut config)| {
            for (port, free) in &moved {
                config = config.replace(
                    &format!("port_value: {port}}}"),
                    &format!("port_value: {free}}}"),
                );
            }
            // Relative paths (.demo/, target/) resolve against `dir`.
            let log_dir = dir.join(format!("envoy-{index}"));
            std::fs::create_dir_all(&log_dir).expect("mkdir");
            let config = config
                .replace(
                    "filename: .demo/",
                    &format!("filename: {}/.demo/", dir.display()),
                )
                .replace(
                    "filename: target/",
                    &format!("filename: {}/target/", dir.display()),
                );
            Envoy::start(&log_dir, &config, 1)
        })
        .collect()
}

fn demo_yaml_serves(world: &World) {
    let dir = demo_workdir(world);
    let envoy = start_example(dir.path(), "demo.yaml");
    let client = Client {
        material: dir.path().join(".demo"),
    };
    let port = envoy.port("protected");
    let ok = client.send(Request::new(port).bearer(&world.tokens.bound_1));
    assert_eq!(ok.status, 200, "{ok:?}");
    assert!(ok.body.starts_with("hello from the upstream"), "{ok:?}");
    let denied = client.send(Request::new(port).bearer(&world.tokens.bound_2));
    assert_eq!(denied.status, 401);
    assert_eq!(
        denied.json()["type"],
        "urn:cnf-guard:problem:mtls-binding-mismatch"
    );
    let unverified = client.send(Request::new(port).bearer(&world.tokens.rogue_signer));
    assert_eq!(
        (unverified.status, unverified.body.as_str()),
        (401, "Jwt verification fails")
    );
}

fn every_failure_yaml_serves(world: &World) {
    let dir = demo_workdir(world);
    let envoy = start_example(dir.path(), "problem-json-for-every-failure.yaml");
    let client = Client {
        material: dir.path().join(".demo"),
    };
    let port = envoy.port("protected");
    let ok = client.send(Request::new(port).bearer(&world.tokens.bound_1));
    assert_eq!(ok.status, 200, "{ok:?}");
    for (token, reason) in [
        (None, "Jwt is missing"),
        (Some(&world.tokens.rogue_signer), "Jwt verification fails"),
        (Some(&world.tokens.expired), "Jwt is expired"),
    ] {
        let mut request = Request::new(port);
        if let Some(token) = token {
            request = request.bearer(token);
        }
        let response = client.send(request);
        assert_eq!(response.status, 401);
        assert_eq!(
            response.header("content-type"),
            Some("application/problem+json")
        );
        let document = response.json();
        assert_eq!(
            document["type"],
            "urn:cnf-guard:problem:authentication-failed"
        );
        assert_detail_contains(&document, reason);
    }
}

// ---- behind a TLS-terminating proxy ---------------------------------------------

/// Envoy's XFCC `Cert` escaping (newline, space, `+`, `/`, `=`, quote, `,`, `;`).
fn envoy_url_encoded(pem: &str) -> String {
    use percent_encoding::{utf8_percent_encode, AsciiSet, CONTROLS};
    const SET: &AsciiSet = &CONTROLS
        .add(b' ')
        .add(b'+')
        .add(b'/')
        .add(b'=')
        .add(b'"')
        .add(b',')
        .add(b';');
    utf8_percent_encode(pem, SET).to_string()
}

fn hex_digest(der: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(der))
}

/// An XFCC element claiming `client` (1 or 2), as a client might forge it.
fn forged_xfcc(world: &World, client: usize) -> String {
    let identity = &world.pki.clients[client - 1];
    format!(
        "Hash={};Cert=\"{}\";URI=spiffe://cnf-guard.test/client-{client}",
        hex_digest(&identity.cert_der),
        envoy_url_encoded(&identity.cert_pem)
    )
}

fn via_edge(world: &World, certificate: u8, token: &str) -> Request<'static> {
    Request::new(world.edge.port("edge"))
        .certificate(Some(certificate))
        .bearer(token)
}

fn edge_bound_passes(world: &World) {
    let response = world.client.send(via_edge(world, 1, &world.tokens.bound_1));
    assert_allowed(world, &response);
    assert_eq!(
        world
            .upstream
            .header(&response.request_id, "x-forwarded-client-cert"),
        None,
        "remove_header: the upstream must not see the forwarded certificate"
    );
    let response = world.client.send(via_edge(world, 2, &world.tokens.bound_2));
    assert_allowed(world, &response);
}

fn edge_mismatch_denied(world: &World) {
    let response = world.client.send(via_edge(world, 2, &world.tokens.bound_1));
    assert_problem(world, &response, "mtls-binding-mismatch");
}

fn edge_injected_xfcc_replaced(world: &World) {
    // Client 2 holds client 1's token and claims client 1's certificate.
    let forged = via_edge(world, 2, &world.tokens.bound_1)
        .header("x-forwarded-client-cert", forged_xfcc(world, 1));
    let response = world.client.send(forged);
    assert_problem(world, &response, "mtls-binding-mismatch");
    // And a genuine client is not hurt by junk it sends.
    let junk = via_edge(world, 1, &world.tokens.bound_1)
        .header("x-forwarded-client-cert", forged_xfcc(world, 2));
    assert_allowed(world, &world.client.send(junk));
}

fn untrusted_hop_ignored(world: &World) {
    // Straight to the inner listener: the peer is client 2, not the edge.
    let port = world.envoy.port("behind_edge");
    let direct = Request::new(port)
        .certificate(Some(2))
        .bearer(&world.tokens.bound_1)
        .header("x-forwarded-client-cert", forged_xfcc(world, 1));
    let response = world.client.send(direct);
    let document = assert_problem(world, &response, "mtls-required");
    assert_detail_contains(&document, "did not come from a trusted proxy");
    assert!(world
        .envoy
        .wait_for_log("ignored the x-forwarded-client-cert header from an untrusted hop: the connection's peer certificate is not a trusted proxy's"));
    assert!(
        world.envoy.wait_for_stat(
            "wasmcustom.cnf_guard.behind_edge.forwarded_certificate_untrusted",
            1
        ) >= 1
    );
    // Trusted by network only, and loopback is not in it.
    let port = world.envoy.port("untrusted_network");
    let request = Request::new(port)
        .bearer(&world.tokens.bound_1)
        .header("x-forwarded-client-cert", forged_xfcc(world, 1));
    let response = world.client.send(request);
    assert_problem(world, &response, "mtls-required");
    assert!(world
        .envoy
        .wait_for_log("ignored the x-forwarded-client-cert header from an untrusted hop: source 127.0.0.1 is not in a trusted network"));
}

fn edge_trusted_by_subject(world: &World) {
    // Envoy prints the edge certificate's subject as `CN=edge`.
    let allowed = via_edge(world, 1, &world.tokens.bound_1).path("/subject/x");
    assert_allowed(world, &world.client.send(allowed));
    let untrusted = via_edge(world, 1, &world.tokens.bound_1).path("/wrong-subject/x");
    assert_problem(world, &world.client.send(untrusted), "mtls-required");
}

fn edge_rule_uses_hash(world: &World) {
    let allowed = via_edge(world, 1, &world.tokens.bound_1).path("/hash/orders");
    assert_allowed(world, &world.client.send(allowed));
    let denied = via_edge(world, 2, &world.tokens.bound_1).path("/hash/orders");
    assert_problem(world, &world.client.send(denied), "mtls-binding-mismatch");
}

// ---- other forwarded formats, trusted by address ----------------------------------

fn forwarded(world: &World, path: &'static str, token: &str) -> Request<'static> {
    Request::new(world.envoy.port("forwarded_by_address"))
        .path(path)
        .certificate(None)
        .bearer(token)
}

fn rfc9440(world: &World, client: usize) -> String {
    use base64::Engine as _;
    let der = &world.pki.clients[client - 1].cert_der;
    format!(
        ":{}:",
        base64::engine::general_purpose::STANDARD.encode(der)
    )
}

fn client_cert_header(world: &World) {
    let ok = forwarded(world, "/", &world.tokens.bound_1).header("client-cert", rfc9440(world, 1));
    assert_allowed(world, &world.client.send(ok));
    let other =
        forwarded(world, "/", &world.tokens.bound_1).header("client-cert", rfc9440(world, 2));
    assert_problem(world, &world.client.send(other), "mtls-binding-mismatch");
    let garbage = forwarded(world, "/", &world.tokens.bound_1).header("client-cert", ":Zm9v:");
    let document = assert_problem(world, &world.client.send(garbage), "mtls-required");
    assert_detail_contains(&document, "not a DER certificate");
    let none = forwarded(world, "/", &world.tokens.bound_1);
    assert_problem(world, &world.client.send(none), "mtls-required");
}

fn pem_header_alb_style(world: &World) {
    use percent_encoding::{utf8_percent_encode, AsciiSet, CONTROLS};
    // AWS ALB leaves `+`, `/` and `=` unescaped.
    const ALB: &AsciiSet = &CONTROLS.add(b' ');
    let pem = utf8_percent_encode(&world.pki.clients[0].cert_pem, ALB).to_string();
    let ok = forwarded(world, "/pem/x", &world.tokens.bound_1)
        .header("x-amzn-mtls-clientcert", pem.clone());
    assert_allowed(world, &world.client.send(ok));
    let other =
        forwarded(world, "/pem/x", &world.tokens.bound_2).header("x-amzn-mtls-clientcert", pem);
    assert_problem(world, &world.client.send(other), "mtls-binding-mismatch");
}

fn der_header(world: &World) {
    use base64::Engine as _;
    let der = base64::engine::general_purpose::STANDARD.encode(&world.pki.clients[1].cert_der);
    let ok = forwarded(world, "/der/x", &world.tokens.bound_2).header("x-client-cert-der", der);
    assert_allowed(world, &world.client.send(ok));
}

fn forwarded_spki(world: &World) {
    let ok =
        forwarded(world, "/spki/x", &world.tokens.spki_1).header("client-cert", rfc9440(world, 1));
    assert_allowed(world, &world.client.send(ok));
    // The certificate thumbprint does not bind on the SPKI route.
    let wrong_kind =
        forwarded(world, "/spki/x", &world.tokens.bound_1).header("client-cert", rfc9440(world, 1));
    assert_problem(
        world,
        &world.client.send(wrong_kind),
        "mtls-binding-mismatch",
    );
}

// ---- per-route policy -------------------------------------------------------------

fn per_route(world: &World, path: &'static str, certificate: u8, token: &str) -> Request<'static> {
    Request::new(world.envoy.port("per_route"))
        .path(path)
        .certificate(Some(certificate))
        .bearer(token)
}

fn per_route_skip(world: &World) {
    // Token bound to client 1, presented by client 2: skipped, not checked.
    let skipped = per_route(world, "/healthz/ready", 2, &world.tokens.bound_1);
    assert_allowed(world, &world.client.send(skipped));
    assert!(
        world
            .envoy
            .wait_for_stat("wasmcustom.cnf_guard.per_route.skipped", 1)
            >= 1
    );
    let checked = per_route(world, "/api", 2, &world.tokens.bound_1);
    assert_problem(world, &world.client.send(checked), "mtls-binding-mismatch");
}

fn per_route_strict(world: &World) {
    let open = per_route(world, "/api", 1, &world.tokens.unbound);
    assert_allowed(world, &world.client.send(open));
    let strict = per_route(world, "/admin/users", 1, &world.tokens.unbound);
    assert_problem(world, &world.client.send(strict), "token-unbound");
    let bound = per_route(world, "/admin/users", 1, &world.tokens.bound_1);
    assert_allowed(world, &world.client.send(bound));
}

fn per_route_dry_run(world: &World) {
    let response = world
        .client
        .send(per_route(world, "/rollout/v2", 1, &world.tokens.unbound));
    assert_allowed(world, &response);
    assert!(world.envoy.wait_for_log(&format!(
        "would deny (dry run) slug=token-unbound request_id={} token_x5t=- certificate_x5t=- rule=rollout",
        response.request_id
    )));
}

fn per_route_method(world: &World) {
    let read = per_route(world, "/api", 1, &world.tokens.unbound).method("GET");
    assert_allowed(world, &world.client.send(read));
    let write = per_route(world, "/api", 1, &world.tokens.unbound).method("POST");
    assert_problem(world, &world.client.send(write), "token-unbound");
    let delete = per_route(world, "/api", 1, &world.tokens.unbound).method("DELETE");
    assert_problem(world, &world.client.send(delete), "token-unbound");
}

fn unreachable_rules_logged(world: &World) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("unreachable.yaml");
    let plugin_config = json!({"rules": [
        {"name": "api", "match": {"path": {"prefix": "/api"}}, "skip": true},
        {"name": "api-v1", "match": {"path": {"prefix": "/api/v1"}}, "mode": "dry_run"}
    ]});
    std::fs::write(
        &path,
        single_listener_config(world, &plugin_config.to_string()),
    )
    .expect("write");
    let output = validate(dir.path(), &path);
    let log = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{log}");
    assert!(
        log.lines().any(|l| l.contains("[warning]")
            && l.contains(
                "rule `api-v1` is unreachable: rule `api` matches every request it would"
            )),
        "{log}"
    );
    assert!(log.contains("rule `api`: match path^=/api → skip"), "{log}");
}

fn edge_examples_serve(world: &World) {
    let dir = demo_workdir(world);
    let envoys = start_examples(dir.path(), &["behind-edge.yaml", "edge.yaml"]);
    let client = Client {
        material: dir.path().join(".demo"),
    };
    let port = envoys[1].port("edge");
    let ok = client.send(Request::new(port).bearer(&world.tokens.bound_1));
    assert_eq!(ok.status, 200, "{ok:?}");
    assert_eq!(ok.body, "hello from the upstream behind the edge\n");
    let stolen = client.send(
        Request::new(port)
            .certificate(Some(2))
            .bearer(&world.tokens.bound_1)
            .header("x-forwarded-client-cert", forged_xfcc(world, 1)),
    );
    assert_eq!(stolen.status, 401);
    assert_eq!(
        stolen.json()["type"],
        "urn:cnf-guard:problem:mtls-binding-mismatch"
    );
    // Around the edge, straight to cnf-guard: the forged header is ignored.
    let around = client.send(
        Request::new(envoys[0].port("protected"))
            .certificate(Some(2))
            .bearer(&world.tokens.bound_1)
            .header("x-forwarded-client-cert", forged_xfcc(world, 1)),
    );
    assert_eq!(around.json()["type"], "urn:cnf-guard:problem:mtls-required");
}

fn per_route_example_serves(world: &World) {
    let dir = demo_workdir(world);
    let envoy = start_example(dir.path(), "per-route.yaml");
    let client = Client {
        material: dir.path().join(".demo"),
    };
    let port = envoy.port("protected");
    let unbound = &world.tokens.unbound;
    let expect = |request: Request, status: u16| {
        let response = client.send(request);
        assert_eq!(response.status, status, "{response:?}");
    };
    expect(Request::new(port).path("/healthz").certificate(None), 200);
    expect(Request::new(port).path("/orders").bearer(unbound), 200);
    expect(Request::new(port).path("/admin").bearer(unbound), 401);
    expect(Request::new(port).path("/v2/orders").bearer(unbound), 200);
    expect(
        Request::new(port)
            .path("/orders")
            .method("POST")
            .bearer(unbound),
        401,
    );
    assert!(envoy.wait_for_log("would deny (dry run) slug=token-unbound"));
    assert!(envoy.wait_for_log("rule=orders-v2-rollout"));
}

// ---- the cnf-guard CLI against the real filter ---------------------------------

/// `cnf-guard inspect` must reach Envoy's verdict, slug, detail and challenge
/// for every token jwt_authn lets through, on several plugin configurations.
fn cli_agrees_with_envoy(world: &World) {
    let tokens = &world.tokens;
    let mut cases: Vec<(&str, &String)> = vec![
        ("bound_1", &tokens.bound_1),
        ("bound_2", &tokens.bound_2),
        ("unbound", &tokens.unbound),
        ("unbound_odd_claims", &tokens.unbound_odd_claims),
        ("spki_1", &tokens.spki_1),
    ];
    cases.extend(tokens.malformed.iter().map(|(name, token)| (*name, token)));
    let configs = tempfile::tempdir().expect("tempdir");
    for listener in listeners()
        .into_iter()
        .filter(|l| ["default", "optional", "spki", "header_source"].contains(&l.name))
    {
        let config = configs.path().join(format!("{}.json", listener.name));
        std::fs::write(&config, &listener.plugin_config).expect("write config");
        for (name, token) in &cases {
            for certificate in [Some(1u8), None] {
                let envoy = send(world, listener.name, certificate, Some(token));
                let mut args = vec![
                    "--json".to_owned(),
                    "inspect".to_owned(),
                    "--token".to_owned(),
                    (*token).clone(),
                    "--config".to_owned(),
                    config.display().to_string(),
                ];
                if let Some(n) = certificate {
                    args.push("--cert".to_owned());
                    args.push(
                        world
                            .material
                            .join(format!("client-{n}.pem"))
                            .display()
                            .to_string(),
                    );
                }
                let output = std::process::Command::new(env!("CARGO_BIN_EXE_cnf-guard"))
                    .args(&args)
                    .output()
                    .expect("run cnf-guard");
                let cli: serde_json::Value =
                    serde_json::from_slice(&output.stdout).expect("cnf-guard --json");
                let case = format!("{} / {name} / certificate {certificate:?}", listener.name);
                if envoy.status == 200 {
                    assert_eq!(cli["verdict"], "allow", "{case}: {cli}");
                    assert_eq!(output.status.code(), Some(0), "{case}");
                    continue;
                }
                assert_eq!(envoy.status, 401, "{case}: {envoy:?}");
                let reply = &cli["reply"];
                assert_eq!(cli["verdict"], "deny", "{case}: {cli}");
                assert_eq!(output.status.code(), Some(1), "{case}");
                assert_eq!(
                    reply["headers"]["www-authenticate"].as_str(),
                    envoy.header("www-authenticate"),
                    "{case}"
                );
                let document = envoy.json();
                for member in ["type", "title", "status", "detail", "instance"] {
                    assert_eq!(reply["body"][member], document[member], "{case}: {member}");
                }
            }
        }
    }
}

// ---- configuration reload (LDS) -------------------------------------------------

/// Replaces the LDS file the way a control plane would: write, then rename.
fn push_listener(world: &World, dir: &std::path::Path, port: u16, plugin_config: &str) {
    let listener = Listener::new("reloaded", JwtAuthn::default(), plugin_config.to_owned());
    let resources = lds_resources(&world.material, &support::wasm_path(), &listener, port);
    let staged = dir.join("lds.staged.yaml");
    std::fs::write(&staged, resources).expect("write lds");
    std::fs::rename(&staged, dir.join("lds.yaml")).expect("rename lds");
}

fn wait_for_counter(envoy: &Envoy, name: &str, at_least: u64) {
    assert!(
        envoy.wait_for_stat(name, at_least) >= at_least,
        "{name} never reached {at_least}"
    );
}

fn lds_reload(world: &World) {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    push_listener(world, dir.path(), port, r#"{"mode": "dry_run"}"#);
    let envoy_dir = dir.path().join("envoy");
    std::fs::create_dir_all(&envoy_dir).expect("mkdir");
    let envoy = Envoy::start(
        &envoy_dir,
        &lds_bootstrap(&dir.path().join("lds.yaml"), world.upstream.port),
        2,
    );
    let stolen = || {
        Request::new(port)
            .certificate(Some(2))
            .bearer(&world.tokens.bound_1)
    };
    // Dry run: the stolen token passes (and is logged).
    assert_eq!(world.client.send(stolen()).status, 200);

    // A request in flight (the upstream holds it for 1.5 s) while the update lands.
    let in_flight = std::thread::scope(|scope| {
        let slow = scope.spawn(|| {
            world.client.send(
                Request::new(port)
                    .bearer(&world.tokens.bound_1)
                    .header("x-upstream-delay-ms", "1500"),
            )
        });
        std::thread::sleep(std::time::Duration::from_millis(300));
        push_listener(world, dir.path(), port, r#"{"mode": "enforce"}"#);
        wait_for_counter(&envoy, "listener_manager.lds.update_success", 2);
        slow.join().expect("in-flight request")
    });
    assert_eq!(
        in_flight.status, 200,
        "the in-flight request was dropped: {in_flight:?}"
    );
    assert!(world.upstream.saw(&in_flight.request_id));

    // The new configuration is in force: the stolen token is denied.
    let denied = world.client.send(stolen());
    assert_eq!(
        denied.json()["type"],
        "urn:cnf-guard:problem:mtls-binding-mismatch"
    );

    // A bad configuration is refused as a whole; the enforcing one stays.
    push_listener(world, dir.path(), port, r#"{"mode": "enforcing"}"#);
    wait_for_counter(&envoy, "listener_manager.lds.update_rejected", 1);
    assert!(envoy.log().contains("invalid configuration at `mode`"));
    let still_denied = world.client.send(stolen());
    assert_eq!(
        still_denied.json()["type"],
        "urn:cnf-guard:problem:mtls-binding-mismatch"
    );
    let allowed = world
        .client
        .send(Request::new(port).bearer(&world.tokens.bound_1));
    assert_eq!(allowed.status, 200);
}

// ---- a failed VM -----------------------------------------------------------------

/// One plain-HTTP listener per `failure_policy`, each with its own VM of a
/// plugin that traps on `x-trap` (tests/trap-plugin).
fn failed_vm_bootstrap(world: &World, wasm: &std::path::Path) -> String {
    let mut yaml = String::from(
        "admin:\n  address: {socket_address: {address: 127.0.0.1, port_value: 0}}\nstatic_resources:\n  listeners:\n",
    );
    for policy in ["FAIL_CLOSED", "FAIL_RELOAD", "FAIL_OPEN"] {
        yaml.push_str(&format!(
            r#"  - name: {policy}
    address: {{socket_address: {{address: 127.0.0.1, port_value: 0}}}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: {policy}
          route_config:
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
              - match: {{prefix: /}}
                route: {{cluster: upstream}}
          http_filters:
          - name: envoy.filters.http.wasm
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm
              config:
                name: trap-{policy}
                failure_policy: {policy}
                reload_config: {{backoff: {{base_interval: 0.1s, max_interval: 0.2s}}}}
                vm_config:
                  vm_id: trap-{policy}
                  runtime: envoy.wasm.runtime.v8
                  code: {{local: {{filename: {wasm}}}}}
          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
"#,
            wasm = wasm.display()
        ));
    }
    yaml.push_str(&upstream_cluster(world.upstream.port));
    yaml
}

/// Status of a plain-HTTP GET, and whether the upstream saw it.
fn plain_get(world: &World, port: u16, trap: bool) -> (u16, bool) {
    let request_id = format!(
        "vm-{port}-{}-{trap}",
        std::time::UNIX_EPOCH.elapsed().expect("clock").as_nanos()
    );
    let mut command = std::process::Command::new("curl");
    command.args([
        "-s",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        "--max-time",
        "5",
        "-H",
    ]);
    command.arg(format!("x-request-id: {request_id}"));
    if trap {
        command.args(["-H", "x-trap: 1"]);
    }
    let output = command
        .arg(format!("http://127.0.0.1:{port}/"))
        .output()
        .expect("curl");
    let status = String::from_utf8_lossy(&output.stdout)
        .trim()
        .parse()
        .unwrap_or(0);
    (status, world.upstream.saw(&request_id))
}

fn failed_vm(world: &World) {
    let wasm =
        support::repo_root().join("target/trap-plugin/wasm32-wasip1/release/trap_plugin.wasm");
    assert!(
        wasm.exists(),
        "build it with `make trap-plugin` ({} missing)",
        wasm.display()
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let envoy = Envoy::start(dir.path(), &failed_vm_bootstrap(world, &wasm), 1);
    for policy in ["FAIL_CLOSED", "FAIL_RELOAD", "FAIL_OPEN"] {
        let port = envoy.port(policy);
        assert_eq!(
            plain_get(world, port, false),
            (200, true),
            "{policy}: healthy VM"
        );
        let (status, reached) = plain_get(world, port, true);
        assert!(
            !reached && status >= 500,
            "{policy}: the trapping request got {status}"
        );
    }
    // FAIL_CLOSED: the VM stays failed and every request is refused.
    let closed = envoy.port("FAIL_CLOSED");
    for _ in 0..3 {
        let (status, reached) = plain_get(world, closed, false);
        assert!(
            !reached && status >= 500,
            "FAIL_CLOSED let a request through ({status})"
        );
    }
    // FAIL_RELOAD: refused until a fresh VM is up, then served again.
    let reload = envoy.port("FAIL_RELOAD");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let (status, reached) = plain_get(world, reload, false);
        if status == 200 {
            assert!(reached);
            break;
        }
        assert!(
            !reached,
            "FAIL_RELOAD: a refused request reached the upstream"
        );
        assert!(
            std::time::Instant::now() < deadline,
            "FAIL_RELOAD never reloaded the VM"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    // FAIL_OPEN (never for a security filter): the failed filter is skipped.
    assert_eq!(
        plain_get(world, envoy.port("FAIL_OPEN"), false),
        (200, true)
    );
}
