//! Reading what the user hands the CLI: files or stdin, certificates, tokens.
//! Every failure names the input and says what was expected.

use crate::args::Input;
use crate::failure::Failure;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use cnf_guard::certificate::thumbprint::{
    certificate_der_from_pem, spki_thumbprint_from_der, Thumbprint,
};
use cnf_guard::token::claims::bearer_payload;
use serde_json::Value;
use std::io::Read as _;

impl Input {
    /// The input as messages name it: the path, `stdin`, or what the inline value is.
    pub fn name(&self) -> String {
        match self {
            Input::File(path) => path.display().to_string(),
            Input::Stdin => "stdin".to_owned(),
            Input::Inline { what, .. } => (*what).to_owned(),
        }
    }

    pub fn read(&self) -> Result<Vec<u8>, Failure> {
        let result = match self {
            Input::File(path) => std::fs::read(path),
            Input::Stdin => {
                let mut bytes = Vec::new();
                std::io::stdin().read_to_end(&mut bytes).map(|_| bytes)
            }
            Input::Inline { text, .. } => Ok(text.clone().into_bytes()),
        };
        result.map_err(|error| Failure::input(format!("cannot read {}: {error}", self.name())))
    }
}

/// A client certificate as Envoy would see it on the connection: the leaf.
pub struct Certificate {
    pub source: String,
    pub der: Vec<u8>,
    pub subject: String,
    /// x5t#S256 of the whole DER certificate (RFC 8705 §3.1).
    pub thumbprint: Thumbprint,
    /// SHA-256 of the DER SubjectPublicKeyInfo (`thumbprint: spki`).
    pub spki_thumbprint: Thumbprint,
}

impl Certificate {
    /// The first `CERTIFICATE` block of a PEM file (plain or URL-encoded, as the
    /// filter accepts it); a chain's first block is the leaf.
    pub fn load(input: &Input) -> Result<Certificate, Failure> {
        let bytes = input.read()?;
        let der = certificate_der_from_pem(&bytes).map_err(|_| {
            Failure::input(format!(
                "{} holds no PEM certificate (-----BEGIN CERTIFICATE-----); \
                 for DER use `openssl x509 -inform DER -in FILE` first",
                input.name()
            ))
        })?;
        let spki_thumbprint = spki_thumbprint_from_der(&der).map_err(|error| {
            Failure::input(format!(
                "{}: not an X.509 certificate: {error}",
                input.name()
            ))
        })?;
        Ok(Certificate {
            source: input.name(),
            subject: subject(&der),
            thumbprint: Thumbprint::of(&der),
            spki_thumbprint,
            der,
        })
    }

    /// Envoy's `connection.sha256_peer_certificate_digest`: lowercase hex.
    pub fn hex_digest(&self) -> String {
        use sha2::Digest as _;
        hex::encode(sha2::Sha256::digest(&self.der))
    }

    pub fn spki_hex_digest(&self) -> String {
        hex_of(&self.spki_thumbprint)
    }
}

fn subject(der: &[u8]) -> String {
    use der::Decode as _;
    x509_cert::Certificate::from_der(der)
        .map(|certificate| certificate.tbs_certificate.subject.to_string())
        .unwrap_or_default()
}

/// The hex digits of a thumbprint, via its canonical x5t text.
pub fn hex_of(thumbprint: &Thumbprint) -> String {
    URL_SAFE_NO_PAD
        .decode(thumbprint.to_x5t())
        .map(hex::encode)
        .unwrap_or_default()
}

/// A compact JWS split into its decoded header and payload. The signature is
/// not checked: in Envoy that is jwt_authn's job.
pub struct Token {
    pub text: String,
    pub header: Value,
    pub payload: Value,
}

impl Token {
    /// The `--token` value: the token itself, a file holding it, or stdin.
    pub fn load(input: &Input) -> Result<Token, Failure> {
        if let Input::File(path) = input {
            if !path.exists() {
                return Err(Failure::input(format!(
                    "no such file: {} (--token takes the token itself, a file holding it, or - for stdin)",
                    path.display()
                )));
            }
        }
        let bytes = input.read()?;
        let raw = String::from_utf8(bytes).map_err(|_| {
            Failure::input(format!("malformed token: {} is not text", input.name()))
        })?;
        Token::decode(raw.trim()).map_err(|failure| match input {
            Input::Inline { .. } => failure,
            _ => Failure::input(format!("{}: {}", input.name(), failure.message)),
        })
    }

    pub fn decode(raw: &str) -> Result<Token, Failure> {
        let text = raw.trim();
        let text = text
            .strip_prefix("Bearer ")
            .or_else(|| text.strip_prefix("bearer "))
            .unwrap_or(text)
            .trim()
            .to_owned();
        let malformed = |why: &str| Failure::input(format!("malformed token: {why}"));
        let header_segment = text.split('.').next().unwrap_or_default();
        let header_json = URL_SAFE_NO_PAD
            .decode(header_segment)
            .map_err(|_| malformed("the header segment is not base64url"))?;
        let header: Value = serde_json::from_slice(&header_json)
            .map_err(|_| malformed("the header segment is not JSON"))?;
        if !header.is_object() {
            return Err(malformed("the header is not a JSON object"));
        }
        // The same decoding the filter applies to a forwarded Authorization header.
        let payload = bearer_payload(format!("Bearer {text}").as_bytes())
            .map_err(|why| malformed(why.trim_start_matches("the bearer token's ")))?;
        if !payload.is_object() {
            return Err(malformed("the payload is not a JSON object"));
        }
        Ok(Token {
            text,
            header,
            payload,
        })
    }

    /// The `cnf` claim as the token carries it.
    pub fn cnf(&self) -> Option<&Value> {
        self.payload.get("cnf")
    }
}
