//! Where the filter reads the verified claims: jwt_authn's metadata (under
//! its default or a custom key, and a key that does not match), the
//! forwarded `Authorization` header, and jwt_authn's recorded failures when
//! it lets them through (`allow_missing_or_failed`, `allow_missing`).

use super::assertions::{
    assert_allowed, assert_detail_contains, assert_invalid_token_challenge, assert_problem,
    expect_binding_enforced, expect_problem, send,
};
use super::{plugin, NamedTrial, World};
use crate::support::bootstrap::{JwtAuthn, Listener};
use serde_json::json;

pub fn listeners() -> Vec<Listener> {
    let default_jwt = JwtAuthn::default;
    vec![
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
    ]
}

pub fn trials() -> Vec<NamedTrial> {
    vec![
        ("authorization_header::reads_claims_from_the_forwarded_token", header_source),
        ("authorization_header::forged_token_is_not_believed_when_jwt_authn_lets_failures_through", header_source_forged_token),
        ("metadata_key::custom_key_is_read", custom_metadata_key),
        ("metadata_key::wrong_key_fails_closed", wrong_metadata_key),
        ("jwt_authn_failures::missing_token_is_a_problem_reply", failures_missing_token),
        ("jwt_authn_failures::unknown_signing_key_is_a_problem_reply", failures_unknown_key),
        ("jwt_authn_failures::expired_token_is_a_problem_reply", failures_expired),
        ("jwt_authn_failures::valid_bound_token_passes", failures_valid_passes),
        ("allow_missing::no_token_is_authentication_failed", allow_missing_no_token),
    ]
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
