//! Decoder for proxy-wasm's "pairs" encoding, in which Envoy returns a map
//! property (such as a jwt_authn payload read from metadata):
//! `count: u32`, then `count × (key_len: u32, value_len: u32)`, then each key
//! and value followed by a NUL byte. All integers are little-endian.

/// Returns the keys and values, or `None` if the bytes are not a well-formed encoding.
pub fn decode(bytes: &[u8]) -> Option<Vec<(&[u8], &[u8])>> {
    let mut reader = Reader { bytes, at: 0 };
    let count = reader.u32()? as usize;
    // Each pair needs at least 8 bytes of sizes and 2 NULs; bound before allocating.
    if count > bytes.len() / 10 {
        return None;
    }
    let mut sizes = Vec::with_capacity(count);
    for _ in 0..count {
        sizes.push((reader.u32()? as usize, reader.u32()? as usize));
    }
    let mut pairs = Vec::with_capacity(count);
    for (key_len, value_len) in sizes {
        let key = reader.field(key_len)?;
        let value = reader.field(value_len)?;
        pairs.push((key, value));
    }
    (reader.at == bytes.len()).then_some(pairs)
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, len: usize) -> Option<&'a [u8]> {
        let end = self.at.checked_add(len)?;
        let slice = self.bytes.get(self.at..end)?;
        self.at = end;
        Some(slice)
    }

    fn u32(&mut self) -> Option<u32> {
        let raw: [u8; 4] = self.take(4)?.try_into().ok()?;
        Some(u32::from_le_bytes(raw))
    }

    /// A field of `len` bytes followed by its NUL terminator.
    fn field(&mut self, len: usize) -> Option<&'a [u8]> {
        let value = self.take(len)?;
        (self.take(1)? == [0]).then_some(value)
    }
}

/// The inverse of [`decode`], for test hosts and the CLI's emulated Envoy.
pub fn encode(pairs: &[(&[u8], &[u8])]) -> Vec<u8> {
    let mut out = (pairs.len() as u32).to_le_bytes().to_vec();
    for (key, value) in pairs {
        out.extend((key.len() as u32).to_le_bytes());
        out.extend((value.len() as u32).to_le_bytes());
    }
    for (key, value) in pairs {
        out.extend(*key);
        out.push(0);
        out.extend(*value);
        out.push(0);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let pairs: Vec<(&[u8], &[u8])> = vec![(b"sub", b"agent-1"), (b"cnf", b""), (b"", b"x")];
        assert_eq!(decode(&encode(&pairs)), Some(pairs));
        assert_eq!(decode(&encode(&[])), Some(vec![]));
    }

    #[test]
    fn rejects_malformed() {
        let good = encode(&[(b"k", b"v")]);
        assert_eq!(decode(&good[..good.len() - 1]), None);
        let mut extra = good.clone();
        extra.push(0);
        assert_eq!(decode(&extra), None);
        let mut no_nul = good.clone();
        let last = no_nul.len() - 1;
        no_nul[last] = b'x';
        assert_eq!(decode(&no_nul), None);
        assert_eq!(decode(b""), None);
        assert_eq!(decode(&[255, 255, 255, 255]), None);
        assert_eq!(decode(b"eyJhbGciOiJFUzI1NiJ9"), None);
    }
}
