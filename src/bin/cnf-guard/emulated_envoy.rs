//! An in-process stand-in for Envoy behind the filter's `Host` trait, so the
//! CLI runs the filter's own code instead of a re-implementation of it.
//!
//! It answers the properties the way Envoy 1.40 does after jwt_authn verified
//! a token with `payload_in_metadata` on a TLS connection:
//! - a string leaf of the payload is its raw bytes, a number an 8-byte
//!   little-endian double, a bool one byte, an object the proxy-wasm pairs
//!   encoding of its members;
//! - a list reads successfully (the filter never looks inside one; its
//!   elements are encoded here as pairs with empty keys);
//! - a JSON null anywhere inside the value read makes the read fail with a
//!   serialization failure (Envoy cannot serialise it);
//! - `connection.sha256_peer_certificate_digest` is the lowercase hex SHA-256
//!   of the DER certificate, `connection.peer_certificate` its PEM;
//! - an empty value, and any property it does not know, is absent;
//! - headers and shared data behave as `cnf_guard::host::envoy_model` says.

use crate::inputs::Certificate;
use cnf_guard::host::envoy_model::{HeaderLines, SharedStore};
use cnf_guard::host::{Host, HostError};
use cnf_guard::reply::Reply;
use serde_json::Value;
use std::cell::RefCell;
use std::time::SystemTime;

const JWT_AUTHN_METADATA: [&str; 3] = [
    "metadata",
    "filter_metadata",
    "envoy.filters.http.jwt_authn",
];

pub struct EmulatedEnvoy<'a> {
    /// jwt_authn's `payload_in_metadata` key and the verified payload under it.
    pub metadata_key: &'a str,
    pub payload: &'a Value,
    pub certificate: Option<&'a Certificate>,
    /// Request headers, lower-case names.
    pub headers: Vec<(String, String)>,
    pub reply: RefCell<Option<Reply>>,
    /// Shared data for the DPoP replay cache and nonce key: one request only.
    shared: RefCell<SharedStore>,
}

impl<'a> EmulatedEnvoy<'a> {
    pub fn new(
        metadata_key: &'a str,
        payload: &'a Value,
        certificate: Option<&'a Certificate>,
        headers: Vec<(String, String)>,
    ) -> EmulatedEnvoy<'a> {
        EmulatedEnvoy {
            metadata_key,
            payload,
            certificate,
            headers,
            reply: RefCell::new(None),
            shared: RefCell::new(SharedStore::default()),
        }
    }

    fn metadata(&self, rest: &[&str]) -> Result<Option<Vec<u8>>, HostError> {
        let Some((key, claim_path)) = rest.split_first() else {
            return Ok(None);
        };
        if *key != self.metadata_key {
            return Ok(None);
        }
        let mut value = self.payload;
        for segment in claim_path {
            match value.get(*segment) {
                Some(inner) if value.is_object() => value = inner,
                _ => return Ok(None),
            }
        }
        serialize(value).map(Some)
    }

    fn connection(&self, property: &str) -> Option<Vec<u8>> {
        let certificate = self.certificate?;
        match property {
            "sha256_peer_certificate_digest" => Some(certificate.hex_digest().into_bytes()),
            "peer_certificate" => pem_rfc7468::encode_string(
                "CERTIFICATE",
                pem_rfc7468::LineEnding::LF,
                &certificate.der,
            )
            .ok()
            .map(String::into_bytes),
            "mtls" => Some(vec![1]),
            "subject_peer_certificate" => Some(certificate.subject.clone().into_bytes()),
            _ => None,
        }
    }
}

/// Envoy's encoding of a metadata value handed to a wasm filter.
fn serialize(value: &Value) -> Result<Vec<u8>, HostError> {
    match value {
        Value::String(text) => Ok(text.clone().into_bytes()),
        Value::Number(number) => Ok(number.as_f64().unwrap_or(f64::NAN).to_le_bytes().to_vec()),
        Value::Bool(flag) => Ok(vec![u8::from(*flag)]),
        Value::Object(members) => {
            encode_pairs(members.iter().map(|(key, member)| (key.as_bytes(), member)))
        }
        Value::Array(elements) => encode_pairs(elements.iter().map(|element| (&b""[..], element))),
        Value::Null => Err(HostError::SerializationFailure),
    }
}

fn encode_pairs<'v>(
    members: impl Iterator<Item = (&'v [u8], &'v Value)>,
) -> Result<Vec<u8>, HostError> {
    let mut pairs = Vec::new();
    for (key, member) in members {
        pairs.push((key, serialize(member)?));
    }
    let borrowed: Vec<(&[u8], &[u8])> = pairs
        .iter()
        .map(|(key, value)| (*key, value.as_slice()))
        .collect();
    Ok(cnf_guard::token::pairs::encode(&borrowed))
}

impl Host for EmulatedEnvoy<'_> {
    fn property(&self, path: &[&str]) -> Result<Option<Vec<u8>>, HostError> {
        let value = match path {
            [a, b, c, rest @ ..] if [*a, *b, *c] == JWT_AUTHN_METADATA => self.metadata(rest)?,
            ["connection", property] => self.connection(property),
            ["request", "id"] => self
                .headers
                .iter()
                .find(|(header, _)| header.eq_ignore_ascii_case("x-request-id"))
                .map(|(_, value)| value.clone().into_bytes()),
            _ => None,
        };
        // As the wasm glue does: an empty value is an absent one.
        Ok(value.filter(|bytes| !bytes.is_empty()))
    }

    fn remove_request_header(&self, _name: &str) -> Result<(), HostError> {
        // Nothing goes upstream from the CLI.
        Ok(())
    }

    fn request_headers(&self) -> Result<Vec<(String, Vec<u8>)>, HostError> {
        let mut lines = HeaderLines::default();
        for (name, value) in &self.headers {
            lines.add(name, value.as_bytes());
        }
        Ok(lines.lines())
    }

    fn shared_data(&self, key: &str) -> Result<(Option<Vec<u8>>, Option<u32>), HostError> {
        Ok(self.shared.borrow().get(key))
    }

    fn set_shared_data(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), HostError> {
        self.shared.borrow_mut().set(key, value, cas)
    }

    fn now(&self) -> Result<SystemTime, HostError> {
        Ok(SystemTime::now())
    }

    fn set_filter_state(&self, _name: &str, _value: &str) -> Result<(), HostError> {
        // No access log here: the report prints the outcome itself.
        Ok(())
    }

    /// The replay store is not reached from here: the call is accepted, and
    /// `inspect` answers it as webdis answers a first use.
    fn dispatch_http_call(
        &self,
        _cluster: &str,
        _headers: &[(&str, &str)],
        _timeout: std::time::Duration,
    ) -> Result<u32, HostError> {
        Ok(1)
    }

    fn send_reply(&self, reply: &Reply) -> Result<(), HostError> {
        self.reply.replace(Some(reply.clone()));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::args::Input;
    use serde_json::json;

    fn read(payload: &Value, claim: &[&str]) -> Result<Option<Vec<u8>>, HostError> {
        let envoy = EmulatedEnvoy::new("payload", payload, None, Vec::new());
        let path: Vec<&str> = JWT_AUTHN_METADATA
            .iter()
            .copied()
            .chain(["payload"])
            .chain(claim.iter().copied())
            .collect();
        envoy.property(&path)
    }

    #[test]
    fn leaves_read_as_envoy_encodes_them() {
        let payload = json!({"cnf": {"x5t#S256": "abc"}, "n": 1.5, "ok": true, "empty": ""});
        assert_eq!(
            read(&payload, &["cnf", "x5t#S256"]),
            Ok(Some(b"abc".to_vec()))
        );
        assert_eq!(
            read(&payload, &["n"]),
            Ok(Some(1.5f64.to_le_bytes().to_vec()))
        );
        assert_eq!(read(&payload, &["ok"]), Ok(Some(vec![1])));
        assert_eq!(read(&payload, &["empty"]), Ok(None));
        assert_eq!(read(&payload, &["missing"]), Ok(None));
        assert_eq!(read(&payload, &["cnf", "x5t#S256", "deeper"]), Ok(None));
    }

    #[test]
    fn objects_are_pairs_and_null_fails_them() {
        let payload = json!({"cnf": {"x5t#S256": "abc"}, "sub": "a"});
        let bytes = read(&payload, &[]).unwrap().unwrap();
        let pairs = cnf_guard::token::pairs::decode(&bytes).unwrap();
        assert_eq!(pairs.len(), 2);
        assert!(pairs.iter().any(|(k, v)| *k == b"sub" && *v == b"a"));
        let with_null = json!({"sub": "a", "extra": {"nonce": null}});
        assert_eq!(read(&with_null, &[]), Err(HostError::SerializationFailure));
        assert_eq!(read(&with_null, &["sub"]), Ok(Some(b"a".to_vec())));
    }

    #[test]
    fn other_metadata_keys_and_unknown_properties_are_absent() {
        let payload = json!({"sub": "a"});
        let envoy = EmulatedEnvoy::new("jwt", &payload, None, Vec::new());
        assert_eq!(
            envoy.property(&[
                "metadata",
                "filter_metadata",
                "envoy.filters.http.jwt_authn",
                "payload"
            ]),
            Ok(None)
        );
        assert_eq!(
            envoy.property(&["connection", "sha256_peer_certificate_digest"]),
            Ok(None)
        );
        assert_eq!(envoy.property(&["upstream", "address"]), Ok(None));
    }

    #[test]
    fn connection_properties_describe_the_certificate() {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["client".to_owned()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("client.pem");
        std::fs::write(&file, cert.pem()).unwrap();
        let certificate = Certificate::load(&Input::File(file)).unwrap();
        let payload = json!({});
        let envoy = EmulatedEnvoy::new("payload", &payload, Some(&certificate), Vec::new());
        let digest = envoy
            .property(&["connection", "sha256_peer_certificate_digest"])
            .unwrap()
            .unwrap();
        assert_eq!(
            cnf_guard::certificate::thumbprint::Thumbprint::from_hex(&digest),
            Some(cnf_guard::certificate::thumbprint::Thumbprint::of(
                cert.der()
            ))
        );
        let pem = envoy
            .property(&["connection", "peer_certificate"])
            .unwrap()
            .unwrap();
        assert_eq!(
            cnf_guard::certificate::thumbprint::certificate_der_from_pem(&pem).unwrap(),
            cert.der().to_vec()
        );
    }
}
