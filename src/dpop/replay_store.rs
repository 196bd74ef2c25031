//! The fleet-wide replay store (pure): every replica asks one Redis, through
//! webdis over an Envoy cluster, to record a proof's use, so a proof passes
//! once across the fleet and not once per replica.
//!
//! The call is Redis `SET <key> 1 NX EX <window>`: atomic create-if-absent
//! with expiry, the one operation that makes "first use wins" hold under any
//! interleaving of replicas. Its key is the same (key thumbprint, `jti`)
//! fingerprint the local cache keeps, so the store never sees a `jti`.
//!
//! This module builds the request and reads the answer; the glue sends it
//! (`dispatch_http_call`) and pauses the request until it is answered.

use crate::policy::fields::{invalid, ConfigError};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde::Deserialize;
use std::time::Duration;

/// The `dpop.replay_store` block.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ReplayStoreConfig {
    /// The Envoy cluster that reaches webdis. Required.
    pub cluster: String,
    /// `:authority` of the call; the cluster name when unset.
    #[serde(default)]
    pub authority: Option<String>,
    /// How long a request waits for the store before `on_unavailable` applies.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// Prepended to every key, so one Redis can serve several fleets.
    #[serde(default = "default_key_prefix")]
    pub key_prefix: String,
    #[serde(default)]
    pub on_unavailable: OnUnavailable,
}

/// What a request gets when the store does not answer usably.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum OnUnavailable {
    /// Refuse the proof (`dpop-replay`): fail closed.
    #[default]
    Deny,
    /// Accept what the local cache accepted, counted and logged: a replay to
    /// another replica passes while the store is down.
    LocalCacheOnly,
}

pub const DEFAULT_TIMEOUT_MS: u64 = 100;
pub const DEFAULT_KEY_PREFIX: &str = "cnf_guard:dpop_jti:";

fn default_timeout_ms() -> u64 {
    DEFAULT_TIMEOUT_MS
}

fn default_key_prefix() -> String {
    DEFAULT_KEY_PREFIX.to_owned()
}

/// One call to the store, ready for `dispatch_http_call`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreCall {
    pub cluster: String,
    pub headers: Vec<(&'static str, String)>,
    pub timeout: Duration,
}

impl StoreCall {
    /// The headers as `dispatch_http_call` takes them.
    pub fn header_pairs(&self) -> Vec<(&str, &str)> {
        self.headers
            .iter()
            .map(|(name, value)| (*name, value.as_str()))
            .collect()
    }
}

/// The store's answer as the host delivered it. Envoy answers a timeout
/// with its own 504 and a failed connection with its own 503; no status at
/// all means the answer could not be read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoreResponse {
    pub status: Option<u16>,
    pub body: Vec<u8>,
}

/// What the store made of the proof.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreAnswer {
    /// Recorded now: the first use anywhere in the fleet.
    FirstUse,
    /// Some replica recorded it before.
    SeenBefore,
    /// No usable answer, and why.
    Unavailable(String),
}

impl ReplayStoreConfig {
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        if self.cluster.is_empty() || !self.cluster.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(invalid(
                "dpop.replay_store.cluster",
                "must name an Envoy cluster (visible ASCII, not empty)",
            ));
        }
        if let Some(authority) = &self.authority {
            if authority.is_empty() || !authority.bytes().all(|b| b.is_ascii_graphic()) {
                return Err(invalid(
                    "dpop.replay_store.authority",
                    "must be a host name (visible ASCII, not empty)",
                ));
            }
        }
        if !(1..=10_000).contains(&self.timeout_ms) {
            return Err(invalid(
                "dpop.replay_store.timeout_ms",
                "must be 1 to 10000 milliseconds",
            ));
        }
        // One path segment for webdis: no `/`, `?`, `%` or anything to escape.
        if self.key_prefix.len() > 64
            || !self
                .key_prefix
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_-:.".contains(&b))
        {
            return Err(invalid(
                "dpop.replay_store.key_prefix",
                "must be at most 64 of A-Z a-z 0-9 _ - : .",
            ));
        }
        Ok(())
    }

    /// `SET <prefix><fingerprint> 1 NX EX <window>` as a webdis GET.
    pub fn call(&self, fingerprint: &[u8], window_seconds: u64) -> StoreCall {
        let key = URL_SAFE_NO_PAD.encode(fingerprint);
        self.get(format!(
            "/SET/{}{key}/1/NX/EX/{window_seconds}",
            self.key_prefix
        ))
    }

    /// A write that proves the store answers, at plugin start: a plain `SET`
    /// (webdis answers it as a fresh key) of a key that expires in a second.
    pub fn probe_call(&self) -> StoreCall {
        self.get(format!("/SET/{}start-probe/1/EX/1", self.key_prefix))
    }

    fn get(&self, path: String) -> StoreCall {
        let authority = self.authority.as_ref().unwrap_or(&self.cluster).clone();
        StoreCall {
            cluster: self.cluster.clone(),
            headers: vec![
                (":method", "GET".to_owned()),
                (":path", path),
                (":authority", authority),
            ],
            timeout: Duration::from_millis(self.timeout_ms),
        }
    }
}

/// Reads webdis's reply to `SET … NX`: `{"SET":[true,"OK"]}` when set,
/// `{"SET":null}` when the key existed. Anything else is not an answer.
pub fn read_answer(response: &StoreResponse) -> StoreAnswer {
    let status = match response.status {
        None => return StoreAnswer::Unavailable("an answer without a status".to_owned()),
        Some(status) => status,
    };
    if status != 200 {
        return StoreAnswer::Unavailable(format!("HTTP {status}"));
    }
    // webdis writes exactly these; compared without whitespace rather than
    // parsed, which would add a JSON value parser to the module.
    let compact: Vec<u8> = response
        .body
        .iter()
        .copied()
        .filter(|byte| !byte.is_ascii_whitespace())
        .collect();
    match compact.as_slice() {
        br#"{"SET":[true,"OK"]}"# => StoreAnswer::FirstUse,
        br#"{"SET":null}"# => StoreAnswer::SeenBefore,
        _ => StoreAnswer::Unavailable(
            "HTTP 200 without a webdis SET reply (is the cluster webdis?)".to_owned(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> ReplayStoreConfig {
        serde_json::from_str(r#"{"cluster": "replay_store"}"#).unwrap()
    }

    #[test]
    fn defaults() {
        let config = config();
        assert_eq!(config.timeout_ms, 100);
        assert_eq!(config.key_prefix, "cnf_guard:dpop_jti:");
        assert_eq!(config.on_unavailable, OnUnavailable::Deny);
        assert!(config.validate().is_ok());
    }

    #[test]
    fn the_call_is_an_atomic_set_if_absent_with_expiry() {
        let call = config().call(&[0xfb; 16], 70);
        assert_eq!(call.cluster, "replay_store");
        assert_eq!(call.timeout, Duration::from_millis(100));
        assert_eq!(
            call.headers,
            vec![
                (":method", "GET".to_owned()),
                (
                    ":path",
                    "/SET/cnf_guard:dpop_jti:-_v7-_v7-_v7-_v7-_v7-w/1/NX/EX/70".to_owned()
                ),
                (":authority", "replay_store".to_owned()),
            ]
        );
    }

    #[test]
    fn answers() {
        let answer = |status: Option<u16>, body: &str| {
            read_answer(&StoreResponse {
                status,
                body: body.as_bytes().to_vec(),
            })
        };
        assert_eq!(
            answer(Some(200), r#"{"SET":[true,"OK"]}"#),
            StoreAnswer::FirstUse
        );
        assert_eq!(
            answer(Some(200), r#" { "SET" : null } "#),
            StoreAnswer::SeenBefore
        );
        for (status, body) in [
            (None, ""),
            (Some(503), ""),
            (Some(403), ""),
            (Some(200), "+OK"),
            (Some(200), r#"{"GET":null}"#),
            (Some(200), r#"{"SET":[false,"ERR"]}"#),
            (Some(200), r#"{"SET":"OK"}"#),
        ] {
            assert!(
                matches!(answer(status, body), StoreAnswer::Unavailable(_)),
                "{status:?} {body}"
            );
        }
    }

    #[test]
    fn bad_fields_are_named() {
        for (json, field) in [
            (r#"{"cluster": ""}"#, "dpop.replay_store.cluster"),
            (r#"{"cluster": "a b"}"#, "dpop.replay_store.cluster"),
            (
                r#"{"cluster": "a", "timeout_ms": 0}"#,
                "dpop.replay_store.timeout_ms",
            ),
            (
                r#"{"cluster": "a", "key_prefix": "a/b"}"#,
                "dpop.replay_store.key_prefix",
            ),
            (
                r#"{"cluster": "a", "authority": ""}"#,
                "dpop.replay_store.authority",
            ),
        ] {
            let config: ReplayStoreConfig = serde_json::from_str(json).unwrap();
            assert_eq!(config.validate().unwrap_err().field, field, "{json}");
        }
        assert!(
            serde_json::from_str::<ReplayStoreConfig>(r#"{"cluster": "a", "ttl": 1}"#).is_err()
        );
        assert!(serde_json::from_str::<ReplayStoreConfig>(r#"{}"#).is_err());
    }
}
