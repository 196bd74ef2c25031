//! proxy-wasm's encoding of a header map, both ways (pure): the wasm glue
//! hands local-reply headers over in it and reads the request's headers
//! back from it.

/// proxy-wasm's map encoding: the count, each name and value length, then
/// each name and value, NUL-terminated (all lengths little-endian u32).
pub fn serialize_map(map: &[(&str, &str)]) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(
        4 + map
            .iter()
            .map(|(name, value)| name.len() + value.len() + 10)
            .sum::<usize>(),
    );
    bytes.extend_from_slice(&(map.len() as u32).to_le_bytes());
    for (name, value) in map {
        bytes.extend_from_slice(&(name.len() as u32).to_le_bytes());
        bytes.extend_from_slice(&(value.len() as u32).to_le_bytes());
    }
    for (name, value) in map {
        bytes.extend_from_slice(name.as_bytes());
        bytes.push(0);
        bytes.extend_from_slice(value.as_bytes());
        bytes.push(0);
    }
    bytes
}

/// The inverse of [`serialize_map`], checked: `None` for anything malformed
/// (the SDK's own reader would panic on it). Names are header names, so text.
pub fn deserialize_map(bytes: &[u8]) -> Option<Vec<(String, Vec<u8>)>> {
    if bytes.is_empty() {
        return Some(Vec::new());
    }
    let le = |at: usize| -> Option<usize> {
        let word = bytes.get(at..at.checked_add(4)?)?;
        Some(u32::from_le_bytes(word.try_into().ok()?) as usize)
    };
    let count = le(0)?;
    let mut data = count.checked_mul(8)?.checked_add(4)?;
    let mut map = Vec::with_capacity(count.min(256));
    for pair in 0..count {
        let sizes = 4 + pair * 8;
        let (name_size, value_size) = (le(sizes)?, le(sizes + 4)?);
        let mut field = |size: usize| -> Option<&[u8]> {
            let end = data.checked_add(size)?;
            // Each name and value ends with a NUL.
            if bytes.get(end) != Some(&0) {
                return None;
            }
            let field = bytes.get(data..end)?;
            data = end + 1;
            Some(field)
        };
        let name = field(name_size)?;
        let value = field(value_size)?;
        map.push((String::from_utf8(name.to_vec()).ok()?, value.to_vec()));
    }
    Some(map)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_malformed_maps() {
        let map = [("authorization", "Bearer a"), ("dpop", ""), (":path", "/x")];
        let bytes = serialize_map(&map);
        let back = deserialize_map(&bytes).unwrap();
        assert_eq!(
            back,
            map.iter()
                .map(|(n, v)| ((*n).to_owned(), v.as_bytes().to_vec()))
                .collect::<Vec<_>>()
        );
        assert_eq!(deserialize_map(&[]), Some(Vec::new()));
        // Every truncation is refused, never a panic.
        for end in 1..bytes.len() {
            assert_eq!(deserialize_map(&bytes[..end]), None, "{end}");
        }
        // A count that cannot fit.
        assert_eq!(deserialize_map(&u32::MAX.to_le_bytes()), None);
        // A name that is not text.
        let mut bad = serialize_map(&[("ab", "v")]);
        let name_at = 4 + 8;
        bad[name_at] = 0xff;
        assert_eq!(deserialize_map(&bad), None);
    }
}
