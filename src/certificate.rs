//! Where the client certificate comes from: the downstream TLS connection that
//! Envoy terminated and validated. Validation itself is Envoy's job.

use crate::config::ThumbprintKind;
use crate::decision::ClientCertificate;
use crate::host::{Host, LogLevel};
use crate::thumbprint::{spki_thumbprint_from_pem, Thumbprint};

pub(crate) const PEER_DIGEST: [&str; 2] = ["connection", "sha256_peer_certificate_digest"];
const PEER_PEM: [&str; 2] = ["connection", "peer_certificate"];

pub fn client_certificate(kind: ThumbprintKind, host: &impl Host) -> ClientCertificate {
    let path: &[&str] = match kind {
        ThumbprintKind::Certificate => &PEER_DIGEST,
        ThumbprintKind::Spki => &PEER_PEM,
    };
    let value = match host.property(path) {
        Ok(Some(value)) => value,
        Ok(None) => return ClientCertificate::Absent,
        Err(error) => {
            host.log(
                LogLevel::Warn,
                &format!("cannot read {}: {error}", path.join(".")),
            );
            return ClientCertificate::Unusable(format!(
                "the proxy could not provide it ({error})"
            ));
        }
    };
    match kind {
        ThumbprintKind::Certificate => match Thumbprint::from_hex(&value) {
            Some(thumbprint) => ClientCertificate::Present(thumbprint),
            None => {
                ClientCertificate::Unusable("the proxy's certificate digest is not hex".to_owned())
            }
        },
        ThumbprintKind::Spki => match spki_thumbprint_from_pem(&value) {
            Ok(thumbprint) => ClientCertificate::Present(thumbprint),
            Err(error) => ClientCertificate::Unusable(error.to_string()),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::mock::MockHost;

    #[test]
    fn digest_is_read_as_hex() {
        let thumbprint = Thumbprint::of(b"der");
        let hex_digest = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(b"der"));
        let host = MockHost::default().with_property(&PEER_DIGEST, hex_digest.as_bytes());
        assert_eq!(
            client_certificate(ThumbprintKind::Certificate, &host),
            ClientCertificate::Present(thumbprint)
        );
        assert_eq!(host.calls.get(), 1);
    }

    #[test]
    fn absent_and_garbage() {
        let host = MockHost::default();
        assert_eq!(
            client_certificate(ThumbprintKind::Certificate, &host),
            ClientCertificate::Absent
        );
        assert_eq!(
            client_certificate(ThumbprintKind::Spki, &host),
            ClientCertificate::Absent
        );
        let host = MockHost::default()
            .with_property(&PEER_DIGEST, b"zz".to_vec())
            .with_property(&PEER_PEM, b"not pem".to_vec());
        assert!(matches!(
            client_certificate(ThumbprintKind::Certificate, &host),
            ClientCertificate::Unusable(_)
        ));
        assert!(matches!(
            client_certificate(ThumbprintKind::Spki, &host),
            ClientCertificate::Unusable(_)
        ));
    }
}
