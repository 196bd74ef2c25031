//! Regression tests for ways around the check: a DPoP proof raced on two
//! connections (so two Envoy workers check it at once), a forwarded
//! certificate header sent twice, a second token beside the verified one,
//! and smaller gaps (DPoP behind `forward: false`, the challenge of a
//! certificate mismatch under DPoP, a skipped route leaking the forwarded
//! header, the DPoP settings in the start-up log).
//!
//! Each case states the fixed behaviour. Cases that check several requests
//! send them all and then fail once, listing every request that got another
//! answer and what it got (status, problem slug, whether the upstream saw it).

use super::assertions::{
    assert_allowed, assert_detail_contains, assert_problem, assert_problem_status,
};
use super::forwarded::{envoy_url_encoded, forged_xfcc, rfc9440};
use super::{NamedTrial, World};
use crate::support::bootstrap::{JwtAuthn, Listener};
use crate::support::client::{Request, Response};
use crate::support::dpop::{fresh_jti, now, TestKey};
use crate::support::raw_tls::{RawClient, RawRequest};
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde_json::json;
use std::io::{Read as _, Write as _};

/// The DPoP race's own listener: the `dpop` listener's configuration, with
/// its own stat prefix (so its own replay cache namespace) and no other
/// trial's connections, so its per-worker connection counters tell which
/// worker took each of the round's connections.
const RACE: &str = "bypass_dpop_race";

/// The DPoP race runs at least `RACE_ROUNDS` rounds, and goes on until
/// `RACE_ROUNDS` of them had their two connections on different workers
/// (about half do); while no proof has passed twice, until
/// `RACE_QUIET_ROUNDS` such rounds (a quiet spell can last a few hundred);
/// never more than `RACE_MAX_ROUNDS` rounds in all.
const RACE_ROUNDS: usize = 300;
const RACE_QUIET_ROUNDS: usize = 600;
const RACE_MAX_ROUNDS: usize = 2000;

/// Trials that must run alone: the DPoP race, whose outcome depends on both
/// workers being free at the same moment (another trial's traffic through
/// the shared Envoy, or its CPU use, hides the race). `tests/envoy.rs` runs
/// these while no other trial runs.
pub const RUN_ALONE: &[&str] = &["bypass::dpop_proof_raced_on_two_connections_passes_exactly_once"];

pub fn listeners() -> Vec<Listener> {
    let dpop_jwt = || JwtAuthn {
        dpop_scheme: true,
        ..JwtAuthn::default()
    };
    vec![
        Listener::new(
            RACE,
            dpop_jwt(),
            json!({"dpop": {"policy": "optional"}, "stat_prefix": RACE}).to_string(),
        ),
        // A forwarded XFCC trusted by address; the client's connection is mTLS
        // so that Envoy's FORWARD_ONLY keeps the header.
        Listener::new(
            "bypass_xfcc_by_address",
            JwtAuthn::default(),
            json!({
                "certificate": {"source": "xfcc_hash", "trusted_proxy": {"source_cidrs": ["127.0.0.1"]}},
                "stat_prefix": "bypass_xfcc_by_address",
                "rules": [{"name": "cert", "match": {"path": {"prefix": "/cert/"}}, "certificate": {
                    "source": "xfcc_cert", "trusted_proxy": {"source_cidrs": ["127.0.0.1"]}}}]
            })
            .to_string(),
        )
        .forward_client_cert(),
        // A second token beside the verified one, for each claims source.
        Listener::new("bypass_query_metadata", JwtAuthn::default(), "{}".to_owned()),
        Listener::new(
            "bypass_query_metadata_unforwarded",
            JwtAuthn {
                forward: false,
                ..JwtAuthn::default()
            },
            "{}".to_owned(),
        ),
        // `authorization_header` with `forward: true` only: with `forward:
        // false` jwt_authn removes the header after verifying it, so that
        // source would find no token on any request (every request denied
        // `authentication-failed`); it is not a configuration to test.
        Listener::new(
            "bypass_query_header_source",
            JwtAuthn {
                payload_in_metadata: None,
                ..JwtAuthn::default()
            },
            json!({"claims": {"source": "authorization_header"}, "stat_prefix": "bypass_query_header_source"})
                .to_string(),
        ),
        // DPoP behind a jwt_authn that removes the Authorization header.
        Listener::new(
            "bypass_dpop_unforwarded",
            JwtAuthn {
                forward: false,
                ..dpop_jwt()
            },
            json!({"dpop": {"policy": "optional"}, "stat_prefix": "bypass_dpop_unforwarded"})
                .to_string(),
        ),
        // A skipped route on a listener that removes the forwarded header.
        Listener::new(
            "bypass_skip_forwarded",
            JwtAuthn::default(),
            json!({
                "certificate": {
                    "source": "client_cert",
                    "trusted_proxy": {"source_cidrs": ["127.0.0.1"]},
                    "remove_header": true
                },
                "stat_prefix": "bypass_skip_forwarded",
                "rules": [{"name": "health", "match": {"route": "health"}, "skip": true}]
            })
            .to_string(),
        )
        .routes(&[("health", "/healthz"), ("api", "/")]),
    ]
}

pub fn trials() -> Vec<NamedTrial> {
    vec![
        (
            "bypass::dpop_proof_raced_on_two_connections_passes_exactly_once",
            dpop_replay_race,
        ),
        (
            "bypass::forwarded_client_cert_header_sent_twice_is_mtls_required",
            client_cert_twice,
        ),
        (
            "bypass::forwarded_pem_header_sent_twice_is_mtls_required",
            pem_header_twice,
        ),
        (
            "bypass::forwarded_der_header_sent_twice_is_mtls_required",
            der_header_twice,
        ),
        (
            "bypass::two_xfcc_lines_are_joined_by_envoy_and_the_last_element_is_checked",
            xfcc_twice,
        ),
        (
            "bypass::second_token_is_multiple_tokens_with_metadata_claims_and_forward",
            second_token_metadata_forwarded,
        ),
        (
            "bypass::second_token_without_forward_never_reaches_the_service_unchecked",
            second_token_metadata_unforwarded,
        ),
        (
            "bypass::second_token_is_multiple_tokens_with_authorization_header_claims",
            second_token_header_source,
        ),
        (
            "bypass::two_authorization_lines_are_refused_by_jwt_authn_before_the_filter",
            two_authorization_lines_refused_by_jwt_authn,
        ),
        (
            "bypass::two_authorization_lines_let_through_by_jwt_authn_are_multiple_tokens",
            two_authorization_lines_reaching_the_filter,
        ),
        (
            "bypass::a_single_token_in_the_query_string_passes",
            single_query_token_passes,
        ),
        (
            "bypass::dpop_behind_jwt_authn_without_forward_is_dpop_required_naming_forward_true",
            dpop_without_forward,
        ),
        (
            "bypass::dpop_certificate_mismatch_of_a_dual_bound_token_is_challenged_with_dpop",
            dual_bound_mismatch_challenge,
        ),
        (
            "bypass::skipped_route_still_removes_the_forwarded_certificate_header",
            skipped_route_removes_header,
        ),
        (
            "bypass::startup_log_names_the_dpop_settings",
            startup_log_names_dpop_settings,
        ),
    ]
}

// ---- helpers -------------------------------------------------------------------

/// What a response was, in a line: status, problem slug, upstream reached.
fn observed(world: &World, response: &Response) -> String {
    let slug = if response.header("content-type") == Some("application/problem+json") {
        serde_json::from_str::<serde_json::Value>(&response.body)
            .ok()
            .and_then(|d| d["type"].as_str().map(str::to_owned))
            .map(|t| t.rsplit(':').next().unwrap_or_default().to_owned())
            .unwrap_or_else(|| "?".to_owned())
    } else {
        format!("{:?}", response.body.chars().take(60).collect::<String>())
    };
    let detail = serde_json::from_str::<serde_json::Value>(&response.body)
        .ok()
        .and_then(|d| d["detail"].as_str().map(str::to_owned))
        .map(|d| format!(" detail={d:?}"))
        .unwrap_or_default();
    format!(
        "{} {slug}{detail} upstream={}",
        response.status,
        if world.upstream.saw(&response.request_id) {
            "reached"
        } else {
            "not reached"
        }
    )
}

/// Several requests checked one by one; `finish` fails once with all the misses.
struct Cases<'w> {
    world: &'w World,
    total: usize,
    failures: Vec<String>,
}

impl<'w> Cases<'w> {
    fn new(world: &'w World) -> Cases<'w> {
        Cases {
            world,
            total: 0,
            failures: Vec::new(),
        }
    }

    fn check(&mut self, name: &str, response: &Response, check: impl FnOnce(&World, &Response)) {
        self.total += 1;
        let world = self.world;
        let outcome =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| check(world, response)));
        if outcome.is_err() {
            self.failures
                .push(format!("{name}: got {}", observed(world, response)));
        }
    }

    fn finish(self) {
        assert!(
            self.failures.is_empty(),
            "{} of {} requests:\n{}",
            self.failures.len(),
            self.total,
            self.failures.join("\n")
        );
    }
}

/// Sends `headers` (in order, repeats kept) over HTTP/1.1 with the raw
/// client and over HTTP/2 with curl; returns (version, response) pairs.
fn both_versions(
    world: &World,
    listener: &str,
    path: &str,
    certificate: Option<u8>,
    headers: &[(&'static str, String)],
) -> Vec<(&'static str, Response)> {
    let port = world.envoy.port(listener);
    let mut raw = RawRequest::get(path);
    for (name, value) in headers {
        raw = raw.header(name, value.clone());
    }
    let http1 = RawClient::new(&world.material).send(port, certificate, &raw);
    let mut curl = Request::new(port)
        .path(path)
        .certificate(certificate)
        .http2(true);
    for (name, value) in headers {
        curl = curl.header(name, value.clone());
    }
    let http2 = world.client.send(curl);
    assert_eq!(http2.version, "HTTP/2", "{http2:?}");
    vec![("HTTP/1.1", http1), ("HTTP/2", http2)]
}

fn bearer(token: &str) -> (&'static str, String) {
    ("authorization", format!("Bearer {token}"))
}

// ---- 1. a DPoP proof raced over two workers -----------------------------------------

/// Connections accepted so far by each of the listener's workers, from
/// Envoy's per-worker listener counters, if it has them.
fn connections_per_worker(world: &World) -> Option<[u64; 2]> {
    // Over a plain socket: a curl process per round would compete with the
    // workers for the CPU.
    let mut admin = std::net::TcpStream::connect(("127.0.0.1", world.envoy.admin_port)).ok()?;
    write!(
        admin,
        "GET /stats?filter=listener.{RACE}.worker_ HTTP/1.1\r\nhost: admin\r\nconnection: close\r\n\r\n"
    )
    .ok()?;
    let mut stats = String::new();
    admin.read_to_string(&mut stats).ok()?;
    let read = |worker: u8| {
        let name = format!("listener.{RACE}.worker_{worker}.downstream_cx_total: ");
        stats
            .lines()
            .find_map(|line| line.strip_prefix(name.as_str()))
            .and_then(|value| value.trim().parse().ok())
    };
    Some([read(0)?, read(1)?])
}

/// RFC 9449 §11.1: a proof is good once. Envoy runs with `--concurrency 2`
/// and the kernel spreads new connections over both workers (SO_REUSEPORT),
/// so two copies of a proof written back to back on two connections are
/// often checked by two workers at the same moment. Exactly one may pass.
///
/// Each round: a fresh proof (same key and token), two connections with
/// client 1's certificate, both handshakes complete, then the same request
/// encrypted for both and written on both back to back, then both answers
/// read. Envoy's per-worker connection counters of this listener tell
/// whether the round's connections were on different workers (a race is
/// only possible then). Each worker is pinned to its own CPU for the race
/// (where `taskset` can): unpinned, the kernel often runs both on one CPU
/// (it wakes a thread where its waker ran), they take turns, and in some
/// runs the race showed in under one round in a hundred.
fn dpop_replay_race(world: &World) {
    let port = world.envoy.port(RACE);
    let (key, token) = &world.tokens.dpop.bound[0];
    assert_eq!(key.alg(), "ES256");
    let client = RawClient::new(&world.material);
    let htu = format!("https://localhost:{port}/orders/7");
    let authorization = format!("DPoP {token}");

    let (mut rounds, mut once, mut twice) = (0usize, 0usize, 0usize);
    let mut other: Vec<String> = Vec::new();
    // Rounds on different workers, and double passes among them; None once
    // a round's workers could not be told.
    let mut split: Option<(usize, usize)> = Some((0, 0));
    // Each worker on its own CPU for the race (undone when this drops).
    let pinning = world.envoy.pin_workers();
    let mut before = connections_per_worker(world);
    let enough = |split: Option<(usize, usize)>, twice: usize| match split {
        Some((n, _)) => n >= RACE_ROUNDS && (twice > 0 || n >= RACE_QUIET_ROUNDS),
        None => true,
    };
    while rounds < RACE_ROUNDS || (rounds < RACE_MAX_ROUNDS && !enough(split, twice)) {
        rounds += 1;
        let proof = key.proof("GET", &htu, token, now(), &fresh_jti());
        let request = RawRequest::get("/orders/7")
            .header("authorization", authorization.clone())
            .header("dpop", proof);
        let mut first = client.connect(port, Some(1));
        let mut second = client.connect(port, Some(1));
        let after = connections_per_worker(world);
        let different_workers = match (before, after) {
            (Some(b), Some(a)) if a[0] + a[1] == b[0] + b[1] + 2 => Some(a[0] - b[0] == 1),
            _ => None,
        };
        before = after;
        first.write(port, &request);
        second.write(port, &request);
        // Both encrypted above; now sent back to back, then both answers read.
        first.flush();
        second.flush();
        let answers = [first.read_response(), second.read_response()];

        let passed = |r: &Response| r.status == 200 && world.upstream.saw(&r.request_id);
        let replay = |r: &Response| {
            r.status == 401
                && !world.upstream.saw(&r.request_id)
                && r.body.contains("\"urn:cnf-guard:problem:dpop-replay\"")
        };
        let [a, b] = &answers;
        let both = passed(a) && passed(b);
        if (passed(a) && replay(b)) || (replay(a) && passed(b)) {
            once += 1;
        } else if both {
            twice += 1;
        } else {
            other.push(format!(
                "round {rounds}: [{}] [{}]",
                observed(world, a),
                observed(world, b)
            ));
        }
        split = match (split, different_workers) {
            (Some((n, doubles)), Some(true)) => Some((n + 1, doubles + usize::from(both))),
            (Some(counts), Some(false)) => Some(counts),
            _ => None,
        };
    }
    let workers = match split {
        Some((n, doubles)) => {
            format!("{n} rounds had their connections on different workers ({doubles} of the double passes)")
        }
        None => "which worker took which connection could not be told".to_owned(),
    };
    let pinned = match &pinning {
        Ok(pinned) => format!("workers pinned ({pinned})"),
        Err(why) => format!("workers not pinned ({why})"),
    };
    let summary = format!(
        "DPoP race: {rounds} rounds, {once} passed once, {twice} passed twice, {} otherwise; {workers}; {pinned}",
        other.len()
    );
    assert!(
        twice == 0 && other.is_empty(),
        "{summary}\n{}",
        other.join("\n")
    );
    eprintln!("{summary}");
}

// ---- 2. a forwarded certificate header sent twice ---------------------------------

/// The header twice, as two lines: client 1's certificate then client 2's,
/// and the other way round, with client 1's token. A proxy writes one line;
/// two mean someone else wrote one, and neither can be believed.
fn forwarded_twice(
    world: &World,
    header: &'static str,
    path: &str,
    value: impl Fn(usize) -> String,
) {
    let mut cases = Cases::new(world);
    for order in [[1, 2], [2, 1]] {
        let headers = vec![
            bearer(&world.tokens.bound_1),
            (header, value(order[0])),
            (header, value(order[1])),
        ];
        for (version, response) in
            both_versions(world, "forwarded_by_address", path, None, &headers)
        {
            cases.check(
                &format!("{header} lines for clients {order:?} over {version}"),
                &response,
                |world, response| {
                    let document = assert_problem(world, response, "mtls-required");
                    assert_detail_contains(&document, "lines; exactly one is expected");
                },
            );
        }
    }
    cases.finish();
}

fn client_cert_twice(world: &World) {
    forwarded_twice(world, "client-cert", "/", |n| rfc9440(world, n));
}

fn pem_header_twice(world: &World) {
    forwarded_twice(world, "x-amzn-mtls-clientcert", "/pem/x", |n| {
        envoy_url_encoded(&world.pki.clients[n - 1].cert_pem)
    });
}

fn der_header_twice(world: &World) {
    forwarded_twice(world, "x-client-cert-der", "/der/x", |n| {
        STANDARD.encode(&world.pki.clients[n - 1].cert_der)
    });
}

/// Envoy joins repeated `x-forwarded-client-cert` lines into one value, `,`
/// between them (it is one of its inline headers), so the filter sees one
/// XFCC whose last element is the second line's. A pin of Envoy's behaviour.
fn xfcc_twice(world: &World) {
    let mut cases = Cases::new(world);
    for path in ["/", "/cert/x"] {
        for (order, expect_pass) in [([1, 2], false), ([2, 1], true)] {
            let lines = [forged_xfcc(world, order[0]), forged_xfcc(world, order[1])];
            let headers = vec![
                bearer(&world.tokens.bound_1),
                ("x-forwarded-client-cert", lines[0].clone()),
                ("x-forwarded-client-cert", lines[1].clone()),
            ];
            let joined = lines.join(",");
            for (version, response) in
                both_versions(world, "bypass_xfcc_by_address", path, Some(2), &headers)
            {
                cases.check(
                    &format!("XFCC lines for clients {order:?} on {path} over {version}"),
                    &response,
                    |world, response| {
                        if expect_pass {
                            assert_allowed(world, response);
                            assert_eq!(
                                world
                                    .upstream
                                    .header(&response.request_id, "x-forwarded-client-cert")
                                    .as_deref(),
                                Some(joined.as_str()),
                                "the upstream saw another XFCC than the joined lines"
                            );
                        } else {
                            assert_problem(world, response, "mtls-binding-mismatch");
                        }
                    },
                );
            }
        }
    }
    cases.finish();
}

// ---- 3. a second token -----------------------------------------------------------

/// Client 2 with its own token and client 1's (stolen) token beside it, in
/// the places jwt_authn's default extraction looks (the `Authorization:
/// Bearer` header and the `access_token` query parameter): each request
/// carries two tokens, which is `multiple-tokens` (400, `invalid_request`),
/// whichever of them jwt_authn's metadata or the header would show.
/// (Two `Authorization` lines are below: jwt_authn answers them itself.)
fn second_token(world: &World, listener: &'static str) {
    second_token_expecting(world, listener, expect_multiple_tokens);
}

/// With `forward: false`, Envoy 1.31 and later have jwt_authn remove every
/// token it extracted, the query parameter included, before cnf-guard runs:
/// cnf-guard then sees one token at most, and the service none. Either the
/// request is `multiple-tokens` (an Envoy that leaves the query token), or it
/// passes on the checked token and reaches the service with no token at all.
fn expect_no_unchecked_token_upstream(world: &World, response: &Response) {
    if response.status == 400 {
        return expect_multiple_tokens(world, response);
    }
    if !world.upstream.saw(&response.request_id) {
        // Denied for the checked token (the stolen one in the header).
        assert_problem(world, response, "mtls-binding-mismatch");
        return;
    }
    assert_eq!(response.status, 200, "{response:?}");
    let path = world
        .upstream
        .header(&response.request_id, ":path")
        .unwrap_or_default();
    assert!(
        !path.contains("access_token"),
        "the service got a token: {path}"
    );
    assert_eq!(
        world.upstream.header(&response.request_id, "authorization"),
        None
    );
}

fn second_token_expecting(world: &World, listener: &'static str, expect: fn(&World, &Response)) {
    let (bound_1, bound_2) = (&world.tokens.bound_1, &world.tokens.bound_2);
    let port = world.envoy.port(listener);
    let mut cases = Cases::new(world);
    let query_cases = [
        (
            "Bearer bound_2 + ?access_token=bound_1",
            format!("/orders?access_token={bound_1}"),
            Some(bound_2),
        ),
        (
            "Bearer bound_1 + ?access_token=bound_2",
            format!("/orders?access_token={bound_2}"),
            Some(bound_1),
        ),
        (
            "?access_token=bound_2&access_token=bound_1",
            format!("/orders?access_token={bound_2}&access_token={bound_1}"),
            None,
        ),
    ];
    for (name, path, header) in &query_cases {
        for http2 in [false, true] {
            let mut request = Request::new(port)
                .path(path)
                .certificate(Some(2))
                .http2(http2);
            if let Some(token) = header {
                request = request.bearer(token);
            }
            let response = world.client.send(request);
            let version = if http2 { "HTTP/2" } else { "HTTP/1.1" };
            cases.check(&format!("{name} over {version}"), &response, expect);
        }
    }
    cases.finish();
}

/// `multiple-tokens`: 400, `error="invalid_request"`, the upstream not reached.
fn expect_multiple_tokens(world: &World, response: &Response) {
    assert_problem_status(world, response, 400, "multiple-tokens");
    let challenges: Vec<&str> = response
        .headers
        .iter()
        .filter(|(name, _)| name == "www-authenticate")
        .map(|(_, value)| value.as_str())
        .collect();
    assert!(
        challenges
            .iter()
            .any(|c| c.contains("error=\"invalid_request\"")),
        "{challenges:?}"
    );
}

fn second_token_metadata_forwarded(world: &World) {
    second_token(world, "bypass_query_metadata");
}

fn second_token_metadata_unforwarded(world: &World) {
    second_token_expecting(
        world,
        "bypass_query_metadata_unforwarded",
        expect_no_unchecked_token_upstream,
    );
}

fn second_token_header_source(world: &World) {
    second_token(world, "bypass_query_header_source");
}

/// Two `Authorization` lines: Envoy joins them into one value (`Bearer
/// <bound_2>,Bearer <bound_1>`), which jwt_authn cannot parse, so on a
/// listener whose requirement rejects failed tokens jwt_authn answers 401
/// itself (text/plain) and cnf-guard never runs. A pin of Envoy's behaviour.
fn two_authorization_lines_refused_by_jwt_authn(world: &World) {
    let (bound_1, bound_2) = (&world.tokens.bound_1, &world.tokens.bound_2);
    let mut cases = Cases::new(world);
    for listener in [
        "bypass_query_metadata",
        "bypass_query_metadata_unforwarded",
        "bypass_query_header_source",
    ] {
        let lines = [bearer(bound_2), bearer(bound_1)];
        for (version, response) in both_versions(world, listener, "/orders", Some(2), &lines) {
            cases.check(
                &format!("{listener}: two Authorization lines over {version}"),
                &response,
                |world, response| {
                    assert_eq!(response.status, 401);
                    assert!(
                        response
                            .body
                            .starts_with("Jwt is not in the form of Header.Payload.Signature"),
                        "{:?}",
                        response.body
                    );
                    assert!(!world.upstream.saw(&response.request_id));
                },
            );
        }
    }
    cases.finish();
}

/// Two `Authorization` lines where jwt_authn lets its failures through to
/// cnf-guard (`allow_missing_or_failed` with `failed_status_in_metadata`,
/// the `failures` listener): the filter sees two tokens, `multiple-tokens`.
fn two_authorization_lines_reaching_the_filter(world: &World) {
    let (bound_1, bound_2) = (&world.tokens.bound_1, &world.tokens.bound_2);
    let mut cases = Cases::new(world);
    let lines = [bearer(bound_2), bearer(bound_1)];
    for (version, response) in both_versions(world, "failures", "/orders", Some(2), &lines) {
        cases.check(
            &format!("failures: two Authorization lines over {version}"),
            &response,
            expect_multiple_tokens,
        );
    }
    cases.finish();
}

/// The control: one token, only in the query string, is an ordinary request.
fn single_query_token_passes(world: &World) {
    let port = world.envoy.port("bypass_query_metadata");
    let path = format!("/orders?access_token={}", world.tokens.bound_2);
    for http2 in [false, true] {
        let response = world.client.send(
            Request::new(port)
                .path(&path)
                .certificate(Some(2))
                .http2(http2),
        );
        assert_allowed(world, &response);
    }
}

// ---- 4. smaller gaps ---------------------------------------------------------------

fn dpop_request(world: &World, listener: &str, key: &TestKey, token: &str) -> Request<'static> {
    let port = world.envoy.port(listener);
    let htu = format!("https://localhost:{port}/orders/7");
    Request::new(port)
        .path("/orders/7")
        .header("authorization", format!("DPoP {token}"))
        .header("dpop", key.proof("GET", &htu, token, now(), &fresh_jti()))
}

/// jwt_authn with `forward: false` removes the Authorization header, so the
/// proof's `ath` cannot be checked: the denial must say what to change.
fn dpop_without_forward(world: &World) {
    let (key, token) = &world.tokens.dpop.bound[0];
    let response = world
        .client
        .send(dpop_request(world, "bypass_dpop_unforwarded", key, token));
    let document = assert_problem(world, &response, "dpop-required");
    assert_detail_contains(&document, "forward: true");
}

/// A token bound to client 1's certificate and to the DPoP key, sent the DPoP
/// way with a valid proof over client 2's connection: the certificate binding
/// fails, and the challenge is the scheme the request used (RFC 9449 §7.1).
fn dual_bound_mismatch_challenge(world: &World) {
    let key = &world.tokens.dpop.bound[0].0;
    let request = dpop_request(world, "dpop", key, &world.tokens.dpop.dual).certificate(Some(2));
    let response = world.client.send(request);
    assert_problem(world, &response, "mtls-binding-mismatch");
    let challenges: Vec<&str> = response
        .headers
        .iter()
        .filter(|(name, _)| name == "www-authenticate")
        .map(|(_, value)| value.as_str())
        .collect();
    assert!(
        !challenges.is_empty() && challenges.iter().all(|c| c.starts_with("DPoP ")),
        "{challenges:?}"
    );
}

/// `remove_header: true` promises the upstream never sees the forwarded
/// certificate; a `skip` rule must not break that promise.
fn skipped_route_removes_header(world: &World) {
    let port = world.envoy.port("bypass_skip_forwarded");
    for path in ["/healthz", "/orders"] {
        let response = world.client.send(
            Request::new(port)
                .path(path)
                .certificate(None)
                .bearer(&world.tokens.bound_1)
                .header("client-cert", rfc9440(world, 1)),
        );
        assert_allowed(world, &response);
        assert_eq!(
            world.upstream.header(&response.request_id, "client-cert"),
            None,
            "{path}: the upstream saw the forwarded certificate"
        );
    }
}

/// The `configured:` line of the `dpop` listener's plugin shows the DPoP
/// settings in force, not only the policy.
fn startup_log_names_dpop_settings(world: &World) {
    let log = world.envoy.log();
    // Envoy prefixes plugin logs with the root and VM ids only, the same for
    // every listener here: the `dpop` listener's line is the one with its
    // stat prefix.
    let lines: Vec<&str> = log
        .lines()
        .filter(|line| {
            line.contains("configured:")
                && line
                    .split_whitespace()
                    .any(|word| word == "stat_prefix=dpop")
        })
        .collect();
    assert!(
        !lines.is_empty(),
        "no configured: line with stat_prefix=dpop"
    );
    for line in lines {
        for needle in [
            "dpop.algorithms=",
            "dpop.replay_cache_capacity=",
            "dpop.nonce=",
        ] {
            assert!(line.contains(needle), "{needle} not in {line}");
        }
    }
}
