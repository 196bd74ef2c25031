#![allow(dead_code)]
//! The Envoy under test and what it lacks: a declared table, read against
//! `envoy --version` of `ENVOY_BIN`. A trial that needs a property the
//! running Envoy does not have is skipped by name (listed as ignored, and
//! the reason printed once), and tests/e2e/compat.rs asserts what cnf-guard
//! documents it does there instead. docs/compatibility.md says the same,
//! and tests/e2e/compat.rs checks its table against what it observes.

use std::sync::{Once, OnceLock};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Version {
    pub major: u32,
    pub minor: u32,
    pub patch: u32,
}

impl Version {
    pub const fn new(major: u32, minor: u32, patch: u32) -> Version {
        Version {
            major,
            minor,
            patch,
        }
    }

    /// `1.38`.
    pub fn minor_release(&self) -> String {
        format!("{}.{}", self.major, self.minor)
    }

    /// `1.36.4` (also `1.36.4-dev`: the numbers only).
    pub fn parse(text: &str) -> Option<Version> {
        let mut numbers = text
            .split(['.', '-'])
            .map(|number| number.trim().parse::<u32>().ok());
        Some(Version::new(
            numbers.next()??,
            numbers.next()??,
            numbers.next().flatten().unwrap_or(0),
        ))
    }
}

impl std::fmt::Display for Version {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

/// The version in `envoy --version`'s line,
/// `envoy  version: <sha>/1.36.4/Clean/RELEASE/BoringSSL`.
pub fn version_from_output(output: &str) -> Option<Version> {
    let field = output.split("version:").nth(1)?.trim().split('/').nth(1)?;
    Version::parse(field)
}

/// The Envoy the tests run (`ENVOY_BIN`, else the one in `.venv`); `None`
/// if it cannot say (then nothing is skipped, and the trials that start it
/// report why it does not run).
pub fn running() -> Option<Version> {
    static RUNNING: OnceLock<Option<Version>> = OnceLock::new();
    *RUNNING.get_or_init(|| {
        let output = std::process::Command::new(super::envoy::envoy_bin())
            .arg("--version")
            .output()
            .ok()?;
        version_from_output(&String::from_utf8_lossy(&output.stdout))
    })
}

/// A property cnf-guard reads that an older supported Envoy does not have.
pub struct Gap {
    pub property: &'static str,
    /// The first Envoy that has it.
    pub since: Version,
    /// The trials that need it, skipped on an Envoy without it.
    pub trials: &'static [&'static str],
    /// What cnf-guard does there instead, and which trial asserts it.
    pub instead: &'static str,
}

/// The declared table (docs/compatibility.md explains each row).
pub const GAPS: &[Gap] = &[Gap {
    property: "connection.peer_certificate",
    since: Version::new(1, 38, 0),
    trials: &[
        "spki::public_key_thumbprint_binds",
        "spki::certificate_thumbprint_does_not_bind_in_spki_mode",
        // It compares the CLI with Envoy on the `spki` listener too.
        "cli::inspect_verdict_equals_envoys",
    ],
    instead: "`thumbprint: spki` on the TLS connection fails closed (mtls-required) after a \
              start-up warning, asserted by compat::spki_on_the_tls_connection; \
              `trusted_proxy.peer_sans` compares the first URI SAN and the first DNS SAN, \
              asserted by compat::peer_sans_trust_through_a_proxy_with_several_sans",
}];

/// Whether the running Envoy lacks `property` (one of [`GAPS`]).
pub fn lacks(property: &str) -> bool {
    let Some(running) = running() else {
        return false;
    };
    GAPS.iter()
        .any(|gap| gap.property == property && running < gap.since)
}

/// Why `trial` cannot pass on the running Envoy, if it cannot. Prints each
/// gap the first time it skips something, so no skip is silent.
pub fn unsupported(trial: &str) -> Option<String> {
    static SAID: Once = Once::new();
    let running = running()?;
    let gaps: Vec<&Gap> = GAPS.iter().filter(|gap| running < gap.since).collect();
    let gap = gaps.iter().find(|gap| gap.trials.contains(&trial))?;
    SAID.call_once(|| {
        for gap in &gaps {
            eprintln!(
                "Envoy {running} has no {} (Envoy {} and later): skipping {}. Instead, {}.",
                gap.property,
                gap.since.minor_release(),
                gap.trials.join(", "),
                gap.instead
            );
        }
    });
    Some(format!(
        "Envoy {running} has no {} (since {})",
        gap.property,
        gap.since.minor_release()
    ))
}

/// `CNF_GUARD_TRIALS`: the trial-name prefixes to run, space-separated
/// (`default:: dpop::`); every trial when unset. libtest's one positional
/// filter cannot name several concerns; `make test-compat` sets this.
pub fn selected(trial: &str) -> bool {
    match std::env::var("CNF_GUARD_TRIALS") {
        Ok(prefixes) if !prefixes.trim().is_empty() => prefixes
            .split_whitespace()
            .any(|prefix| trial.starts_with(prefix)),
        _ => true,
    }
}
