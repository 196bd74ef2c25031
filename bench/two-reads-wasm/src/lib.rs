//! A proxy-wasm HTTP filter that reads the two properties cnf-guard reads on
//! its success path, the token's `cnf.x5t#S256` from jwt_authn's metadata and
//! the peer certificate's SHA-256, and lets every request through whatever
//! they hold. Nothing else: no configuration, no comparison, no metrics.

use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType};

/// The same paths, as the same segments, as cnf-guard reads them.
const X5T_S256: [&str; 6] = [
    "metadata",
    "filter_metadata",
    "envoy.filters.http.jwt_authn",
    "payload",
    "cnf",
    "x5t#S256",
];
const PEER_DIGEST: [&str; 2] = ["connection", "sha256_peer_certificate_digest"];

proxy_wasm::main! {{
    proxy_wasm::set_root_context(|_| Box::new(TwoReadsRoot));
}}

struct TwoReadsRoot;

impl Context for TwoReadsRoot {}

impl RootContext for TwoReadsRoot {
    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(TwoReadsRequest))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct TwoReadsRequest;

impl Context for TwoReadsRequest {}

impl HttpContext for TwoReadsRequest {
    fn on_http_request_headers(&mut self, _headers: usize, _end_of_stream: bool) -> Action {
        let x5t = self.get_property(X5T_S256.to_vec());
        let digest = self.get_property(PEER_DIGEST.to_vec());
        // Keep the values alive to the end, as a check would.
        core::hint::black_box((x5t, digest));
        Action::Continue
    }
}
