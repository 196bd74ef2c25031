//! Where the verified claims come from: jwt_authn's dynamic metadata, or the
//! forwarded `Authorization` header. Reads are ordered so the common case (a
//! bound token) costs exactly one host call.

use crate::headers::{LazyHeaders, Repeated};
use crate::host::{Host, HostError};
use crate::token::binding::{AuthFailure, Malformation, TokenBinding, JKT, X5T_S256};
use crate::token::places::TokenLocations;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde::Deserialize;

/// The key Istio's RequestAuthentication uses for `payload_in_metadata`.
pub const DEFAULT_METADATA_KEY: &str = "payload";

const JWT_AUTHN: [&str; 3] = [
    "metadata",
    "filter_metadata",
    "envoy.filters.http.jwt_authn",
];
/// jwt_verify_lib's `Status::JwtMissed`: no token was presented at all.
const JWT_MISSED: f64 = 1.0;

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct ClaimsConfig {
    pub source: ClaimsSource,
    /// jwt_authn's `payload_in_metadata` key.
    pub metadata_key: String,
    /// jwt_authn's `failed_status_in_metadata` key, if the deployment sets it.
    pub failed_status_key: Option<String>,
    /// Every place jwt_authn takes a token from; two tokens are refused.
    pub token_locations: TokenLocations,
}

impl Default for ClaimsConfig {
    fn default() -> Self {
        ClaimsConfig {
            source: ClaimsSource::default(),
            metadata_key: DEFAULT_METADATA_KEY.to_owned(),
            failed_status_key: None,
            token_locations: TokenLocations::default(),
        }
    }
}

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ClaimsSource {
    /// The verified payload jwt_authn wrote to dynamic metadata.
    #[default]
    JwtAuthn,
    /// The payload segment of the `Authorization: Bearer` token that jwt_authn
    /// verified and forwarded (`forward: true`).
    AuthorizationHeader,
}

/// Property paths resolved once from the configuration.
#[derive(Debug, Clone)]
pub struct ClaimsReader {
    source: ClaimsSource,
    payload: Vec<String>,
    cnf: Vec<String>,
    x5t: Vec<String>,
    jkt: Vec<String>,
    /// Read `cnf.jkt` even when `cnf.x5t#S256` is there (DPoP is on somewhere).
    always_read_key: bool,
    /// jwt_authn's `failed_status_in_metadata` `message` and `code` leaves.
    failed_status: Option<FailedStatusPaths>,
}

#[derive(Debug, Clone)]
struct FailedStatusPaths {
    message: Vec<String>,
    code: Vec<String>,
}

impl ClaimsReader {
    /// `dpop_enabled`: some policy checks DPoP, so a certificate-bound token
    /// may also be key-bound and both bindings must be read.
    pub fn new(config: &ClaimsConfig, dpop_enabled: bool) -> ClaimsReader {
        let under_jwt_authn = |extra: &[&str]| -> Vec<String> {
            JWT_AUTHN
                .iter()
                .chain(extra)
                .map(|s| (*s).to_owned())
                .collect()
        };
        let key = config.metadata_key.as_str();
        ClaimsReader {
            source: config.source,
            payload: under_jwt_authn(&[key]),
            cnf: under_jwt_authn(&[key, "cnf"]),
            x5t: under_jwt_authn(&[key, "cnf", X5T_S256]),
            jkt: under_jwt_authn(&[key, "cnf", JKT]),
            always_read_key: dpop_enabled,
            failed_status: config
                .failed_status_key
                .as_deref()
                .map(|k| FailedStatusPaths {
                    message: under_jwt_authn(&[k, "message"]),
                    code: under_jwt_authn(&[k, "code"]),
                }),
        }
    }

    pub fn token_binding(&self, host: &impl Host, headers: &LazyHeaders) -> TokenBinding {
        match self.source {
            ClaimsSource::JwtAuthn => self.read_metadata(host, headers),
            ClaimsSource::AuthorizationHeader => self.read_authorization_header(host, headers),
        }
    }

    fn read_metadata(&self, host: &impl Host, headers: &LazyHeaders) -> TokenBinding {
        let x5t = match read(host, &self.x5t) {
            Ok(x5t) => x5t,
            Err(error) => return unreadable("cnf.x5t#S256", &error),
        };
        // Without DPoP the common case (a certificate-bound token) stops at one read.
        let jkt = if x5t.is_none() || self.always_read_key {
            match read(host, &self.jkt) {
                Ok(jkt) => jkt,
                Err(error) => return unreadable("cnf.jkt", &error),
            }
        } else {
            None
        };
        if x5t.is_some() || jkt.is_some() {
            return TokenBinding::from_methods(x5t.map(Ok), jkt.map(Ok));
        }
        // No binding leaf: tell "no cnf" from "cnf without a method" from "no token".
        match read(host, &self.cnf) {
            Ok(Some(_)) => return TokenBinding::Malformed(Malformation::NoSupportedMethod),
            Ok(None) => {}
            Err(error) => return unreadable("cnf", &error),
        }
        match read(host, &self.payload) {
            Ok(None) => TokenBinding::Missing(self.auth_failure(host, headers)),
            // An empty `cnf` object may read as absent; the payload's own keys settle it.
            Ok(Some(payload)) => {
                match crate::token::pairs::decode(&payload) {
                    Some(claims) if claims.iter().any(|(key, _)| *key == b"cnf") => {
                        TokenBinding::Malformed(Malformation::NoSupportedMethod)
                    }
                    Some(_) => TokenBinding::Unbound,
                    None => {
                        log::warn!("jwt_authn payload metadata is not a map; treating its cnf as unreadable");
                        TokenBinding::Malformed(Malformation::Unreadable)
                    }
                }
            }
            // Envoy cannot serialise a payload holding a JSON null anywhere, but
            // an absent payload would read as `None`: the token is there, and
            // the `cnf` read above (which does see an empty `{}`) found no cnf.
            Err(_) => TokenBinding::Unbound,
        }
    }

    fn read_authorization_header(&self, host: &impl Host, headers: &LazyHeaders) -> TokenBinding {
        // jwt_authn forwards a header it failed to verify when the requirement
        // allows failures; its recorded failure must win over the header.
        if let Some(failure) = self.recorded_failure(host) {
            return TokenBinding::Missing(failure);
        }
        let header = match headers
            .get(host)
            .map(|headers| headers.single("authorization"))
        {
            Ok(Ok(Some(header))) => header,
            Ok(Ok(None)) => return TokenBinding::Missing(AuthFailure::default()),
            Ok(Err(Repeated(lines))) => {
                return TokenBinding::Missing(AuthFailure {
                    token_presented: true,
                    reason: Some(format!(
                        "the Authorization header came in {lines} lines; exactly one is expected"
                    )),
                })
            }
            Err(error) => {
                log::warn!("cannot read the authorization header: {error}");
                return TokenBinding::Missing(AuthFailure::default());
            }
        };
        match bearer_payload(header) {
            Ok(payload) => TokenBinding::from_payload(&payload),
            Err(reason) => TokenBinding::Missing(AuthFailure {
                token_presented: true,
                reason: Some(reason.to_owned()),
            }),
        }
    }

    /// Why there is no verified token: jwt_authn's recorded failure if any,
    /// else whether an `Authorization` header was sent at all.
    fn auth_failure(&self, host: &impl Host, headers: &LazyHeaders) -> AuthFailure {
        self.recorded_failure(host).unwrap_or_else(|| AuthFailure {
            token_presented: headers
                .get(host)
                .is_ok_and(|headers| headers.lines("authorization").next().is_some()),
            reason: None,
        })
    }

    fn recorded_failure(&self, host: &impl Host) -> Option<AuthFailure> {
        let paths = self.failed_status.as_ref()?;
        let message = read(host, &paths.message).ok().flatten()?;
        let code = read(host, &paths.code)
            .ok()
            .flatten()
            .and_then(|bytes| <[u8; 8]>::try_from(bytes.as_slice()).ok())
            .map(f64::from_le_bytes);
        Some(AuthFailure {
            token_presented: code != Some(JWT_MISSED),
            reason: Some(printable(&message)),
        })
    }
}

fn read(host: &impl Host, path: &[String]) -> Result<Option<Vec<u8>>, HostError> {
    let segments: Vec<&str> = path.iter().map(String::as_str).collect();
    host.property(&segments)
}

fn unreadable(claim: &str, error: &HostError) -> TokenBinding {
    log::warn!("cannot read claim {claim} from jwt_authn metadata: {error}");
    TokenBinding::Malformed(Malformation::Unreadable)
}

/// Decodes the payload segment of `Bearer <header>.<payload>.<signature>`
/// (or `DPoP …`). The signature is not checked here: jwt_authn verified it.
pub fn bearer_payload(header: &[u8]) -> Result<serde_json::Value, &'static str> {
    let header = std::str::from_utf8(header).map_err(|_| "the Authorization header is not text")?;
    let (scheme, token) = header
        .trim()
        .split_once(' ')
        .ok_or("the Authorization header carries no Bearer token")?;
    if !scheme.eq_ignore_ascii_case("bearer") && !scheme.eq_ignore_ascii_case("dpop") {
        return Err("the Authorization header carries no Bearer token");
    }
    let mut segments = token.trim_start().split('.');
    let payload = match (
        segments.next(),
        segments.next(),
        segments.next(),
        segments.next(),
    ) {
        (Some(_), Some(payload), Some(_), None) => payload,
        _ => return Err("the bearer token is not a compact JWS"),
    };
    let json = URL_SAFE_NO_PAD
        .decode(payload)
        .map_err(|_| "the bearer token's payload is not base64url")?;
    serde_json::from_slice(&json).map_err(|_| "the bearer token's payload is not JSON")
}

/// jwt_authn's failure message, kept to printable ASCII for logs and JSON.
fn printable(bytes: &[u8]) -> String {
    bytes
        .iter()
        .take(200)
        .map(|&b| {
            if (0x20..0x7f).contains(&b) {
                char::from(b)
            } else {
                '?'
            }
        })
        .collect()
}

/// jwt_authn metadata property paths, spelled out independently of the code
/// under test, for tests across the crate.
#[cfg(test)]
pub mod test_paths {
    /// `metadata.filter_metadata.envoy.filters.http.jwt_authn.<rest…>`
    pub fn jwt_authn(rest: &[&'static str]) -> Vec<&'static str> {
        [
            "metadata",
            "filter_metadata",
            "envoy.filters.http.jwt_authn",
        ]
        .into_iter()
        .chain(rest.iter().copied())
        .collect()
    }

    /// The x5t#S256 leaf under the default metadata key.
    pub fn x5t() -> Vec<&'static str> {
        jwt_authn(&["payload", "cnf", "x5t#S256"])
    }

    /// The jkt leaf under the default metadata key.
    pub fn jkt() -> Vec<&'static str> {
        jwt_authn(&["payload", "cnf", "jkt"])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::certificate::thumbprint::{Thumbprint, X5tError};
    use crate::host::mock::MockHost;
    use crate::token::claims::ClaimsConfig;
    use crate::token::pairs::encode;

    use super::test_paths::{jwt_authn, x5t as x5t_path};

    fn cnf_path() -> Vec<&'static str> {
        jwt_authn(&["payload", "cnf"])
    }

    fn payload_path() -> Vec<&'static str> {
        jwt_authn(&["payload"])
    }

    fn metadata_reader() -> ClaimsReader {
        ClaimsReader::new(&ClaimsConfig::default(), false)
    }

    fn header_reader() -> ClaimsReader {
        ClaimsReader::new(
            &ClaimsConfig {
                source: ClaimsSource::AuthorizationHeader,
                ..ClaimsConfig::default()
            },
            false,
        )
    }

    #[test]
    fn bound_token_costs_one_read() {
        let x5t = Thumbprint::of(b"c").to_x5t();
        let host = MockHost::default().with_property(&x5t_path(), x5t.as_bytes());
        assert_eq!(
            metadata_reader().token_binding(&host, &LazyHeaders::default()),
            TokenBinding::Certificate(Thumbprint::of(b"c"))
        );
        assert_eq!(host.calls.get(), 1);
    }

    #[test]
    fn binary_x5t_is_invalid_not_unbound() {
        let host = MockHost::default().with_property(&x5t_path(), 1.5f64.to_le_bytes());
        assert_eq!(
            metadata_reader().token_binding(&host, &LazyHeaders::default()),
            TokenBinding::Malformed(Malformation::X5t(X5tError::NotText))
        );
    }

    #[test]
    fn cnf_without_x5t_is_invalid() {
        let host = MockHost::default().with_property(&cnf_path(), encode(&[(b"jkt", b"abc")]));
        assert_eq!(
            metadata_reader().token_binding(&host, &LazyHeaders::default()),
            TokenBinding::Malformed(Malformation::NoSupportedMethod)
        );
    }

    #[test]
    fn empty_cnf_found_in_payload_is_invalid() {
        let host = MockHost::default()
            .with_property(&payload_path(), encode(&[(b"sub", b"a"), (b"cnf", b"")]));
        assert_eq!(
            metadata_reader().token_binding(&host, &LazyHeaders::default()),
            TokenBinding::Malformed(Malformation::NoSupportedMethod)
        );
    }

    #[test]
    fn payload_without_cnf_is_unbound() {
        let host = MockHost::default().with_property(&payload_path(), encode(&[(b"sub", b"a")]));
        assert_eq!(
            metadata_reader().token_binding(&host, &LazyHeaders::default()),
            TokenBinding::Unbound
        );
    }

    #[test]
    fn unserialisable_payload_without_cnf_is_unbound() {
        let host = MockHost::default()
            .with_failing_property(&payload_path(), HostError::SerializationFailure);
        assert_eq!(
            metadata_reader().token_binding(&host, &LazyHeaders::default()),
            TokenBinding::Unbound
        );
    }

    #[test]
    fn undecodable_payload_fails_closed() {
        let host = MockHost::default().with_property(&payload_path(), b"garbage".to_vec());
        assert_eq!(
            metadata_reader().token_binding(&host, &LazyHeaders::default()),
            TokenBinding::Malformed(Malformation::Unreadable)
        );
    }

    #[test]
    fn host_errors_fail_closed() {
        let host =
            MockHost::default().with_failing_property(&x5t_path(), HostError::SerializationFailure);
        assert_eq!(
            metadata_reader().token_binding(&host, &LazyHeaders::default()),
            TokenBinding::Malformed(Malformation::Unreadable)
        );
        assert!(host.logged("cannot read claim cnf.x5t#S256"));
    }

    #[test]
    fn no_payload_is_missing_token() {
        let host = MockHost::default();
        assert_eq!(
            metadata_reader().token_binding(&host, &LazyHeaders::default()),
            TokenBinding::Missing(AuthFailure::default())
        );
        let host = MockHost::default().with_header("authorization", "Bearer x.y.z");
        let TokenBinding::Missing(failure) =
            metadata_reader().token_binding(&host, &LazyHeaders::default())
        else {
            panic!()
        };
        assert!(failure.token_presented);
    }

    #[test]
    fn recorded_jwt_authn_failure_is_used() {
        let config = ClaimsConfig {
            failed_status_key: Some("jwt_failure".into()),
            ..ClaimsConfig::default()
        };
        let path = |leaf: &'static str| jwt_authn(&["jwt_failure", leaf]);
        let host = MockHost::default()
            .with_property(&path("message"), b"Jwt is expired".to_vec())
            .with_property(&path("code"), 3.0f64.to_le_bytes());
        let binding =
            ClaimsReader::new(&config, false).token_binding(&host, &LazyHeaders::default());
        assert_eq!(
            binding,
            TokenBinding::Missing(AuthFailure {
                token_presented: true,
                reason: Some("Jwt is expired".into())
            })
        );
        let host = MockHost::default()
            .with_property(&path("message"), b"Jwt is missing".to_vec())
            .with_property(&path("code"), 1.0f64.to_le_bytes());
        let TokenBinding::Missing(failure) =
            ClaimsReader::new(&config, false).token_binding(&host, &LazyHeaders::default())
        else {
            panic!()
        };
        assert!(!failure.token_presented);
    }

    fn bearer(payload: &str) -> String {
        format!("Bearer e30.{}.c2ln", URL_SAFE_NO_PAD.encode(payload))
    }

    #[test]
    fn authorization_header_source() {
        let x5t = Thumbprint::of(b"c").to_x5t();
        let header = bearer(&format!(r#"{{"cnf":{{"x5t#S256":"{x5t}"}}}}"#));
        let host = MockHost::default().with_header("authorization", &header);
        assert_eq!(
            header_reader().token_binding(&host, &LazyHeaders::default()),
            TokenBinding::Certificate(Thumbprint::of(b"c"))
        );
        assert_eq!(host.calls.get(), 1);

        let host = MockHost::default().with_header("authorization", &bearer(r#"{"sub":"a"}"#));
        assert_eq!(
            header_reader().token_binding(&host, &LazyHeaders::default()),
            TokenBinding::Unbound
        );

        let host = MockHost::default();
        assert_eq!(
            header_reader().token_binding(&host, &LazyHeaders::default()),
            TokenBinding::Missing(AuthFailure::default())
        );
    }

    #[test]
    fn malformed_authorization_headers() {
        for header in [
            "Basic abc",
            "Bearer",
            "Bearer a.b",
            "Bearer a.!!.c",
            "Bearer a.e30.c.d",
            "Bearer e30.bm90IGpzb24.c",
        ] {
            assert!(bearer_payload(header.as_bytes()).is_err(), "{header}");
        }
        assert!(bearer_payload(b"bearer e30.e30.c2ln").is_ok());
        assert!(bearer_payload(&[0xff, 0xfe]).is_err());
    }

    #[test]
    fn header_source_respects_recorded_failure() {
        let config = ClaimsConfig {
            source: ClaimsSource::AuthorizationHeader,
            failed_status_key: Some("jwt_failure".into()),
            ..ClaimsConfig::default()
        };
        let message = jwt_authn(&["jwt_failure", "message"]);
        let x5t = Thumbprint::of(b"c").to_x5t();
        let host = MockHost::default()
            .with_header(
                "authorization",
                &bearer(&format!(r#"{{"cnf":{{"x5t#S256":"{x5t}"}}}}"#)),
            )
            .with_property(&message, b"Jwt verification fails".to_vec());
        assert!(matches!(
            ClaimsReader::new(&config, false).token_binding(&host, &LazyHeaders::default()),
            TokenBinding::Missing(_)
        ));
    }
}
