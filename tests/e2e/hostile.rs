//! The hostile-input matrix: requests an attacker would send, each with the
//! exact problem slug it must get, over HTTP/1.1 and HTTP/2, and proof from
//! the recording upstream that none of them reached it.

use super::forwarded::{envoy_url_encoded, forged_xfcc, hex_digest};
use super::{NamedTrial, World};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;

use crate::support;
use crate::support::client::Request;

pub fn trials() -> Vec<NamedTrial> {
    vec![(
        "hostile::every_request_in_the_matrix_gets_its_slug_over_http1_and_http2",
        run,
    )]
}

/// One hostile request and the answer it must get.
pub struct Row {
    pub name: String,
    pub listener: &'static str,
    pub path: String,
    pub certificate: Option<u8>,
    pub headers: Vec<(&'static str, String)>,
    pub slug: &'static str,
}

fn row(
    name: &str,
    listener: &'static str,
    certificate: Option<u8>,
    headers: Vec<(&'static str, String)>,
    slug: &'static str,
) -> Row {
    Row {
        name: name.to_owned(),
        listener,
        path: "/hostile".to_owned(),
        certificate,
        headers,
        slug,
    }
}

impl Row {
    fn at(mut self, path: &str) -> Row {
        self.path = path.to_owned();
        self
    }
}

fn bearer(token: &str) -> Vec<(&'static str, String)> {
    vec![("authorization", format!("Bearer {token}"))]
}

/// Every row. `failures` lets jwt_authn's own rejections through as
/// `authentication-failed`, so each row has a cnf-guard slug to assert.
pub fn rows(world: &World) -> Vec<Row> {
    let issuer = &world.issuer;
    let [client_1, client_2] = &world.pki.clients;
    let x5t_1 = client_1.x5t();
    let header = issuer.header();
    let signed = |extra: &str| issuer.sign_raw(&header, &issuer.payload_with(extra));
    let cnf = |value: &str| signed(&format!(r#""cnf":{value}"#));
    let x5t = |value: &str| cnf(&format!(r#"{{"x5t#S256":{value}}}"#));
    let bound_1 = world.tokens.bound_1.clone();
    let unsigned = format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT"}"#),
        URL_SAFE_NO_PAD.encode(issuer.payload_with(&format!(r#""cnf":{{"x5t#S256":"{x5t_1}"}}"#)))
    );
    let hmac = {
        use jwt_simple::prelude::*;
        // The classic confusion: the issuer's public key used as an HMAC secret.
        let key =
            HS256Key::from_bytes(issuer.jwks().as_bytes()).with_key_id(support::material::KEY_ID);
        let claims = Claims::with_custom_claims(
            serde_json::json!({"cnf": {"x5t#S256": x5t_1}}),
            Duration::from_hours(1),
        )
        .with_issuer(support::material::ISSUER)
        .with_audience(support::material::AUDIENCE);
        key.authenticate(claims).expect("hmac token")
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let other_claims = |claims: String| issuer.sign_raw(&header, &claims);
    let tampered = {
        let mut parts: Vec<String> = bound_1.split('.').map(str::to_owned).collect();
        let payload = issuer.payload_with(&format!(r#""cnf":{{"x5t#S256":"{}"}}"#, client_2.x5t()));
        parts[1] = URL_SAFE_NO_PAD.encode(payload);
        parts.join(".")
    };

    let a = "authentication-failed";
    let invalid = "token-invalid";
    let mismatch = "mtls-binding-mismatch";
    let required = "mtls-required";
    vec![
        // ---- Authorization header abuse
        row("no authorization", "failures", Some(1), vec![], a),
        row(
            "bearer without token",
            "failures",
            Some(1),
            vec![("authorization", "Bearer".into())],
            a,
        ),
        row("bearer garbage", "failures", Some(1), bearer("abc"), a),
        row(
            "basic scheme",
            "failures",
            Some(1),
            vec![("authorization", "Basic dXNlcjpwYXNz".into())],
            a,
        ),
        row(
            "two segments",
            "failures",
            Some(1),
            bearer("eyJhbGciOiJFUzI1NiJ9.e30"),
            a,
        ),
        row(
            "four segments",
            "failures",
            Some(1),
            bearer(&format!("{bound_1}.x")),
            a,
        ),
        row(
            "signature with one character changed",
            "failures",
            Some(1),
            bearer(&flip_signature(&bound_1)),
            a,
        ),
        row(
            "payload swapped under the signature",
            "failures",
            Some(1),
            bearer(&tampered),
            a,
        ),
        row(
            "oversized authorization",
            "failures",
            Some(1),
            bearer(&"A".repeat(40_000)),
            a,
        ),
        row("alg none", "failures", Some(1), bearer(&unsigned), a),
        row(
            "hs256 with the public key as secret",
            "failures",
            Some(1),
            bearer(&hmac),
            a,
        ),
        row(
            "expired",
            "failures",
            Some(1),
            bearer(&world.tokens.expired),
            a,
        ),
        row(
            "not yet valid",
            "failures",
            Some(1),
            bearer(&other_claims(format!(
                r#"{{"iss":"{}","aud":"{}","nbf":{},"exp":{},"cnf":{{"x5t#S256":"{x5t_1}"}}}}"#,
                support::material::ISSUER,
                support::material::AUDIENCE,
                now + 3000,
                now + 3600
            ))),
            a,
        ),
        row(
            "wrong audience",
            "failures",
            Some(1),
            bearer(&other_claims(format!(
                r#"{{"iss":"{}","aud":"someone-else","exp":{},"cnf":{{"x5t#S256":"{x5t_1}"}}}}"#,
                support::material::ISSUER,
                now + 3600
            ))),
            a,
        ),
        row(
            "wrong issuer",
            "failures",
            Some(1),
            bearer(&other_claims(format!(
                r#"{{"iss":"https://evil.test","aud":"{}","exp":{},"cnf":{{"x5t#S256":"{x5t_1}"}}}}"#,
                support::material::AUDIENCE,
                now + 3600
            ))),
            a,
        ),
        row(
            "rogue signer",
            "failures",
            Some(1),
            bearer(&world.tokens.rogue_signer),
            a,
        ),
        // ---- cnf abuse (validly signed)
        row(
            "cnf array",
            "failures",
            Some(1),
            bearer(&cnf(&format!(r#"["{x5t_1}"]"#))),
            invalid,
        ),
        row(
            "cnf number",
            "failures",
            Some(1),
            bearer(&cnf("42")),
            invalid,
        ),
        row(
            "cnf string",
            "failures",
            Some(1),
            bearer(&cnf(&format!(r#""{x5t_1}""#))),
            invalid,
        ),
        row(
            "cnf true",
            "failures",
            Some(1),
            bearer(&cnf("true")),
            invalid,
        ),
        row(
            "cnf null",
            "failures",
            Some(1),
            bearer(&cnf("null")),
            invalid,
        ),
        row(
            "cnf empty object",
            "failures",
            Some(1),
            bearer(&cnf("{}")),
            invalid,
        ),
        row(
            "cnf nested in cnf",
            "failures",
            Some(1),
            bearer(&cnf(&format!(r#"{{"cnf":{{"x5t#S256":"{x5t_1}"}}}}"#))),
            invalid,
        ),
        row(
            "x5t null",
            "failures",
            Some(1),
            bearer(&x5t("null")),
            invalid,
        ),
        row(
            "x5t number",
            "failures",
            Some(1),
            bearer(&x5t("7")),
            invalid,
        ),
        row(
            "x5t list",
            "failures",
            Some(1),
            bearer(&x5t(&format!(r#"["{x5t_1}"]"#))),
            invalid,
        ),
        row(
            "x5t padded",
            "failures",
            Some(1),
            bearer(&x5t(&format!(r#""{x5t_1}=""#))),
            invalid,
        ),
        row(
            "x5t standard base64",
            "failures",
            Some(2),
            bearer(&x5t(&format!(
                r#""{}""#,
                STANDARD
                    .encode(sha(&client_1.cert_der))
                    .trim_end_matches('=')
            ))),
            // Presented by client 2: if client 1's digest holds no `+` or `/`,
            // its standard base64 is its base64url, a valid value for client 1.
            standard_base64_slug(&client_1.cert_der),
        ),
        row(
            "x5t leading space",
            "failures",
            Some(1),
            bearer(&x5t(&format!(r#"" {x5t_1}""#))),
            invalid,
        ),
        row(
            "x5t trailing newline",
            "failures",
            Some(1),
            bearer(&x5t(&format!(r#""{x5t_1}\n""#))),
            invalid,
        ),
        row(
            "x5t hex",
            "failures",
            Some(1),
            bearer(&x5t(&format!(r#""{}""#, hex_digest(&client_1.cert_der)))),
            invalid,
        ),
        row(
            "x5t 42 chars",
            "failures",
            Some(1),
            bearer(&x5t(&format!(r#""{}""#, &x5t_1[..42]))),
            invalid,
        ),
        row(
            "x5t 44 chars",
            "failures",
            Some(1),
            bearer(&x5t(&format!(r#""{x5t_1}A""#))),
            invalid,
        ),
        row(
            "x5t with a cyrillic look-alike",
            "failures",
            Some(1),
            bearer(&x5t(&format!(r#""{}""#, lookalike(&x5t_1)))),
            invalid,
        ),
        row(
            "x5t with an escaped look-alike",
            "failures",
            Some(1),
            bearer(&x5t(&format!(
                r#""{}""#,
                lookalike(&x5t_1).replace('\u{0410}', "\\u0410")
            ))),
            invalid,
        ),
        row(
            "only jkt",
            "failures",
            Some(1),
            bearer(&cnf(
                r#"{"jkt":"0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"}"#,
            )),
            invalid,
        ),
        row(
            "x5t of the other certificate",
            "failures",
            Some(1),
            bearer(&x5t(&format!(r#""{}""#, client_2.x5t()))),
            mismatch,
        ),
        row(
            // jwt_authn refuses a payload with duplicate keys outright.
            "duplicate cnf keys",
            "failures",
            Some(1),
            bearer(&signed(&format!(
                r#""cnf":{{"x5t#S256":"{}"}},"cnf":{{"x5t#S256":"{x5t_1}"}}"#,
                client_2.x5t()
            ))),
            a,
        ),
        row(
            "duplicate x5t keys",
            "failures",
            Some(1),
            bearer(&cnf(&format!(
                r#"{{"x5t#S256":"{}","x5t#S256":"{x5t_1}"}}"#,
                client_2.x5t()
            ))),
            a,
        ),
        row(
            "huge payload bound elsewhere",
            "failures",
            Some(1),
            bearer(&signed(&format!(
                r#""pad":"{}","cnf":{{"x5t#S256":"{}"}}"#,
                "p".repeat(20_000),
                client_2.x5t()
            ))),
            mismatch,
        ),
        // ---- certificate abuse on the connection
        row(
            "bound token without certificate",
            "default",
            None,
            bearer(&bound_1),
            required,
        ),
        row(
            "stolen token, other certificate",
            "default",
            Some(2),
            bearer(&bound_1),
            mismatch,
        ),
        row(
            "token in the query string, other certificate",
            "default",
            Some(2),
            vec![],
            mismatch,
        )
        .at(&format!("/hostile?access_token={bound_1}")),
        row(
            "client-injected XFCC on a connection source",
            "default",
            Some(2),
            [
                bearer(&bound_1),
                vec![("x-forwarded-client-cert", forged_xfcc(world, 1))],
            ]
            .concat(),
            mismatch,
        ),
        row(
            "client-injected Client-Cert on a connection source",
            "default",
            Some(2),
            [
                bearer(&bound_1),
                vec![(
                    "client-cert",
                    format!(":{}:", STANDARD.encode(&client_1.cert_der)),
                )],
            ]
            .concat(),
            mismatch,
        ),
        row(
            "injected x-jwt-payload claiming the other certificate",
            "default",
            Some(2),
            [
                bearer(&bound_1),
                vec![(
                    "x-jwt-payload",
                    URL_SAFE_NO_PAD
                        .encode(format!(r#"{{"cnf":{{"x5t#S256":"{}"}}}}"#, client_2.x5t())),
                )],
            ]
            .concat(),
            mismatch,
        ),
        row(
            // Envoy joins them into one value, which jwt_authn fails and
            // `allow_missing_or_failed` lets through: two tokens, one line.
            "two authorization headers",
            "header_source_failures",
            Some(2),
            vec![
                ("authorization", format!("Bearer {bound_1}")),
                ("authorization", format!("Bearer {}", world.tokens.bound_2)),
            ],
            "multiple-tokens",
        ),
        // ---- forwarded certificate abuse (trusted by address)
        row(
            "client-cert garbage",
            "forwarded_by_address",
            None,
            cc(&bound_1, ":!!!:"),
            required,
        ),
        row(
            "client-cert empty",
            "forwarded_by_address",
            None,
            cc(&bound_1, "::"),
            required,
        ),
        row(
            "client-cert not a byte sequence",
            "forwarded_by_address",
            None,
            cc(&bound_1, &STANDARD.encode(&client_1.cert_der)),
            required,
        ),
        row(
            "client-cert two certificates",
            "forwarded_by_address",
            None,
            cc(
                &bound_1,
                &format!(":{0}:, :{0}:", STANDARD.encode(&client_1.cert_der)),
            ),
            required,
        ),
        row(
            "client-cert truncated",
            "forwarded_by_address",
            None,
            cc(
                &bound_1,
                &format!(":{}:", STANDARD.encode(&client_1.cert_der[..100])),
            ),
            required,
        ),
        row(
            "client-cert of the other client",
            "forwarded_by_address",
            None,
            cc(
                &bound_1,
                &format!(":{}:", STANDARD.encode(&client_2.cert_der)),
            ),
            mismatch,
        ),
        row(
            "pem header with two certificates",
            "forwarded_by_address",
            None,
            [
                bearer(&bound_1),
                vec![(
                    "x-amzn-mtls-clientcert",
                    envoy_url_encoded(&format!("{}{}", client_1.cert_pem, client_2.cert_pem)),
                )],
            ]
            .concat(),
            required,
        )
        .at("/pem/hostile"),
        row(
            "pem header truncated",
            "forwarded_by_address",
            None,
            [
                bearer(&bound_1),
                vec![(
                    "x-amzn-mtls-clientcert",
                    envoy_url_encoded(&client_1.cert_pem[..300]),
                )],
            ]
            .concat(),
            required,
        )
        .at("/pem/hostile"),
        row(
            "der header garbage",
            "forwarded_by_address",
            None,
            [
                bearer(&bound_1),
                vec![("x-client-cert-der", "%%%".to_owned())],
            ]
            .concat(),
            required,
        )
        .at("/der/hostile"),
        // ---- XFCC abuse
        row(
            "XFCC from an untrusted peer",
            "behind_edge",
            Some(2),
            [
                bearer(&bound_1),
                vec![("x-forwarded-client-cert", forged_xfcc(world, 1))],
            ]
            .concat(),
            required,
        ),
        row(
            "XFCC hash-only from an untrusted peer",
            "behind_edge",
            Some(2),
            [
                bearer(&bound_1),
                vec![(
                    "x-forwarded-client-cert",
                    format!("Hash={}", hex_digest(&client_1.cert_der)),
                )],
            ]
            .concat(),
            required,
        ),
        row(
            "XFCC from an untrusted network",
            "untrusted_network",
            Some(1),
            [
                bearer(&bound_1),
                vec![("x-forwarded-client-cert", forged_xfcc(world, 1))],
            ]
            .concat(),
            required,
        ),
    ]
}

/// The token with one character in the middle of its signature changed.
/// (Appending to the signature is not enough: Envoy 1.40's jwt_authn still
/// accepts such a token, whose claims are the issuer's own.)
fn flip_signature(token: &str) -> String {
    let signature_start = token.rfind('.').expect("jws") + 1;
    let middle = signature_start + (token.len() - signature_start) / 2;
    let replacement = if &token[middle..=middle] == "A" {
        "B"
    } else {
        "A"
    };
    format!("{}{replacement}{}", &token[..middle], &token[middle + 1..])
}

fn cc(token: &str, value: &str) -> Vec<(&'static str, String)> {
    [bearer(token), vec![("client-cert", value.to_owned())]].concat()
}

fn sha(bytes: &[u8]) -> Vec<u8> {
    use sha2::Digest;
    sha2::Sha256::digest(bytes).to_vec()
}

fn standard_base64_slug(der: &[u8]) -> &'static str {
    let text = STANDARD.encode(sha(der));
    if text.contains(['+', '/']) {
        "token-invalid"
    } else {
        "mtls-binding-mismatch"
    }
}

/// The thumbprint with its first `A` (or first letter) made Cyrillic `А`.
fn lookalike(x5t: &str) -> String {
    match x5t.find('A') {
        Some(i) => format!("{}\u{0410}{}", &x5t[..i], &x5t[i + 1..]),
        None => format!("\u{0410}{}", &x5t[1..]),
    }
}

/// Sends every row over HTTP/1.1 and HTTP/2.
pub fn run(world: &World) {
    let rows = rows(world);
    assert!(rows.len() * 2 >= 60, "{} rows", rows.len());
    let mut failures = Vec::new();
    for http2 in [false, true] {
        for row in &rows {
            let mut request = Request::new(world.envoy.port(row.listener))
                .path(&row.path)
                .certificate(row.certificate)
                .http2(http2);
            for (name, value) in &row.headers {
                request = request.header(name, value.clone());
            }
            let response = world.client.send(request);
            let version = if http2 { "HTTP/2" } else { "HTTP/1.1" };
            let expected_type = format!("urn:cnf-guard:problem:{}", row.slug);
            let expected_status = if row.slug == "multiple-tokens" {
                400
            } else {
                401
            };
            let got = if response.status == expected_status
                && response.header("content-type") == Some("application/problem+json")
            {
                response.json()["type"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned()
            } else {
                format!("status {} body {:?}", response.status, response.body)
            };
            if got != expected_type || response.version != version {
                failures.push(format!(
                    "{version} {}: expected {}, got {got} over {}",
                    row.name, row.slug, response.version
                ));
            }
            if world.upstream.saw(&response.request_id) {
                failures.push(format!("{version} {}: reached the upstream", row.name));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} hostile requests:\n{}",
        failures.len(),
        rows.len() * 2,
        failures.join("\n")
    );
}
