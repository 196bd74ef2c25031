//! The access token: what it is bound to, and where it came from.
//!
//! - [`claims`]: reads the verified claims through the host (jwt_authn's
//!   metadata or the forwarded `Authorization` header);
//! - [`binding`]: what a `cnf` claim binds the token to (pure), using
//!   [`pairs`], Envoy's encoding of a metadata map;
//! - [`places`]: how many tokens a request carries (pure).

pub mod binding;
pub mod claims;
pub mod pairs;
pub mod places;
