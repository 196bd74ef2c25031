//! The two protobuf messages of Envoy's `verify_signature` foreign function
//! (source/extensions/common/wasm/ext/verify_signature.proto), written by
//! hand (pure): four length-delimited fields out, a bool and a string back.
//! A protobuf crate would add tens of KB to a module kept under 512 KB for
//! some 80 lines; the fuzz target `protobuf` checks both against prost.

/// `VerifySignatureArguments { hash_function = 1; public_key = 2 (DER
/// SubjectPublicKeyInfo); signature = 3; text = 4 }`.
pub fn verify_signature_arguments(
    hash_function: &str,
    public_key: &[u8],
    signature: &[u8],
    text: &[u8],
) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 + public_key.len() + signature.len() + text.len());
    for (field, value) in [
        (1u8, hash_function.as_bytes()),
        (2, public_key),
        (3, signature),
        (4, text),
    ] {
        // Wire type 2 (length-delimited).
        out.push(field << 3 | 2);
        varint(value.len() as u64, &mut out);
        out.extend_from_slice(value);
    }
    out
}

/// `VerifySignatureResult { bool result = 1; string error = 2; }`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct VerifySignatureResult {
    pub result: bool,
    pub error: String,
}

/// Decodes a result, skipping unknown fields as protobuf does; `None` for
/// bytes that are not a well-formed message (the `protobuf` fuzz target
/// holds: whatever this decodes, prost decodes alike).
pub fn verify_signature_result(mut bytes: &[u8]) -> Option<VerifySignatureResult> {
    let mut decoded = VerifySignatureResult::default();
    while !bytes.is_empty() {
        // A key is a 32-bit varint (field number and wire type).
        let key = u32::try_from(read_varint(&mut bytes)?).ok()?;
        let (field, wire_type) = (key >> 3, key & 7);
        match (field, wire_type) {
            (0, _) => return None,
            (1, 0) => decoded.result = read_varint(&mut bytes)? != 0,
            (2, 2) => {
                let value = length_delimited(&mut bytes)?;
                decoded.error = String::from_utf8(value.to_vec()).ok()?;
            }
            // A known field in another wire type is malformed, as protobuf has it.
            (1 | 2, _) => return None,
            (_, 0) => {
                read_varint(&mut bytes)?;
            }
            (_, 2) => {
                length_delimited(&mut bytes)?;
            }
            (_, 1) => bytes = bytes.get(8..)?,
            (_, 5) => bytes = bytes.get(4..)?,
            // Groups (3, 4) are long deprecated; nothing Envoy sends.
            _ => return None,
        }
    }
    Some(decoded)
}

fn length_delimited<'a>(bytes: &mut &'a [u8]) -> Option<&'a [u8]> {
    let length = usize::try_from(read_varint(bytes)?).ok()?;
    let value = bytes.get(..length)?;
    *bytes = bytes.get(length..)?;
    Some(value)
}

fn varint(mut value: u64, out: &mut Vec<u8>) {
    while value >= 0x80 {
        out.push(value as u8 | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// At most ten bytes, the tenth holding only the 64th bit, as protobuf has it.
fn read_varint(bytes: &mut &[u8]) -> Option<u64> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let (byte, rest) = bytes.split_first()?;
        *bytes = rest;
        if shift == 63 && *byte > 1 {
            return None;
        }
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Some(value);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_are_four_length_delimited_fields() {
        let encoded = verify_signature_arguments("sha256", &[1, 2], &[3; 200], b"t");
        assert_eq!(&encoded[..8], b"\x0a\x06sha256");
        assert_eq!(&encoded[8..12], [0x12, 2, 1, 2]);
        // 200 is a two-byte varint.
        assert_eq!(&encoded[12..15], [0x1a, 0xc8, 0x01]);
        assert_eq!(&encoded[215..], [0x22, 1, b't']);
    }

    #[test]
    fn results_decode_and_garbage_does_not() {
        assert_eq!(
            verify_signature_result(&[0x08, 0x01]),
            Some(VerifySignatureResult {
                result: true,
                error: String::new()
            })
        );
        assert_eq!(
            verify_signature_result(b"\x12\x03bad"),
            Some(VerifySignatureResult {
                result: false,
                error: "bad".to_owned()
            })
        );
        assert_eq!(verify_signature_result(&[]), Some(Default::default()));
        // An unknown field is skipped; a truncated one is an error.
        assert_eq!(
            verify_signature_result(&[0x18, 0x05, 0x08, 0x01]).map(|r| r.result),
            Some(true)
        );
        assert_eq!(verify_signature_result(&[0x12, 0x05, b'a']), None);
        assert_eq!(verify_signature_result(&[0x08]), None);
        assert_eq!(verify_signature_result(&[0x0b]), None);
    }
}
