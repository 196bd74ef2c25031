//! The one boundary between cnf-guard's logic and the proxy.
//!
//! `crate::wasm` implements it over proxy-wasm host calls; unit tests use a mock.
//! Every call can fail with a typed error and none may panic.

use crate::problem::Reply;
use std::time::SystemTime;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostError {
    /// The value exists but Envoy could not serialise it (e.g. a list claim).
    SerializationFailure,
    /// A shared-data write lost a race: another worker wrote the key first.
    CasMismatch,
    /// Any other non-OK status, with its proxy-wasm name.
    Failure(String),
}

impl std::fmt::Display for HostError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HostError::SerializationFailure => write!(f, "serialization failure"),
            HostError::CasMismatch => write!(f, "compare-and-swap mismatch"),
            HostError::Failure(status) => write!(f, "host call failed: {status}"),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum LogLevel {
    Debug,
    Info,
    Warn,
    Error,
}

pub trait Host {
    /// A property by path segments; `Ok(None)` when absent or empty.
    fn property(&self, path: &[&str]) -> Result<Option<Vec<u8>>, HostError>;
    /// A request header's raw value (`Ok(None)` when absent).
    fn request_header(&self, name: &str) -> Result<Option<Vec<u8>>, HostError>;
    /// Removes a request header before the request goes upstream.
    fn remove_request_header(&self, name: &str) -> Result<(), HostError>;
    /// Every request header, pseudo-headers included, in order, names lower-case.
    fn request_headers(&self) -> Result<Vec<(String, Vec<u8>)>, HostError>;
    /// A value every worker VM of this Envoy sees, and its compare-and-swap tag.
    fn shared_data(&self, key: &str) -> Result<(Option<Vec<u8>>, Option<u32>), HostError>;
    /// Writes `value` if the key's tag is still `cas` (`None`: unconditionally);
    /// `Err(CasMismatch)` when another worker got there first.
    fn set_shared_data(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), HostError>;
    fn now(&self) -> Result<SystemTime, HostError>;
    /// Ends the request with a local reply; the upstream never sees it.
    fn send_reply(&self, reply: &Reply) -> Result<(), HostError>;
    fn log(&self, level: LogLevel, message: &str);
}

#[cfg(test)]
pub mod mock {
    //! An in-memory host that records what the filter asked and did.
    use super::*;
    use std::cell::{Cell, RefCell};
    use std::collections::HashMap;

    /// The mock's clock, in seconds since the Unix epoch.
    pub const NOW: u64 = 1_800_000_000;

    #[derive(Default)]
    pub struct MockHost {
        pub properties: HashMap<Vec<String>, Result<Vec<u8>, HostError>>,
        pub headers: RefCell<HashMap<String, Vec<u8>>>,
        /// Repeated headers beyond the first value of `headers`.
        pub extra_headers: Vec<(String, Vec<u8>)>,
        /// Shared data: value and tag; the tag grows with every write.
        pub shared: RefCell<HashMap<String, (Vec<u8>, u32)>>,
        /// Writes to fail with `CasMismatch` before succeeding (a racing worker).
        pub cas_conflicts: Cell<usize>,
        pub replies: RefCell<Vec<Reply>>,
        pub logs: RefCell<Vec<(LogLevel, String)>>,
        /// Host calls made while handling a request (logging excluded).
        pub calls: Cell<usize>,
    }

    impl MockHost {
        pub fn with_property(mut self, path: &[&str], value: impl Into<Vec<u8>>) -> Self {
            self.properties.insert(
                path.iter().map(|s| s.to_string()).collect(),
                Ok(value.into()),
            );
            self
        }
        pub fn with_failing_property(mut self, path: &[&str], error: HostError) -> Self {
            self.properties
                .insert(path.iter().map(|s| s.to_string()).collect(), Err(error));
            self
        }
        pub fn with_header(mut self, name: &str, value: &str) -> Self {
            self.headers
                .get_mut()
                .insert(name.to_owned(), value.as_bytes().to_vec());
            self
        }
        pub fn reply(&self) -> Option<Reply> {
            self.replies.borrow().last().cloned()
        }
        pub fn logged(&self, needle: &str) -> bool {
            self.logs
                .borrow()
                .iter()
                .any(|(_, line)| line.contains(needle))
        }
    }

    impl Host for MockHost {
        fn property(&self, path: &[&str]) -> Result<Option<Vec<u8>>, HostError> {
            self.calls.set(self.calls.get() + 1);
            let key: Vec<String> = path.iter().map(|s| s.to_string()).collect();
            match self.properties.get(&key) {
                None => Ok(None),
                Some(Ok(value)) if value.is_empty() => Ok(None),
                Some(Ok(value)) => Ok(Some(value.clone())),
                Some(Err(error)) => Err(error.clone()),
            }
        }
        fn request_header(&self, name: &str) -> Result<Option<Vec<u8>>, HostError> {
            self.calls.set(self.calls.get() + 1);
            Ok(self.headers.borrow().get(name).cloned())
        }
        fn remove_request_header(&self, name: &str) -> Result<(), HostError> {
            self.calls.set(self.calls.get() + 1);
            self.headers.borrow_mut().remove(name);
            Ok(())
        }
        fn request_headers(&self) -> Result<Vec<(String, Vec<u8>)>, HostError> {
            self.calls.set(self.calls.get() + 1);
            let mut all: Vec<(String, Vec<u8>)> = self
                .headers
                .borrow()
                .iter()
                .map(|(name, value)| (name.clone(), value.clone()))
                .collect();
            all.sort();
            all.extend(self.extra_headers.iter().cloned());
            Ok(all)
        }
        fn shared_data(&self, key: &str) -> Result<(Option<Vec<u8>>, Option<u32>), HostError> {
            self.calls.set(self.calls.get() + 1);
            Ok(match self.shared.borrow().get(key) {
                Some((value, cas)) => (Some(value.clone()), Some(*cas)),
                None => (None, None),
            })
        }
        fn set_shared_data(
            &self,
            key: &str,
            value: &[u8],
            cas: Option<u32>,
        ) -> Result<(), HostError> {
            self.calls.set(self.calls.get() + 1);
            if self.cas_conflicts.get() > 0 {
                self.cas_conflicts.set(self.cas_conflicts.get() - 1);
                return Err(HostError::CasMismatch);
            }
            let mut shared = self.shared.borrow_mut();
            let current = shared.get(key).map(|(_, tag)| *tag);
            if let (Some(expected), Some(current)) = (cas, current) {
                if expected != current {
                    return Err(HostError::CasMismatch);
                }
            }
            shared.insert(key.to_owned(), (value.to_vec(), current.unwrap_or(0) + 1));
            Ok(())
        }
        fn now(&self) -> Result<SystemTime, HostError> {
            self.calls.set(self.calls.get() + 1);
            Ok(SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(NOW))
        }
        fn send_reply(&self, reply: &Reply) -> Result<(), HostError> {
            self.calls.set(self.calls.get() + 1);
            self.replies.borrow_mut().push(reply.clone());
            Ok(())
        }
        fn log(&self, level: LogLevel, message: &str) {
            self.logs.borrow_mut().push((level, message.to_owned()));
        }
    }
}
