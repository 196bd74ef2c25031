//! End-to-end tests: the release wasm in a real Envoy, real mTLS, real JWTs.
//!
//! One Envoy serves a listener per plugin configuration; a recording upstream
//! in this process proves which requests got past the filter. Every Envoy
//! started here is stopped before the process exits.
//!
//! This file is the harness: the shared `World` (the Envoys, the upstream,
//! the tokens minted for the run), `main`, and the registration of every
//! concern's trials. The trials live by concern under `tests/e2e/`, as `src/`
//! is split: each file has its `trials()` and, where the concern needs
//! listeners of its own, `listeners()`; `tests/e2e/assertions.rs` holds the
//! checks they share.

// Test tooling: a failed expectation panics, which is how a test reports.
// The filter crate itself denies these lints (Cargo.toml [lints]).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod support;

#[path = "e2e/assertions.rs"]
mod assertions;

#[path = "e2e/binding.rs"]
mod binding;

#[path = "e2e/claims.rs"]
mod claims;

#[path = "e2e/forwarded.rs"]
mod forwarded;

#[path = "e2e/per_route.rs"]
mod per_route;

#[path = "e2e/dpop.rs"]
mod dpop;

#[path = "e2e/metrics.rs"]
mod metrics;

#[path = "e2e/observability.rs"]
mod observability;

#[path = "e2e/hostile.rs"]
mod hostile;

#[path = "e2e/bypass.rs"]
mod bypass;

#[path = "e2e/lifecycle.rs"]
mod lifecycle;

#[path = "e2e/config.rs"]
mod config;

#[path = "e2e/examples.rs"]
mod examples;

#[path = "e2e/cli_vs_envoy.rs"]
mod cli_vs_envoy;

#[path = "e2e/compat.rs"]
mod compat;

use jwt_simple::prelude::Duration;
use libtest_mimic::{Arguments, Failed, Trial};
use serde_json::json;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock, PoisonError, RwLock};
use support::bootstrap::{bootstrap, edge_bootstrap, JwtAuthn, Listener};
use support::client::Client;
use support::envoy::Envoy;
use support::material::{make_pki, write, write_pki, Issuer, Pki};
use support::upstream::Upstream;

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

/// A trial: its name (as `cargo test --test envoy -- --list` prints it) and
/// its test.
type NamedTrial = (&'static str, fn(&World));

/// A listener of the shared Envoy with this plugin configuration.
fn plugin(name: &'static str, jwt_authn: JwtAuthn, config: serde_json::Value) -> Listener {
    Listener::new(name, jwt_authn, config.to_string())
}

/// Every listener of the shared Envoy, from the concerns that have some.
fn listeners() -> Vec<Listener> {
    let concerns: &[fn() -> Vec<Listener>] = &[
        binding::listeners,
        claims::listeners,
        metrics::listeners,
        forwarded::listeners,
        per_route::listeners,
        dpop::listeners,
        bypass::listeners,
        compat::listeners,
    ];
    concerns.iter().flat_map(|listeners| listeners()).collect()
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
    let concerns: &[fn() -> Vec<NamedTrial>] = &[
        binding::trials,
        claims::trials,
        metrics::trials,
        forwarded::trials,
        per_route::trials,
        hostile::trials,
        dpop::trials,
        observability::trials,
        bypass::trials,
        lifecycle::trials,
        config::trials,
        examples::trials,
        cli_vs_envoy::trials,
        compat::trials,
    ];
    concerns
        .iter()
        .flat_map(|trials| trials())
        .filter(|(name, _)| support::compat::selected(name))
        .map(|(name, test)| {
            let world = Arc::clone(world);
            let alone = bypass::RUN_ALONE.contains(&name);
            Trial::test(name.to_owned(), move || {
                // A failed trial poisons nothing worth keeping: the lock guards no data.
                if alone {
                    let _alone = TURN.write().unwrap_or_else(PoisonError::into_inner);
                    test(world.get_or_init(build_world_on_keeper_thread));
                } else {
                    let _shared = TURN.read().unwrap_or_else(PoisonError::into_inner);
                    test(world.get_or_init(build_world_on_keeper_thread));
                }
                Ok::<(), Failed>(())
            })
            // What this Envoy lacks (tests/support/compat.rs): skipped, said why.
            .with_ignored_flag(support::compat::unsupported(name).is_some())
        })
        .collect()
}
