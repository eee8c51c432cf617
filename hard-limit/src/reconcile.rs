//! Reconciliation with `GET /rooms`, the webhook registration, and pruning:
//! the singleton chores, run by one replica at a time
//! ([`Store::chores_leader`]). This task only adds knowledge beside the
//! scheduler, so a slow or failing `GET /rooms` holds back nothing.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use reqwest::Url;

use crate::clock::Clock;
use crate::domain::{self, MeetingKey, Plan, RoomUpdate, Timestamp};
use crate::eyeson::{ApiError, EyesonClient};
use crate::limits::LimitsHandle;
use crate::metrics;
use crate::registration::{self, Decision, ForeignWebhook, Mode};
use crate::runner::StepError;
use crate::stop::StopSignal;
use crate::store::{Applied, Closing};
use crate::store_handle::Store;
use crate::wake::Wake;

/// A complete `GET /rooms` answer: when it was asked for, what it listed.
pub type PreviousList = (Timestamp, Vec<MeetingKey>);

/// The reconciliation task.
#[derive(Clone, Debug)]
pub struct Reconciler {
    pub(crate) store: Store,
    pub(crate) client: EyesonClient,
    pub(crate) limits: Arc<LimitsHandle>,
    pub(crate) clock: Arc<dyn Clock>,
    /// Poked when a meeting is tracked.
    pub(crate) wake: Arc<Wake>,
    pub(crate) every: Duration,
    pub(crate) retention: Duration,
    pub(crate) webhook_url: Option<Url>,
    pub(crate) registration: Mode,
    /// A meeting missing from `GET /rooms` is closed only if tracked this
    /// long before the list was asked for (the list may lag the webhooks).
    pub(crate) close_unlisted_after: Duration,
    /// The previous complete `GET /rooms` answer ([`unlisted_closing`]).
    pub(crate) previous: Arc<Mutex<Option<PreviousList>>>,
    /// How far ahead of the clock a `started_at` may be
    /// ([`domain::max_start_ahead`]): later starts are not tracked.
    pub(crate) max_start_ahead: Duration,
}

impl Reconciler {
    /// While this replica leads: registers the webhook (if configured),
    /// and reconciles every `every`, until `stop` turns true.
    pub async fn run(self, mut stop: StopSignal) {
        // Registration retries on its own task (not delaying reconciliation),
        // on the leader only (replicas never race each other's).
        let mut registration: Option<tokio::task::JoinHandle<()>> = None;
        let mut leading = false;
        loop {
            let leader = self.store.chores_leader().await;
            if leader != leading {
                tracing::info!(
                    leader,
                    "singleton chores (reconciliation, pruning, registration)"
                );
                leading = leader;
            }
            ::metrics::gauge!(metrics::CHORES_LEADER).set(if leader { 1.0 } else { 0.0 });
            if leader {
                if registration.is_none() {
                    registration = self.webhook_url.clone().map(|url| {
                        let me = self.clone();
                        tokio::spawn(async move { me.register(&url).await })
                    });
                }
                self.chores().await;
            }
            if stop.sleep(self.every).await {
                break;
            }
        }
        if let Some(task) = registration {
            task.abort();
        }
    }

    /// Reconciliation and pruning, once.
    async fn chores(&self) {
        let result = self.reconcile_once().await;
        let outcome = if result.is_ok() { "ok" } else { "error" };
        ::metrics::counter!(metrics::RECONCILES, "outcome" => outcome).increment(1);
        if let Err(e) = result {
            tracing::warn!(error = %e, "reconciliation with GET /rooms failed");
        }
        let ahead = self.clock.now().plus(self.max_start_ahead);
        match self.store.forget_future(ahead).await {
            Ok(0) => {}
            Ok(n) => tracing::warn!(
                forgotten = n,
                "forgot meetings and shutdown cutoffs that start in the future"
            ),
            Err(e) => tracing::warn!(error = %e, "forgetting future starts failed"),
        }
        let horizon = self.clock.now().minus(self.retention);
        match self.store.prune(horizon).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(pruned = n, "forgot finished meetings"),
            Err(e) => tracing::warn!(error = %e, "pruning failed"),
        }
    }

    /// Registers the webhook as [`registration::decide`] says: never over
    /// another URL's registration unless told (`--webhook-replace`, or
    /// `--forward-to`, which takes its types over).
    async fn register(&self, url: &Url) {
        let policy = ExponentialBuilder::default()
            .with_min_delay(Duration::from_millis(200))
            .with_max_delay(Duration::from_secs(10))
            .with_max_times(5)
            .with_jitter();
        let attempt = || async {
            let current = self.client.current_webhook().await?;
            let decision = registration::decide(current.as_ref(), url, self.registration);
            if let Decision::Register { types, .. } = &decision {
                self.client.register_webhook(url, types).await?;
            }
            Ok::<_, ApiError>(decision)
        };
        let result = attempt.retry(policy).when(ApiError::is_retryable).await;
        let url = crate::secrets::loggable_url(url.as_str());
        let outcome = match result {
            Ok(Decision::Unchanged) => {
                tracing::info!(url = %url, "webhook already registered");
                "unchanged"
            }
            Ok(Decision::Register {
                types,
                replacing: None,
            }) => {
                tracing::info!(url = %url, types = %types, "webhook registered");
                "registered"
            }
            Ok(Decision::Register {
                types,
                replacing: Some(old),
            }) => {
                let old = ForeignWebhook::of(&old);
                if self.registration == Mode::Forward {
                    tracing::info!(url = %url, types = %types, replaced = %old.url, replaced_types = %old.types,
                        "webhook registered in place of the app's; every delivery is forwarded to --forward-to");
                    "registered"
                } else {
                    tracing::warn!(url = %url, types = %types, replaced = %old.url, replaced_types = %old.types,
                        "--webhook-replace: replaced the webhook registered to another URL; its receiver gets no more deliveries");
                    "replaced_foreign"
                }
            }
            Ok(Decision::RefuseForeign(old)) => {
                tracing::error!("webhook not registered: {}", ForeignWebhook::of(&old));
                "refused_foreign"
            }
            Err(e) => {
                tracing::error!(error = %e, url = %url, "could not register the webhook");
                "error"
            }
        };
        ::metrics::counter!(metrics::REGISTRATIONS, "outcome" => outcome).increment(1);
    }

    /// One reconciliation: track what `GET /rooms` lists, close what it no
    /// longer lists.
    pub async fn reconcile_once(&self) -> Result<(), StepError> {
        let asked_at = self.clock.now();
        let list = self.client.running_rooms().await?;
        let rooms = &list.rooms;
        let now = self.clock.now();
        let mut plans = Vec::with_capacity(rooms.len());
        let mut listed = Vec::with_capacity(rooms.len());
        let ahead = now.plus(self.max_start_ahead);
        let policy = self.limits.policy().await;
        for room in rooms {
            if room.started_at.is_some_and(|s| s > ahead) {
                tracing::warn!(room = %room.room_id, "GET /rooms lists a meeting that starts in the future; not tracked");
                continue;
            }
            let update = RoomUpdate {
                event_time: now,
                ..room.clone()
            };
            let plan = domain::plan(&update, &policy);
            if let Plan::Track { key, .. } = &plan {
                listed.push(key.clone());
            }
            plans.push(plan);
        }
        let applied = self.store.apply(&plans, now).await?;
        let tracked = applied.iter().filter(|a| **a == Applied::Tracked).count();
        if tracked > 0 {
            self.wake.poke();
        }
        let closing = unlisted_closing(
            &mut self.previous.lock().unwrap_or_else(|e| e.into_inner()),
            asked_at,
            listed,
            list.unparsed,
            self.close_unlisted_after,
        );
        let closed = match closing {
            None => 0,
            Some((listed, before)) => {
                match self.store.close_unlisted(&listed, before, now).await? {
                    Closing::Closed(n) => n,
                    Closing::Refused { would_close, open } => {
                        ::metrics::counter!(metrics::RECONCILE_CLOSES_REFUSED).increment(1);
                        tracing::error!(would_close, open, listed = rooms.len(), "GET /rooms does not list more than 10 and more than 20% of the open meetings: more likely a partial list than that many silent ends; closing none");
                        0
                    }
                }
            }
        };
        let listed = rooms.len();
        tracing::debug!(listed, tracked, closed, "reconciled with GET /rooms");
        Ok(())
    }
}

/// What a reconciliation may close as unlisted: the meetings to keep
/// (listed now or in the previous complete list) and the `known_before`
/// bound for [`Store::close_unlisted`] (`close_unlisted_after` before the
/// previous list, the first miss). `None` when an entry did not parse (and
/// the list is forgotten) or there is no previous complete list: a meeting
/// must be missed twice in a row, so one partial answer closes nothing.
fn unlisted_closing(
    previous: &mut Option<PreviousList>,
    asked_at: Timestamp,
    listed: Vec<MeetingKey>,
    unparsed: usize,
    close_unlisted_after: Duration,
) -> Option<(Vec<MeetingKey>, Timestamp)> {
    if unparsed > 0 {
        tracing::warn!(
            unparsed,
            "GET /rooms listed entries that do not parse; closing nothing as unlisted"
        );
        *previous = None;
        return None;
    }
    let (prev_asked_at, prev_listed) = previous.replace((asked_at, listed.clone()))?;
    let mut keep = listed;
    keep.extend(prev_listed);
    Some((keep, prev_asked_at.minus(close_unlisted_after)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::RoomId;

    fn key(room: &str, start: i64) -> MeetingKey {
        MeetingKey {
            room_id: RoomId::parse(room).unwrap(),
            started_at: Timestamp(start),
        }
    }

    #[test]
    fn unlisted_meetings_are_closed_only_after_two_complete_misses() {
        let after = Duration::from_secs(60);
        let mut prev = None;
        for (asked_at, listed, unparsed, after, closing) in [
            // First list: nothing to compare with.
            (100_000, vec![key("a", 1)], 0, after, None),
            // An empty list: "a" is kept, it was listed last time.
            (200_000, vec![], 0, after, Some((vec![key("a", 1)], 40_000))),
            // Missed again: no longer kept.
            (300_000, vec![], 0, after, Some((vec![], 140_000))),
            // An entry that does not parse: close nothing, and forget the list.
            (400_000, vec![], 1, after, None),
            (500_000, vec![], 0, after, None),
            // Durations that do not fit saturate.
            (
                600_000,
                vec![],
                0,
                Duration::MAX,
                Some((vec![], 500_000 - i64::MAX)),
            ),
        ] {
            let closing = closing.map(|(keep, before)| (keep, Timestamp(before)));
            let got = unlisted_closing(&mut prev, Timestamp(asked_at), listed, unparsed, after);
            assert_eq!(got, closing, "asked at {asked_at}");
        }
    }
}
