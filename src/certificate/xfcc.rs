//! Envoy's `x-forwarded-client-cert` (XFCC) grammar.
//!
//! The value is a comma-separated list of elements, one per proxy; each element
//! is `;`-separated `key=value` pairs. Keys are case-insensitive. A value that
//! contains `,`, `;` or `=` is double-quoted, with `\"` for a quote inside it.
//! Only the **last** element matters to cnf-guard: it is the one the trusted
//! proxy appended. Earlier elements are still parsed, because a quoted comma in
//! any of them moves where the last one starts.

/// The last XFCC element, reduced to the keys cnf-guard uses.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct XfccElement {
    /// `Hash=`: hex SHA-256 of the DER client certificate.
    pub hash: Option<String>,
    /// `Cert=`: the URL-encoded PEM client certificate.
    pub cert: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum XfccError {
    NotText,
    UnterminatedQuote,
    /// Text between a closing quote and the next `;` or `,`.
    TextAfterQuote,
    /// A pair without `=`, or with an empty key.
    NotAPair,
    /// `Hash` or `Cert` twice in the last element: which one would be right?
    DuplicateKey(&'static str),
    EmptyElement,
}

impl std::fmt::Display for XfccError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            XfccError::NotText => write!(f, "the header holds control or non-ASCII bytes"),
            XfccError::UnterminatedQuote => write!(f, "a quoted value is not closed"),
            XfccError::TextAfterQuote => write!(f, "text follows a quoted value"),
            XfccError::NotAPair => write!(f, "a field is not a key=value pair"),
            XfccError::DuplicateKey(key) => write!(f, "the last element has `{key}` twice"),
            XfccError::EmptyElement => write!(f, "an element is empty"),
        }
    }
}

/// Parses a whole XFCC value and returns its last element.
pub fn last_element(value: &[u8]) -> Result<XfccElement, XfccError> {
    if value
        .iter()
        .any(|&b| !(b == b'\t' || (0x20..0x7f).contains(&b)))
    {
        return Err(XfccError::NotText);
    }
    let mut elements = Tokens {
        rest: value,
        last: XfccElement::default(),
    };
    loop {
        elements.last = XfccElement::default();
        if !elements.element()? {
            return Ok(elements.last);
        }
    }
}

struct Tokens<'a> {
    rest: &'a [u8],
    last: XfccElement,
}

impl Tokens<'_> {
    /// Parses one element into `self.last`; true if a `,` follows.
    fn element(&mut self) -> Result<bool, XfccError> {
        let mut pairs = 0;
        loop {
            self.skip_spaces();
            if matches!(self.rest.first(), None | Some(b',')) {
                // `a=1,,b=2`, a trailing `,`, or an empty header.
                return Err(if pairs == 0 {
                    XfccError::EmptyElement
                } else {
                    XfccError::NotAPair
                });
            }
            let key = self.key()?;
            let value = self.value()?;
            pairs += 1;
            self.record(&key, value)?;
            self.skip_spaces();
            match self.rest.split_first() {
                None => return Ok(false),
                Some((b',', rest)) => {
                    self.rest = rest;
                    return Ok(true);
                }
                Some((b';', rest)) => self.rest = rest,
                Some(_) => return Err(XfccError::TextAfterQuote),
            }
        }
    }

    fn key(&mut self) -> Result<String, XfccError> {
        let end = self
            .rest
            .iter()
            .position(|&b| matches!(b, b'=' | b';' | b',' | b'"'))
            .ok_or(XfccError::NotAPair)?;
        let (key, rest) = self.rest.split_at(end);
        let key = key.trim_ascii();
        match rest.split_first() {
            Some((b'=', rest)) if !key.is_empty() => {
                self.rest = rest;
                Ok(String::from_utf8_lossy(key).to_ascii_lowercase())
            }
            _ => Err(XfccError::NotAPair),
        }
    }

    fn value(&mut self) -> Result<String, XfccError> {
        self.skip_spaces();
        let Some((b'"', quoted)) = self.rest.split_first() else {
            let end = self
                .rest
                .iter()
                .position(|&b| matches!(b, b';' | b','))
                .unwrap_or(self.rest.len());
            let (value, rest) = self.rest.split_at(end);
            if value.contains(&b'"') || value.contains(&b'=') {
                return Err(XfccError::NotAPair);
            }
            self.rest = rest;
            return Ok(String::from_utf8_lossy(value.trim_ascii()).into_owned());
        };
        let mut value = Vec::new();
        let mut bytes = quoted.iter().enumerate();
        while let Some((i, &b)) = bytes.next() {
            match b {
                b'\\' => match bytes.next() {
                    Some((_, &escaped)) => value.push(escaped),
                    None => return Err(XfccError::UnterminatedQuote),
                },
                b'"' => {
                    self.rest = quoted.get(i + 1..).unwrap_or_default();
                    return Ok(String::from_utf8_lossy(&value).into_owned());
                }
                other => value.push(other),
            }
        }
        Err(XfccError::UnterminatedQuote)
    }

    fn record(&mut self, key: &str, value: String) -> Result<(), XfccError> {
        let (slot, name) = match key {
            "hash" => (&mut self.last.hash, "Hash"),
            "cert" => (&mut self.last.cert, "Cert"),
            _ => return Ok(()),
        };
        if slot.replace(value).is_some() {
            return Err(XfccError::DuplicateKey(name));
        }
        Ok(())
    }

    fn skip_spaces(&mut self) {
        while let Some((b' ' | b'\t', rest)) = self.rest.split_first() {
            self.rest = rest;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HASH: &str = "f6a7e3a1d5c0c2ed9a9f1b0c1a8e3b0f6a7e3a1d5c0c2ed9a9f1b0c1a8e3b0f6";

    #[test]
    fn envoy_sanitize_set_element() {
        let value = format!(
            "Hash={HASH};Cert=\"-----BEGIN%20CERTIFICATE-----%0AMIIB%2Bx%3D%3D%0A-----END%20CERTIFICATE-----%0A\";Subject=\"CN=client-1,O=Example\";URI=spiffe://cnf-guard.test/client-1;DNS=a.test;DNS=b.test"
        );
        let element = last_element(value.as_bytes()).unwrap();
        assert_eq!(element.hash.as_deref(), Some(HASH));
        assert_eq!(
            element.cert.as_deref(),
            Some("-----BEGIN%20CERTIFICATE-----%0AMIIB%2Bx%3D%3D%0A-----END%20CERTIFICATE-----%0A")
        );
    }

    #[test]
    fn last_element_wins_even_with_quoted_commas() {
        let value = format!(
            "By=spiffe://a;Hash=aaaa;Subject=\"CN=x,O=y, Inc.\",By=spiffe://b;Hash={HASH};Subject=\"O=\\\"q\\\",CN=z\""
        );
        assert_eq!(
            last_element(value.as_bytes()).unwrap().hash.as_deref(),
            Some(HASH)
        );
        // A comma inside a quoted value of the last element does not split it.
        let value = format!("Hash=aaaa,Subject=\"CN=a,CN=b\";Hash={HASH}");
        assert_eq!(
            last_element(value.as_bytes()).unwrap().hash.as_deref(),
            Some(HASH)
        );
    }

    #[test]
    fn keys_are_case_insensitive_and_spaces_tolerated() {
        let value = format!("hash=aaaa , HASH = {HASH} ; cErT=\"x\"");
        let element = last_element(value.as_bytes()).unwrap();
        assert_eq!(element.hash.as_deref(), Some(HASH));
        assert_eq!(element.cert.as_deref(), Some("x"));
    }

    #[test]
    fn escapes_in_quoted_values() {
        let element = last_element(br#"Cert="a\"b\\c;d,e=f""#).unwrap();
        assert_eq!(element.cert.as_deref(), Some(r#"a"b\c;d,e=f"#));
    }

    #[test]
    fn element_without_cert_keys() {
        assert_eq!(
            last_element(b"Hash=aa,By=spiffe://x;URI=").unwrap(),
            XfccElement::default()
        );
    }

    #[test]
    fn malformed_values_are_rejected() {
        let cases: &[(&[u8], XfccError)] = &[
            (b"", XfccError::EmptyElement),
            (b"   ", XfccError::EmptyElement),
            (b"Hash=aa,", XfccError::EmptyElement),
            (b",Hash=aa", XfccError::EmptyElement),
            (b"Hash=aa,,Hash=bb", XfccError::EmptyElement),
            (b"Hash=aa;", XfccError::NotAPair),
            (b"Hash", XfccError::NotAPair),
            (b"=aa", XfccError::NotAPair),
            (b"Hash=a=b", XfccError::NotAPair),
            (b"Hash=a\"b", XfccError::NotAPair),
            (b"Cert=\"abc", XfccError::UnterminatedQuote),
            (b"Cert=\"abc\\", XfccError::UnterminatedQuote),
            (b"Cert=\"abc\"def", XfccError::TextAfterQuote),
            (b"Hash=aa;hash=bb", XfccError::DuplicateKey("Hash")),
            (b"Cert=a;Hash=b;CERT=c", XfccError::DuplicateKey("Cert")),
            (b"Hash=a\r\nX: y", XfccError::NotText),
            ("Hash=\u{e9}".as_bytes(), XfccError::NotText),
        ];
        for (value, error) in cases {
            assert_eq!(
                last_element(value),
                Err(*error),
                "{}",
                String::from_utf8_lossy(value)
            );
        }
    }

    #[test]
    fn duplicates_only_matter_in_one_element() {
        let element = last_element(b"Hash=aa,Hash=bb").unwrap();
        assert_eq!(element.hash.as_deref(), Some("bb"));
    }
}
