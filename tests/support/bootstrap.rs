//! Envoy configurations for the tests: one listener per plugin configuration,
//! each the same chain as envoy/demo.yaml (mTLS → jwt_authn → cnf-guard → router).

use std::path::Path;

/// How jwt_authn is set up in front of cnf-guard on one listener.
#[derive(Clone)]
pub struct JwtAuthn {
    pub payload_in_metadata: Option<&'static str>,
    pub failed_status_in_metadata: Option<&'static str>,
    /// `allow_missing` / `allow_missing_or_failed` requirement, if any.
    pub allow: Option<&'static str>,
    /// Extract `Authorization: DPoP <token>` as well as `Bearer` (RFC 9449).
    pub dpop_scheme: bool,
    /// The provider's `forward`: keep the token's header after verification.
    /// jwt_authn's own default is `false` (the header is removed); the tests'
    /// default is `true`, which the `authorization_header` claims source and
    /// DPoP's `ath` need.
    pub forward: bool,
}

impl Default for JwtAuthn {
    fn default() -> Self {
        JwtAuthn {
            payload_in_metadata: Some("payload"),
            failed_status_in_metadata: None,
            allow: None,
            dpop_scheme: false,
            forward: true,
        }
    }
}

pub struct Listener {
    pub name: &'static str,
    pub jwt_authn: JwtAuthn,
    /// The plugin configuration JSON.
    pub plugin_config: String,
    /// Named routes as (name, path prefix); none means one unnamed `/` route.
    pub routes: &'static [(&'static str, &'static str)],
    /// `forward_client_cert_details: FORWARD_ONLY`, so an XFCC header from
    /// the hop in front reaches the filter (Envoy's default strips it).
    pub forward_client_cert: bool,
}

impl Listener {
    pub fn new(name: &'static str, jwt_authn: JwtAuthn, plugin_config: String) -> Listener {
        Listener {
            name,
            jwt_authn,
            plugin_config,
            routes: &[],
            forward_client_cert: false,
        }
    }

    pub fn routes(mut self, routes: &'static [(&'static str, &'static str)]) -> Listener {
        self.routes = routes;
        self
    }

    pub fn forward_client_cert(mut self) -> Listener {
        self.forward_client_cert = true;
        self
    }
}

pub fn bootstrap(
    material: &Path,
    wasm: &Path,
    upstream_port: u16,
    listeners: &[Listener],
) -> String {
    let mut out = String::from(
        "admin:\n  address: {socket_address: {address: 127.0.0.1, port_value: 0}}\nstatic_resources:\n  listeners:\n",
    );
    for listener in listeners {
        out.push_str(&listener_yaml(material, wasm, listener));
    }
    out.push_str(&upstream_cluster(upstream_port));
    out
}

/// A bootstrap whose one listener comes from `lds_path` (file-based LDS), and
/// the LDS file serving `listener` on `port`: rewriting that file (atomically,
/// by rename) is a listener update, as a control plane would push it.
pub fn lds_bootstrap(lds_path: &Path, upstream_port: u16) -> String {
    format!(
        "node: {{id: cnf-guard-test, cluster: cnf-guard-test}}\n\
         admin:\n  address: {{socket_address: {{address: 127.0.0.1, port_value: 0}}}}\n\
         dynamic_resources:\n  lds_config:\n    resource_api_version: V3\n    path_config_source: {{path: {}}}\n\
         static_resources:\n{}",
        lds_path.display(),
        upstream_cluster(upstream_port)
    )
}

pub fn lds_resources(material: &Path, wasm: &Path, listener: &Listener, port: u16) -> String {
    let yaml = listener_yaml(material, wasm, listener).replacen(
        "port_value: 0",
        &format!("port_value: {port}"),
        1,
    );
    let body: String = yaml
        .lines()
        .map(|line| line.strip_prefix("  ").unwrap_or(line))
        .map(|line| format!("{line}\n"))
        .collect();
    format!(
        "resources:\n{}",
        body.replacen(
            "- name:",
            "- \"@type\": type.googleapis.com/envoy.config.listener.v3.Listener\n  name:",
            1
        )
    )
}

fn listener_yaml(material: &Path, wasm: &Path, listener: &Listener) -> String {
    let m = material.display();
    let jwt = &listener.jwt_authn;
    let mut provider = format!(
        "                  issuer: {}\n                  audiences: [{}]\n                  local_jwks: {{filename: {m}/jwks.json}}\n                  forward: {}\n",
        super::material::ISSUER,
        super::material::AUDIENCE,
        jwt.forward
    );
    if jwt.dpop_scheme {
        provider.push_str(
            "                  from_headers:\n                  - {name: authorization, value_prefix: \"Bearer \"}\n                  - {name: authorization, value_prefix: \"DPoP \"}\n",
        );
    }
    if let Some(key) = jwt.payload_in_metadata {
        provider.push_str(&format!("                  payload_in_metadata: {key}\n"));
    }
    if let Some(key) = jwt.failed_status_in_metadata {
        provider.push_str(&format!(
            "                  failed_status_in_metadata: {key}\n"
        ));
    }
    let requires = match jwt.allow {
        None => "{provider_name: issuer}".to_owned(),
        Some(allow) => format!(
            "{{requires_any: {{requirements: [{{provider_name: issuer}}, {{{allow}: {{}}}}]}}}}"
        ),
    };
    let config = serde_json::to_string(&listener.plugin_config).expect("json string");
    let routes: String = if listener.routes.is_empty() {
        "              - match: {prefix: /}\n                route: {cluster: upstream}\n"
            .to_owned()
    } else {
        listener
            .routes
            .iter()
            .map(|(name, prefix)| {
                format!("              - name: {name}\n                match: {{prefix: {prefix}}}\n                route: {{cluster: upstream}}\n")
            })
            .collect()
    };
    let xfcc = if listener.forward_client_cert {
        "          forward_client_cert_details: FORWARD_ONLY\n"
    } else {
        ""
    };
    format!(
        r#"  - name: {name}
    # Listener stats are otherwise named by the configured address, the same
    # `127.0.0.1_0` for every listener here.
    stat_prefix: {name}
    address: {{socket_address: {{address: 127.0.0.1, port_value: 0}}}}
    filter_chains:
{tls}      filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: {name}
          access_log:
          - name: envoy.access_loggers.file
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog
              path: access.log
              log_format:
                text_format_source:
                  inline_string: "{access_log_format}\n"
{xfcc}          route_config:
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
{routes}          http_filters:
          - name: envoy.filters.http.jwt_authn
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication
              providers:
                issuer:
{provider}              rules:
              - match: {{prefix: /}}
                requires: {requires}
{cnf_guard}          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
"#,
        name = listener.name,
        cnf_guard = cnf_guard_filter(&format!("cnf-guard-{}", listener.name), &config, wasm),
        tls = downstream_tls(material, false),
        access_log_format = ACCESS_LOG_FORMAT.replace('"', "\\\""),
    )
}

/// Every listener's access-log line, as docs/observability.md recommends:
/// the request id, then what cnf-guard decided.
pub const ACCESS_LOG_FORMAT: &str = "%REQ(X-REQUEST-ID)% %RESPONSE_CODE% %RESPONSE_CODE_DETAILS% cnf_guard=\"%FILTER_STATE(wasm.cnf_guard:PLAIN)%\"";

/// A TLS-terminating edge proxy: it validates the client's certificate,
/// replaces any XFCC the client sent with its own (`SANITIZE_SET`), and
/// forwards over mTLS, as the `edge` identity, to `inner_port`.
pub fn edge_bootstrap(material: &Path, inner_port: u16) -> String {
    let m = material.display();
    let tls = downstream_tls(material, true);
    format!(
        r#"admin:
  address: {{socket_address: {{address: 127.0.0.1, port_value: 0}}}}
static_resources:
  listeners:
  - name: edge
    address: {{socket_address: {{address: 127.0.0.1, port_value: 0}}}}
    filter_chains:
{tls}      filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: edge
          forward_client_cert_details: SANITIZE_SET
          set_current_client_cert_details: {{cert: true, subject: true, uri: true, dns: true}}
          route_config:
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
              - match: {{prefix: /}}
                route: {{cluster: inner}}
          http_filters:
          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
  clusters:
  - name: inner
    type: STATIC
    load_assignment:
      cluster_name: inner
      endpoints:
      - lb_endpoints:
        - endpoint: {{address: {{socket_address: {{address: 127.0.0.1, port_value: {inner_port}}}}}}}
    transport_socket:
      name: envoy.transport_sockets.tls
      typed_config:
        "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext
        sni: localhost
        common_tls_context:
          tls_certificates:
          - certificate_chain: {{filename: {m}/edge.pem}}
            private_key: {{filename: {m}/edge.key}}
          validation_context:
            trusted_ca: {{filename: {m}/ca.pem}}
            match_typed_subject_alt_names:
            - san_type: DNS
              matcher: {{exact: localhost}}
"#
    )
}

/// The listeners' TLS: the demo server certificate, client certificates
/// validated against the demo CA.
fn downstream_tls(material: &Path, require_client_certificate: bool) -> String {
    let m = material.display();
    format!(
        r#"    - transport_socket:
        name: envoy.transport_sockets.tls
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext
          require_client_certificate: {require_client_certificate}
          common_tls_context:
            # Both HTTP versions, so tests can cover each.
            alpn_protocols: [h2, http/1.1]
            tls_certificates:
            - certificate_chain: {{filename: {m}/server.pem}}
              private_key: {{filename: {m}/server.key}}
            validation_context:
              trusted_ca: {{filename: {m}/ca.pem}}
"#
    )
}

/// `clusters:` with the one `upstream` cluster, at the indentation of a
/// bootstrap's `static_resources`.
pub fn upstream_cluster(upstream_port: u16) -> String {
    format!(
        "  clusters:\n  - name: upstream\n    type: STATIC\n    load_assignment:\n      cluster_name: upstream\n      endpoints:\n      - lb_endpoints:\n        - endpoint: {{address: {{socket_address: {{address: 127.0.0.1, port_value: {upstream_port}}}}}}}\n"
    )
}

/// The cnf-guard filter as one entry of an HTTP connection manager's
/// `http_filters` (indented for it); `config` is a YAML string scalar.
pub fn cnf_guard_filter(name: &str, config: &str, wasm: &Path) -> String {
    format!(
        r#"          - name: envoy.filters.http.wasm
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm
              config:
                name: {name}
                root_id: cnf-guard
                fail_open: false
                configuration:
                  "@type": type.googleapis.com/google.protobuf.StringValue
                  value: {config}
                vm_config:
                  vm_id: cnf-guard
                  runtime: envoy.wasm.runtime.v8
                  code: {{local: {{filename: {wasm}}}}}
"#,
        wasm = wasm.display()
    )
}
