//! What an operator sees of each decision on the request's own access-log
//! line, read back from a real Envoy's access log (every test listener logs
//! with `support::bootstrap::ACCESS_LOG_FORMAT`, the format
//! docs/observability.md recommends).

use super::assertions::{assert_allowed, assert_problem, send};
use super::{NamedTrial, World};

pub fn trials() -> Vec<NamedTrial> {
    vec![
        (
            "observability::a_denial_is_on_its_access_log_line",
            denial_on_access_log,
        ),
        (
            "observability::a_dry_run_would_deny_is_on_its_access_log_line",
            would_deny_on_access_log,
        ),
        (
            "observability::an_allowed_request_logs_no_outcome",
            allowed_logs_nothing,
        ),
    ]
}

fn denial_on_access_log(world: &World) {
    let response = send(world, "default", Some(2), Some(&world.tokens.bound_1));
    assert_problem(world, &response, "mtls-binding-mismatch");
    let line = world.envoy.access_log_line(&response.request_id);
    assert!(
        line.contains(" 401 cnf_guard.mtls_binding_mismatch cnf_guard=\"denied slug=mtls-binding-mismatch rule=-\""),
        "{line}"
    );
}

fn would_deny_on_access_log(world: &World) {
    let response = send(world, "dry_run", Some(2), Some(&world.tokens.bound_1));
    assert_allowed(world, &response);
    let line = world.envoy.access_log_line(&response.request_id);
    assert!(
        line.contains(
            " 200 via_upstream cnf_guard=\"would_deny slug=mtls-binding-mismatch rule=-\""
        ),
        "{line}"
    );
}

fn allowed_logs_nothing(world: &World) {
    let response = send(world, "default", Some(1), Some(&world.tokens.bound_1));
    assert_allowed(world, &response);
    let line = world.envoy.access_log_line(&response.request_id);
    assert!(
        line.ends_with(" 200 via_upstream cnf_guard=\"-\""),
        "{line}"
    );
}
