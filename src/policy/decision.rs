//! The decision: token binding + client certificate + policy → one outcome.
//!
//! Pure: every input is a plain value, so each branch is unit-tested natively.

use crate::certificate::thumbprint::Thumbprint;
use crate::dpop::denial::{DpopDenial, RequiredReason};
use crate::dpop::proof::ProofError;
use crate::dpop::settings::DpopPolicy;
use crate::policy::settings::BindingPolicy;
use crate::token::binding::{AuthFailure, Malformation, TokenBinding};

/// What the downstream connection tells us about the client certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientCertificate {
    Absent,
    Present(Thumbprint),
    /// Presented but not usable (e.g. unparsable PEM in `spki` mode).
    Unusable(String),
    /// A forwarded certificate header came from an untrusted hop and was
    /// ignored; holds the header's name.
    Untrusted(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The token is bound, and every binding it has was proven.
    AllowedBound,
    /// The token is unbound and `binding: optional` lets it through.
    AllowedUnbound,
    Denied(Denial),
}

/// Every way a request can be refused; each maps to one problem slug.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Denial {
    AuthenticationFailed(AuthFailure),
    TokenInvalid(Malformation),
    TokenUnbound,
    MtlsRequired {
        expected: Thumbprint,
        reason: Option<String>,
    },
    MtlsBindingMismatch {
        expected: Thumbprint,
        presented: Thumbprint,
    },
    Dpop(DpopDenial),
    /// The request carries a token in more than one place (each named), so
    /// one of them would reach the service unchecked.
    MultipleTokens(Vec<String>),
}

/// Everything a decision looks at, besides the policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Evidence {
    pub token: TokenBinding,
    /// Fetched only for a certificate-bound token (`TokenBinding::needs_certificate`).
    pub certificate: Option<ClientCertificate>,
    /// The DPoP check, run only for a key-bound token when DPoP is on.
    /// `None` for such a token means it was not run, and fails closed.
    pub proof: Option<Result<(), DpopDenial>>,
}

/// A request may carry one token: jwt_authn verifies every token it finds,
/// but only one becomes the claims that cnf-guard checks.
pub fn single_token(places: Vec<String>) -> Result<(), Denial> {
    if places.len() > 1 {
        return Err(Denial::MultipleTokens(places));
    }
    Ok(())
}

/// Decides one request. Token problems come first, then DPoP, then the certificate.
pub fn decide(binding: BindingPolicy, dpop: DpopPolicy, evidence: Evidence) -> Outcome {
    let Evidence {
        token,
        certificate,
        proof,
    } = evidence;
    let not_key_bound = Denial::Dpop(DpopDenial::Required(RequiredReason::TokenNotKeyBound));
    match (&token, dpop) {
        (TokenBinding::Missing(failure), _) => {
            return Outcome::Denied(Denial::AuthenticationFailed(failure.clone()))
        }
        (TokenBinding::Malformed(malformation), _) => {
            return Outcome::Denied(Denial::TokenInvalid(malformation.clone()))
        }
        (TokenBinding::Unbound, DpopPolicy::Required) => return Outcome::Denied(not_key_bound),
        (TokenBinding::Unbound, _) => {
            return match binding {
                BindingPolicy::Required => Outcome::Denied(Denial::TokenUnbound),
                BindingPolicy::Optional => Outcome::AllowedUnbound,
            }
        }
        (TokenBinding::Key(_), DpopPolicy::Off) => {
            return Outcome::Denied(Denial::TokenInvalid(Malformation::KeyBindingNotChecked))
        }
        // DPoP off: the certificate binding is checked and `jkt` is not read,
        // whichever claims source (metadata reads skip it to save a host call).
        (TokenBinding::CertificateAndKey(..), DpopPolicy::Off) => {}
        (TokenBinding::Certificate(_), DpopPolicy::Required) => {
            return Outcome::Denied(not_key_bound)
        }
        (TokenBinding::Key(_) | TokenBinding::CertificateAndKey(..), _) => match proof {
            Some(Ok(())) => {}
            Some(Err(denial)) => return Outcome::Denied(Denial::Dpop(denial)),
            None => {
                return Outcome::Denied(Denial::Dpop(DpopDenial::ProofInvalid(ProofError::Missing)))
            }
        },
        (TokenBinding::Certificate(_), _) => {}
    }
    match token.certificate() {
        None => Outcome::AllowedBound,
        Some(expected) => certificate_decision(*expected, certificate),
    }
}

fn certificate_decision(expected: Thumbprint, certificate: Option<ClientCertificate>) -> Outcome {
    match certificate {
        None | Some(ClientCertificate::Absent) => Outcome::Denied(Denial::MtlsRequired {
            expected,
            reason: None,
        }),
        Some(ClientCertificate::Unusable(reason)) => Outcome::Denied(Denial::MtlsRequired {
            expected,
            reason: Some(reason),
        }),
        Some(ClientCertificate::Untrusted(header)) => Outcome::Denied(Denial::MtlsRequired {
            expected,
            reason: Some(format!(
                "the {header} header did not come from a trusted proxy and was ignored"
            )),
        }),
        Some(ClientCertificate::Present(presented)) if expected.matches(&presented) => {
            Outcome::AllowedBound
        }
        Some(ClientCertificate::Present(presented)) => {
            Outcome::Denied(Denial::MtlsBindingMismatch {
                expected,
                presented,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::certificate::thumbprint::X5tError;
    use crate::dpop::proof::jwk::JwkThumbprint;

    fn cert(name: &[u8]) -> Thumbprint {
        Thumbprint::of(name)
    }

    /// A decision with DPoP off, as before DPoP existed.
    fn certificate_only(
        binding: BindingPolicy,
        token: TokenBinding,
        certificate: Option<ClientCertificate>,
    ) -> Outcome {
        decide(
            binding,
            DpopPolicy::Off,
            Evidence {
                token,
                certificate,
                proof: None,
            },
        )
    }

    fn key(byte: u8) -> JwkThumbprint {
        use base64::Engine as _;
        let jkt = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode([byte; 32]);
        JwkThumbprint::from_jkt(jkt.as_bytes()).unwrap()
    }

    fn with_dpop(
        dpop: DpopPolicy,
        token: TokenBinding,
        certificate: Option<ClientCertificate>,
        proof: Option<Result<(), DpopDenial>>,
    ) -> Outcome {
        decide(
            BindingPolicy::Required,
            dpop,
            Evidence {
                token,
                certificate,
                proof,
            },
        )
    }

    #[test]
    fn key_bound_token_needs_its_proof() {
        for policy in [DpopPolicy::Optional, DpopPolicy::Required] {
            assert_eq!(
                with_dpop(policy, TokenBinding::Key(key(1)), None, Some(Ok(()))),
                Outcome::AllowedBound
            );
            let replay = DpopDenial::Replay(crate::dpop::denial::Recorded::Replayed);
            assert_eq!(
                with_dpop(
                    policy,
                    TokenBinding::Key(key(1)),
                    None,
                    Some(Err(replay.clone()))
                ),
                Outcome::Denied(Denial::Dpop(replay))
            );
            // A check that did not run is a failure, never a pass.
            assert_eq!(
                with_dpop(policy, TokenBinding::Key(key(1)), None, None),
                Outcome::Denied(Denial::Dpop(DpopDenial::ProofInvalid(ProofError::Missing)))
            );
        }
        assert_eq!(
            with_dpop(
                DpopPolicy::Off,
                TokenBinding::Key(key(1)),
                None,
                Some(Ok(()))
            ),
            Outcome::Denied(Denial::TokenInvalid(Malformation::KeyBindingNotChecked))
        );
    }

    #[test]
    fn dual_bound_token_must_pass_both() {
        let token = TokenBinding::CertificateAndKey(cert(b"one"), key(1));
        let right = Some(ClientCertificate::Present(cert(b"one")));
        let wrong = Some(ClientCertificate::Present(cert(b"two")));
        let proof_fails = Some(Err(DpopDenial::ProofInvalid(ProofError::Signature)));
        assert_eq!(
            with_dpop(
                DpopPolicy::Optional,
                token.clone(),
                right.clone(),
                Some(Ok(()))
            ),
            Outcome::AllowedBound
        );
        assert!(matches!(
            with_dpop(DpopPolicy::Optional, token.clone(), wrong, Some(Ok(()))),
            Outcome::Denied(Denial::MtlsBindingMismatch { .. })
        ));
        assert!(matches!(
            with_dpop(DpopPolicy::Optional, token.clone(), right, proof_fails),
            Outcome::Denied(Denial::Dpop(DpopDenial::ProofInvalid(_)))
        ));
        // With DPoP off only the certificate binding is checked.
        assert_eq!(
            with_dpop(
                DpopPolicy::Off,
                token.clone(),
                Some(ClientCertificate::Present(cert(b"one"))),
                None
            ),
            Outcome::AllowedBound
        );
        assert!(matches!(
            with_dpop(DpopPolicy::Off, token, None, None),
            Outcome::Denied(Denial::MtlsRequired { .. })
        ));
    }

    #[test]
    fn required_dpop_refuses_tokens_not_bound_to_a_key() {
        let not_key_bound = Outcome::Denied(Denial::Dpop(DpopDenial::Required(
            RequiredReason::TokenNotKeyBound,
        )));
        for token in [
            TokenBinding::Unbound,
            TokenBinding::Certificate(cert(b"one")),
        ] {
            assert_eq!(
                with_dpop(
                    DpopPolicy::Required,
                    token,
                    Some(ClientCertificate::Present(cert(b"one"))),
                    None
                ),
                not_key_bound
            );
        }
        // Optional: a certificate-bound token is checked as before.
        assert_eq!(
            with_dpop(
                DpopPolicy::Optional,
                TokenBinding::Certificate(cert(b"one")),
                Some(ClientCertificate::Present(cert(b"one"))),
                None
            ),
            Outcome::AllowedBound
        );
    }

    #[test]
    fn matching_certificate_is_allowed() {
        let outcome = certificate_only(
            BindingPolicy::Required,
            TokenBinding::Certificate(cert(b"one")),
            Some(ClientCertificate::Present(cert(b"one"))),
        );
        assert_eq!(outcome, Outcome::AllowedBound);
    }

    #[test]
    fn other_certificate_is_a_mismatch() {
        let outcome = certificate_only(
            BindingPolicy::Optional,
            TokenBinding::Certificate(cert(b"one")),
            Some(ClientCertificate::Present(cert(b"two"))),
        );
        assert_eq!(
            outcome,
            Outcome::Denied(Denial::MtlsBindingMismatch {
                expected: cert(b"one"),
                presented: cert(b"two")
            })
        );
    }

    #[test]
    fn bound_token_without_certificate_needs_mtls() {
        for certificate in [None, Some(ClientCertificate::Absent)] {
            let outcome = certificate_only(
                BindingPolicy::Required,
                TokenBinding::Certificate(cert(b"one")),
                certificate,
            );
            assert_eq!(
                outcome,
                Outcome::Denied(Denial::MtlsRequired {
                    expected: cert(b"one"),
                    reason: None
                })
            );
        }
        for certificate in [
            ClientCertificate::Unusable("bad pem".into()),
            ClientCertificate::Untrusted("x-forwarded-client-cert".into()),
        ] {
            let outcome = certificate_only(
                BindingPolicy::Required,
                TokenBinding::Certificate(cert(b"one")),
                Some(certificate),
            );
            assert!(matches!(
                outcome,
                Outcome::Denied(Denial::MtlsRequired {
                    reason: Some(_),
                    ..
                })
            ));
        }
    }

    #[test]
    fn unbound_follows_policy_and_ignores_certificate() {
        assert_eq!(
            certificate_only(BindingPolicy::Required, TokenBinding::Unbound, None),
            Outcome::Denied(Denial::TokenUnbound)
        );
        assert_eq!(
            certificate_only(BindingPolicy::Optional, TokenBinding::Unbound, None),
            Outcome::AllowedUnbound
        );
    }

    #[test]
    fn token_problems_come_before_certificate_problems() {
        let malformed = TokenBinding::Malformed(Malformation::X5t(X5tError::Hex));
        for policy in [BindingPolicy::Required, BindingPolicy::Optional] {
            assert_eq!(
                certificate_only(policy, malformed.clone(), Some(ClientCertificate::Absent)),
                Outcome::Denied(Denial::TokenInvalid(Malformation::X5t(X5tError::Hex)))
            );
            assert!(matches!(
                certificate_only(policy, TokenBinding::Missing(AuthFailure::default()), None),
                Outcome::Denied(Denial::AuthenticationFailed(_))
            ));
        }
    }
}
