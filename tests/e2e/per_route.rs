//! Per-route rules: a rule matched by path, route name or method skips the
//! check, or overrides the listener's binding and mode for its requests.

use super::assertions::{assert_allowed, assert_problem};
use super::{plugin, NamedTrial, World};
use crate::support::bootstrap::{JwtAuthn, Listener};
use crate::support::client::Request;
use serde_json::json;

pub fn listeners() -> Vec<Listener> {
    let default_jwt = JwtAuthn::default;
    vec![
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
    ]
}

pub fn trials() -> Vec<NamedTrial> {
    vec![
        ("per_route::skip_rule_checks_nothing", per_route_skip),
        (
            "per_route::strict_route_overrides_optional_binding",
            per_route_strict,
        ),
        (
            "per_route::dry_run_route_logs_and_passes",
            per_route_dry_run,
        ),
        ("per_route::method_match", per_route_method),
    ]
}

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
