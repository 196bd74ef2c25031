//! End-to-end test support: real Envoy, real TLS, JWTs minted at test time.
#![allow(dead_code)]

pub mod bootstrap;
pub mod client;
pub mod envoy;
pub mod material;
pub mod upstream;

use std::path::PathBuf;

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The filter under test; `make test` builds it before running the tests.
pub fn wasm_path() -> PathBuf {
    let path = repo_root().join("target/wasm32-wasip1/release/cnf_guard.wasm");
    assert!(
        path.exists(),
        "{} is missing: build it with `make wasm` (or run `make test`)",
        path.display()
    );
    path
}
