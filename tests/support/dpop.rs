#![allow(dead_code)]
//! DPoP clients for tests and the demo: keys of every kind cnf-guard accepts,
//! and proofs signed with them. Also compiled into the crate's unit tests
//! (src/dpop/mod.rs), so there is one signer.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use cnf_guard::dpop::proof::access_token_hash;
use cnf_guard::dpop::proof::jwk::{JwkThumbprint, PublicJwk};
use serde_json::{json, Value};
use std::sync::OnceLock;

pub enum TestKey {
    Es256(p256::ecdsa::SigningKey),
    Rs256(rsa::RsaPrivateKey),
    Ps256(rsa::RsaPrivateKey),
    EdDsa(ed25519_compact::KeyPair),
}

fn rsa_key() -> rsa::RsaPrivateKey {
    // Generating RSA keys is slow; one per test process is enough.
    static KEY: OnceLock<rsa::RsaPrivateKey> = OnceLock::new();
    KEY.get_or_init(|| rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 2048).unwrap())
        .clone()
}

impl TestKey {
    pub fn es256() -> TestKey {
        let mut secret = [0u8; 32];
        getrandom::getrandom(&mut secret).unwrap();
        TestKey::Es256(p256::ecdsa::SigningKey::from_slice(&secret).unwrap())
    }
    pub fn rs256() -> TestKey {
        TestKey::Rs256(rsa_key())
    }
    pub fn ps256() -> TestKey {
        TestKey::Ps256(rsa_key())
    }
    pub fn eddsa() -> TestKey {
        TestKey::EdDsa(ed25519_compact::KeyPair::generate())
    }
    pub fn all() -> Vec<TestKey> {
        vec![
            TestKey::es256(),
            TestKey::rs256(),
            TestKey::ps256(),
            TestKey::eddsa(),
        ]
    }

    pub fn alg(&self) -> &'static str {
        match self {
            TestKey::Es256(_) => "ES256",
            TestKey::Rs256(_) => "RS256",
            TestKey::Ps256(_) => "PS256",
            TestKey::EdDsa(_) => "EdDSA",
        }
    }

    pub fn public_jwk(&self) -> Value {
        let b64 = |bytes: &[u8]| URL_SAFE_NO_PAD.encode(bytes);
        match self {
            TestKey::Es256(key) => {
                let point = key.verifying_key().to_encoded_point(false);
                json!({"kty": "EC", "crv": "P-256",
                       "x": b64(point.x().unwrap()), "y": b64(point.y().unwrap())})
            }
            TestKey::Rs256(key) | TestKey::Ps256(key) => {
                use rsa::traits::PublicKeyParts as _;
                json!({"kty": "RSA", "n": b64(&key.n().to_bytes_be()), "e": b64(&key.e().to_bytes_be())})
            }
            TestKey::EdDsa(pair) => {
                json!({"kty": "OKP", "crv": "Ed25519", "x": b64(pair.pk.as_ref())})
            }
        }
    }

    pub fn jkt(&self) -> JwkThumbprint {
        PublicJwk::parse(&self.public_jwk()).unwrap().thumbprint()
    }

    /// Signs any header and claims, as a client (or an attacker) would.
    pub fn sign(&self, header: &Value, claims: &Value) -> String {
        let b64 = |value: &Value| URL_SAFE_NO_PAD.encode(serde_json::to_vec(value).unwrap());
        let input = format!("{}.{}", b64(header), b64(claims));
        let signature = self.signature(input.as_bytes());
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature))
    }

    pub fn signature(&self, message: &[u8]) -> Vec<u8> {
        use rsa::signature::{RandomizedSigner as _, SignatureEncoding as _, Signer as _};
        match self {
            TestKey::Es256(key) => {
                let signature: p256::ecdsa::Signature = key.sign(message);
                signature.to_bytes().to_vec()
            }
            TestKey::Rs256(key) => rsa::pkcs1v15::SigningKey::<sha2::Sha256>::new(key.clone())
                .sign(message)
                .to_vec(),
            TestKey::Ps256(key) => rsa::pss::BlindedSigningKey::<sha2::Sha256>::new(key.clone())
                .sign_with_rng(&mut rsa::rand_core::OsRng, message)
                .to_vec(),
            TestKey::EdDsa(pair) => pair.sk.sign(message, None).to_vec(),
        }
    }

    pub fn header(&self) -> Value {
        json!({"typ": "dpop+jwt", "alg": self.alg(), "jwk": self.public_jwk()})
    }

    pub fn proof(
        &self,
        method: &str,
        htu: &str,
        access_token: &str,
        iat: u64,
        jti: &str,
    ) -> String {
        self.sign(&self.header(), &claims(method, htu, access_token, iat, jti))
    }

    /// The key as a private JWK (with `d`), the form DPoP clients keep: EC
    /// (`d`), RSA (RFC 7518 §6.3.2: `d`, `p`, `q`, `dp`, `dq`, `qi`, and `alg`
    /// to tell RS256 from PS256) or OKP (`d`, the Ed25519 seed).
    pub fn private_jwk(&self) -> Option<Value> {
        let b64 = |bytes: &[u8]| URL_SAFE_NO_PAD.encode(bytes);
        let mut jwk = self.public_jwk();
        match self {
            TestKey::Es256(key) => {
                jwk["d"] = json!(b64(&key.to_bytes()));
            }
            TestKey::Rs256(key) | TestKey::Ps256(key) => {
                use rsa::traits::PrivateKeyParts as _;
                use rsa::BigUint;
                let [p, q] = key.primes() else { return None };
                let one = BigUint::from(1u8);
                let two = BigUint::from(2u8);
                let d = key.d();
                jwk["alg"] = json!(self.alg());
                jwk["d"] = json!(b64(&d.to_bytes_be()));
                jwk["p"] = json!(b64(&p.to_bytes_be()));
                jwk["q"] = json!(b64(&q.to_bytes_be()));
                jwk["dp"] = json!(b64(&(d % (p - &one)).to_bytes_be()));
                jwk["dq"] = json!(b64(&(d % (q - &one)).to_bytes_be()));
                // q⁻¹ mod p, by Fermat (p is prime).
                jwk["qi"] = json!(b64(&q.modpow(&(p - &two), p).to_bytes_be()));
            }
            TestKey::EdDsa(pair) => {
                jwk["d"] = json!(b64(&pair.sk.seed()[..]));
            }
        }
        Some(jwk)
    }

    /// Reads back what `private_jwk` wrote: an EC P-256, RSA or Ed25519
    /// private JWK (an RSA one is PS256 if its `alg` says so, else RS256).
    pub fn from_private_jwk(jwk: &Value) -> Option<TestKey> {
        let field = |name: &str| URL_SAFE_NO_PAD.decode(jwk[name].as_str()?).ok();
        let d = field("d")?;
        match jwk["kty"].as_str() {
            Some("RSA") => {
                let number = |name: &str| field(name).map(|b| rsa::BigUint::from_bytes_be(&b));
                let key = rsa::RsaPrivateKey::from_components(
                    number("n")?,
                    number("e")?,
                    rsa::BigUint::from_bytes_be(&d),
                    vec![number("p")?, number("q")?],
                )
                .ok()?;
                Some(if jwk["alg"] == "PS256" {
                    TestKey::Ps256(key)
                } else {
                    TestKey::Rs256(key)
                })
            }
            Some("OKP") => Some(TestKey::EdDsa(ed25519_compact::KeyPair::from_seed(
                ed25519_compact::Seed::from_slice(&d).ok()?,
            ))),
            // EC (P-256).
            _ => Some(TestKey::Es256(
                p256::ecdsa::SigningKey::from_slice(&d).ok()?,
            )),
        }
    }
}

/// Seconds since the Unix epoch, for `iat`.
pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

/// A fresh `jti`: unique per call within a process and across runs.
pub fn fresh_jti() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let mut random = [0u8; 8];
    getrandom::getrandom(&mut random).unwrap();
    format!(
        "{}-{}",
        URL_SAFE_NO_PAD.encode(random),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

pub fn claims(method: &str, htu: &str, access_token: &str, iat: u64, jti: &str) -> Value {
    json!({"jti": jti, "htm": method, "htu": htu, "iat": iat, "ath": access_token_hash(access_token)})
}
