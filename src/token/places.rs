//! Where a request carries access tokens. jwt_authn verifies every token it
//! extracts (only the first value of a repeated parameter), but only one
//! payload becomes the claims cnf-guard checks, and with `forward: true`
//! every token goes on to the service. So a request with two tokens could
//! show cnf-guard a token bound to the caller while the service reads a
//! stolen one.
//! RFC 6750 §2 forbids more than one method per request; cnf-guard counts
//! the tokens in every place jwt_authn may take one from and refuses two.

use crate::headers::RequestHeaders;
use crate::policy::fields::{invalid, is_header_name, ConfigError};
use percent_encoding::percent_decode;
use serde::Deserialize;

/// The places jwt_authn extracts tokens from. The default is jwt_authn's own
/// default extraction: `Authorization` and the `access_token` parameter.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct TokenLocations {
    /// Request headers (any scheme: `Bearer`, `DPoP`, or none).
    pub headers: Vec<String>,
    /// Query parameters, matched after percent-decoding the name, as Envoy does.
    pub query_parameters: Vec<String>,
    /// Cookie names (jwt_authn `from_cookies`), matched exactly.
    pub cookies: Vec<String>,
}

impl Default for TokenLocations {
    fn default() -> Self {
        TokenLocations {
            headers: vec!["authorization".to_owned()],
            query_parameters: vec!["access_token".to_owned()],
            cookies: Vec::new(),
        }
    }
}

impl TokenLocations {
    pub fn is_empty(&self) -> bool {
        self.headers.is_empty() && self.query_parameters.is_empty() && self.cookies.is_empty()
    }

    /// Names are lower-cased once here; `field` is where the block sits.
    pub(crate) fn validate(&mut self, field: &str) -> Result<(), ConfigError> {
        for (index, header) in self.headers.iter_mut().enumerate() {
            if !is_header_name(header) {
                return Err(invalid(
                    &format!("{field}.headers[{index}]"),
                    "must be an HTTP header name (letters, digits and `-`), not a pseudo-header",
                ));
            }
            header.make_ascii_lowercase();
        }
        for (index, parameter) in self.query_parameters.iter().enumerate() {
            if parameter.is_empty() || parameter.contains(['&', '=', '#']) {
                return Err(invalid(
                    &format!("{field}.query_parameters[{index}]"),
                    "must be a query parameter name (not empty, no `&`, `=` or `#`)",
                ));
            }
        }
        for (index, cookie) in self.cookies.iter().enumerate() {
            if cookie.is_empty() || cookie.contains([';', '=', ',', ' ']) {
                return Err(invalid(
                    &format!("{field}.cookies[{index}]"),
                    "must be a cookie name (not empty, no `;`, `=`, `,` or spaces)",
                ));
            }
        }
        Ok(())
    }

    /// One entry per token found, naming its place. A header line counts a
    /// token per comma-separated element, because Envoy joins repeated
    /// `Authorization` lines with a comma and a JWT holds none.
    pub fn places(&self, headers: &RequestHeaders) -> Vec<String> {
        let mut places = Vec::new();
        for name in &self.headers {
            for line in headers.lines(name) {
                let tokens = line
                    .split(|b| *b == b',')
                    .filter(|element| element.iter().any(|b| !b.is_ascii_whitespace()))
                    .count();
                places.extend((0..tokens).map(|_| format!("the {name} header")));
            }
        }
        // Every pair of every `cookie` line, whether Envoy joined them or not.
        for line in headers.lines("cookie") {
            for pair in line.split(|b| *b == b';') {
                let name = pair
                    .split(|b| *b == b'=')
                    .next()
                    .unwrap_or(pair)
                    .trim_ascii();
                if let Some(cookie) = self.cookies.iter().find(|c| c.as_bytes() == name) {
                    places.push(format!("the {cookie} cookie"));
                }
            }
        }
        if self.query_parameters.is_empty() {
            return places;
        }
        let query = headers
            .text(":path")
            .and_then(|path| path.split_once('?'))
            .map(|(_, query)| query.split('#').next().unwrap_or(query))
            .unwrap_or_default();
        for pair in query.split('&') {
            let name = pair.split('=').next().unwrap_or(pair);
            let decoded = percent_decode(name.as_bytes()).decode_utf8_lossy();
            if let Some(parameter) = self.query_parameters.iter().find(|p| **p == decoded) {
                places.push(format!("the {parameter} query parameter"));
            }
        }
        places
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(lines: &[(&str, &str)]) -> RequestHeaders {
        RequestHeaders::new(
            lines
                .iter()
                .map(|(n, v)| ((*n).to_owned(), v.as_bytes().to_vec()))
                .collect(),
        )
    }

    fn count(lines: &[(&str, &str)]) -> usize {
        TokenLocations::default().places(&headers(lines)).len()
    }

    #[test]
    fn one_token_in_one_place() {
        assert_eq!(
            count(&[(":path", "/a"), ("authorization", "Bearer x.y.z")]),
            1
        );
        assert_eq!(count(&[(":path", "/a?access_token=x.y.z&b=1")]), 1);
        assert_eq!(count(&[(":path", "/a?b=access_token")]), 0);
        assert_eq!(count(&[(":path", "/a?access_tokens=1#access_token=2")]), 0);
    }

    #[test]
    fn a_token_in_two_places_or_twice_in_one() {
        assert_eq!(
            TokenLocations::default().places(&headers(&[
                (":path", "/a?access_token=t1"),
                ("authorization", "Bearer t2")
            ])),
            vec![
                "the authorization header".to_owned(),
                "the access_token query parameter".to_owned()
            ]
        );
        assert_eq!(count(&[(":path", "/a?access_token=1&access_token=2")]), 2);
        // Envoy's percent-decoding of names finds this one too.
        assert_eq!(count(&[(":path", "/a?access_token=1&%61ccess_token=2")]), 2);
        // Repeated lines, joined by Envoy or not.
        assert_eq!(count(&[("authorization", "Bearer a,Bearer b")]), 2);
        assert_eq!(
            count(&[("authorization", "Bearer a"), ("authorization", "Bearer b")]),
            2
        );
    }

    #[test]
    fn configured_places_only() {
        let locations = TokenLocations {
            headers: vec!["x-jwt".to_owned()],
            query_parameters: vec![],
            cookies: vec!["session-jwt".to_owned()],
        };
        let request = headers(&[
            (":path", "/a?access_token=1"),
            ("authorization", "Bearer a"),
            ("x-jwt", "b"),
            ("cookie", "theme=dark; session-jwt=c"),
        ]);
        assert_eq!(
            locations.places(&request),
            vec![
                "the x-jwt header".to_owned(),
                "the session-jwt cookie".to_owned()
            ]
        );
    }

    #[test]
    fn names_are_checked_and_lower_cased() {
        let mut locations = TokenLocations {
            headers: vec!["X-JWT".to_owned()],
            query_parameters: vec!["token".to_owned()],
            cookies: vec!["jwt".to_owned()],
        };
        assert!(locations.validate("claims.token_locations").is_ok());
        assert_eq!(locations.headers, vec!["x-jwt".to_owned()]);
        let mut bad = TokenLocations {
            headers: vec![":path".to_owned()],
            ..TokenLocations::default()
        };
        assert_eq!(
            bad.validate("claims.token_locations").unwrap_err().field,
            "claims.token_locations.headers[0]"
        );
        let mut bad = TokenLocations {
            query_parameters: vec!["a=b".to_owned()],
            ..TokenLocations::default()
        };
        assert_eq!(
            bad.validate("claims.token_locations").unwrap_err().field,
            "claims.token_locations.query_parameters[0]"
        );
    }
}
