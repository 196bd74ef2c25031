//! Envoy's own behaviour, for the fake hosts (the unit tests' mock and the
//! CLI's emulated Envoy). A fake kinder than Envoy hides bypasses, so each
//! behaviour here is one Envoy 1.40 really has, and an end-to-end test pins it:
//! - shared data inserts a missing key whatever the compare-and-swap tag
//!   (the DPoP replay race test, tests/e2e/bypass.rs);
//! - repeated header lines stay separate, except for the headers Envoy
//!   joins with a comma (the repeated forwarded-certificate and
//!   repeated-`Authorization` tests).

use super::HostError;
use std::collections::HashMap;

/// Envoy's shared data (proxy-wasm-cpp-host `SharedData`): one tag counter
/// for every write to every key, starting at 1 and never issuing 0.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SharedStore {
    entries: HashMap<String, (Vec<u8>, u32)>,
    last_tag: u32,
}

impl SharedStore {
    /// The value and its tag; `(None, None)` for a missing key.
    pub fn get(&self, key: &str) -> (Option<Vec<u8>>, Option<u32>) {
        match self.entries.get(key) {
            Some((value, tag)) => (Some(value.clone()), Some(*tag)),
            None => (None, None),
        }
    }

    /// An existing key is written only if `cas` is `None`/0 or its current
    /// tag; a missing key is inserted whatever `cas` is. That last part is
    /// why a read of "missing" followed by a write is not atomic.
    pub fn set(&mut self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), HostError> {
        let cas = cas.unwrap_or(0);
        if let Some((_, tag)) = self.entries.get(key) {
            if cas != 0 && cas != *tag {
                return Err(HostError::CasMismatch);
            }
        }
        self.last_tag = self.last_tag.wrapping_add(1).max(1);
        self.entries
            .insert(key.to_owned(), (value.to_vec(), self.last_tag));
        Ok(())
    }

    /// Every stored value, for tests that bound memory.
    pub fn values(&self) -> impl Iterator<Item = &[u8]> {
        self.entries.values().map(|(value, _)| value.as_slice())
    }
}

/// The request headers cnf-guard reads that Envoy keeps as one line,
/// joining repeated lines with a comma in arrival order, over HTTP/1.1 and
/// HTTP/2 alike: its "inline" headers (Envoy 1.40 lists them all at start-up
/// under "HTTP header map info"; bootstrap `inline_headers` can add more).
/// Every other header (`dpop`, `client-cert`, `x-ssl-client-cert`, ...)
/// keeps one line per occurrence, and a single-value read
/// (`proxy_get_header_map_value`) returns only the first.
pub const JOINED_REQUEST_HEADERS: &[&str] = &[
    ":authority",
    ":method",
    ":path",
    ":scheme",
    "authorization",
    "x-forwarded-client-cert",
    "x-request-id",
];

/// A request header map as Envoy builds it from the lines a client sent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HeaderLines {
    lines: Vec<(String, Vec<u8>)>,
}

impl HeaderLines {
    /// Adds a line as it arrived; `name` is lower-cased.
    pub fn add(&mut self, name: &str, value: &[u8]) {
        let name = name.to_ascii_lowercase();
        if JOINED_REQUEST_HEADERS.contains(&name.as_str()) {
            if let Some((_, joined)) = self.lines.iter_mut().find(|(n, _)| *n == name) {
                joined.push(b',');
                joined.extend_from_slice(value);
                return;
            }
        }
        self.lines.push((name, value.to_vec()));
    }

    /// Removes every line of `name`.
    pub fn remove(&mut self, name: &str) {
        self.lines.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
    }

    /// What `proxy_get_header_map_pairs` returns: every line, in order.
    pub fn lines(&self) -> Vec<(String, Vec<u8>)> {
        self.lines.clone()
    }

    /// Whether any line of `name` is left.
    pub fn contains(&self, name: &str) -> bool {
        self.lines.iter().any(|(n, _)| n.eq_ignore_ascii_case(name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_key_is_inserted_whatever_the_tag() {
        let mut store = SharedStore::default();
        assert_eq!(store.set("k", b"a", Some(12345)), Ok(()));
        let (value, tag) = store.get("k");
        assert_eq!(value.as_deref(), Some(&b"a"[..]));
        assert_eq!(tag, Some(1));
        assert_eq!(
            store.set("k", b"b", Some(12345)),
            Err(HostError::CasMismatch)
        );
        assert_eq!(store.set("k", b"b", tag), Ok(()));
        assert_eq!(store.set("k", b"c", None), Ok(()));
        // One counter for every key.
        assert_eq!(store.set("other", b"", None), Ok(()));
        assert_eq!(store.get("other").1, Some(4));
    }

    #[test]
    fn repeated_lines_stay_apart_unless_envoy_joins_them() {
        let mut headers = HeaderLines::default();
        headers.add("Client-Cert", b":a:");
        headers.add("client-cert", b":b:");
        headers.add("Authorization", b"Bearer a");
        headers.add("authorization", b"Bearer b");
        assert_eq!(
            headers.lines(),
            vec![
                ("client-cert".to_owned(), b":a:".to_vec()),
                ("client-cert".to_owned(), b":b:".to_vec()),
                ("authorization".to_owned(), b"Bearer a,Bearer b".to_vec()),
            ]
        );
        headers.remove("CLIENT-CERT");
        assert!(!headers.contains("client-cert"));
    }
}
