//! The checks every concern shares: one request to a listener of the shared
//! Envoy, and the contracts of its two answers (the upstream's 200, or the
//! problem reply with its slug, challenge and document).

use super::World;
use crate::support::client::{Request, Response};
use crate::support::envoy::Envoy;
use crate::support::upstream::BODY;
use serde_json::json;

pub fn send(
    world: &World,
    listener: &str,
    certificate: Option<u8>,
    token: Option<&str>,
) -> Response {
    let mut request = Request::new(world.envoy.port(listener)).certificate(certificate);
    if let Some(token) = token {
        request = request.bearer(token);
    }
    world.client.send(request)
}

/// Client 1's token passes with client 1's certificate and is a mismatch with
/// client 2's: the binding is checked on this listener.
pub fn expect_binding_enforced(world: &World, listener: &str) {
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
pub fn expect_allowed(world: &World, listener: &str, certificate: Option<u8>, token: Option<&str>) {
    assert_allowed(world, &send(world, listener, certificate, token));
}

/// Sends one request and expects the problem reply with `slug`.
pub fn expect_problem(
    world: &World,
    listener: &str,
    certificate: Option<u8>,
    token: Option<&str>,
    slug: &str,
) -> serde_json::Value {
    assert_problem(world, &send(world, listener, certificate, token), slug)
}

pub fn assert_allowed(world: &World, response: &Response) {
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
pub fn assert_problem(world: &World, response: &Response, slug: &str) -> serde_json::Value {
    assert_problem_with_base(world, response, "urn:cnf-guard:problem:", slug)
}

pub fn assert_problem_with_base(
    world: &World,
    response: &Response,
    base: &str,
    slug: &str,
) -> serde_json::Value {
    assert_problem_reply(world, response, base, 401, slug)
}

/// The whole problem contract for a reply with another status than 401
/// (e.g. 400 for a malformed request).
pub fn assert_problem_status(
    world: &World,
    response: &Response,
    status: u16,
    slug: &str,
) -> serde_json::Value {
    assert_problem_reply(world, response, "urn:cnf-guard:problem:", status, slug)
}

pub fn assert_problem_reply(
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
pub fn assert_detail_contains(document: &serde_json::Value, needle: &str) {
    let detail = document["detail"].as_str().unwrap_or_default();
    assert!(detail.contains(needle), "{needle:?} not in {document}");
}

pub fn assert_invalid_token_challenge(response: &Response) {
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

pub fn wait_for_counter(envoy: &Envoy, name: &str, at_least: u64) {
    assert!(
        envoy.wait_for_stat(name, at_least) >= at_least,
        "{name} never reached {at_least}"
    );
}
