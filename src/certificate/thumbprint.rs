//! SHA-256 thumbprints: the `x5t#S256` text form (RFC 8705 §3.1), the hex form
//! Envoy reports, and the SubjectPublicKeyInfo variant.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Which thumbprint a token binds (the `thumbprint` setting).
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ThumbprintKind {
    /// RFC 8705 §3.1: SHA-256 of the whole DER certificate.
    #[default]
    Certificate,
    /// SHA-256 of the DER SubjectPublicKeyInfo (not RFC 8705; opt-in).
    Spki,
}

/// A SHA-256 digest identifying a certificate (or its public key).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Thumbprint([u8; 32]);

impl Thumbprint {
    pub fn of(bytes: &[u8]) -> Thumbprint {
        Thumbprint(Sha256::digest(bytes).into())
    }

    /// Constant-time equality: how long a comparison takes must not tell an
    /// attacker how many leading bytes of a guessed thumbprint were right.
    pub fn matches(&self, other: &Thumbprint) -> bool {
        self.0.ct_eq(&other.0).into()
    }

    /// The canonical `x5t#S256` text: base64url, no padding, 43 characters.
    pub fn to_x5t(self) -> String {
        URL_SAFE_NO_PAD.encode(self.0)
    }

    /// Parses Envoy's `connection.sha256_peer_certificate_digest`: 64 hex characters.
    pub fn from_hex(hex_digest: &[u8]) -> Option<Thumbprint> {
        let mut digest = [0u8; 32];
        hex::decode_to_slice(hex_digest, &mut digest).ok()?;
        Some(Thumbprint(digest))
    }

    /// Parses a `cnf.x5t#S256` value strictly: exactly 43 canonical base64url
    /// characters without padding, decoding to 32 bytes.
    pub fn from_x5t(value: &[u8]) -> Result<Thumbprint, X5tError> {
        if value.iter().any(|b| !b.is_ascii_graphic()) {
            return Err(X5tError::NotText);
        }
        if value.len() == 64 && value.iter().all(u8::is_ascii_hexdigit) {
            return Err(X5tError::Hex);
        }
        if value.contains(&b'=') {
            return Err(X5tError::Padded);
        }
        if let Some(&byte) = value
            .iter()
            .find(|b| !(b.is_ascii_alphanumeric() || **b == b'-' || **b == b'_'))
        {
            return Err(X5tError::NotBase64url(char::from(byte)));
        }
        if value.len() != 43 {
            return Err(X5tError::Length(value.len()));
        }
        // The engine rejects non-zero trailing bits, so only one spelling of
        // each digest is accepted.
        let mut digest = [0u8; 32];
        match URL_SAFE_NO_PAD.decode_slice(value, &mut digest) {
            Ok(32) => Ok(Thumbprint(digest)),
            _ => Err(X5tError::NonCanonical),
        }
    }
}

impl std::fmt::Debug for Thumbprint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Thumbprint({})", self.to_x5t())
    }
}

/// Why a `cnf.x5t#S256` value is not a valid thumbprint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum X5tError {
    /// Not printable text: a non-string claim arrives in a binary encoding.
    NotText,
    /// 64 hex characters: a hex digest where base64url belongs.
    Hex,
    Padded,
    NotBase64url(char),
    Length(usize),
    NonCanonical,
}

impl std::fmt::Display for X5tError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            X5tError::NotText => write!(f, "cnf.x5t#S256 is not a string"),
            X5tError::Hex => write!(
                f,
                "cnf.x5t#S256 is a hexadecimal digest; RFC 8705 requires base64url without padding (43 characters)"
            ),
            X5tError::Padded => write!(f, "cnf.x5t#S256 must be base64url without padding"),
            X5tError::NotBase64url(c) => {
                write!(f, "cnf.x5t#S256 contains {c:?}, which is not a base64url character")
            }
            X5tError::Length(n) => write!(
                f,
                "cnf.x5t#S256 has {n} characters; a SHA-256 thumbprint has 43"
            ),
            X5tError::NonCanonical => write!(f, "cnf.x5t#S256 is not canonical base64url"),
        }
    }
}

/// Why a certificate could not be turned into an SPKI thumbprint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CertificateError {
    NotPem,
    Der(String),
}

impl std::fmt::Display for CertificateError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CertificateError::NotPem => write!(f, "peer certificate is not a PEM certificate"),
            CertificateError::Der(reason) => {
                write!(f, "peer certificate is not valid DER: {reason}")
            }
        }
    }
}

/// SHA-256 of the DER SubjectPublicKeyInfo of the first certificate in `pem`,
/// which may be plain or URL-encoded (Envoy's `connection.peer_certificate`).
pub fn spki_thumbprint_from_pem(pem: &[u8]) -> Result<Thumbprint, CertificateError> {
    let der = certificate_der_from_pem(pem)?;
    spki_thumbprint_from_der(&der)
}

pub fn spki_thumbprint_from_der(der: &[u8]) -> Result<Thumbprint, CertificateError> {
    let certificate = crate::certificate::x509::Certificate::parse(der)
        .map_err(|error| CertificateError::Der(error.to_string()))?;
    Ok(Thumbprint::of(certificate.subject_public_key_info()))
}

const BEGIN: &[u8] = b"-----BEGIN CERTIFICATE-----";
const END: &[u8] = b"-----END CERTIFICATE-----";

/// The DER bytes of the first `CERTIFICATE` block in plain or URL-encoded PEM.
pub fn certificate_der_from_pem(pem: &[u8]) -> Result<Vec<u8>, CertificateError> {
    let decoded;
    let text: &[u8] = if pem.starts_with(BEGIN) {
        pem
    } else {
        decoded = percent_encoding::percent_decode(pem).collect::<Vec<u8>>();
        &decoded
    };
    let start = find(text, BEGIN).ok_or(CertificateError::NotPem)?;
    let rest = text.get(start..).ok_or(CertificateError::NotPem)?;
    let end = find(rest, END).ok_or(CertificateError::NotPem)? + END.len();
    let block = rest.get(..end).ok_or(CertificateError::NotPem)?;
    block_der(block).ok_or(CertificateError::NotPem)
}

/// The DER in one block, from its BEGIN line to its END line, decoded as
/// the pem-rfc7468 crate decoded it (replaced: with its own base64 engine it
/// was 14 KB of the wasm module; the tests compare the two): an end of line (LF, CRLF or CR) after the BEGIN line and
/// before the END line; base64 lines of exactly 64 characters, each followed
/// by an end of line, then a last line of at most 64 that may end with one
/// more; canonical padded base64, padding only at the very end.
fn block_der(block: &[u8]) -> Option<Vec<u8>> {
    const WIDTH: usize = 64;
    let text = block.strip_prefix(BEGIN)?.strip_suffix(END)?;
    let mut rest = strip_trailing_eol(strip_leading_eol(text)?)?;
    let mut base64 = Vec::with_capacity(rest.len());
    let mut last_line_empty = false;
    while !rest.is_empty() {
        match rest.get(WIDTH..) {
            Some(after) if !after.is_empty() => {
                base64.extend_from_slice(rest.get(..WIDTH)?);
                rest = strip_leading_eol(after)?;
            }
            _ => {
                let line = strip_trailing_eol(rest).unwrap_or(rest);
                last_line_empty = line.is_empty();
                base64.extend_from_slice(line);
                rest = &[];
            }
        }
    }
    // pem-rfc7468 decoded padding only in the last line, even an empty one.
    if base64.is_empty() || (last_line_empty && base64.contains(&b'=')) {
        return None;
    }
    base64::engine::general_purpose::STANDARD
        .decode(base64)
        .ok()
}

fn strip_leading_eol(bytes: &[u8]) -> Option<&[u8]> {
    match bytes {
        [b'\r', b'\n', rest @ ..] | [b'\r' | b'\n', rest @ ..] => Some(rest),
        _ => None,
    }
}

fn strip_trailing_eol(bytes: &[u8]) -> Option<&[u8]> {
    match bytes {
        [rest @ .., b'\r', b'\n'] | [rest @ .., b'\r' | b'\n'] => Some(rest),
        _ => None,
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn x5t_round_trips() {
        let thumbprint = Thumbprint::of(b"certificate");
        let text = thumbprint.to_x5t();
        assert_eq!(text.len(), 43);
        assert_eq!(Thumbprint::from_x5t(text.as_bytes()), Ok(thumbprint));
    }

    #[test]
    fn hex_and_x5t_agree() {
        let thumbprint = Thumbprint::of(b"certificate");
        let hex_text = hex::encode(thumbprint.0);
        assert_eq!(Thumbprint::from_hex(hex_text.as_bytes()), Some(thumbprint));
        assert_eq!(Thumbprint::from_hex(b"abc"), None);
        assert_eq!(
            Thumbprint::from_x5t(hex_text.as_bytes()),
            Err(X5tError::Hex)
        );
    }

    #[test]
    fn x5t_is_strict() {
        let good = Thumbprint::of(b"x").to_x5t();
        assert_eq!(
            Thumbprint::from_x5t(format!("{good}=").as_bytes()),
            Err(X5tError::Padded)
        );
        let standard = good.replace('-', "+").replace('_', "/");
        if standard != good {
            assert!(matches!(
                Thumbprint::from_x5t(standard.as_bytes()),
                Err(X5tError::NotBase64url(_))
            ));
        }
        assert_eq!(
            Thumbprint::from_x5t(&good.as_bytes()[..42]),
            Err(X5tError::Length(42))
        );
        assert_eq!(Thumbprint::from_x5t(b""), Err(X5tError::Length(0)));
        assert_eq!(
            Thumbprint::from_x5t(&[0, 0, 0, 0, 0, 0, 240, 63]),
            Err(X5tError::NotText)
        );
        assert_eq!(Thumbprint::from_x5t(b"a b"), Err(X5tError::NotText));
        // The last character carries 2 spare bits; only zero bits are canonical.
        let mut non_canonical = good.into_bytes();
        let last = non_canonical.last_mut().unwrap();
        let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let index = alphabet.iter().position(|c| c == last).unwrap();
        *last = alphabet[(index & !3) | 1];
        assert_eq!(
            Thumbprint::from_x5t(&non_canonical),
            Err(X5tError::NonCanonical)
        );
    }

    /// What the constant-time comparison relies on: both sides are the
    /// fixed 32 decoded bytes (never text of varying length), and every bit
    /// of them takes part. `subtle` supplies the constant time itself.
    #[test]
    fn comparison_examines_every_bit_of_fixed_length_digests() {
        let a = Thumbprint::of(b"a");
        assert_eq!(std::mem::size_of::<Thumbprint>(), 32);
        for byte in 0..32 {
            for bit in 0..8 {
                let mut other = a;
                other.0[byte] ^= 1 << bit;
                assert!(!a.matches(&other), "byte {byte} bit {bit} was ignored");
                assert!(!other.matches(&a));
            }
        }
    }

    #[test]
    fn comparison_is_exact() {
        let a = Thumbprint::of(b"a");
        let mut flipped = a;
        flipped.0[31] ^= 1;
        assert!(a.matches(&a));
        assert!(!a.matches(&flipped));
    }

    /// A real certificate and the SHA-256 of its key's SubjectPublicKeyInfo.
    fn certificate() -> (String, Thumbprint) {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["client".to_owned()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        (cert.pem(), Thumbprint::of(&key.public_key_der()))
    }

    #[test]
    fn spki_from_plain_pem() {
        let (pem, spki) = certificate();
        assert_eq!(spki_thumbprint_from_pem(pem.as_bytes()), Ok(spki));
    }

    #[test]
    fn spki_from_url_encoded_and_crlf_pem() {
        let (pem, spki) = certificate();
        // As Envoy's XFCC `Cert` escapes it: newline, space, `+`, `/`, `=`.
        use percent_encoding::{utf8_percent_encode, AsciiSet, CONTROLS, NON_ALPHANUMERIC};
        const ENVOY_STYLE: &AsciiSet = &CONTROLS.add(b' ').add(b'+').add(b'/').add(b'=');
        let encoded = utf8_percent_encode(&pem, ENVOY_STYLE).to_string();
        assert!(encoded.starts_with("-----BEGIN%20CERTIFICATE-----%0A"));
        assert_eq!(spki_thumbprint_from_pem(encoded.as_bytes()), Ok(spki));
        let everything = utf8_percent_encode(&pem, NON_ALPHANUMERIC).to_string();
        assert_eq!(spki_thumbprint_from_pem(everything.as_bytes()), Ok(spki));
        let crlf = pem.replace('\n', "\r\n");
        assert_eq!(spki_thumbprint_from_pem(crlf.as_bytes()), Ok(spki));
    }

    #[test]
    fn first_certificate_of_a_chain_is_used() {
        let (leaf, spki) = certificate();
        let (other, _) = certificate();
        let chain = format!("{leaf}{other}");
        assert_eq!(spki_thumbprint_from_pem(chain.as_bytes()), Ok(spki));
    }

    #[test]
    fn truncated_der_is_rejected() {
        let (pem, _) = certificate();
        let der = certificate_der_from_pem(pem.as_bytes()).unwrap();
        assert!(matches!(
            spki_thumbprint_from_der(&der[..der.len() / 2]),
            Err(CertificateError::Der(_))
        ));
    }

    /// What pem-rfc7468, which `block_der` replaced, made of `pem`.
    fn reference_der_from_pem(pem: &[u8]) -> Option<Vec<u8>> {
        let text = match pem.starts_with(BEGIN) {
            true => pem.to_vec(),
            false => percent_encoding::percent_decode(pem).collect(),
        };
        let start = find(&text, BEGIN)?;
        let rest = &text[start..];
        let block = &rest[..find(rest, END)? + END.len()];
        match pem_rfc7468::decode_vec(block) {
            Ok(("CERTIFICATE", der)) => Some(der),
            _ => None,
        }
    }

    fn pem_of(der: &[u8], width: usize, eol: &str) -> String {
        let base64 = base64::engine::general_purpose::STANDARD.encode(der);
        let lines: Vec<&str> = base64
            .as_bytes()
            .chunks(width)
            .map(|line| std::str::from_utf8(line).unwrap())
            .collect();
        format!(
            "-----BEGIN CERTIFICATE-----{eol}{}{eol}-----END CERTIFICATE-----{eol}",
            lines.join(eol)
        )
    }

    /// PEM as written, rewrapped, re-ended and mutated: decoded exactly as
    /// pem-rfc7468 decoded it.
    #[test]
    fn pem_is_read_as_pem_rfc7468_read_it() {
        let mut seed = 0x2545_F491_4F6C_DD1Du64;
        let mut random = move |bound: usize| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed % bound as u64) as usize
        };
        let mut texts = Vec::new();
        // Every padding (lengths mod 3), lines short, full and long.
        for length in [0, 1, 2, 3, 46, 47, 48, 49, 50, 95, 96, 97, 300] {
            let der: Vec<u8> = (0..length).map(|_| random(256) as u8).collect();
            for width in [4, 60, 63, 64, 65, 76, 1000] {
                for eol in ["\n", "\r\n", "\r", "\n\r", " \n", "\n\n"] {
                    texts.push(pem_of(&der, width, eol));
                }
            }
        }
        let (pem, _) = certificate();
        for text in [
            pem.clone(),
            pem.replace("\n-----END", "\n\n-----END"),
            pem.replace("\n-----END", "\n\n\n-----END"),
            pem.replace("\n-----END", "\r\n\r\n-----END"),
            pem.replace("\n-----END", "-----END"),
            pem.replace("-----\n", "-----"),
            pem.replace('\n', "\r\n"),
            pem.replace("=\n", "\n"),
            pem.replace('\n', ""),
            "-----BEGIN CERTIFICATE-----\n\n-----END CERTIFICATE-----".to_owned(),
            "-----BEGIN CERTIFICATE-----\n\n\n-----END CERTIFICATE-----".to_owned(),
            "-----BEGIN CERTIFICATE-----\r\n-----END CERTIFICATE-----".to_owned(),
            "-----BEGIN CERTIFICATE-----END CERTIFICATE-----".to_owned(),
            "-----BEGIN CERTIFICATE-----\nQQ==\n-----END CERTIFICATE-----".to_owned(),
            "-----BEGIN CERTIFICATE-----\nQR==\n-----END CERTIFICATE-----".to_owned(),
            "-----BEGIN CERTIFICATE-----\nQQ==QUJD\n-----END CERTIFICATE-----".to_owned(),
            "-----BEGIN CERTIFICATE-----\nQQ\n-----END CERTIFICATE-----".to_owned(),
        ] {
            texts.push(text);
        }
        // A full last line that ends in padding, then blank lines.
        let padded = pem_of(&[7; 47], 64, "\n");
        assert!(padded.contains("=\n-----END"));
        for blank in ["\n", "\n\n", "\r\n\r\n", "\r\r"] {
            texts.push(padded.replace("\n-----END", &format!("{blank}\n-----END")));
            texts.push(
                pem_of(&[7; 48], 64, "\n").replace("\n-----END", &format!("{blank}\n-----END")),
            );
        }
        let mut agreed = 0;
        let alphabet = b"AQgw+/=\r\n -%0";
        for text in &texts {
            let text = text.as_bytes();
            let mut mutants = vec![text.to_vec()];
            for _ in 0..200 {
                let mut mutant = text.to_vec();
                let at = random(mutant.len().max(1));
                let byte = alphabet[random(alphabet.len())];
                match random(3) {
                    0 if at < mutant.len() => mutant[at] = byte,
                    1 if at < mutant.len() => {
                        mutant.remove(at);
                    }
                    _ => mutant.insert(at.min(mutant.len()), byte),
                }
                mutants.push(mutant);
            }
            for mutant in mutants {
                let expected = reference_der_from_pem(&mutant);
                assert_eq!(
                    certificate_der_from_pem(&mutant).ok(),
                    expected,
                    "{:?}",
                    String::from_utf8_lossy(&mutant)
                );
                agreed += usize::from(expected.is_some());
            }
        }
        assert!(agreed > 2_000, "{agreed}");
    }

    #[test]
    fn pem_is_required() {
        assert_eq!(
            certificate_der_from_pem(b"hello"),
            Err(CertificateError::NotPem)
        );
        assert_eq!(
            certificate_der_from_pem(
                b"-----BEGIN CERTIFICATE-----\n!!!\n-----END CERTIFICATE-----\n"
            ),
            Err(CertificateError::NotPem)
        );
    }
}
