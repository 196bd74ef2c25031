//! Replay detection: a proof's `jti` may be used once while the proof is
//! fresh. The cache lives in proxy-wasm shared data, so every worker VM of
//! one Envoy sees it.
//!
//! At most once, under every interleaving of workers: a use is recorded only
//! by a compare-and-swap on a bucket that already exists, so of two workers
//! recording into one bucket from the same read, one write fails and that
//! worker reads again (and finds the proof). Envoy's shared data has no
//! atomic insert (a write to a missing key succeeds whatever its tag), so a
//! missing bucket is first made with [`create_if_absent`], which never
//! overwrites, and then read again. Nothing is ever written unconditionally,
//! so no worker starting up, and no VM of a reloaded configuration, can wipe
//! a live bucket.
//!
//! Memory is bounded: `capacity / 16` buckets of at most 16 entries, each a
//! 16-byte fingerprint of (key thumbprint, `jti`) and an 8-byte expiry, so
//! 24 bytes per remembered proof. Buckets are made on first use and kept;
//! expired entries are dropped whenever their bucket is written. The `jti`
//! itself is never stored. A full bucket fails closed.

use crate::dpop::denial::Recorded;
use crate::dpop::proof::jwk::JwkThumbprint;
use crate::host::{create_if_absent, Host, HostError};
use sha2::{Digest, Sha256};

const ENTRIES_PER_BUCKET: usize = 16;
const FINGERPRINT_BYTES: usize = 16;
const ENTRY_BYTES: usize = FINGERPRINT_BYTES + 8;
/// Compare-and-swap attempts before giving up (and failing closed).
const ATTEMPTS: usize = 8;

#[derive(Debug, Clone)]
pub struct ReplayCache {
    key_prefix: String,
    buckets: u32,
    window_seconds: u64,
}

impl ReplayCache {
    pub fn new(stat_prefix: &str, capacity: u32, window_seconds: u64) -> ReplayCache {
        ReplayCache {
            key_prefix: format!("cnf_guard.{stat_prefix}.dpop_jti."),
            buckets: capacity.div_ceil(ENTRIES_PER_BUCKET as u32).max(1),
            window_seconds,
        }
    }

    /// Records the proof's use at `now` (Unix seconds), unless already recorded.
    pub fn record(&self, host: &impl Host, key: &JwkThumbprint, jti: &str, now: u64) -> Recorded {
        let (fingerprint, spread) = fingerprint(key, jti);
        let bucket_key = format!("{}{}", self.key_prefix, spread % self.buckets);
        for _ in 0..ATTEMPTS {
            let (stored, tag) = match host.shared_data(&bucket_key) {
                Ok(found) => found,
                Err(error) => return Recorded::Unavailable(error.to_string()),
            };
            let tag = match tag {
                // Envoy never issues 0, and 0 would make the write unconditional.
                Some(tag) if tag != 0 => tag,
                Some(_) => {
                    return Recorded::Unavailable(
                        "shared data returned a compare-and-swap tag of 0".to_owned(),
                    )
                }
                None => match create_if_absent(host, &bucket_key, &[]) {
                    // Made here or by another worker meanwhile: read it again.
                    Ok(_) => continue,
                    Err(error) => return Recorded::Unavailable(error.to_string()),
                },
            };
            let mut live: Vec<(&[u8], u64)> = entries(stored.as_deref().unwrap_or_default())
                .filter(|(_, expiry)| *expiry > now)
                .collect();
            if live.iter().any(|(seen, _)| *seen == fingerprint.as_slice()) {
                return Recorded::Replayed;
            }
            if live.len() >= ENTRIES_PER_BUCKET {
                return Recorded::Full;
            }
            live.push((&fingerprint, now + self.window_seconds));
            let mut updated = Vec::with_capacity(live.len() * ENTRY_BYTES);
            for (seen, expiry) in live {
                updated.extend_from_slice(seen);
                updated.extend_from_slice(&expiry.to_be_bytes());
            }
            match host.set_shared_data(&bucket_key, &updated, Some(tag)) {
                Ok(()) => return Recorded::Fresh,
                Err(HostError::CasMismatch) => continue,
                Err(error) => return Recorded::Unavailable(error.to_string()),
            }
        }
        Recorded::Unavailable("the shared cache kept changing under concurrent writers".to_owned())
    }
}

/// The proof's identity as the fleet-wide store keys it: the same
/// fingerprint the local cache keeps.
pub fn proof_fingerprint(key: &JwkThumbprint, jti: &str) -> [u8; FINGERPRINT_BYTES] {
    fingerprint(key, jti).0
}

/// Binds the `jti` to the proof key: one client's identifiers cannot collide
/// with another's, and the stored value does not reveal the `jti`. Returns
/// the stored fingerprint and, from other bits of the hash, the bucket spread.
fn fingerprint(key: &JwkThumbprint, jti: &str) -> ([u8; FINGERPRINT_BYTES], u32) {
    let mut hasher = Sha256::new();
    hasher.update(b"cnf-guard dpop jti\0");
    hasher.update(key.as_bytes());
    hasher.update(jti.as_bytes());
    let hash: [u8; 32] = hasher.finalize().into();
    let [f0, f1, f2, f3, f4, f5, f6, f7, f8, f9, f10, f11, f12, f13, f14, f15, s0, s1, s2, s3, ..] =
        hash;
    (
        [
            f0, f1, f2, f3, f4, f5, f6, f7, f8, f9, f10, f11, f12, f13, f14, f15,
        ],
        u32::from_be_bytes([s0, s1, s2, s3]),
    )
}

fn entries(bytes: &[u8]) -> impl Iterator<Item = (&[u8], u64)> {
    bytes.chunks_exact(ENTRY_BYTES).filter_map(|entry| {
        let (fingerprint, expiry) = entry.split_at(FINGERPRINT_BYTES);
        let expiry = u64::from_be_bytes(expiry.try_into().ok()?);
        Some((fingerprint, expiry))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::mock::MockHost;
    use std::cell::RefCell;
    use std::rc::Rc;

    fn key(byte: u8) -> JwkThumbprint {
        use base64::Engine as _;
        let jkt = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode([byte; 32]);
        JwkThumbprint::from_jkt(jkt.as_bytes()).unwrap()
    }

    #[test]
    fn a_proof_is_fresh_once_within_its_window() {
        let cache = ReplayCache::new("", 1024, 70);
        let host = MockHost::default();
        assert_eq!(cache.record(&host, &key(1), "a", 1000), Recorded::Fresh);
        assert_eq!(cache.record(&host, &key(1), "a", 1069), Recorded::Replayed);
        // Same jti, another key: a different proof.
        assert_eq!(cache.record(&host, &key(2), "a", 1000), Recorded::Fresh);
        // After the window the proof is stale anyway; the entry may go.
        assert_eq!(cache.record(&host, &key(1), "a", 1070), Recorded::Fresh);
    }

    #[test]
    fn the_jti_is_not_stored() {
        let cache = ReplayCache::new("", 16, 70);
        let host = MockHost::default();
        cache.record(&host, &key(1), "secret-jti-value", 1000);
        let shared = host.shared.borrow();
        let bucket = shared.values().find(|value| !value.is_empty()).unwrap();
        assert!(!bucket.windows(6).any(|w| w == b"secret"));
        assert_eq!(bucket.len(), ENTRY_BYTES);
    }

    #[test]
    fn memory_is_bounded_and_a_full_bucket_fails_closed() {
        // One bucket of 16.
        let cache = ReplayCache::new("", 16, 70);
        let host = MockHost::default();
        for jti in 0..16 {
            assert_eq!(
                cache.record(&host, &key(1), &jti.to_string(), 1000),
                Recorded::Fresh
            );
        }
        assert_eq!(cache.record(&host, &key(1), "17", 1000), Recorded::Full);
        // Expired entries make room again.
        assert_eq!(cache.record(&host, &key(1), "17", 1070), Recorded::Fresh);
        let total: usize = host.shared.borrow().values().map(<[u8]>::len).sum();
        assert!(total <= 16 * ENTRY_BYTES);
    }

    /// Two workers record the same proof: the second runs, whole, just
    /// before each of the first one's shared-data calls in turn, both when
    /// the proof's bucket does not exist yet and when it does. Exactly one
    /// of them may see the proof as fresh, whatever the interleaving.
    #[test]
    fn two_workers_racing_on_one_proof_never_both_win() {
        for bucket_exists in [false, true] {
            for interleave_at in 0..8 {
                let cache = ReplayCache::new("", 16, 70);
                let first = MockHost::default();
                if bucket_exists {
                    assert_eq!(
                        cache.record(&first, &key(1), "earlier", 1000),
                        Recorded::Fresh
                    );
                }
                let second = first.worker();
                let other_cache = cache.clone();
                let second_saw = Rc::new(RefCell::new(None));
                let seen = Rc::clone(&second_saw);
                first.before_shared_call(first.calls.get() + interleave_at, move || {
                    seen.replace(Some(other_cache.record(&second, &key(1), "raced", 1000)));
                });
                let first_saw = cache.record(&first, &key(1), "raced", 1000);
                let second_saw = second_saw.borrow().clone();
                let outcomes = [Some(first_saw.clone()), second_saw.clone()];
                let fresh = outcomes
                    .iter()
                    .filter(|outcome| **outcome == Some(Recorded::Fresh))
                    .count();
                assert_eq!(
                    fresh, 1,
                    "bucket existed: {bucket_exists}, second worker before call \
                     {interleave_at}: first {first_saw:?}, second {second_saw:?}"
                );
            }
        }
    }

    #[test]
    fn a_bucket_that_keeps_changing_fails_closed() {
        let cache = ReplayCache::new("", 16, 70);
        let host = MockHost::default();
        assert_eq!(cache.record(&host, &key(1), "a", 1000), Recorded::Fresh);
        // Another worker rewrites every bucket before each call of this one.
        let other = host.worker();
        host.before_each_shared_call(move |_| {
            let keys: Vec<String> = (0..1).map(|n| format!("cnf_guard..dpop_jti.{n}")).collect();
            for bucket in keys {
                let (value, tag) = other.shared_data(&bucket).unwrap();
                other
                    .set_shared_data(&bucket, &value.unwrap_or_default(), tag)
                    .unwrap();
            }
        });
        assert!(matches!(
            cache.record(&host, &key(1), "b", 1000),
            Recorded::Unavailable(_)
        ));
    }

    #[test]
    fn instances_keep_separate_caches() {
        let host = MockHost::default();
        let first = ReplayCache::new("a", 1024, 70);
        let second = ReplayCache::new("b", 1024, 70);
        assert_eq!(first.record(&host, &key(1), "x", 1000), Recorded::Fresh);
        assert_eq!(second.record(&host, &key(1), "x", 1000), Recorded::Fresh);
    }
}
