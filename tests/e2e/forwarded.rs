//! Forwarded client certificates: behind a TLS-terminating proxy (a real
//! edge Envoy in front of the `behind_edge` listener, XFCC), the other
//! forwarded formats (RFC 9440 `Client-Cert`, URL-encoded PEM, base64 DER),
//! and whom the filter believes them from (peer SANs and subjects, source
//! networks). The forged-header helpers here serve other concerns too.

use super::assertions::{assert_allowed, assert_detail_contains, assert_problem};
use super::{plugin, NamedTrial, World};
use crate::support::bootstrap::{JwtAuthn, Listener};
use crate::support::client::Request;
use crate::support::material::EDGE_SAN;
use serde_json::json;

pub fn listeners() -> Vec<Listener> {
    let default_jwt = JwtAuthn::default;
    vec![
        plugin(
            "behind_edge",
            default_jwt(),
            json!({
                "certificate": {
                    "source": "xfcc_cert",
                    "trusted_proxy": {"peer_sans": [EDGE_SAN]},
                    "remove_header": true
                },
                "stat_prefix": "behind_edge",
                "rules": [{
                    "name": "by-hash",
                    "match": {"path": {"prefix": "/hash/"}},
                    "certificate": {"source": "xfcc_hash", "trusted_proxy": {"peer_sans": [EDGE_SAN]}}
                }, {
                    "name": "by-subject",
                    "match": {"path": {"prefix": "/subject/"}},
                    "certificate": {"source": "xfcc_cert", "trusted_proxy": {"peer_subjects": ["CN=edge"]}}
                }, {
                    "name": "wrong-subject",
                    "match": {"path": {"prefix": "/wrong-subject/"}},
                    "certificate": {"source": "xfcc_cert", "trusted_proxy": {"peer_subjects": ["CN=edge,O=Other"]}}
                }]
            }),
        )
        .forward_client_cert(),
        plugin(
            "forwarded_by_address",
            default_jwt(),
            json!({
                "certificate": {"source": "client_cert", "trusted_proxy": {"source_cidrs": ["127.0.0.0/8", "::1"]}},
                "stat_prefix": "forwarded_by_address",
                "rules": [
                    {"name": "pem", "match": {"path": {"prefix": "/pem/"}}, "certificate": {
                        "source": "pem_header", "header": "X-Amzn-Mtls-Clientcert",
                        "trusted_proxy": {"source_cidrs": ["127.0.0.1"]}}},
                    {"name": "der", "match": {"path": {"prefix": "/der/"}}, "certificate": {
                        "source": "der_header", "header": "x-client-cert-der",
                        "trusted_proxy": {"source_cidrs": ["127.0.0.1"]}}},
                    {"name": "spki", "match": {"path": {"prefix": "/spki/"}}, "thumbprint": "spki"}
                ]
            }),
        )
        .forward_client_cert(),
        plugin(
            "untrusted_network",
            default_jwt(),
            json!({
                "certificate": {"source": "xfcc_hash", "trusted_proxy": {"source_cidrs": ["10.0.0.0/8"]}},
                "stat_prefix": "untrusted_network"
            }),
        )
        .forward_client_cert(),
    ]
}

pub fn trials() -> Vec<NamedTrial> {
    vec![
        (
            "behind_edge::bound_token_passes_and_xfcc_is_removed_before_upstream",
            edge_bound_passes,
        ),
        (
            "behind_edge::token_bound_to_another_certificate_is_denied",
            edge_mismatch_denied,
        ),
        (
            "behind_edge::xfcc_injected_by_the_client_at_the_edge_has_no_effect",
            edge_injected_xfcc_replaced,
        ),
        (
            "behind_edge::xfcc_from_an_untrusted_hop_is_ignored_and_counted",
            untrusted_hop_ignored,
        ),
        (
            "behind_edge::rule_switches_to_the_xfcc_hash",
            edge_rule_uses_hash,
        ),
        (
            "behind_edge::edge_trusted_by_its_certificate_subject",
            edge_trusted_by_subject,
        ),
        (
            "forwarded::rfc9440_client_cert_from_a_trusted_address",
            client_cert_header,
        ),
        (
            "forwarded::url_encoded_pem_header_alb_style",
            pem_header_alb_style,
        ),
        ("forwarded::base64_der_header", der_header),
        (
            "forwarded::spki_thumbprint_of_a_forwarded_certificate",
            forwarded_spki,
        ),
    ]
}

// ---- behind a TLS-terminating proxy ---------------------------------------------

/// Envoy's XFCC `Cert` escaping (newline, space, `+`, `/`, `=`, quote, `,`, `;`).
pub fn envoy_url_encoded(pem: &str) -> String {
    use percent_encoding::{utf8_percent_encode, AsciiSet, CONTROLS};
    const SET: &AsciiSet = &CONTROLS
        .add(b' ')
        .add(b'+')
        .add(b'/')
        .add(b'=')
        .add(b'"')
        .add(b',')
        .add(b';');
    utf8_percent_encode(pem, SET).to_string()
}

pub fn hex_digest(der: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(der))
}

/// An XFCC element claiming `client` (1 or 2), as a client might forge it.
pub fn forged_xfcc(world: &World, client: usize) -> String {
    let identity = &world.pki.clients[client - 1];
    format!(
        "Hash={};Cert=\"{}\";URI=spiffe://cnf-guard.test/client-{client}",
        hex_digest(&identity.cert_der),
        envoy_url_encoded(&identity.cert_pem)
    )
}

fn via_edge(world: &World, certificate: u8, token: &str) -> Request<'static> {
    Request::new(world.edge.port("edge"))
        .certificate(Some(certificate))
        .bearer(token)
}

fn edge_bound_passes(world: &World) {
    let response = world.client.send(via_edge(world, 1, &world.tokens.bound_1));
    assert_allowed(world, &response);
    assert_eq!(
        world
            .upstream
            .header(&response.request_id, "x-forwarded-client-cert"),
        None,
        "remove_header: the upstream must not see the forwarded certificate"
    );
    let response = world.client.send(via_edge(world, 2, &world.tokens.bound_2));
    assert_allowed(world, &response);
}

fn edge_mismatch_denied(world: &World) {
    let response = world.client.send(via_edge(world, 2, &world.tokens.bound_1));
    assert_problem(world, &response, "mtls-binding-mismatch");
}

fn edge_injected_xfcc_replaced(world: &World) {
    // Client 2 holds client 1's token and claims client 1's certificate.
    let forged = via_edge(world, 2, &world.tokens.bound_1)
        .header("x-forwarded-client-cert", forged_xfcc(world, 1));
    let response = world.client.send(forged);
    assert_problem(world, &response, "mtls-binding-mismatch");
    // And a genuine client is not hurt by junk it sends.
    let junk = via_edge(world, 1, &world.tokens.bound_1)
        .header("x-forwarded-client-cert", forged_xfcc(world, 2));
    assert_allowed(world, &world.client.send(junk));
}

fn untrusted_hop_ignored(world: &World) {
    // Straight to the inner listener: the peer is client 2, not the edge.
    let port = world.envoy.port("behind_edge");
    let direct = Request::new(port)
        .certificate(Some(2))
        .bearer(&world.tokens.bound_1)
        .header("x-forwarded-client-cert", forged_xfcc(world, 1));
    let response = world.client.send(direct);
    let document = assert_problem(world, &response, "mtls-required");
    assert_detail_contains(&document, "did not come from a trusted proxy");
    assert!(world
        .envoy
        .wait_for_log("ignored the x-forwarded-client-cert header from an untrusted hop: the connection's peer certificate is not a trusted proxy's"));
    assert!(
        world.envoy.wait_for_stat(
            "wasmcustom.cnf_guard.behind_edge.forwarded_certificate_untrusted",
            1
        ) >= 1
    );
    // Trusted by network only, and loopback is not in it.
    let port = world.envoy.port("untrusted_network");
    let request = Request::new(port)
        .bearer(&world.tokens.bound_1)
        .header("x-forwarded-client-cert", forged_xfcc(world, 1));
    let response = world.client.send(request);
    assert_problem(world, &response, "mtls-required");
    assert!(world
        .envoy
        .wait_for_log("ignored the x-forwarded-client-cert header from an untrusted hop: source 127.0.0.1 is not in a trusted network"));
}

fn edge_trusted_by_subject(world: &World) {
    // Envoy prints the edge certificate's subject as `CN=edge`.
    let allowed = via_edge(world, 1, &world.tokens.bound_1).path("/subject/x");
    assert_allowed(world, &world.client.send(allowed));
    let untrusted = via_edge(world, 1, &world.tokens.bound_1).path("/wrong-subject/x");
    assert_problem(world, &world.client.send(untrusted), "mtls-required");
}

fn edge_rule_uses_hash(world: &World) {
    let allowed = via_edge(world, 1, &world.tokens.bound_1).path("/hash/orders");
    assert_allowed(world, &world.client.send(allowed));
    let denied = via_edge(world, 2, &world.tokens.bound_1).path("/hash/orders");
    assert_problem(world, &world.client.send(denied), "mtls-binding-mismatch");
}

// ---- other forwarded formats, trusted by address ----------------------------------

fn forwarded(world: &World, path: &'static str, token: &str) -> Request<'static> {
    Request::new(world.envoy.port("forwarded_by_address"))
        .path(path)
        .certificate(None)
        .bearer(token)
}

pub fn rfc9440(world: &World, client: usize) -> String {
    use base64::Engine as _;
    let der = &world.pki.clients[client - 1].cert_der;
    format!(
        ":{}:",
        base64::engine::general_purpose::STANDARD.encode(der)
    )
}

fn client_cert_header(world: &World) {
    let ok = forwarded(world, "/", &world.tokens.bound_1).header("client-cert", rfc9440(world, 1));
    assert_allowed(world, &world.client.send(ok));
    let other =
        forwarded(world, "/", &world.tokens.bound_1).header("client-cert", rfc9440(world, 2));
    assert_problem(world, &world.client.send(other), "mtls-binding-mismatch");
    let garbage = forwarded(world, "/", &world.tokens.bound_1).header("client-cert", ":Zm9v:");
    let document = assert_problem(world, &world.client.send(garbage), "mtls-required");
    assert_detail_contains(&document, "not a DER certificate");
    let none = forwarded(world, "/", &world.tokens.bound_1);
    assert_problem(world, &world.client.send(none), "mtls-required");
}

fn pem_header_alb_style(world: &World) {
    use percent_encoding::{utf8_percent_encode, AsciiSet, CONTROLS};
    // AWS ALB leaves `+`, `/` and `=` unescaped.
    const ALB: &AsciiSet = &CONTROLS.add(b' ');
    let pem = utf8_percent_encode(&world.pki.clients[0].cert_pem, ALB).to_string();
    let ok = forwarded(world, "/pem/x", &world.tokens.bound_1)
        .header("x-amzn-mtls-clientcert", pem.clone());
    assert_allowed(world, &world.client.send(ok));
    let other =
        forwarded(world, "/pem/x", &world.tokens.bound_2).header("x-amzn-mtls-clientcert", pem);
    assert_problem(world, &world.client.send(other), "mtls-binding-mismatch");
}

fn der_header(world: &World) {
    use base64::Engine as _;
    let der = base64::engine::general_purpose::STANDARD.encode(&world.pki.clients[1].cert_der);
    let ok = forwarded(world, "/der/x", &world.tokens.bound_2).header("x-client-cert-der", der);
    assert_allowed(world, &world.client.send(ok));
}

fn forwarded_spki(world: &World) {
    let ok =
        forwarded(world, "/spki/x", &world.tokens.spki_1).header("client-cert", rfc9440(world, 1));
    assert_allowed(world, &world.client.send(ok));
    // The certificate thumbprint does not bind on the SPKI route.
    let wrong_kind =
        forwarded(world, "/spki/x", &world.tokens.bound_1).header("client-cert", rfc9440(world, 1));
    assert_problem(
        world,
        &world.client.send(wrong_kind),
        "mtls-binding-mismatch",
    );
}
