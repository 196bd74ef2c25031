//! The request's header lines, read from the host at most once per request
//! and only if some check needs a header.
//!
//! Always the whole map: a single-value read returns only the first of
//! repeated lines, and an attacker who adds a line would pick which one a
//! check sees. Here a check asks for [`RequestHeaders::single`] and learns
//! when a header it expects once came more than once.

use crate::host::{Host, HostError};
use std::cell::OnceCell;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestHeaders {
    lines: Vec<(String, Vec<u8>)>,
}

/// A header that should come once came in `0` lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Repeated(pub usize);

impl RequestHeaders {
    /// `lines` as the host gives them: lower-case names, in order.
    pub fn new(lines: Vec<(String, Vec<u8>)>) -> RequestHeaders {
        RequestHeaders { lines }
    }

    /// Every line of `name` (lower-case), in order.
    pub fn lines<'a: 'i, 'n: 'i, 'i>(
        &'a self,
        name: &'n str,
    ) -> impl Iterator<Item = &'a [u8]> + 'i {
        self.lines
            .iter()
            .filter(move |(n, _)| n == name)
            .map(|(_, value)| value.as_slice())
    }

    /// The value of a header that must come at most once.
    pub fn single(&self, name: &str) -> Result<Option<&[u8]>, Repeated> {
        let mut lines = self.lines(name);
        match (lines.next(), lines.next()) {
            (first, None) => Ok(first),
            (Some(_), Some(_)) => Err(Repeated(2 + lines.count())),
            (None, Some(_)) => Ok(None),
        }
    }

    /// The first line as text: for pseudo-headers, which Envoy never lets
    /// repeat, and for values only echoed back (`x-request-id`).
    pub fn text(&self, name: &str) -> Option<&str> {
        self.lines(name)
            .next()
            .and_then(|value| std::str::from_utf8(value).ok())
    }
}

/// `:path` without query and fragment: what `instance` shows and rules match.
pub fn path_without_query(path: &str) -> &str {
    let end = path.find(['?', '#']).unwrap_or(path.len());
    path.get(..end).unwrap_or(path)
}

/// The header map, read on first use.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LazyHeaders {
    read: OnceCell<Result<RequestHeaders, HostError>>,
}

impl LazyHeaders {
    pub fn get(&self, host: &impl Host) -> Result<&RequestHeaders, HostError> {
        self.read
            .get_or_init(|| host.request_headers().map(RequestHeaders::new))
            .as_ref()
            .map_err(Clone::clone)
    }

    /// Headers already given, as the CLI and tests have them.
    pub fn from(headers: RequestHeaders) -> LazyHeaders {
        LazyHeaders {
            read: OnceCell::from(Ok(headers)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::mock::MockHost;

    #[test]
    fn a_repeated_header_is_never_one_value() {
        let host = MockHost::default()
            .with_header("x-cert", "a")
            .with_header("x-cert", "b")
            .with_header("x-cert", "c")
            .with_header(":path", "/");
        let lazy = LazyHeaders::default();
        let headers = lazy.get(&host).unwrap();
        assert_eq!(headers.single("x-cert"), Err(Repeated(3)));
        assert_eq!(headers.single(":path"), Ok(Some(&b"/"[..])));
        assert_eq!(headers.single("absent"), Ok(None));
        assert_eq!(headers.lines("x-cert").count(), 3);
        // Read once, however often asked.
        lazy.get(&host).unwrap();
        assert_eq!(host.calls.get(), 1);
    }
}
