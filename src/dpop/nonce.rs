//! Server-issued DPoP nonces (RFC 9449 §8, §9), stateless: a nonce is the
//! time window it was minted in plus an HMAC of that window, so any worker
//! (and, with a shared `secret`, any replica) can check it without a lookup.
//! A nonce is accepted in its own window and the next one.

use crate::dpop::settings::NonceConfig;
use crate::host::{create_if_absent, Host};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq as _;

const TAG_BYTES: usize = 16;

/// Where the HMAC key comes from.
#[derive(Clone)]
pub enum NonceKey {
    Configured(Vec<u8>),
    /// Made at start by the first VM that starts, kept in shared data under
    /// this key; never replaced, so every worker and a reloaded configuration
    /// keep accepting the nonces already issued.
    Shared(String),
}

impl std::fmt::Debug for NonceKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NonceKey::Configured(_) => write!(f, "NonceKey::Configured(..)"),
            NonceKey::Shared(key) => write!(f, "NonceKey::Shared({key})"),
        }
    }
}

impl NonceKey {
    pub fn new(config: &NonceConfig, stat_prefix: &str) -> NonceKey {
        match config
            .secret
            .as_deref()
            .and_then(|s| STANDARD.decode(s).ok())
        {
            Some(secret) => NonceKey::Configured(secret),
            None => NonceKey::Shared(format!("cnf_guard.{stat_prefix}.dpop_nonce_key")),
        }
    }

    /// Makes the shared key if no worker has yet (called at plugin start).
    pub fn ensure(&self, host: &impl Host) -> Result<(), String> {
        let NonceKey::Shared(name) = self else {
            return Ok(());
        };
        if let (Some(existing), _) = host.shared_data(name).map_err(|e| e.to_string())? {
            if existing.len() == 32 {
                return Ok(());
            }
        }
        let mut secret = [0u8; 32];
        getrandom::getrandom(&mut secret).map_err(|e| format!("no randomness: {e}"))?;
        // Two VMs may race here: the first key made stays.
        create_if_absent(host, name, &secret)
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    fn secret(&self, host: &impl Host) -> Result<Vec<u8>, String> {
        match self {
            NonceKey::Configured(secret) => Ok(secret.clone()),
            NonceKey::Shared(name) => match host.shared_data(name) {
                Ok((Some(secret), _)) if secret.len() == 32 => Ok(secret),
                Ok(_) => Err("the nonce key is missing from shared data".to_owned()),
                Err(error) => Err(error.to_string()),
            },
        }
    }

    /// A fresh nonce for `now` (Unix seconds).
    pub fn mint(&self, host: &impl Host, now: u64, lifetime: u64) -> Result<String, String> {
        let secret = self.secret(host)?;
        Ok(mint(&secret, now / lifetime.max(1)))
    }

    /// Whether `nonce` was minted by this key in this window or the one before.
    pub fn accepts(
        &self,
        host: &impl Host,
        nonce: &str,
        now: u64,
        lifetime: u64,
    ) -> Result<bool, String> {
        let secret = self.secret(host)?;
        let window = now / lifetime.max(1);
        let Ok(bytes) = URL_SAFE_NO_PAD.decode(nonce) else {
            return Ok(false);
        };
        let Some((minted_in, tag)) = bytes.split_first_chunk::<8>() else {
            return Ok(false);
        };
        let minted_in = u64::from_be_bytes(*minted_in);
        if minted_in != window && minted_in.saturating_add(1) != window {
            return Ok(false);
        }
        Ok(tag.ct_eq(&tag_for(&secret, minted_in)).into())
    }
}

fn mint(secret: &[u8], window: u64) -> String {
    let mut bytes = window.to_be_bytes().to_vec();
    bytes.extend_from_slice(&tag_for(secret, window));
    URL_SAFE_NO_PAD.encode(bytes)
}

fn tag_for(secret: &[u8], window: u64) -> [u8; TAG_BYTES] {
    let mut tag = [0u8; TAG_BYTES];
    // HMAC takes keys of any length, so `new_from_slice` cannot fail.
    if let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret) {
        mac.update(b"cnf-guard dpop nonce\0");
        mac.update(&window.to_be_bytes());
        let full = mac.finalize().into_bytes();
        for (out, byte) in tag.iter_mut().zip(full.iter()) {
            *out = *byte;
        }
    }
    tag
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::mock::MockHost;

    #[test]
    fn nonces_live_for_their_window_and_the_next() {
        let host = MockHost::default();
        let key = NonceKey::new(&NonceConfig::default(), "");
        key.ensure(&host).unwrap();
        let nonce = key.mint(&host, 1000, 300).unwrap();
        assert_eq!(key.accepts(&host, &nonce, 1000, 300), Ok(true));
        assert_eq!(key.accepts(&host, &nonce, 1199, 300), Ok(true));
        assert_eq!(key.accepts(&host, &nonce, 1500, 300), Ok(false));
        assert_eq!(key.accepts(&host, "junk", 1000, 300), Ok(false));
        let mut forged = URL_SAFE_NO_PAD.decode(&nonce).unwrap();
        *forged.last_mut().unwrap() ^= 1;
        assert_eq!(
            key.accepts(&host, &URL_SAFE_NO_PAD.encode(forged), 1000, 300),
            Ok(false)
        );
    }

    #[test]
    fn a_shared_key_is_made_once() {
        let host = MockHost::default();
        let key = NonceKey::new(&NonceConfig::default(), "p");
        key.ensure(&host).unwrap();
        let made = host.shared_data("cnf_guard.p.dpop_nonce_key").unwrap().0;
        assert_eq!(made.as_ref().map(Vec::len), Some(32));
        // Another VM starting later, or racing this one, keeps the key.
        key.ensure(&host.worker()).unwrap();
        assert_eq!(
            host.shared_data("cnf_guard.p.dpop_nonce_key").unwrap().0,
            made
        );
        let racing = MockHost::default();
        let other = racing.worker();
        let other_key = key.clone();
        racing.before_shared_call(1, move || other_key.ensure(&other).unwrap());
        key.ensure(&racing).unwrap();
        let theirs = racing.shared_data("cnf_guard.p.dpop_nonce_key").unwrap();
        assert_eq!(theirs.1, Some(2), "the racing VM's key was overwritten");
    }

    #[test]
    fn configured_secrets_agree_across_replicas() {
        let config = NonceConfig {
            secret: Some(STANDARD.encode([9u8; 32])),
            ..NonceConfig::default()
        };
        let (one, two) = (MockHost::default(), MockHost::default());
        let nonce = NonceKey::new(&config, "").mint(&one, 1000, 300).unwrap();
        assert_eq!(
            NonceKey::new(&config, "").accepts(&two, &nonce, 1000, 300),
            Ok(true)
        );
    }
}
