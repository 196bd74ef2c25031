#![allow(dead_code)]
//! Demo and test material made at run time: a CA, a server certificate, two
//! client certificates, an ES256 issuer with its JWKS, and tokens.
//! Shared by the end-to-end tests and `make run` (examples/demo_material.rs).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jwt_simple::prelude::*;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, SanType,
};
use sha2::{Digest, Sha256};
use std::path::Path;

pub const ISSUER: &str = "https://issuer.cnf-guard.test";
pub const AUDIENCE: &str = "cnf-guard-demo";
pub const KEY_ID: &str = "demo-issuer";

pub struct Pki {
    pub ca_pem: String,
    pub server: Identity,
    pub clients: [Identity; 2],
    /// A TLS-terminating proxy in front of the server: client to the server.
    pub edge: Identity,
    /// A proxy whose certificate has several SANs of each type
    /// ([`PROXY_SANS`]), for trust by `peer_sans` on an Envoy that exposes
    /// only the first SAN of each type (before 1.38).
    pub proxy: Identity,
}

/// The SANs of [`Pki::proxy`], in certificate order: two URIs, two DNS
/// names and an IP address.
pub const PROXY_SANS: [&str; 5] = [
    "spiffe://cnf-guard.test/proxy-a",
    "spiffe://cnf-guard.test/proxy-b",
    "proxy-a.cnf-guard.test",
    "proxy-b.cnf-guard.test",
    "10.9.8.7",
];

/// The edge proxy's identity, as `trusted_proxy.peer_sans` names it.
pub const EDGE_SAN: &str = "spiffe://cnf-guard.test/edge";

pub struct Identity {
    pub cert_pem: String,
    pub cert_der: Vec<u8>,
    pub key_pem: String,
}

impl Identity {
    /// RFC 8705 `x5t#S256`: base64url SHA-256 of the DER certificate.
    pub fn x5t(&self) -> String {
        URL_SAFE_NO_PAD.encode(Sha256::digest(&self.cert_der))
    }

    /// SHA-256 of the DER SubjectPublicKeyInfo, base64url.
    pub fn spki_x5t(&self) -> String {
        let key = KeyPair::from_pem(&self.key_pem).expect("key");
        URL_SAFE_NO_PAD.encode(Sha256::digest(key.public_key_der()))
    }
}

pub fn make_pki() -> Pki {
    let ca_key = KeyPair::generate().expect("ca key");
    let mut ca_params = CertificateParams::default();
    ca_params.distinguished_name = name("cnf-guard demo CA");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).expect("ca");

    let issue = |common_name: &str, sans: Vec<SanType>, usages: Vec<ExtendedKeyUsagePurpose>| {
        let key = KeyPair::generate().expect("key");
        let mut params = CertificateParams::default();
        params.distinguished_name = name(common_name);
        params.subject_alt_names = sans;
        params.extended_key_usages = usages;
        let cert = params.signed_by(&key, &ca, &ca_key).expect("cert");
        Identity {
            cert_pem: cert.pem(),
            cert_der: cert.der().to_vec(),
            key_pem: key.serialize_pem(),
        }
    };
    let server = issue(
        "localhost",
        vec![
            SanType::DnsName("localhost".try_into().expect("dns")),
            SanType::IpAddress([127, 0, 0, 1].into()),
        ],
        vec![ExtendedKeyUsagePurpose::ServerAuth],
    );
    let client = |n: u32| {
        issue(
            &format!("client-{n}"),
            vec![SanType::URI(
                format!("spiffe://cnf-guard.test/client-{n}")
                    .try_into()
                    .expect("uri"),
            )],
            vec![ExtendedKeyUsagePurpose::ClientAuth],
        )
    };
    let edge = issue(
        "edge",
        vec![SanType::URI(EDGE_SAN.try_into().expect("uri"))],
        vec![ExtendedKeyUsagePurpose::ClientAuth],
    );
    let [uri_a, uri_b, dns_a, dns_b, ip] = PROXY_SANS;
    let proxy = issue(
        "proxy",
        vec![
            SanType::URI(uri_a.try_into().expect("uri")),
            SanType::URI(uri_b.try_into().expect("uri")),
            SanType::DnsName(dns_a.try_into().expect("dns")),
            SanType::DnsName(dns_b.try_into().expect("dns")),
            SanType::IpAddress(ip.parse().expect("ip")),
        ],
        vec![ExtendedKeyUsagePurpose::ClientAuth],
    );
    Pki {
        ca_pem: ca.pem(),
        server,
        clients: [client(1), client(2)],
        edge,
        proxy,
    }
}

fn name(common_name: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    dn
}

/// An ES256 token issuer.
pub struct Issuer {
    key: ES256KeyPair,
}

impl Issuer {
    pub fn new() -> Issuer {
        Issuer {
            key: ES256KeyPair::generate().with_key_id(KEY_ID),
        }
    }

    /// The JWKS jwt_authn verifies with.
    pub fn jwks(&self) -> String {
        let point = self.key.public_key().public_key().to_bytes_uncompressed();
        let (x, y) = point[1..].split_at(32);
        serde_json::json!({"keys": [{
            "kty": "EC", "crv": "P-256", "alg": "ES256", "use": "sig", "kid": KEY_ID,
            "x": URL_SAFE_NO_PAD.encode(x), "y": URL_SAFE_NO_PAD.encode(y),
        }]})
        .to_string()
    }

    /// A signed token for `subject` with extra claims (e.g. `cnf`), valid for `valid_for`.
    pub fn token(&self, subject: &str, extra: serde_json::Value, valid_for: Duration) -> String {
        let custom = match extra {
            serde_json::Value::Object(map) => map,
            _ => serde_json::Map::new(),
        };
        let claims = Claims::with_custom_claims(custom, valid_for)
            .with_issuer(ISSUER)
            .with_audience(AUDIENCE)
            .with_subject(subject);
        self.key.sign(claims).expect("sign")
    }

    /// A bound token whose `exp` lies an hour in the past.
    pub fn expired_bound_token(&self, subject: &str, x5t: &str) -> String {
        let mut claims = Claims::with_custom_claims(
            serde_json::json!({"cnf": {"x5t#S256": x5t}}),
            Duration::from_hours(1),
        )
        .with_issuer(ISSUER)
        .with_audience(AUDIENCE)
        .with_subject(subject);
        let now = Clock::now_since_epoch();
        claims.issued_at = Some(now - Duration::from_hours(2));
        claims.expires_at = Some(now - Duration::from_hours(1));
        self.key.sign(claims).expect("sign")
    }

    /// A JWS over exactly these header and payload bytes (duplicate keys,
    /// odd types and all), signed with the issuer's ES256 key.
    pub fn sign_raw(&self, header: &str, payload: &str) -> String {
        use p256::ecdsa::signature::Signer as _;
        let signing_input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header),
            URL_SAFE_NO_PAD.encode(payload)
        );
        let key = p256::ecdsa::SigningKey::from_slice(&self.key.to_bytes()).expect("p256 key");
        let signature: p256::ecdsa::Signature = key.sign(signing_input.as_bytes());
        format!(
            "{signing_input}.{}",
            URL_SAFE_NO_PAD.encode(signature.to_bytes())
        )
    }

    /// The ES256 header jwt_authn expects from this issuer.
    pub fn header(&self) -> String {
        serde_json::json!({"alg": "ES256", "typ": "JWT", "kid": KEY_ID}).to_string()
    }

    /// Registered claims that jwt_authn accepts, plus `extra` spliced in as raw JSON.
    pub fn payload_with(&self, extra: &str) -> String {
        let now = Clock::now_since_epoch().as_secs();
        let base = format!(
            r#""iss":"{ISSUER}","aud":"{AUDIENCE}","sub":"client-1","iat":{now},"exp":{}"#,
            now + 3600
        );
        if extra.is_empty() {
            format!("{{{base}}}")
        } else {
            format!("{{{base},{extra}}}")
        }
    }

    pub fn bound_token(&self, subject: &str, x5t: &str) -> String {
        self.token(
            subject,
            serde_json::json!({"cnf": {"x5t#S256": x5t}}),
            Duration::from_hours(1),
        )
    }
}

impl Default for Issuer {
    fn default() -> Self {
        Issuer::new()
    }
}

/// Writes `name` under `dir`, creating `dir`.
pub fn write(dir: &Path, name: &str, contents: &str) {
    std::fs::create_dir_all(dir).expect("mkdir");
    std::fs::write(dir.join(name), contents).expect("write");
}

/// Writes the PKI as `ca.pem`, `server.{pem,key}`, `client-{1,2}.{pem,key}`, `edge.{pem,key}`.
pub fn write_pki(pki: &Pki, dir: &Path) {
    write(dir, "ca.pem", &pki.ca_pem);
    write(dir, "server.pem", &pki.server.cert_pem);
    write(dir, "server.key", &pki.server.key_pem);
    write(dir, "edge.pem", &pki.edge.cert_pem);
    write(dir, "edge.key", &pki.edge.key_pem);
    for (n, client) in pki.clients.iter().enumerate() {
        write(dir, &format!("client-{}.pem", n + 1), &client.cert_pem);
        write(dir, &format!("client-{}.key", n + 1), &client.key_pem);
    }
}
