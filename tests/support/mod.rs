//! End-to-end test support: real Envoy, real TLS, JWTs minted at test time.
#![allow(dead_code)]

pub mod bootstrap;
pub mod client;
pub mod compat;
pub mod dpop;
pub mod envoy;
pub mod material;
pub mod raw_tls;
pub mod upstream;

use std::path::PathBuf;

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Cargo's target directory: `CARGO_TARGET_DIR` when set (relative to the
/// repository, as cargo reads it there), else `target/`.
pub fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) if !dir.is_empty() => repo_root().join(dir),
        _ => repo_root().join("target"),
    }
}

/// The filter under test. `CNF_GUARD_WASM`, when set, names the module to
/// test (a path, relative to the repository like `CARGO_TARGET_DIR`), e.g. an
/// older build to see which tests it fails:
/// `CNF_GUARD_WASM=/tmp/old/cnf_guard.wasm cargo test --test envoy -- bypass::`.
/// Otherwise it is the release build in the target directory, which `make
/// test` builds before running the tests.
pub fn wasm_path() -> PathBuf {
    built_wasm().unwrap_or_else(|| {
        panic!(
            "{} is missing: build it with `make wasm` (or run `make test`)",
            target_dir()
                .join("wasm32-wasip1/release/cnf_guard.wasm")
                .display()
        )
    })
}

/// The module under test if it exists (see [`wasm_path`]).
pub fn built_wasm() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("CNF_GUARD_WASM").filter(|p| !p.is_empty()) {
        let path = repo_root().join(path);
        assert!(
            path.is_file(),
            "CNF_GUARD_WASM names {}, which is not a file",
            path.display()
        );
        return Some(path);
    }
    let path = target_dir().join("wasm32-wasip1/release/cnf_guard.wasm");
    path.exists().then_some(path)
}
