//! Outcome counters, kept in VM memory and flushed to Envoy stats on a timer:
//! a host call per request just to count it would cost more than the check.

use crate::reply::problem::ProblemKind;
use std::cell::Cell;

/// One counter per outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Counter {
    /// Certificate-bound token, certificate matched.
    Allowed,
    /// Unbound token let through by `binding: optional`.
    AllowedUnbound,
    /// A rule with `skip: true` matched; nothing was checked.
    Skipped,
    /// A forwarded certificate header from an untrusted hop was ignored.
    ForwardedCertificateUntrusted,
    /// The DPoP replay store gave no usable answer (whatever followed).
    ReplayStoreUnavailable,
    /// ... and `on_unavailable: local_cache_only` let the proof through.
    ReplayStoreFallback,
    Denied(ProblemKind),
    /// A denial that `mode: dry_run` let through.
    DryRun(ProblemKind),
}

const KINDS: usize = ProblemKind::ALL.len();
const FIXED: usize = 6;
pub const COUNTERS: usize = FIXED + 2 * KINDS;

impl Counter {
    pub fn all() -> impl Iterator<Item = Counter> {
        [
            Counter::Allowed,
            Counter::AllowedUnbound,
            Counter::Skipped,
            Counter::ForwardedCertificateUntrusted,
            Counter::ReplayStoreUnavailable,
            Counter::ReplayStoreFallback,
        ]
        .into_iter()
        .chain(ProblemKind::ALL.into_iter().map(Counter::Denied))
        .chain(ProblemKind::ALL.into_iter().map(Counter::DryRun))
    }

    fn index(self) -> usize {
        let kind_index = |kind: ProblemKind| {
            ProblemKind::ALL
                .iter()
                .position(|k| *k == kind)
                .unwrap_or(0)
        };
        match self {
            Counter::Allowed => 0,
            Counter::AllowedUnbound => 1,
            Counter::Skipped => 2,
            Counter::ForwardedCertificateUntrusted => 3,
            Counter::ReplayStoreUnavailable => 4,
            Counter::ReplayStoreFallback => 5,
            Counter::Denied(kind) => FIXED + kind_index(kind),
            Counter::DryRun(kind) => FIXED + KINDS + kind_index(kind),
        }
    }

    /// The Envoy metric name; Envoy shows it as `wasmcustom.<name>`.
    pub fn metric_name(self, stat_prefix: &str) -> String {
        let outcome = match self {
            Counter::Allowed => "allowed".to_owned(),
            Counter::AllowedUnbound => "allowed_unbound".to_owned(),
            Counter::Skipped => "skipped".to_owned(),
            Counter::ForwardedCertificateUntrusted => "forwarded_certificate_untrusted".to_owned(),
            Counter::ReplayStoreUnavailable => "dpop_replay_store.unavailable".to_owned(),
            Counter::ReplayStoreFallback => "dpop_replay_store.fallback".to_owned(),
            Counter::Denied(kind) => format!("denied.{}", kind.slug().replace('-', "_")),
            Counter::DryRun(kind) => format!("dry_run.{}", kind.slug().replace('-', "_")),
        };
        if stat_prefix.is_empty() {
            format!("cnf_guard.{outcome}")
        } else {
            format!("cnf_guard.{stat_prefix}.{outcome}")
        }
    }
}

/// Counts not yet flushed to the host.
#[derive(Debug, Default)]
pub struct PendingCounts([Cell<u64>; COUNTERS]);

impl PendingCounts {
    pub fn add(&self, counter: Counter) {
        if let Some(cell) = self.0.get(counter.index()) {
            cell.set(cell.get().saturating_add(1));
        }
    }

    /// Returns and clears every non-zero count.
    pub fn drain(&self) -> Vec<(Counter, u64)> {
        Counter::all()
            .filter_map(|counter| {
                let count = self.0.get(counter.index())?.take();
                (count > 0).then_some((counter, count))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_prefixed() {
        let mut names: Vec<_> = Counter::all().map(|c| c.metric_name("edge")).collect();
        assert_eq!(names.len(), COUNTERS);
        assert!(names.contains(&"cnf_guard.edge.denied.mtls_binding_mismatch".to_owned()));
        names.sort();
        names.dedup();
        assert_eq!(names.len(), COUNTERS);
        assert_eq!(Counter::Allowed.metric_name(""), "cnf_guard.allowed");
        assert_eq!(
            Counter::DryRun(ProblemKind::TokenUnbound).metric_name(""),
            "cnf_guard.dry_run.token_unbound"
        );
    }

    #[test]
    fn drain_returns_and_clears() {
        let pending = PendingCounts::default();
        pending.add(Counter::Allowed);
        pending.add(Counter::Allowed);
        pending.add(Counter::DryRun(ProblemKind::MtlsRequired));
        assert_eq!(
            pending.drain(),
            vec![
                (Counter::Allowed, 2),
                (Counter::DryRun(ProblemKind::MtlsRequired), 1)
            ]
        );
        assert!(pending.drain().is_empty());
    }
}
