//! The one boundary between cnf-guard's logic and the proxy.
//!
//! `crate::wasm` implements it over proxy-wasm host calls; unit tests use
//! [`mock::MockHost`], built on [`envoy_model`], which behaves as Envoy does
//! (each behaviour pinned by an end-to-end test). Every call can fail with a
//! typed error and none may panic.

pub mod envoy_model;
pub mod log_capture;
pub mod map_encoding;
#[cfg(test)]
pub mod mock;

use crate::reply::Reply;
use std::time::{Duration, SystemTime};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostError {
    /// The value exists but Envoy could not serialise it (e.g. a list claim).
    SerializationFailure,
    /// A shared-data write lost a race: another worker wrote the key first.
    CasMismatch,
    /// The proxy refused the call's arguments (e.g. an unknown cluster).
    BadArgument,
    /// Any other non-OK status, with its proxy-wasm name.
    Failure(String),
}

impl std::fmt::Display for HostError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HostError::SerializationFailure => write!(f, "serialization failure"),
            HostError::CasMismatch => write!(f, "compare-and-swap mismatch"),
            HostError::BadArgument => write!(f, "bad argument"),
            HostError::Failure(status) => write!(f, "host call failed: {status}"),
        }
    }
}

/// What the filter needs from the proxy. Logging is not here: the filter
/// logs through the `log` facade (proxy-wasm's logger in the module,
/// [`log_capture`] in the fake hosts). There is deliberately no
/// single-header read: Envoy's returns only the first of repeated lines, so
/// every header fact comes from [`Host::request_headers`].
pub trait Host {
    /// A property by path segments; `Ok(None)` when absent or empty.
    fn property(&self, path: &[&str]) -> Result<Option<Vec<u8>>, HostError>;
    /// Removes every line of a request header before the request goes upstream.
    fn remove_request_header(&self, name: &str) -> Result<(), HostError>;
    /// Every request header line, pseudo-headers included, in order, names
    /// lower-case; a repeated header comes as several lines unless Envoy
    /// joined them (see [`envoy_model::JOINED_REQUEST_HEADERS`]).
    fn request_headers(&self) -> Result<Vec<(String, Vec<u8>)>, HostError>;
    /// A value every worker VM of this Envoy sees, and its compare-and-swap
    /// tag; `(None, None)` when the key does not exist.
    fn shared_data(&self, key: &str) -> Result<(Option<Vec<u8>>, Option<u32>), HostError>;
    /// Envoy's semantics ([`envoy_model::SharedStore::set`]): a key that
    /// exists is written only if its tag is still `cas` (`None`: always),
    /// else `Err(CasMismatch)`; a key that does not exist is inserted
    /// whatever `cas` says. Use [`create_if_absent`] to insert safely.
    fn set_shared_data(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), HostError>;
    fn now(&self) -> Result<SystemTime, HostError>;
    /// Calls one of the proxy's foreign functions (Envoy: `verify_signature`,
    /// …) with its serialized argument. A host without foreign functions
    /// answers that it has none.
    fn call_foreign_function(
        &self,
        name: &str,
        _argument: &[u8],
    ) -> Result<Option<Vec<u8>>, HostError> {
        Err(HostError::Failure(format!("no foreign function {name}")))
    }
    /// Sends a request (no body) through an Envoy cluster and returns the
    /// call's token. The answer comes later, to the request that sent it,
    /// which stays paused meanwhile. Envoy refuses an unknown cluster
    /// (`BadArgument`); a timeout comes back as its own 504, a failed
    /// connection as its own 503.
    fn dispatch_http_call(
        &self,
        cluster: &str,
        _headers: &[(&str, &str)],
        _timeout: Duration,
    ) -> Result<u32, HostError> {
        Err(HostError::Failure(format!(
            "this host makes no HTTP calls (cluster {cluster})"
        )))
    }
    /// Ends the request with a local reply; the upstream never sees it.
    fn send_reply(&self, reply: &Reply) -> Result<(), HostError>;
    /// Sets a per-request value an access log can print (Envoy: filter state
    /// `wasm.<name>`, `%FILTER_STATE(wasm.<name>:PLAIN)%`).
    fn set_filter_state(&self, name: &str, value: &str) -> Result<(), HostError>;
}

/// A key whose tag is always fresh: written (unconditionally) only to be
/// issued a compare-and-swap tag that no other key holds.
const TAG_SOURCE_KEY: &str = "cnf_guard.tag_source";

/// Inserts `key` with `value` unless it exists; `Ok(true)` if this call
/// inserted it. Never overwrites: Envoy has no atomic insert, and a plain
/// write of a missing key would clobber a racing worker's write.
///
/// How: Envoy issues tags from one counter for every write to every key, so
/// the tag just issued to [`TAG_SOURCE_KEY`] belongs to no other key. Passed
/// as `cas`, it makes the write fail on any existing `key` (its tag differs)
/// and insert a missing one. A key created by another worker between the
/// two calls got its tag from the same counter within microseconds, so the
/// two cannot be equal (that would take 2³² writes in between).
pub fn create_if_absent(host: &impl Host, key: &str, value: &[u8]) -> Result<bool, HostError> {
    host.set_shared_data(TAG_SOURCE_KEY, &[], None)?;
    let Some(fresh_tag) = host.shared_data(TAG_SOURCE_KEY)?.1.filter(|tag| *tag != 0) else {
        return Err(HostError::Failure(
            "shared data issued no compare-and-swap tag".to_owned(),
        ));
    };
    match host.set_shared_data(key, value, Some(fresh_tag)) {
        Ok(()) => Ok(true),
        Err(HostError::CasMismatch) => Ok(false),
        Err(error) => Err(error),
    }
}

#[cfg(test)]
mod tests {
    use super::mock::MockHost;
    use super::*;

    #[test]
    fn create_if_absent_never_overwrites() {
        let host = MockHost::default();
        assert_eq!(create_if_absent(&host, "k", b"first"), Ok(true));
        assert_eq!(create_if_absent(&host, "k", b"second"), Ok(false));
        assert_eq!(
            host.shared_data("k").unwrap().0.as_deref(),
            Some(&b"first"[..])
        );
    }

    #[test]
    fn create_if_absent_loses_to_a_worker_that_created_the_key_meanwhile() {
        // Another worker inserts the key (and writes it again) at every
        // point between this worker's calls: this worker never overwrites.
        for interleave_at in 0..3 {
            let host = MockHost::default();
            let other = host.worker();
            host.before_shared_call(interleave_at, move || {
                other.set_shared_data("k", b"other", None).unwrap();
                let tag = other.shared_data("k").unwrap().1;
                other.set_shared_data("k", b"other, again", tag).unwrap();
            });
            assert_eq!(
                create_if_absent(&host, "k", b"mine"),
                Ok(false),
                "the other worker ran before call {interleave_at}"
            );
            assert_eq!(
                host.shared_data("k").unwrap().0.as_deref(),
                Some(&b"other, again"[..])
            );
        }
    }
}
