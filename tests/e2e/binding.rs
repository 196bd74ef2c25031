//! The binding on the direct mTLS path (RFC 8705): the default
//! configuration, `binding: optional`, `mode: dry_run`, `thumbprint: spki`,
//! and the problem reply they give (its `type` base included).

use super::assertions::{
    assert_allowed, assert_invalid_token_challenge, assert_problem, assert_problem_with_base,
    expect_allowed, expect_binding_enforced, expect_problem, send,
};
use super::{plugin, NamedTrial, World};
use crate::support::bootstrap::{JwtAuthn, Listener};
use crate::support::client::Request;
use serde_json::json;

pub fn listeners() -> Vec<Listener> {
    let default_jwt = JwtAuthn::default;
    vec![
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
            "type_base",
            default_jwt(),
            json!({"problem_type_base": "https://docs.example.com/problems/", "stat_prefix": "type_base"}),
        ),
    ]
}

pub fn trials() -> Vec<NamedTrial> {
    vec![
        (
            "default::allows_token_bound_to_the_presented_certificate",
            allows_bound,
        ),
        (
            "default::denies_token_bound_to_another_certificate",
            denies_mismatch,
        ),
        (
            "default::denies_bound_token_without_client_certificate",
            denies_mtls_required,
        ),
        ("default::denies_unbound_token", denies_unbound),
        (
            "default::denies_every_malformed_cnf_as_token_invalid",
            denies_malformed,
        ),
        (
            "default::instance_is_the_path_without_query",
            instance_without_query,
        ),
        ("default::echoes_the_request_id", echoes_request_id),
        (
            "default::jwt_authn_rejects_unknown_signing_key_before_the_filter",
            unknown_key_rejected_by_jwt_authn,
        ),
        (
            "optional::unbound_token_passes_without_certificate",
            optional_unbound_passes,
        ),
        (
            "optional::bound_token_must_still_match",
            optional_bound_must_match,
        ),
        (
            "dry_run::would_be_denials_pass_and_are_counted",
            dry_run_passes_and_counts,
        ),
        ("spki::public_key_thumbprint_binds", spki_allows),
        (
            "spki::certificate_thumbprint_does_not_bind_in_spki_mode",
            spki_rejects_certificate_thumbprint,
        ),
        (
            "problem_type_base::prefixes_the_type_uri",
            problem_type_base,
        ),
    ]
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

// ---- problem_type_base ----------------------------------------------------------

fn problem_type_base(world: &World) {
    let response = send(world, "type_base", Some(1), Some(&world.tokens.unbound));
    assert_problem_with_base(
        world,
        &response,
        "https://docs.example.com/problems/",
        "token-unbound",
    );
}
