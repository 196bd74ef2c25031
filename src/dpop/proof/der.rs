//! The DER forms BoringSSL verifies with, from the JWS forms a proof carries
//! (pure): a JWK as a SubjectPublicKeyInfo, and an ES256 `r‖s` signature as
//! an `ECDSA-Sig-Value`. Only what cnf-guard hands Envoy's
//! `verify_signature`; every length is checked, nothing is parsed back.

use crate::dpop::proof::jwk::PublicJwk;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;

/// `SEQUENCE { SEQUENCE { id-ecPublicKey, prime256v1 }, BIT STRING { 04 ‖ … } }`
/// up to the point: 26 bytes, then 64 bytes of `x ‖ y`.
const P256_SPKI_PREFIX: [u8; 27] = [
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a,
    0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00, 0x04,
];
/// `SEQUENCE { SEQUENCE { id-Ed25519 }, BIT STRING { … } }`, then 32 bytes.
const ED25519_SPKI_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];
/// `SEQUENCE { rsaEncryption, NULL }`.
const RSA_ALGORITHM: [u8; 15] = [
    0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01, 0x05, 0x00,
];

/// The key as a DER SubjectPublicKeyInfo; `None` if a member does not
/// decode to a key of its type's size.
pub fn subject_public_key_info(jwk: &PublicJwk) -> Option<Vec<u8>> {
    let decode = |value: &str| URL_SAFE_NO_PAD.decode(value).ok();
    match jwk {
        PublicJwk::P256 { x, y } => {
            let (x, y) = (decode(x)?, decode(y)?);
            if x.len() != 32 || y.len() != 32 {
                return None;
            }
            Some([&P256_SPKI_PREFIX[..], &x, &y].concat())
        }
        PublicJwk::Ed25519 { x } => {
            let x = decode(x)?;
            (x.len() == 32).then(|| [&ED25519_SPKI_PREFIX[..], &x].concat())
        }
        PublicJwk::Rsa { n, e } => {
            let public_key = tlv(0x30, &[integer(&decode(n)?), integer(&decode(e)?)].concat());
            // A BIT STRING's first byte counts the unused bits: none.
            let bits = tlv(0x03, &[&[0u8][..], &public_key].concat());
            Some(tlv(0x30, &[&RSA_ALGORITHM[..], &bits].concat()))
        }
    }
}

/// The JWS ES256 signature (`r ‖ s`, 32 bytes each, RFC 7518 §3.4) as the
/// DER `ECDSA-Sig-Value` BoringSSL expects; `None` if it is not 64 bytes.
pub fn ecdsa_signature(jws: &[u8]) -> Option<Vec<u8>> {
    if jws.len() != 64 {
        return None;
    }
    let (r, s) = jws.split_at(32);
    Some(tlv(0x30, &[integer(r), integer(s)].concat()))
}

/// An unsigned big-endian number as a DER INTEGER: no leading zeros, and a
/// zero byte in front when the high bit is set (else it would be negative).
fn integer(unsigned: &[u8]) -> Vec<u8> {
    let start = unsigned
        .iter()
        .position(|b| *b != 0)
        .unwrap_or(unsigned.len());
    let digits = unsigned.get(start..).unwrap_or_default();
    let mut content = Vec::with_capacity(digits.len() + 1);
    match digits.first() {
        Some(high) if high & 0x80 == 0 => {}
        _ => content.push(0),
    }
    content.extend_from_slice(digits);
    tlv(0x02, &content)
}

/// Tag, DER length (short form below 128, else long form), content.
fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let length = content.len().to_be_bytes();
    let significant = length.iter().position(|b| *b != 0).unwrap_or(length.len());
    let length_bytes = length.get(significant..).unwrap_or_default();
    let mut out = Vec::with_capacity(content.len() + 2 + length_bytes.len());
    out.push(tag);
    match content.len() {
        short @ 0..=0x7f => out.push(short as u8),
        _ => {
            out.push(0x80 | length_bytes.len() as u8);
            out.extend_from_slice(length_bytes);
        }
    }
    out.extend_from_slice(content);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dpop::test_proofs::TestKey;

    #[test]
    fn keys_are_spki_the_crates_read_back() {
        use p256::pkcs8::DecodePublicKey as _;
        for key in TestKey::all() {
            let jwk = PublicJwk::parse(&key.public_jwk()).unwrap();
            let der = subject_public_key_info(&jwk).unwrap();
            match jwk {
                PublicJwk::P256 { .. } => {
                    p256::PublicKey::from_public_key_der(&der).unwrap();
                }
                PublicJwk::Rsa { .. } => {
                    rsa::RsaPublicKey::from_public_key_der(&der).unwrap();
                }
                PublicJwk::Ed25519 { x } => {
                    assert_eq!(der.len(), 44);
                    assert!(der.ends_with(&URL_SAFE_NO_PAD.decode(x).unwrap()));
                }
            }
        }
    }

    #[test]
    fn ecdsa_signatures_are_der_the_crate_reads_back() {
        for (r_first, s_first) in [(0x00, 0x7f), (0x80, 0x01), (0x00, 0x00), (0xff, 0x80)] {
            let mut jws = [0x11u8; 64];
            jws[0] = r_first;
            jws[1] = 0;
            jws[32] = s_first;
            let der = ecdsa_signature(&jws).unwrap();
            let parsed = p256::ecdsa::Signature::from_der(&der);
            // Some of these are not valid scalars; those the crate refuses
            // for range, never for encoding.
            if let Ok(signature) = parsed {
                assert_eq!(signature.to_bytes().as_slice(), &jws[..]);
            }
        }
        assert_eq!(ecdsa_signature(&[1; 63]), None);
    }

    #[test]
    fn long_lengths() {
        assert_eq!(tlv(0x04, &[0; 127])[..2], [0x04, 0x7f]);
        assert_eq!(tlv(0x04, &[0; 128])[..3], [0x04, 0x81, 0x80]);
        assert_eq!(tlv(0x04, &[0; 300])[..4], [0x04, 0x82, 0x01, 0x2c]);
        assert_eq!(integer(&[0, 0, 5]), vec![0x02, 0x01, 0x05]);
        assert_eq!(integer(&[0x80]), vec![0x02, 0x02, 0x00, 0x80]);
        assert_eq!(integer(&[]), vec![0x02, 0x01, 0x00]);
    }
}
