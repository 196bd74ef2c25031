//! The client certificate: where it comes from and what it proves.
//!
//! - [`source`]: reads it through the host, from the TLS connection Envoy
//!   validated or from a header a trusted proxy forwarded;
//! - [`config`]: the `certificate` configuration block;
//! - [`forwarded`], [`xfcc`]: the forwarded header formats (pure);
//! - [`trust`]: whether the hop that forwarded it is a trusted proxy (pure);
//! - [`x509`], [`thumbprint`]: the DER facts and the RFC 8705 thumbprint (pure).

pub mod config;
pub mod forwarded;
pub mod source;
pub mod thumbprint;
pub mod trust;
pub mod x509;
pub mod xfcc;
