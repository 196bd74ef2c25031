//! A whole request through `Filter` with a mock host: the fleet-wide replay
//! store. The mock's `dispatch_http_call` behaves as Envoy's (an unknown
//! cluster is `BadArgument`); the answers are webdis's and Envoy's own
//! (504 on timeout, 503 on a failed connection), as the fleet tests pin.

use crate::dpop::replay_store::StoreResponse;
use crate::dpop::test_proofs::TestKey;
use crate::filter::{AwaitingStore, Filter, Verdict};
use crate::host::mock::{MockHost, NOW};
use crate::policy::config::Config;
use crate::reply::problem::ProblemKind;
use crate::reply::stats::{Counter, PendingCounts};
use crate::token::claims::test_paths::jkt as jkt_path;
use serde_json::Value;

const TOKEN: &str = "eyJhbGciOiJFUzI1NiJ9.eyJjbmYiOnt9fQ.c2ln";
const URI: &str = "https://api.example.com/orders";
const FIRST_USE: &str = r#"{"SET":[true,"OK"]}"#;
const SEEN_BEFORE: &str = r#"{"SET":null}"#;

fn filter(store: &str, mode: &str) -> Filter {
    Filter::new(
        Config::parse(
            format!(
                r#"{{"mode": "{mode}", "dpop": {{"policy": "required",
                     "replay_store": {{"cluster": "replay_store"{store}}}}}}}"#
            )
            .as_bytes(),
        )
        .unwrap(),
    )
}

fn request(jti: &str) -> MockHost {
    request_on(MockHost::default().with_cluster("replay_store"), jti)
}

/// The request on `host` (another worker of an Envoy, say), by one client.
fn request_on(host: MockHost, jti: &str) -> MockHost {
    thread_local!(static KEY: TestKey = TestKey::es256());
    KEY.with(|key| {
        host.with_property(&jkt_path(), key.jkt().to_jkt())
            .with_header("authorization", &format!("DPoP {TOKEN}"))
            .with_header(":method", "POST")
            .with_header(":scheme", "https")
            .with_header(":authority", "api.example.com")
            .with_header(":path", "/orders")
            .with_header("dpop", &key.proof("POST", URI, TOKEN, NOW, jti))
    })
}

fn paused(verdict: Verdict) -> AwaitingStore {
    match verdict {
        Verdict::AwaitingReplayStore(awaiting) => *awaiting,
        other => panic!("expected a pause on the store, got {other:?}"),
    }
}

fn answer(status: Option<u16>, body: &str) -> StoreResponse {
    StoreResponse {
        status,
        body: body.as_bytes().to_vec(),
    }
}

fn slug(host: &MockHost) -> String {
    let body: Value = serde_json::from_slice(&host.reply().unwrap().body).unwrap();
    body["type"].as_str().unwrap().to_owned()
}

#[test]
fn a_fresh_proof_waits_for_the_store_and_passes_on_first_use() {
    let filter = filter("", "enforce");
    let host = request("one");
    let counts = PendingCounts::default();
    let awaiting = paused(filter.on_request_headers(&host, &counts));
    let calls = host.http_calls.borrow().clone();
    assert_eq!(calls.len(), 1);
    let path = &calls[0].headers[1];
    assert_eq!(path.0, ":path");
    assert!(path.1.starts_with("/SET/cnf_guard:dpop_jti:"), "{}", path.1);
    assert!(path.1.ends_with("/1/NX/EX/70"), "{}", path.1);
    assert!(counts.drain().is_empty(), "nothing is counted while paused");
    assert_eq!(
        filter.on_replay_store_answer(&host, awaiting, &answer(Some(200), FIRST_USE), &counts),
        Verdict::Continue
    );
    assert_eq!(counts.drain(), vec![(Counter::Allowed, 1)]);
    assert!(host.reply().is_none());
}

#[test]
fn a_proof_another_replica_recorded_is_a_replay() {
    let filter = filter("", "enforce");
    let host = request("two");
    let counts = PendingCounts::default();
    let awaiting = paused(filter.on_request_headers(&host, &counts));
    assert_eq!(
        filter.on_replay_store_answer(&host, awaiting, &answer(Some(200), SEEN_BEFORE), &counts),
        Verdict::Stop
    );
    assert_eq!(slug(&host), "urn:cnf-guard:problem:dpop-replay");
    assert_eq!(host.reply().unwrap().status, 401);
    assert_eq!(
        counts.drain(),
        vec![(Counter::Denied(ProblemKind::DpopReplay), 1)]
    );
}

#[test]
fn a_replay_to_the_same_replica_costs_no_store_call() {
    let filter = filter("", "enforce");
    let counts = PendingCounts::default();
    let first = request("three");
    let awaiting = paused(filter.on_request_headers(&first, &counts));
    filter.on_replay_store_answer(&first, awaiting, &answer(Some(200), FIRST_USE), &counts);
    // The same proof again, on another worker of the same Envoy.
    let again = request_on(first.worker().with_cluster("replay_store"), "three");
    assert_eq!(filter.on_request_headers(&again, &counts), Verdict::Stop);
    assert!(again.http_calls.borrow().is_empty());
    assert_eq!(slug(&again), "urn:cnf-guard:problem:dpop-replay");
}

#[test]
fn an_unusable_answer_fails_closed_by_default() {
    let filter = filter("", "enforce");
    // No response, Envoy's timeout (504) and failed connection (503),
    // webdis with Redis down (503), something that is not webdis.
    for (status, body) in [
        (None, ""),
        (Some(504), "upstream request timeout"),
        (Some(503), ""),
        (Some(200), "<html>"),
    ] {
        let host = request("four");
        let counts = PendingCounts::default();
        let awaiting = paused(filter.on_request_headers(&host, &counts));
        assert_eq!(
            filter.on_replay_store_answer(&host, awaiting, &answer(status, body), &counts),
            Verdict::Stop,
            "{status:?}"
        );
        assert_eq!(slug(&host), "urn:cnf-guard:problem:dpop-replay");
        assert_eq!(
            counts.drain(),
            vec![
                (Counter::ReplayStoreUnavailable, 1),
                (Counter::Denied(ProblemKind::DpopReplay), 1)
            ]
        );
        assert!(host.logged("refusing the proof (dpop.replay_store.on_unavailable: deny)"));
    }
}

#[test]
fn local_cache_only_lets_the_proof_through_counted_and_logged() {
    let filter = filter(r#", "on_unavailable": "local_cache_only""#, "enforce");
    let host = request("five");
    let counts = PendingCounts::default();
    let awaiting = paused(filter.on_request_headers(&host, &counts));
    assert_eq!(
        filter.on_replay_store_answer(&host, awaiting, &answer(Some(504), ""), &counts),
        Verdict::Continue
    );
    assert_eq!(
        counts.drain(),
        vec![
            (Counter::Allowed, 1),
            (Counter::ReplayStoreUnavailable, 1),
            (Counter::ReplayStoreFallback, 1)
        ]
    );
    assert!(host.logged("checked against this Envoy's replay cache only"));
    // A seen-before answer is still a replay: the fallback is for silence.
    let host = request("six");
    let awaiting = paused(filter.on_request_headers(&host, &counts));
    assert_eq!(
        filter.on_replay_store_answer(&host, awaiting, &answer(Some(200), SEEN_BEFORE), &counts),
        Verdict::Stop
    );
}

#[test]
fn a_call_envoy_refuses_is_an_unavailable_store_at_once() {
    let filter = filter("", "enforce");
    let counts = PendingCounts::default();
    // A host without the cluster: dispatch fails, nothing is paused.
    let host = request_on(MockHost::default(), "seven");
    assert_eq!(filter.on_request_headers(&host, &counts), Verdict::Stop);
    assert_eq!(slug(&host), "urn:cnf-guard:problem:dpop-replay");
    assert!(host.logged("the call could not be sent: bad argument"));
}

#[test]
fn dry_run_asks_the_store_and_lets_a_replay_through_as_a_would_deny() {
    let filter = filter("", "dry_run");
    let host = request("eight");
    let counts = PendingCounts::default();
    let awaiting = paused(filter.on_request_headers(&host, &counts));
    assert_eq!(
        filter.on_replay_store_answer(&host, awaiting, &answer(Some(200), SEEN_BEFORE), &counts),
        Verdict::Continue
    );
    assert_eq!(
        counts.drain(),
        vec![(Counter::DryRun(ProblemKind::DpopReplay), 1)]
    );
    assert!(host.reply().is_none());
}

#[test]
fn a_failed_local_check_never_reaches_the_store() {
    let filter = filter("", "enforce");
    let host = request("nine").with_header("dpop", "second-proof-line");
    let counts = PendingCounts::default();
    assert_eq!(filter.on_request_headers(&host, &counts), Verdict::Stop);
    assert!(host.http_calls.borrow().is_empty());
}

#[test]
fn plugin_start_names_a_cluster_envoy_does_not_have() {
    let filter = filter("", "enforce");
    let error = filter.probe_replay_store(&MockHost::default()).unwrap_err();
    assert!(error.contains("dpop.replay_store.cluster"), "{error}");
    assert!(error.ends_with("DPoP proofs are refused"), "{error}");
    let host = MockHost::default().with_cluster("replay_store");
    assert_eq!(filter.probe_replay_store(&host), Ok(()));
    assert_eq!(
        host.http_calls.borrow()[0].headers[1].1,
        "/SET/cnf_guard:dpop_jti:start-probe/1/EX/1"
    );
    // Without DPoP anywhere, no store is needed and none is probed.
    let off = Filter::new(
        Config::parse(br#"{"dpop": {"replay_store": {"cluster": "nowhere"}}}"#).unwrap(),
    );
    assert_eq!(off.probe_replay_store(&MockHost::default()), Ok(()));
}
