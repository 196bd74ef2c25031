//! Proof signatures verified by Envoy's own BoringSSL, through the foreign
//! function `verify_signature` (Envoy's source/extensions/common/wasm/foreign.cc:
//! `EVP_DigestVerify` over a DER SubjectPublicKeyInfo). Under V8 this is some
//! 25 times cheaper than the same check compiled into the module.
//!
//! Which algorithms go native is found out once, at plugin start, by a probe:
//! for each, a known-good signature must verify and the same signature with
//! one bit flipped must not. An Envoy without the function, or one that
//! answers wrong, keeps that algorithm in the module. A host failure during
//! a request's verification is a denial, never a pass.

use crate::dpop::proof::der::{ecdsa_signature, subject_public_key_info};
use crate::dpop::proof::jwk::PublicJwk;
use crate::dpop::proof::protobuf::{verify_signature_arguments, verify_signature_result};
use crate::dpop::proof::signature::{Algorithm, InModule, SignatureError, VerifySignature};
use crate::host::Host;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;

const FUNCTION: &str = "verify_signature";

/// The algorithms Envoy verifies for this plugin; the rest stay in the module.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NativeAlgorithms {
    es256: bool,
    rs256: bool,
    ps256: bool,
    eddsa: bool,
}

impl NativeAlgorithms {
    pub fn includes(self, algorithm: Algorithm) -> bool {
        match algorithm {
            Algorithm::ES256 => self.es256,
            Algorithm::RS256 => self.rs256,
            Algorithm::PS256 => self.ps256,
            Algorithm::EdDSA => self.eddsa,
        }
    }

    fn set(&mut self, algorithm: Algorithm) {
        match algorithm {
            Algorithm::ES256 => self.es256 = true,
            Algorithm::RS256 => self.rs256 = true,
            Algorithm::PS256 => self.ps256 = true,
            Algorithm::EdDSA => self.eddsa = true,
        }
    }

    /// Asks the host to verify a known-good and a known-bad signature for
    /// each of `algorithms`; an algorithm goes native only if both answers
    /// are right. Returns the result and one line per algorithm for the log.
    pub fn probe(host: &impl Host, algorithms: &[Algorithm]) -> (NativeAlgorithms, Vec<String>) {
        let mut native = NativeAlgorithms::default();
        let mut lines = Vec::new();
        for &algorithm in algorithms {
            let Some((jwk, signature)) = probe_vector(algorithm) else {
                continue;
            };
            let mut flipped = signature.clone();
            if let Some(last) = flipped.last_mut() {
                *last ^= 1;
            }
            let verifier = Native {
                host,
                algorithms: NativeAlgorithms {
                    es256: true,
                    rs256: true,
                    ps256: true,
                    eddsa: true,
                },
            };
            let good = verifier.verify(algorithm, &jwk, PROBE_MESSAGE, &signature);
            let bad = verifier.verify(algorithm, &jwk, PROBE_MESSAGE, &flipped);
            let how = match (good, bad) {
                (Ok(()), Err(SignatureError::Bad)) => {
                    native.set(algorithm);
                    "by Envoy (BoringSSL, verify_signature)".to_owned()
                }
                (Err(SignatureError::Unavailable(why)), _) => {
                    format!("in the module (Envoy's verify_signature is not usable: {why})")
                }
                (Err(SignatureError::Bad), Err(SignatureError::Bad)) => format!(
                    "in the module (Envoy's verify_signature does not verify {}: \
                     it refused a known-good signature)",
                    algorithm.name()
                ),
                (Ok(()), Ok(())) => "in the module (Envoy's verify_signature accepted a \
                     known-bad signature, so it is not trusted)"
                    .to_owned(),
                (good, bad) => format!(
                    "in the module (Envoy's verify_signature answered the probe wrong: \
                     known-good {}, known-bad {})",
                    outcome(&good),
                    outcome(&bad)
                ),
            };
            lines.push(format!(
                "DPoP {} signatures are verified {how}",
                algorithm.name()
            ));
        }
        (native, lines)
    }
}

fn outcome(result: &Result<(), SignatureError>) -> String {
    match result {
        Ok(()) => "verified".to_owned(),
        Err(SignatureError::Bad) => "refused".to_owned(),
        Err(SignatureError::Unavailable(why)) => format!("failed ({why})"),
    }
}

/// Envoy for the algorithms the probe found it verifies; the module otherwise.
pub struct Native<'h, H> {
    pub host: &'h H,
    pub algorithms: NativeAlgorithms,
}

impl<H: Host> VerifySignature for Native<'_, H> {
    fn verify(
        &self,
        algorithm: Algorithm,
        jwk: &PublicJwk,
        signing_input: &[u8],
        signature: &[u8],
    ) -> Result<(), SignatureError> {
        if !self.algorithms.includes(algorithm) {
            return InModule.verify(algorithm, jwk, signing_input, signature);
        }
        // A key or signature that cannot even be put in DER does not verify.
        let public_key = subject_public_key_info(jwk).ok_or(SignatureError::Bad)?;
        let signature = match algorithm {
            Algorithm::ES256 => ecdsa_signature(signature).ok_or(SignatureError::Bad)?,
            _ => signature.to_vec(),
        };
        let arguments =
            verify_signature_arguments("sha256", &public_key, &signature, signing_input);
        let answer = self
            .host
            .call_foreign_function(FUNCTION, &arguments)
            .map_err(|error| SignatureError::Unavailable(format!("{FUNCTION}: {error}")))?;
        match verify_signature_result(answer.as_deref().unwrap_or_default()) {
            Some(result) if result.result => Ok(()),
            Some(_) => Err(SignatureError::Bad),
            None => Err(SignatureError::Unavailable(format!(
                "{FUNCTION} answered with bytes that are not its result message"
            ))),
        }
    }
}

const PROBE_MESSAGE: &[u8] = b"cnf-guard native signature probe";

/// A fixed key and its signature over [`PROBE_MESSAGE`] (made once with the
/// RustCrypto signers; the unit tests check them with the in-module verifier).
fn probe_vector(algorithm: Algorithm) -> Option<(PublicJwk, Vec<u8>)> {
    let (jwk, signature) = match algorithm {
        Algorithm::ES256 => (
            PublicJwk::P256 {
                x: "HhhTL9R1TALzBB2cdc6zO4P_2BrHzk_ogsyxyYvFiW4".to_owned(),
                y: "pGwxHE4v9A3ZajZT5uRURdMt_khuztdcepDGoYiBwKM".to_owned(),
            },
            "XzYgQXpOdArXssy5jZ2WBeCWB5W4UFyCp5Hdl-SqRWeVmJoWt3rgNB14pX0ZjDTfmJqi_hWnZ0jUKM197fM39g",
        ),
        Algorithm::RS256 | Algorithm::PS256 => (
            PublicJwk::Rsa {
                n: RSA_MODULUS.to_owned(),
                e: "AQAB".to_owned(),
            },
            if algorithm == Algorithm::RS256 {
                RS256_SIGNATURE
            } else {
                PS256_SIGNATURE
            },
        ),
        Algorithm::EdDSA => (
            PublicJwk::Ed25519 {
                x: "_RckOFqgx1tk-3jNYC-h2ZH96_drE8WO1wLqyDXp9hg".to_owned(),
            },
            "D7n9hu55izPlCUwt1cdvZSLg2L2FFmvAglfxdIJqhYRIf-nicCAd_A-gi6iE7PL5LWdxLNzOS1aE0iIpxPwBAg",
        ),
    };
    Some((jwk, URL_SAFE_NO_PAD.decode(signature).ok()?))
}

const RSA_MODULUS: &str = "vldmu6BoeinYteiF9z-vy9Q-BzZfUAgU5zXHeQ1YCBSAX75vVhMcZEqMeVkQGWLaNKvM0X1Ucs-4tngMHIpTowcUkIO690zqvTp9OVAXQ7-DyK6OnW298B3TaCHfYc6dck25ysy3KFn8tIxytSKPIVPflq05cDyV06D6f-z74TWQWUgZJuytb3lV9rgZXfbkmkbvlsd3mJ-aiSwQhEGu4NR7J6Wj5-d0wGKvtLP4CxtwmGy76zW_7lI2Pjbk9aak4BCUJczH8SUExhJpwxgPmTGSPtKyRgy4YqS9sBq7eaA8HAqfKmoko-Te3oC_3BCRdoD_VIZr6J4HyeZlyac07w";
const RS256_SIGNATURE: &str = "RXL_HxZzK41Es1X_tV3ROAiAIQixCpvpAxxQN1dsCRKujsm85og4Tia8iTf1LtWw0phd-jvcK_38x4fo6QGdBlCsXuI9wO2kY5RYP1G9YTVTo3AZnSmi_D1hpJ515PppGi1FlXS2AlssO8WJN_R89aIgSQtcE4fVppof5e9RiXgESvlS5zVpfCj8cbQil8qq1GjMPwZLdV8JgEX9ecliQ8mveJuAs8bjWMoOLR4saVEJTd8cb9zi97310jkZiJdFOgDHx6yGgDQCI3YoxYh9FNvqamIx5k6Nwcu3WFKsAQad5zQYnZapVVrqHKO04qDhOkmtgCNHDDF43SRu5e4k1w";
const PS256_SIGNATURE: &str = "Y9tzwfmEbe076aqDoekEQBe9kbWORM2UvYHS4uNpUgc9_pFUoUHXtutnWgu7YiaYASXUywehMhXnJpfrydMyx6Mjm-EGKlXdO2obicTUTh-c2g5KNQmlLJzoDfFluO67xu2YRD1UucvSiMtc5shzV4T0ZVG89CBdutbhsMsGqiClGlAyDJurfICHNNUxwD9rdFFOHL0Nt7oJBkWfB8dODXM44Q8ghI30japbezXR0PsQd-hE4kVAB7UVmo3NvE_7HFpBxR5YJLBF6qxWgoMW-bZYHymt64524NPr3KaDWu_Wub6wyW9L_LOHwRZMAKWu-6Jp8fLuZeDvyfEpr7VGCg";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::mock::MockHost;

    #[test]
    fn probe_vectors_verify_in_the_module() {
        for algorithm in Algorithm::ALL {
            let (jwk, signature) = probe_vector(algorithm).unwrap();
            assert_eq!(
                InModule.verify(algorithm, &jwk, PROBE_MESSAGE, &signature),
                Ok(()),
                "{}",
                algorithm.name()
            );
        }
    }

    #[test]
    fn a_host_without_the_function_keeps_everything_in_the_module() {
        let host = MockHost::default();
        let (native, lines) = NativeAlgorithms::probe(&host, &Algorithm::ALL);
        assert_eq!(native, NativeAlgorithms::default());
        assert_eq!(lines.len(), 4);
        assert!(lines[0].starts_with("DPoP ES256 signatures are verified in the module"));
    }

    #[test]
    fn a_host_like_envoy_gets_es256_and_rs256_only() {
        let host = MockHost::default().with_boringssl_verify_signature();
        let (native, lines) = NativeAlgorithms::probe(&host, &Algorithm::ALL);
        assert!(native.includes(Algorithm::ES256) && native.includes(Algorithm::RS256));
        assert!(!native.includes(Algorithm::PS256) && !native.includes(Algorithm::EdDSA));
        assert!(lines[0].contains("Envoy (BoringSSL"), "{lines:?}");
        assert!(
            lines[2].contains("does not verify PS256: it refused a known-good signature"),
            "{lines:?}"
        );
    }

    #[test]
    fn a_host_that_says_yes_to_everything_is_not_trusted() {
        let host = MockHost::default().with_foreign_answer(vec![0x08, 0x01]);
        let (native, _) = NativeAlgorithms::probe(&host, &Algorithm::ALL);
        assert_eq!(native, NativeAlgorithms::default());
    }

    #[test]
    fn a_failing_host_during_a_request_is_a_denial() {
        let host = MockHost::default().with_foreign_answer(vec![0xff]);
        let (jwk, signature) = probe_vector(Algorithm::ES256).unwrap();
        let verifier = Native {
            host: &host,
            algorithms: NativeAlgorithms {
                es256: true,
                ..NativeAlgorithms::default()
            },
        };
        assert!(matches!(
            verifier.verify(Algorithm::ES256, &jwk, PROBE_MESSAGE, &signature),
            Err(SignatureError::Unavailable(_))
        ));
    }
}
