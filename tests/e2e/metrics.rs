//! The decision counters: one per outcome, under the listener's
//! `stat_prefix`, in Envoy's stats and its Prometheus output.

use super::assertions::{expect_allowed, send};
use super::{plugin, NamedTrial, World};
use crate::support;
use crate::support::bootstrap::{JwtAuthn, Listener};
use serde_json::json;

pub fn listeners() -> Vec<Listener> {
    let default_jwt = JwtAuthn::default;
    vec![plugin(
        "metrics",
        default_jwt(),
        json!({"stat_prefix": "metrics"}),
    )]
}

pub fn trials() -> Vec<NamedTrial> {
    vec![(
        "metrics::one_counter_per_outcome_in_stats_and_prometheus",
        metrics_per_outcome,
    )]
}

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
