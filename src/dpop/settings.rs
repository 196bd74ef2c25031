//! The `dpop` block of the plugin configuration.

use crate::dpop::proof::htu::normalize_origin;
use crate::dpop::proof::signature::Algorithm;
use crate::dpop::replay_store::ReplayStoreConfig;
use crate::policy::fields::{invalid, ConfigError};
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde::Deserialize;

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum DpopPolicy {
    /// DPoP is not checked; a `cnf.jkt`-bound token is refused as unverifiable.
    /// The default: enabling DPoP costs one more metadata read per request.
    #[default]
    Off,
    /// A `cnf.jkt`-bound token needs a valid proof; other tokens are not affected.
    Optional,
    /// Only `cnf.jkt`-bound tokens with a valid proof pass.
    Required,
}

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct DpopConfig {
    pub policy: DpopPolicy,
    /// Proof `alg` values accepted, in the order `algs=` advertises them.
    pub algorithms: Vec<Algorithm>,
    /// The origin clients address (`https://api.example.com`) when a proxy in
    /// front changes scheme, host or port; `htu` is checked against it.
    pub external_origin: Option<String>,
    /// How old a proof's `iat` may be.
    pub max_age_seconds: u64,
    /// How far in the future `iat` may be (client clocks run fast).
    pub max_clock_skew_seconds: u64,
    /// Proofs remembered at once for replay detection (per Envoy).
    pub replay_cache_capacity: u32,
    pub nonce: NonceConfig,
    /// Who verifies proof signatures.
    pub verifier: Verifier,
    /// A store every replica shares, so a proof passes once per fleet.
    pub replay_store: Option<ReplayStoreConfig>,
}

/// Who verifies proof signatures.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Verifier {
    /// Envoy's BoringSSL (`verify_signature`) for each algorithm the
    /// plugin-start probe shows it verifies right; the module for the rest.
    #[default]
    Auto,
    /// Always the verifier compiled into the module.
    InModule,
}

pub const DEFAULT_MAX_AGE_SECONDS: u64 = 60;
pub const DEFAULT_MAX_CLOCK_SKEW_SECONDS: u64 = 10;
pub const DEFAULT_REPLAY_CACHE_CAPACITY: u32 = 1_048_576;

impl Default for DpopConfig {
    fn default() -> Self {
        DpopConfig {
            policy: DpopPolicy::default(),
            algorithms: Algorithm::ALL.to_vec(),
            external_origin: None,
            max_age_seconds: DEFAULT_MAX_AGE_SECONDS,
            max_clock_skew_seconds: DEFAULT_MAX_CLOCK_SKEW_SECONDS,
            replay_cache_capacity: DEFAULT_REPLAY_CACHE_CAPACITY,
            nonce: NonceConfig::default(),
            verifier: Verifier::default(),
            replay_store: None,
        }
    }
}

/// Server-issued nonces (RFC 9449 §9): off by default.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct NonceConfig {
    pub enabled: bool,
    /// A nonce is accepted for at least this long, and at most twice this.
    pub lifetime_seconds: u64,
    /// Base64 key (32+ bytes) so that every replica accepts every replica's
    /// nonces; without it each Envoy makes its own at start.
    pub secret: Option<String>,
}

impl Default for NonceConfig {
    fn default() -> Self {
        NonceConfig {
            enabled: false,
            lifetime_seconds: 300,
            secret: None,
        }
    }
}

/// Names the refused algorithm, where serde would only say "unknown variant".
impl<'de> Deserialize<'de> for Algorithm {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = String::deserialize(deserializer)?;
        Algorithm::from_name(&name).ok_or_else(|| {
            let why = if name.eq_ignore_ascii_case("none") || name.starts_with("HS") {
                "a DPoP proof must be signed with a private key; `none` and HMAC prove nothing"
            } else {
                "supported: ES256, RS256, PS256, EdDSA"
            };
            serde::de::Error::custom(format!("`{name}` is not accepted: {why}"))
        })
    }
}

impl DpopConfig {
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        if self.algorithms.is_empty() {
            return Err(invalid(
                "dpop.algorithms",
                "must name at least one algorithm",
            ));
        }
        for (index, algorithm) in self.algorithms.iter().enumerate() {
            if self.algorithms.iter().take(index).any(|a| a == algorithm) {
                return Err(invalid(
                    "dpop.algorithms",
                    &format!("{} is listed twice", algorithm.name()),
                ));
            }
        }
        if let Some(origin) = &self.external_origin {
            normalize_origin(origin).map_err(|why| {
                invalid(
                    "dpop.external_origin",
                    &format!("must be like `https://api.example.com`: {why}"),
                )
            })?;
        }
        if !(1..=3600).contains(&self.max_age_seconds) {
            return Err(invalid("dpop.max_age_seconds", "must be 1 to 3600"));
        }
        if self.max_clock_skew_seconds > 300 {
            return Err(invalid(
                "dpop.max_clock_skew_seconds",
                "must be at most 300",
            ));
        }
        if !(16..=16_777_216).contains(&self.replay_cache_capacity) {
            return Err(invalid(
                "dpop.replay_cache_capacity",
                "must be 16 to 16777216 proofs",
            ));
        }
        if !(1..=86_400).contains(&self.nonce.lifetime_seconds) {
            return Err(invalid("dpop.nonce.lifetime_seconds", "must be 1 to 86400"));
        }
        if let Some(store) = &self.replay_store {
            store.validate()?;
        }
        if let Some(secret) = &self.nonce.secret {
            match STANDARD.decode(secret) {
                Ok(key) if key.len() >= 32 => {}
                _ => {
                    return Err(invalid(
                        "dpop.nonce.secret",
                        "must be base64 of at least 32 random bytes",
                    ))
                }
            }
        }
        Ok(())
    }

    /// The normalised external origin, when configured and valid.
    pub fn origin(&self) -> Option<String> {
        self.external_origin
            .as_deref()
            .and_then(|origin| normalize_origin(origin).ok())
    }

    /// `algs="ES256 RS256 …"` for the challenge (RFC 9449 §7.1).
    pub fn algs_parameter(&self) -> String {
        let names: Vec<&str> = self.algorithms.iter().map(|a| a.name()).collect();
        names.join(" ")
    }

    /// How long a proof counts as fresh, so how long its `jti` is remembered.
    pub fn acceptance_window_seconds(&self) -> u64 {
        self.max_age_seconds + self.max_clock_skew_seconds
    }
}

impl std::fmt::Display for DpopConfig {
    /// Every effective setting for the start-up log line; never the secret.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.algorithms.iter().map(|a| a.name()).collect();
        write!(
            f,
            "dpop.policy={} dpop.algorithms={} dpop.external_origin={} dpop.max_age_seconds={} \
             dpop.max_clock_skew_seconds={} dpop.replay_cache_capacity={} dpop.verifier={} \
             dpop.replay_store={} dpop.nonce=",
            crate::policy::fields::snake_name(&self.policy),
            names.join(","),
            self.external_origin.as_deref().unwrap_or("-"),
            self.max_age_seconds,
            self.max_clock_skew_seconds,
            self.replay_cache_capacity,
            crate::policy::fields::snake_name(&self.verifier),
            match &self.replay_store {
                None => "-".to_owned(),
                Some(store) => format!(
                    "cluster:{},authority:{},timeout_ms:{},key_prefix:{},on_unavailable:{}",
                    store.cluster,
                    store.authority.as_deref().unwrap_or(&store.cluster),
                    store.timeout_ms,
                    store.key_prefix,
                    crate::policy::fields::snake_name(&store.on_unavailable),
                ),
            },
        )?;
        match (self.nonce.enabled, &self.nonce.secret) {
            (false, _) => write!(f, "off"),
            (true, secret) => write!(
                f,
                "on dpop.nonce.lifetime_seconds={} dpop.nonce.key={}",
                self.nonce.lifetime_seconds,
                if secret.is_some() {
                    "configured_secret"
                } else {
                    "made_per_envoy"
                }
            ),
        }
    }
}
