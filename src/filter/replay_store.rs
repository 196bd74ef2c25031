//! Pausing a request on the fleet-wide replay store: the call for a proof
//! that passed every local check, the answer that lets the request go on or
//! ends it, and the probe at plugin start. What the store is asked, and how
//! its answer reads, is `crate::dpop::replay_store` (pure).

use super::{allow, Enforcement, Filter, Verdict};
use crate::dpop::denial::{DpopDenial, Recorded};
use crate::dpop::replay_store::{
    read_answer, OnUnavailable, StoreAnswer, StoreCall, StoreResponse,
};
use crate::headers::LazyHeaders;
use crate::host::{Host, HostError};
use crate::policy::decision::{Denial, Outcome};
use crate::policy::rules::RequestFacts;
use crate::reply::stats::{Counter, PendingCounts};

/// A request whose proof passed every local check, paused on the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AwaitingStore {
    /// The `dispatch_http_call` token the answer will carry.
    pub call: u32,
    paused: PausedRequest,
}

/// What finishing a paused request needs, owned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PausedRequest {
    /// The outcome if the store records the proof now.
    pub(crate) allowed: Outcome,
    pub(crate) policy: Enforcement,
    pub(crate) request: RequestFacts,
    pub(crate) headers: LazyHeaders,
}

impl Filter {
    /// At plugin start: a harmless write to the replay store, so that a
    /// cluster Envoy does not know is reported (`Err` names the field) and
    /// the store's first answer is logged.
    pub fn probe_replay_store(&self, host: &impl Host) -> Result<(), String> {
        let Some(store) = self
            .config
            .dpop
            .replay_store
            .as_ref()
            .filter(|_| self.config.dpop_enabled())
        else {
            return Ok(());
        };
        let call = store.probe_call();
        match host.dispatch_http_call(&call.cluster, &call.header_pairs(), call.timeout) {
            Ok(_) => Ok(()),
            Err(HostError::BadArgument) => Err(format!(
                "invalid dpop.replay_store.cluster: this Envoy has no cluster `{}`; until it \
                 has, DPoP proofs are {}",
                store.cluster,
                unavailable_means(store.on_unavailable)
            )),
            Err(error) => {
                log::warn!(
                    "cannot send the start-up probe to the DPoP replay store (cluster {}): {error}",
                    store.cluster
                );
                Ok(())
            }
        }
    }

    /// Logs the answer to [`Filter::probe_replay_store`].
    pub fn log_replay_store_probe(&self, response: &StoreResponse) {
        let Some(store) = &self.config.dpop.replay_store else {
            return;
        };
        let why = match read_answer(response) {
            StoreAnswer::FirstUse => {
                log::info!(
                    "the DPoP replay store (cluster {}) answered the start-up probe",
                    store.cluster
                );
                return;
            }
            StoreAnswer::SeenBefore => "an unexpected answer to a plain SET".to_owned(),
            StoreAnswer::Unavailable(why) => why,
        };
        log::warn!(
            "the DPoP replay store (cluster {}) did not answer the start-up probe: {why}; \
             until it does, DPoP proofs are {}",
            store.cluster,
            unavailable_means(store.on_unavailable)
        );
    }

    /// Sends the store call and pauses; a call that cannot be sent is an
    /// unavailable store.
    pub(crate) fn ask_replay_store(
        &self,
        host: &impl Host,
        call: &StoreCall,
        counts: &PendingCounts,
        paused: PausedRequest,
    ) -> Verdict {
        match host.dispatch_http_call(&call.cluster, &call.header_pairs(), call.timeout) {
            Ok(call) => Verdict::AwaitingReplayStore(Box::new(AwaitingStore { call, paused })),
            Err(error) => self.finish(
                host,
                paused,
                StoreAnswer::Unavailable(format!("the call could not be sent: {error}")),
                counts,
            ),
        }
    }

    /// The replay store answered (or Envoy gave up on it): allow or deny the
    /// paused request.
    pub fn on_replay_store_answer(
        &self,
        host: &impl Host,
        awaiting: AwaitingStore,
        response: &StoreResponse,
        counts: &PendingCounts,
    ) -> Verdict {
        self.finish(host, awaiting.paused, read_answer(response), counts)
    }

    fn finish(
        &self,
        host: &impl Host,
        paused: PausedRequest,
        answer: StoreAnswer,
        counts: &PendingCounts,
    ) -> Verdict {
        let replay = |recorded| Denial::Dpop(DpopDenial::Replay(recorded));
        let deny = |denial: &Denial| {
            self.deny(
                host,
                &paused.headers,
                counts,
                &paused.policy,
                &paused.request,
                denial,
            )
        };
        let why = match answer {
            StoreAnswer::FirstUse => return allow(counts, &paused.allowed),
            StoreAnswer::SeenBefore => return deny(&replay(Recorded::Replayed)),
            StoreAnswer::Unavailable(why) => why,
        };
        counts.add(Counter::ReplayStoreUnavailable);
        let (cluster, fallback) = match &self.config.dpop.replay_store {
            Some(store) => (
                store.cluster.as_str(),
                store.on_unavailable == OnUnavailable::LocalCacheOnly,
            ),
            None => ("-", false),
        };
        if fallback {
            counts.add(Counter::ReplayStoreFallback);
            log::warn!(
                "DPoP replay store (cluster {cluster}) unavailable: {why}; the proof was checked \
                 against this Envoy's replay cache only (dpop.replay_store.on_unavailable: \
                 local_cache_only)"
            );
            return allow(counts, &paused.allowed);
        }
        log::warn!(
            "DPoP replay store (cluster {cluster}) unavailable: {why}; refusing the proof \
             (dpop.replay_store.on_unavailable: deny)"
        );
        deny(&replay(Recorded::Unavailable(why)))
    }
}

/// What DPoP proofs get while the replay store cannot answer.
fn unavailable_means(on_unavailable: OnUnavailable) -> &'static str {
    match on_unavailable {
        OnUnavailable::Deny => "refused",
        OnUnavailable::LocalCacheOnly => "checked against this Envoy's replay cache only",
    }
}
