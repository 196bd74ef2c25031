//! DPoP replay protection across a fleet (issue 16), end to end: two or
//! three cnf-guard replicas, each its own Envoy with its own replay cache,
//! behind a front Envoy that load-balances over them; DPoP clients that make
//! a fresh proof per request and follow RFC 9449's nonce retry; an attacker
//! who replays captured proofs through the front.
//!
//! Each trial builds its own fleet on loopback ports and stops every process
//! it started. Besides what it asserts, each configuration prints one line
//! of figures (`fleet-figures: …`) for docs/dpop-across-replicas.md:
//! `cargo test --test fleet 2>&1 | grep fleet-figures`.
//!
//! `fleet::` trials need only the module; `store::` trials need the shared
//! replay store (`dpop.replay_store`) in the module, a real redis-server and
//! webdis.

// Test tooling: a failed expectation panics, which is how a test reports.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod support;

#[path = "support/fleet.rs"]
mod fleet;

use fleet::{
    get, replay, replica_of, replicas, slug, Balancer, Captured, DpopClient, Entry, Front, Outcome,
    Replica, Store, Tally, Turns,
};
use libtest_mimic::{Arguments, Failed, Trial};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use support::client::Response;
use support::envoy::Envoy;
use support::material::{write, Issuer};
use support::upstream::Upstream;

/// What every trial shares: the token issuer (its JWKS is what each
/// replica's jwt_authn trusts) and the recording upstream behind the
/// replicas. No Envoy: each trial starts its own.
struct World {
    _dir: tempfile::TempDir,
    issuer: Issuer,
    material: PathBuf,
    upstream: Upstream,
}

fn build_world() -> World {
    let dir = tempfile::tempdir().expect("tempdir");
    let material = dir.path().join("material");
    let issuer = Issuer::new();
    write(&material, "jwks.json", &issuer.jwks());
    World {
        _dir: dir,
        issuer,
        material,
        upstream: Upstream::start(),
    }
}

type NamedTrial = (&'static str, fn(&World));

fn trials() -> Vec<NamedTrial> {
    vec![
        (
            "fleet::round_robin_without_nonces_a_captured_proof_passes_once_at_every_other_replica",
            round_robin_without_nonces,
        ),
        (
            "fleet::round_robin_with_per_replica_nonces_each_proof_once_at_a_cost_in_round_trips",
            round_robin_with_per_replica_nonces,
        ),
        (
            "fleet::round_robin_with_a_shared_nonce_secret_no_churn_and_the_gap_reopens",
            round_robin_with_a_shared_nonce_secret,
        ),
        (
            "fleet::ring_hash_on_authorization_each_proof_once",
            ring_hash_on_authorization,
        ),
        (
            "fleet::maglev_on_authorization_each_proof_once",
            maglev_on_authorization,
        ),
        (
            "fleet::affinity_a_respelled_authorization_header_does_not_carry_a_replay_elsewhere",
            respelled_authorization,
        ),
        (
            "fleet::ring_movement_a_moved_token_s_proofs_pass_once_more",
            ring_movement,
        ),
        (
            "store::round_robin_with_the_shared_store_each_proof_once",
            round_robin_with_the_shared_store,
        ),
        (
            "store::two_replicas_racing_on_one_proof_only_one_passes",
            racing_replicas_with_the_store,
        ),
        (
            "store::a_store_that_is_down_fails_closed",
            store_down_fails_closed,
        ),
        (
            "store::a_store_that_is_down_with_local_cache_only_falls_back_counted_and_logged",
            store_down_local_cache_only,
        ),
        (
            "store::a_store_that_does_not_answer_within_timeout_ms_fails_closed",
            store_slow_fails_closed,
        ),
        (
            "store::an_unknown_store_cluster_is_an_error_line_at_start_and_refuses_every_proof",
            unknown_store_cluster,
        ),
    ]
}

fn main() {
    let args = Arguments::from_args();
    let world: Arc<OnceLock<World>> = Arc::new(OnceLock::new());
    let trials = trials()
        .into_iter()
        .map(|(name, test)| {
            let world = Arc::clone(&world);
            Trial::test(name, move || {
                test(world.get_or_init(build_world));
                Ok::<(), Failed>(())
            })
        })
        .collect();
    let conclusion = libtest_mimic::run(&args, trials);
    // `exit` skips destructors: remove the world's directory first.
    drop(Arc::try_unwrap(world).ok().and_then(OnceLock::into_inner));
    conclusion.exit();
}

// ---- the fleet ------------------------------------------------------------------

const THREE: [&str; 3] = ["r1", "r2", "r3"];
const TWO: [&str; 2] = ["r1", "r2"];

fn dpop(block: Value) -> Value {
    json!({ "dpop": block })
}

fn no_nonces() -> Value {
    dpop(json!({"policy": "required"}))
}

fn start_replicas(world: &World, names: &[&str], config: &Value) -> Vec<Replica> {
    replicas(names, &world.material, world.upstream.port, config, None)
}

fn refs(replicas: &[Replica]) -> Vec<&Replica> {
    replicas.iter().collect()
}

fn replica<'a>(replicas: &'a [Replica], name: &str) -> &'a Replica {
    replicas
        .iter()
        .find(|r| r.name == name)
        .unwrap_or_else(|| panic!("no replica {name}"))
}

fn clients(world: &World, count: usize) -> Vec<DpopClient> {
    (0..count)
        .map(|id| DpopClient::new(&world.issuer, id))
        .collect()
}

/// Every client makes one request in turn, then `requests` more are made by
/// clients drawn in a seeded random order (as many clients' requests
/// interleave at a balancer). Returns the proofs accepted.
fn run_clients(
    clients: &mut [DpopClient],
    entry: &Entry,
    requests: usize,
    tally: &mut Tally,
) -> Vec<Captured> {
    let mut turns = Turns::seeded(0x9449);
    let order: Vec<usize> = (0..clients.len())
        .chain((0..requests).map(|_| turns.next_below(clients.len())))
        .collect();
    order
        .into_iter()
        .filter_map(|i| match clients[i].request(entry, tally) {
            Outcome::Accepted(captured) => Some(captured),
            Outcome::Refused(_) => None,
        })
        .collect()
}

/// Replays every captured proof `times` times; returns, per proof, the
/// replicas that accepted a replay.
fn replay_all(
    entry: &Entry,
    captured: &[Captured],
    times: usize,
    tally: &mut Tally,
) -> Vec<Vec<String>> {
    captured
        .iter()
        .map(|c| replay(entry, c, times, tally))
        .collect()
}

/// Every client on a thread of its own, `per_client` requests each, all at
/// once through one front: the order in which requests (and retries) reach
/// the balancer is the scheduler's, as with real clients.
fn run_concurrently(
    clients: Vec<DpopClient>,
    entry: &Entry,
    per_client: usize,
    tally: &mut Tally,
) -> Vec<Captured> {
    let results: Vec<(Tally, Vec<Captured>)> = std::thread::scope(|scope| {
        let handles: Vec<_> = clients
            .into_iter()
            .map(|mut client| {
                scope.spawn(move || {
                    let mut own = Tally::default();
                    let captured: Vec<Captured> = (0..per_client)
                        .filter_map(|_| match client.request(entry, &mut own) {
                            Outcome::Accepted(captured) => Some(captured),
                            Outcome::Refused(_) => None,
                        })
                        .collect();
                    (own, captured)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("client thread"))
            .collect()
    });
    let mut all = Vec::new();
    for (own, captured) in results {
        tally.absorb(own);
        all.extend(captured);
    }
    all
}

fn assert_problem(response: &Response, expected: &str) {
    assert_eq!(response.status, 401, "{response:?}");
    assert_eq!(slug(response).as_deref(), Some(expected), "{response:?}");
}

fn only_refusals(tally: &Tally, allowed: &[&str]) {
    for slug in tally.replay_refusals.keys() {
        assert!(
            allowed.contains(&slug.as_str()),
            "a replay was refused as {slug}: {:?}",
            tally.replay_refusals
        );
    }
}

// ---- 1. round robin, no nonces ----------------------------------------------------

/// The documented gap, pinned: each replica has its own cache, so a proof
/// captured in flight passes once at every replica that has not seen it,
/// replicas - 1 times in all, with two replicas and with three.
fn round_robin_without_nonces(world: &World) {
    for names in [&TWO[..], &THREE[..]] {
        let n = names.len();
        let replicas = start_replicas(world, names, &no_nonces());
        let front = Front::start(Balancer::RoundRobin, &refs(&replicas));
        let entry = front.entry();
        let mut tally = Tally::default();
        let captured = run_clients(&mut clients(world, 4), &entry, 26, &mut tally);
        assert_eq!((tally.failed, tally.extra_round_trips), (0, 0), "{tally:?}");
        assert_eq!(captured.len(), 30);
        // Round robin over n: each replica receives a proof's replays twice.
        for (proof, accepted) in
            captured
                .iter()
                .zip(replay_all(&entry, &captured, 2 * n, &mut tally))
        {
            let distinct: BTreeSet<&String> = accepted.iter().collect();
            assert_eq!(
                accepted.len(),
                n - 1,
                "accepted once at each other replica: {accepted:?} (first at {})",
                proof.replica
            );
            assert_eq!(distinct.len(), accepted.len(), "{accepted:?}");
            assert!(!accepted.contains(&proof.replica), "{accepted:?}");
        }
        assert_eq!(tally.replays_accepted, (n as u64 - 1) * 30);
        only_refusals(&tally, &["dpop-replay"]);
        tally.report("round robin, no nonces", n, front.balancer.label(), "off");
    }
}

// ---- 2. round robin, per-replica nonces ------------------------------------------

/// Per-replica nonce keys confine a proof to the replica whose nonce it
/// carries, whose cache then sees every replay: no replay passes. The price
/// is the churn: a client holding one replica's nonce is sent to another,
/// and its one retry (RFC 9449 §8) goes to yet another as often as not.
fn round_robin_with_per_replica_nonces(world: &World) {
    for names in [&TWO[..], &THREE[..]] {
        let n = names.len();
        let replicas = start_replicas(
            world,
            names,
            &dpop(json!({"policy": "required", "nonce": {"enabled": true}})),
        );
        let front = Front::start(Balancer::RoundRobin, &refs(&replicas));
        let entry = front.entry();
        let lb = front.balancer.label();

        // A lone client behind strict round robin: its retry always lands on
        // the replica after the one whose nonce it was just given.
        let mut alone = Tally::default();
        let mut lone = DpopClient::new(&world.issuer, 100);
        for _ in 0..15 {
            match lone.request(&entry, &mut alone) {
                Outcome::Refused(response) => assert_problem(&response, "dpop-nonce-required"),
                Outcome::Accepted(c) => panic!("a lone client got through at {}", c.replica),
            }
        }
        assert_eq!(
            (alone.ok, alone.extra_round_trips, alone.nonce_401s),
            (0, 15, 30),
            "{alone:?}"
        );
        alone.report(
            "round robin, per-replica nonces, one client alone",
            n,
            lb,
            "per_replica",
        );

        // Eight clients taking turns in a random order, one request at a
        // time: a retry still follows its 401 at once, to the next replica.
        let mut turns = Tally::default();
        let captured = run_clients(&mut clients(world, 8), &entry, 92, &mut turns);
        // Over two replicas nothing ever passes: every request fails in two
        // slots, so each client holds the nonce of one parity of slots and
        // always lands on the other. Over three, a client lands on the
        // replica of its nonce now and then.
        if n == 2 {
            assert_eq!(turns.ok, 0, "{turns:?}");
        } else {
            assert!(turns.ok > 0, "{turns:?}");
        }
        // Eight clients at once: other clients' requests come between a 401
        // and its retry.
        let mut together = Tally::default();
        let captured_together = run_concurrently(clients(world, 8), &entry, 12, &mut together);
        for (label, tally, captured) in [
            ("8 clients taking turns", &mut turns, &captured),
            ("8 clients at once", &mut together, &captured_together),
        ] {
            assert!(tally.extra_round_trips > 0, "{label}: no churn? {tally:?}");
            // The attacker replays every proof that got through.
            let accepted = replay_all(&entry, captured, 2 * n, tally);
            assert!(
                accepted.iter().all(Vec::is_empty),
                "{label}: a replay passed: {accepted:?}"
            );
            only_refusals(tally, &["dpop-replay", "dpop-nonce-required"]);
            tally.report(
                &format!("round robin, per-replica nonces, {label}"),
                n,
                lb,
                "per_replica",
            );
        }
    }
}

// ---- 3. round robin, shared nonce secret ----------------------------------------

fn round_robin_with_a_shared_nonce_secret(world: &World) {
    use base64::Engine as _;
    let mut secret = [0u8; 32];
    getrandom::getrandom(&mut secret).expect("random");
    let secret = base64::engine::general_purpose::STANDARD.encode(secret);
    let replicas = start_replicas(
        world,
        &THREE,
        &dpop(json!({"policy": "required", "nonce": {"enabled": true, "secret": secret}})),
    );
    let front = Front::start(Balancer::RoundRobin, &refs(&replicas));
    let entry = front.entry();
    let mut tally = Tally::default();
    let mut clients = clients(world, 4);
    let captured = run_clients(&mut clients, &entry, 26, &mut tally);
    // One round trip per client, for its first nonce; none after.
    assert_eq!(tally.failed, 0, "{tally:?}");
    assert_eq!(
        tally.extra_round_trips,
        clients.len() as u64,
        "churn: {tally:?}"
    );
    for (proof, accepted) in
        captured
            .iter()
            .zip(replay_all(&entry, &captured, 2 * THREE.len(), &mut tally))
    {
        assert_eq!(
            accepted.len(),
            THREE.len() - 1,
            "a nonce good everywhere: once at each other replica: {accepted:?} (first at {})",
            proof.replica
        );
    }
    assert!(tally.replays_accepted > 0);
    only_refusals(&tally, &["dpop-replay"]);
    tally.report(
        "round robin, shared nonce secret",
        THREE.len(),
        front.balancer.label(),
        "shared_secret",
    );
}

// ---- 4. ring hash on the Authorization header -------------------------------------

/// A proof is bound to its token (`ath`), so a replay carries the same
/// `Authorization`, and a balancer hashing on it sends the replay to the
/// replica that saw the proof.
fn ring_hash_on_authorization(world: &World) {
    affinity(world, Balancer::RingHashOnAuthorization);
}

fn maglev_on_authorization(world: &World) {
    affinity(world, Balancer::MaglevOnAuthorization);
}

fn affinity(world: &World, balancer: Balancer) {
    let replicas = start_replicas(world, &THREE, &no_nonces());
    let front = Front::start(balancer, &refs(&replicas));
    let entry = front.entry();
    let mut tally = Tally::default();
    let captured = run_clients(&mut clients(world, 6), &entry, 54, &mut tally);
    assert_eq!((tally.failed, tally.extra_round_trips), (0, 0), "{tally:?}");
    // Affinity: each token's requests all land on one replica.
    let mut home: BTreeMap<usize, BTreeSet<&str>> = BTreeMap::new();
    for c in &captured {
        home.entry(c.client).or_default().insert(&c.replica);
    }
    assert!(home.values().all(|r| r.len() == 1), "{home:?}");
    let accepted = replay_all(&entry, &captured, 2 * THREE.len(), &mut tally);
    assert!(
        accepted.iter().all(Vec::is_empty),
        "a replay passed: {accepted:?}"
    );
    only_refusals(&tally, &["dpop-replay"]);
    tally.report(
        "affinity on authorization, no nonces",
        THREE.len(),
        front.balancer.label(),
        "off",
    );
}

/// The attacker's way around affinity: the same token in another spelling
/// of the header (`DPoP  <token>`, which jwt_authn accepts) hashes to
/// another replica, whose cache never saw the proof. cnf-guard accepts only
/// `DPoP <token>`, so every respelled replay is refused wherever it lands.
fn respelled_authorization(world: &World) {
    let replicas = start_replicas(world, &THREE, &no_nonces());
    let front = Front::start(Balancer::RingHashOnAuthorization, &refs(&replicas));
    let entry = front.entry();
    let mut tally = Tally::default();
    let captured = run_clients(&mut clients(world, 3), &entry, 6, &mut tally);
    let mut landed_elsewhere = 0;
    for c in &captured {
        let token = c.authorization.strip_prefix("DPoP ").expect("DPoP scheme");
        for spaces in 2..=7 {
            let respelled = format!("DPoP{}{token}", " ".repeat(spaces));
            let response = get(&entry, &[("authorization", &respelled), ("dpop", &c.proof)]);
            assert_eq!(
                response.status, 401,
                "a respelled replay passed: {response:?}"
            );
            if replica_of(&response) != c.replica {
                landed_elsewhere += 1;
                assert_problem(&response, "dpop-proof-invalid");
            }
        }
    }
    // Else this would prove nothing: the spellings must move replays.
    assert!(landed_elsewhere > 0, "every respelled replay hashed home");
}

// ---- 5. ring movement -------------------------------------------------------------

/// The replica set changes (a replica added, then removed): a token whose
/// place on the ring moved lands on a replica that never saw its recent
/// proofs, and each of them passes there once, while its `iat` is fresh.
/// Two fronts over the same replicas stand for the balancer before and
/// after; the replicas name one `external_origin`, so a proof is good
/// through either. Ring hash and Maglev each.
fn ring_movement(world: &World) {
    const ORIGIN: &str = "https://api.cnf-guard.test";
    const TOKENS: usize = 120;
    let replicas = start_replicas(
        world,
        &THREE,
        &dpop(json!({"policy": "required", "external_origin": ORIGIN})),
    );
    let mut clients = clients(world, TOKENS);
    for balancer in [
        Balancer::RingHashOnAuthorization,
        Balancer::MaglevOnAuthorization,
    ] {
        let two = Front::start(
            balancer,
            &[replica(&replicas, "r1"), replica(&replicas, "r2")],
        );
        let three = Front::start(balancer, &refs(&replicas));
        let (before, after) = (two.entry_for_origin(ORIGIN), three.entry_for_origin(ORIGIN));
        for (label, from, to) in [
            ("replica added (2 -> 3)", &before, &after),
            ("replica removed (3 -> 2)", &after, &before),
        ] {
            let mut tally = Tally::default();
            let mut moves: BTreeMap<String, u64> = BTreeMap::new();
            for client in &mut clients {
                let captured = accepted(client, from, &mut tally);
                // Where the token lands now: a fresh proof through the new ring.
                let now_at = accepted(client, to, &mut tally).replica;
                let replays = replay(to, &captured, 3, &mut tally);
                if now_at == captured.replica {
                    assert!(replays.is_empty(), "{label}: {replays:?}");
                } else {
                    *moves
                        .entry(format!("{}->{now_at}", captured.replica))
                        .or_default() += 1;
                    assert_eq!(
                        replays,
                        vec![now_at.clone()],
                        "{label}: a moved token's proof passes once where it lands"
                    );
                }
            }
            let moved: u64 = moves.values().sum();
            assert_eq!(tally.replays_accepted, moved);
            only_refusals(&tally, &["dpop-replay"]);
            let moves: Vec<String> = moves.iter().map(|(m, n)| format!("{m}:{n}")).collect();
            eprintln!(
                "fleet-figures: ring movement, {lb}, {label}: tokens={TOKENS} moved={moved} \
                 moves=[{}] replays_attempted={} replays_accepted={}",
                moves.join(" "),
                tally.replays_attempted,
                tally.replays_accepted,
                lb = balancer.label(),
            );
        }
    }
}

// ---- 6-9. the shared replay store ---------------------------------------------------

const KEY_PREFIX: &str = "cnf_guard:dpop_jti:";
const UNAVAILABLE: &str = "wasmcustom.cnf_guard.dpop_replay_store.unavailable";
const FALLBACK: &str = "wasmcustom.cnf_guard.dpop_replay_store.fallback";

fn with_store(store: Value) -> Value {
    dpop(json!({"policy": "required", "replay_store": store}))
}

fn store_replicas(world: &World, names: &[&str], store: &Store, config: &Value) -> Vec<Replica> {
    replicas(
        names,
        &world.material,
        world.upstream.port,
        config,
        Some(store.http_port),
    )
}

fn store_config(extra: Value) -> Value {
    let mut store = json!({"cluster": fleet::STORE_CLUSTER, "timeout_ms": 200});
    if let (Some(store), Some(extra)) = (store.as_object_mut(), extra.as_object()) {
        store.extend(extra.clone());
    }
    with_store(store)
}

fn accepted(client: &mut DpopClient, entry: &Entry, tally: &mut Tally) -> Captured {
    match client.request(entry, tally) {
        Outcome::Accepted(captured) => captured,
        Outcome::Refused(response) => panic!("refused: {response:?}"),
    }
}

fn refused(client: &mut DpopClient, entry: &Entry, tally: &mut Tally) -> Response {
    match client.request(entry, tally) {
        Outcome::Refused(response) => response,
        Outcome::Accepted(captured) => panic!("accepted at {}", captured.replica),
    }
}

fn wait_for_counter(envoy: &Envoy, name: &str, at_least: u64) {
    assert!(
        envoy.wait_for_stat(name, at_least) >= at_least,
        "{name} never reached {at_least}"
    );
}

/// Round robin over three replicas that share one store: a proof passes
/// once in the fleet, and no client pays a round trip for it.
fn round_robin_with_the_shared_store(world: &World) {
    let store = Store::start();
    let replicas = store_replicas(world, &THREE, &store, &store_config(json!({})));
    let front = Front::start(Balancer::RoundRobin, &refs(&replicas));
    let entry = front.entry();
    let mut tally = Tally::default();
    let captured = run_clients(&mut clients(world, 4), &entry, 36, &mut tally);
    assert_eq!((tally.failed, tally.extra_round_trips), (0, 0), "{tally:?}");
    let accepted = replay_all(&entry, &captured, 2 * THREE.len(), &mut tally);
    assert!(
        accepted.iter().all(Vec::is_empty),
        "a replay passed: {accepted:?}"
    );
    only_refusals(&tally, &["dpop-replay"]);
    // One key per accepted proof; a replay records nothing. (Each
    // replica's start-up probe writes `<prefix>start-probe`, for 1 s.)
    let probe = format!("{KEY_PREFIX}start-probe");
    let keys: Vec<String> = store
        .keys(KEY_PREFIX)
        .into_iter()
        .filter(|key| *key != probe)
        .collect();
    assert_eq!(keys.len(), captured.len(), "{keys:?}");
    for replica in &replicas {
        assert_eq!(replica.envoy.stat(UNAVAILABLE).unwrap_or(0), 0);
    }
    tally.report(
        "round robin, shared replay store",
        THREE.len(),
        front.balancer.label(),
        "off",
    );
}

/// What if two replicas get one proof at the same moment? Each has a fresh
/// local cache for it, so only the store can decide: `SET NX` is atomic in
/// Redis, and exactly one of them passes, every time.
fn racing_replicas_with_the_store(world: &World) {
    const ORIGIN: &str = "https://api.cnf-guard.test";
    const RACES: usize = 40;
    let store = Store::start();
    let mut config = store_config(json!({}));
    config["dpop"]["external_origin"] = json!(ORIGIN);
    let replicas = store_replicas(world, &TWO, &store, &config);
    let entry = Entry::new(replicas[0].port(), "api.cnf-guard.test", Some(ORIGIN));
    let targets = [entry.clone(), entry.via(replicas[1].port())];
    let client = &clients(world, 1)[0];
    let authorization = client.authorization();
    for race in 0..RACES {
        let proof = client.proof(&entry);
        let barrier = std::sync::Barrier::new(targets.len());
        let statuses: Vec<u16> = std::thread::scope(|scope| {
            let sent: Vec<_> = targets
                .iter()
                .map(|target| {
                    let (barrier, authorization, proof) = (&barrier, &authorization, &proof);
                    scope.spawn(move || {
                        barrier.wait();
                        get(target, &[("authorization", authorization), ("dpop", proof)]).status
                    })
                })
                .collect();
            sent.into_iter().map(|h| h.join().expect("racer")).collect()
        });
        let passed = statuses.iter().filter(|s| (200..300).contains(*s)).count();
        assert_eq!(passed, 1, "race {race}: {statuses:?}");
    }
}

/// Redis gone (webdis answers 503), then webdis gone (connections refused):
/// by default each is a denial, `dpop-replay`, counted.
fn store_down_fails_closed(world: &World) {
    let mut store = Store::start();
    let replicas = store_replicas(world, &TWO, &store, &store_config(json!({})));
    let front = Front::start(Balancer::RoundRobin, &refs(&replicas));
    let entry = front.entry();
    let mut tally = Tally::default();
    let mut client = DpopClient::new(&world.issuer, 0);
    accepted(&mut client, &entry, &mut tally);

    store.kill_redis();
    for _ in 0..TWO.len() {
        let response = refused(&mut client, &entry, &mut tally);
        assert_problem(&response, "dpop-replay");
        let replica = replica(&replicas, &fleet::replica_of(&response));
        wait_for_counter(&replica.envoy, UNAVAILABLE, 1);
    }
    store.kill_webdis();
    for _ in 0..TWO.len() {
        assert_problem(&refused(&mut client, &entry, &mut tally), "dpop-replay");
    }
    for replica in &replicas {
        wait_for_counter(&replica.envoy, UNAVAILABLE, 2);
    }
}

/// `on_unavailable: local_cache_only`: with the store down a proof passes on
/// the local cache alone, counted and logged; a replay to the same replica
/// is still refused, one to another replica passes (the gap, while the
/// store is down).
fn store_down_local_cache_only(world: &World) {
    let mut store = Store::start();
    let replicas = store_replicas(
        world,
        &TWO,
        &store,
        &store_config(json!({"on_unavailable": "local_cache_only"})),
    );
    let front = Front::start(Balancer::RoundRobin, &refs(&replicas));
    let entry = front.entry();
    let mut tally = Tally::default();
    let mut client = DpopClient::new(&world.issuer, 0);
    accepted(&mut client, &entry, &mut tally);

    store.kill_redis();
    let captured = accepted(&mut client, &entry, &mut tally);
    let first = replica(&replicas, &captured.replica);
    let other = replicas
        .iter()
        .find(|r| r.name != captured.replica)
        .expect("another replica");
    wait_for_counter(&first.envoy, FALLBACK, 1);
    wait_for_counter(&first.envoy, UNAVAILABLE, 1);
    assert!(
        wait_for_log_line(&first.envoy, |line| line.contains("[warning]")
            && line.contains("wasm log")
            && (line.contains("replay store") || line.contains("replay_store"))),
        "no warning line about the replay store:\n{}",
        first.envoy.log()
    );
    // Straight to each replica, as the front would forward the replay.
    assert_eq!(
        replay(&entry.via(first.port()), &captured, 1, &mut tally),
        Vec::<String>::new()
    );
    assert_eq!(
        tally.replay_refusals.get("dpop-replay"),
        Some(&1),
        "{tally:?}"
    );
    assert_eq!(
        replay(&entry.via(other.port()), &captured, 1, &mut tally),
        vec![other.name.clone()]
    );
}

/// Redis stopped (SIGSTOP): webdis holds the call, and after `timeout_ms`
/// the request is a denial. Resumed, the store answers again.
fn store_slow_fails_closed(world: &World) {
    let store = Store::start();
    let replicas = store_replicas(world, &TWO, &store, &store_config(json!({})));
    let front = Front::start(Balancer::RoundRobin, &refs(&replicas));
    let entry = front.entry();
    let mut tally = Tally::default();
    let mut client = DpopClient::new(&world.issuer, 0);
    accepted(&mut client, &entry, &mut tally);
    {
        let _paused = store.pause_redis();
        for _ in 0..TWO.len() {
            let response = refused(&mut client, &entry, &mut tally);
            assert_problem(&response, "dpop-replay");
            let replica = replica(&replicas, &fleet::replica_of(&response));
            wait_for_counter(&replica.envoy, UNAVAILABLE, 1);
        }
    }
    for _ in 0..TWO.len() {
        accepted(&mut client, &entry, &mut tally);
    }
}

/// A `cluster` Envoy does not have: an error line naming the field at
/// plugin start (not a failed start: `envoy --mode validate` shows a plugin
/// no clusters), and every DPoP proof refused, fail closed.
fn unknown_store_cluster(world: &World) {
    let replicas = start_replicas(
        world,
        &["r1"],
        &with_store(json!({"cluster": "no_such_cluster"})),
    );
    let r1 = &replicas[0];
    assert!(
        wait_for_log_line(&r1.envoy, |line| (line.contains("[error]")
            || line.contains("[critical]"))
            && line.contains("dpop.replay_store.cluster")),
        "no error line naming dpop.replay_store.cluster:\n{}",
        r1.envoy.log()
    );
    let entry = Entry::new(r1.port(), &format!("127.0.0.1:{}", r1.port()), None);
    let mut tally = Tally::default();
    let mut client = DpopClient::new(&world.issuer, 0);
    for _ in 0..2 {
        assert_problem(&refused(&mut client, &entry, &mut tally), "dpop-replay");
    }
    wait_for_counter(&r1.envoy, UNAVAILABLE, 2);
}

fn wait_for_log_line(envoy: &Envoy, matches: impl Fn(&str) -> bool) -> bool {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while std::time::Instant::now() < deadline {
        if envoy.log().lines().any(&matches) {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    false
}
