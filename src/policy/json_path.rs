//! Names the field at a position in a JSON document (`rules[0].match.path`),
//! for configuration errors. serde reports where it failed, not in which
//! field; this walks the text up to that position. Called only when parsing
//! failed, so it costs nothing on a good configuration (and it is far smaller
//! in wasm than wrapping every deserializer to track the path).

enum Frame {
    Object {
        key: Option<String>,
        expecting_key: bool,
    },
    Array {
        index: usize,
    },
}

/// The path of the innermost member or element containing byte `offset`;
/// `.` at the top level.
pub fn path_at(raw: &[u8], offset: usize) -> String {
    let mut stack: Vec<Frame> = Vec::new();
    let mut bytes = raw.iter().take(offset.saturating_add(1)).peekable();
    while let Some(&byte) = bytes.next() {
        match byte {
            b'{' => stack.push(Frame::Object {
                key: None,
                expecting_key: true,
            }),
            b'[' => stack.push(Frame::Array { index: 0 }),
            b'}' | b']' => {
                stack.pop();
            }
            b',' => match stack.last_mut() {
                Some(Frame::Array { index }) => *index += 1,
                Some(Frame::Object { expecting_key, .. }) => *expecting_key = true,
                None => {}
            },
            b':' => {
                if let Some(Frame::Object { expecting_key, .. }) = stack.last_mut() {
                    *expecting_key = false;
                }
            }
            b'"' => {
                let mut text = Vec::new();
                while let Some(&byte) = bytes.next() {
                    match byte {
                        b'"' => break,
                        b'\\' => {
                            // Keys in a configuration are plain names; keep
                            // the escaped byte as it is.
                            if let Some(&escaped) = bytes.next() {
                                text.push(escaped);
                            }
                        }
                        other => text.push(other),
                    }
                }
                if let Some(Frame::Object {
                    key,
                    expecting_key: true,
                }) = stack.last_mut()
                {
                    *key = Some(String::from_utf8_lossy(&text).into_owned());
                }
            }
            _ => {}
        }
    }
    let mut path = String::new();
    for frame in &stack {
        match frame {
            Frame::Object { key: Some(key), .. } => {
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(key);
            }
            Frame::Object { key: None, .. } => {}
            Frame::Array { index } => path.push_str(&format!("[{index}]")),
        }
    }
    if path.is_empty() {
        ".".to_owned()
    } else {
        path
    }
}

/// The byte offset of serde_json's 1-based `line` and `column`.
pub fn offset_of(raw: &[u8], line: usize, column: usize) -> usize {
    let line_start = if line <= 1 {
        0
    } else {
        raw.iter()
            .enumerate()
            .filter(|(_, byte)| **byte == b'\n')
            .nth(line - 2)
            .map(|(index, _)| index + 1)
            .unwrap_or(raw.len())
    };
    (line_start + column).saturating_sub(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(raw: &str, needle: &str) -> String {
        let offset = raw.find(needle).unwrap() + needle.len() - 1;
        path_at(raw.as_bytes(), offset)
    }

    #[test]
    fn names_members_and_elements() {
        let raw = r#"{"a": {"b": [1, {"c": "x"}]}, "d": "y"}"#;
        assert_eq!(at(raw, r#""x""#), "a.b[1].c");
        assert_eq!(at(raw, "[1"), "a.b[0]");
        assert_eq!(at(raw, r#""y""#), "d");
        assert_eq!(at(raw, r#""x"}"#), "a.b[1]");
        assert_eq!(at(raw, "}]"), "a.b");
        assert_eq!(at(raw, "{"), ".");
    }

    #[test]
    fn strings_with_brackets_and_escapes_are_text() {
        let raw = r#"{"a": "[{,\"}", "b": 2}"#;
        assert_eq!(at(raw, "2"), "b");
    }

    #[test]
    fn lines_and_columns() {
        let raw = b"{\n  \"a\": 1,\n  \"b\": 2\n}";
        assert_eq!(path_at(raw, offset_of(raw, 3, 8)), "b");
        assert_eq!(offset_of(raw, 1, 1), 0);
    }
}
