//! An in-memory host that records what the filter asked and did, and
//! behaves as Envoy does where that matters ([`super::envoy_model`]).

use super::envoy_model::{HeaderLines, SharedStore};
use super::*;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;

/// The mock's clock, in seconds since the Unix epoch.
pub const NOW: u64 = 1_800_000_000;

type Interleaving = Box<dyn FnMut(usize)>;

enum Foreign {
    /// Envoy's `verify_signature`: `EVP_DigestVerify` with the named digest.
    BoringSslVerifySignature,
    /// Any call gets these bytes.
    Fixed(Vec<u8>),
}

pub struct MockHost {
    pub properties: HashMap<Vec<String>, Result<Vec<u8>, HostError>>,
    pub headers: RefCell<HeaderLines>,
    /// Shared data, shared with every [`MockHost::worker`] of this host.
    pub shared: Rc<RefCell<SharedStore>>,
    /// Runs another worker's code just before this host's n-th shared-data call.
    interleaving: RefCell<Option<Interleaving>>,
    shared_calls: Cell<usize>,
    /// What `call_foreign_function` does; none by default.
    foreign: Option<Foreign>,
    pub replies: RefCell<Vec<Reply>>,
    /// Filter state the filter set, by name.
    pub filter_state: RefCell<HashMap<String, String>>,
    /// Host calls made while handling a request (logging excluded).
    pub calls: Cell<usize>,
    /// The Envoy clusters `dispatch_http_call` can reach.
    clusters: Vec<String>,
    /// Every HTTP call dispatched: cluster, headers, timeout.
    pub http_calls: RefCell<Vec<DispatchedCall>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DispatchedCall {
    pub cluster: String,
    pub headers: Vec<(String, String)>,
    pub timeout: std::time::Duration,
}

impl Default for MockHost {
    fn default() -> Self {
        super::log_capture::install();
        MockHost {
            properties: HashMap::new(),
            headers: RefCell::default(),
            shared: Rc::default(),
            interleaving: RefCell::new(None),
            shared_calls: Cell::new(0),
            foreign: None,
            replies: RefCell::default(),
            filter_state: RefCell::default(),
            calls: Cell::new(0),
            clusters: Vec::new(),
            http_calls: RefCell::default(),
        }
    }
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
    /// Adds a header line as a client sends it; Envoy joins some repeats.
    pub fn with_header(self, name: &str, value: &str) -> Self {
        self.headers.borrow_mut().add(name, value.as_bytes());
        self
    }
    /// `verify_signature` as Envoy 1.40 answers it (`EVP_DigestVerify` with
    /// SHA-256): ECDSA P-256 over a DER signature and RSA PKCS#1 v1.5 verify;
    /// RSA-PSS does not (the padding cannot be set), and Ed25519 fails to
    /// initialise (it takes no digest). The end-to-end probe log pins this.
    pub fn with_boringssl_verify_signature(mut self) -> Self {
        self.foreign = Some(Foreign::BoringSslVerifySignature);
        self
    }
    /// Every foreign call answers `bytes`.
    pub fn with_foreign_answer(mut self, bytes: Vec<u8>) -> Self {
        self.foreign = Some(Foreign::Fixed(bytes));
        self
    }
    /// An Envoy cluster `dispatch_http_call` can reach.
    pub fn with_cluster(mut self, name: &str) -> Self {
        self.clusters.push(name.to_owned());
        self
    }
    /// Another worker VM of the same Envoy: its own request, the same shared data.
    pub fn worker(&self) -> MockHost {
        MockHost {
            shared: Rc::clone(&self.shared),
            ..MockHost::default()
        }
    }
    /// Runs `other_worker` just before this host's `call`-th (from 0)
    /// shared-data call, as a worker on another thread might.
    pub fn before_shared_call(&self, call: usize, other_worker: impl FnOnce() + 'static) {
        let mut other_worker = Some(other_worker);
        self.before_each_shared_call(move |index| {
            if index == call {
                if let Some(run) = other_worker.take() {
                    run();
                }
            }
        });
    }
    /// Runs `other_workers` with its index before every shared-data call.
    pub fn before_each_shared_call(&self, other_workers: impl FnMut(usize) + 'static) {
        self.interleaving.replace(Some(Box::new(other_workers)));
    }
    pub fn reply(&self) -> Option<Reply> {
        self.replies.borrow().last().cloned()
    }
    /// Whether the test's thread logged a line containing `needle` (each
    /// unit test runs on its own thread).
    pub fn logged(&self, needle: &str) -> bool {
        super::log_capture::contains(needle)
    }

    fn count_shared_call(&self) {
        let call = self.shared_calls.get();
        self.shared_calls.set(call + 1);
        // Taken out while it runs: the other worker has its own host.
        if let Some(mut other_workers) = self.interleaving.take() {
            other_workers(call);
            self.interleaving.replace(Some(other_workers));
        }
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
    fn remove_request_header(&self, name: &str) -> Result<(), HostError> {
        self.calls.set(self.calls.get() + 1);
        self.headers.borrow_mut().remove(name);
        Ok(())
    }
    fn request_headers(&self) -> Result<Vec<(String, Vec<u8>)>, HostError> {
        self.calls.set(self.calls.get() + 1);
        Ok(self.headers.borrow().lines())
    }
    fn shared_data(&self, key: &str) -> Result<(Option<Vec<u8>>, Option<u32>), HostError> {
        self.calls.set(self.calls.get() + 1);
        self.count_shared_call();
        Ok(self.shared.borrow().get(key))
    }
    fn set_shared_data(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), HostError> {
        self.calls.set(self.calls.get() + 1);
        self.count_shared_call();
        self.shared.borrow_mut().set(key, value, cas)
    }
    fn now(&self) -> Result<SystemTime, HostError> {
        self.calls.set(self.calls.get() + 1);
        Ok(SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(NOW))
    }
    fn call_foreign_function(
        &self,
        name: &str,
        argument: &[u8],
    ) -> Result<Option<Vec<u8>>, HostError> {
        self.calls.set(self.calls.get() + 1);
        match &self.foreign {
            Some(Foreign::Fixed(bytes)) => Ok(Some(bytes.clone())),
            Some(Foreign::BoringSslVerifySignature) if name == "verify_signature" => {
                Ok(Some(boringssl_verify_signature(argument)))
            }
            _ => Err(HostError::Failure("NotFound".to_owned())),
        }
    }
    fn set_filter_state(&self, name: &str, value: &str) -> Result<(), HostError> {
        self.calls.set(self.calls.get() + 1);
        self.filter_state
            .borrow_mut()
            .insert(name.to_owned(), value.to_owned());
        Ok(())
    }
    /// As Envoy's `Context::httpCall`: `BadArgument` for an unknown cluster
    /// or without `:method`, `:path` and `:authority`; else a new token.
    fn dispatch_http_call(
        &self,
        cluster: &str,
        headers: &[(&str, &str)],
        timeout: std::time::Duration,
    ) -> Result<u32, HostError> {
        self.calls.set(self.calls.get() + 1);
        let has = |name: &str| headers.iter().any(|(n, _)| *n == name);
        let known = self.clusters.iter().any(|known| known == cluster);
        if !(known && has(":method") && has(":path") && has(":authority")) {
            return Err(HostError::BadArgument);
        }
        let mut calls = self.http_calls.borrow_mut();
        calls.push(DispatchedCall {
            cluster: cluster.to_owned(),
            headers: headers
                .iter()
                .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
                .collect(),
            timeout,
        });
        Ok(u32::try_from(calls.len()).unwrap_or(u32::MAX))
    }
    fn send_reply(&self, reply: &Reply) -> Result<(), HostError> {
        self.calls.set(self.calls.get() + 1);
        self.replies.borrow_mut().push(reply.clone());
        Ok(())
    }
}

/// Envoy's `verify_signature`, in RustCrypto: the argument's four fields in,
/// `VerifySignatureResult { result = 1, error = 2 }` out.
fn boringssl_verify_signature(argument: &[u8]) -> Vec<u8> {
    use p256::pkcs8::DecodePublicKey as _;
    use rsa::signature::Verifier as _;
    let mut fields: Vec<&[u8]> = Vec::new();
    let mut rest = argument;
    while let [key, length, tail @ ..] = rest {
        // Every field here is length-delimited; lengths up to 16383.
        let (length, tail) = if length & 0x80 == 0 {
            (usize::from(*length), tail)
        } else {
            let (high, tail) = tail.split_first().unwrap();
            (usize::from(length & 0x7f) | usize::from(*high) << 7, tail)
        };
        assert_eq!(key & 7, 2, "a length-delimited field");
        fields.push(&tail[..length]);
        rest = &tail[length..];
    }
    let [hash, key, signature, text] = fields[..] else {
        panic!("four fields, got {}", fields.len());
    };
    assert_eq!(hash, b"sha256");
    let verified = if let Ok(key) = p256::ecdsa::VerifyingKey::from_public_key_der(key) {
        p256::ecdsa::Signature::from_der(signature)
            .is_ok_and(|signature| key.verify(text, &signature).is_ok())
    } else if let Ok(key) = rsa::RsaPublicKey::from_public_key_der(key) {
        let key = rsa::pkcs1v15::VerifyingKey::<sha2::Sha256>::new(key);
        rsa::pkcs1v15::Signature::try_from(signature)
            .is_ok_and(|signature| key.verify(text, &signature).is_ok())
    } else {
        return b"\x12\x23Failed to initialize digest verify.".to_vec();
    };
    if verified {
        vec![0x08, 0x01]
    } else {
        b"\x12\x26Failed to verify digest. Error code: 0".to_vec()
    }
}
