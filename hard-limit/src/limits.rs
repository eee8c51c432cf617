//! The limits in force: the command line's defaults and the store's
//! per-room and per-prefix rules (set on the admin listener, seeded from
//! `--limits`), shared by every replica. Deliveries are planned against an
//! in-memory copy ([`LimitsHandle::policy`]), reloaded once marked stale (by
//! the process that changed a rule, or on PostgreSQL by a `LISTEN` on
//! [`crate::store::postgres::LIMITS_CHANNEL`]) or older than [`MAX_AGE`]
//! (processes sharing a SQLite file get no notifications).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use tokio::time::Instant;

use crate::domain::{Limits, Policy, Rule};
use crate::store::{Caller, LimitKind, RuleChange, StoreError};
use crate::store_handle::Store;

/// A stored rule as the domain takes it.
fn keyed(r: crate::store::LimitRule) -> (String, Rule) {
    let rule = r.rule();
    (r.key, rule)
}

/// The copy is reloaded at least this often.
pub const MAX_AGE: Duration = Duration::from_secs(30);

/// The limits in force. Cheap to share (`Arc`).
#[derive(Debug)]
pub struct LimitsHandle {
    store: Store,
    /// The command line's defaults, without the store's rules.
    base: Limits,
    grace: Duration,
    current: RwLock<Arc<Policy>>,
    stale: AtomicBool,
    loaded_at: Mutex<Instant>,
}

impl LimitsHandle {
    /// Seeds the store from the limits file's rules, then loads. Each is
    /// merged into the stored rule like a `PUT` (the parts it sets are
    /// written); only changes are written, audited as from the file.
    pub async fn start(
        store: Store,
        default: Duration,
        grace: Duration,
        alone_after: Option<Duration>,
        rooms: Vec<(String, Rule)>,
        prefixes: Vec<(String, Rule)>,
        now: crate::domain::Timestamp,
    ) -> Result<Arc<Self>, StoreError> {
        let stored = store.limit_rules().await?;
        let caller = Caller {
            addr: "limits file".into(),
        };
        let wanted = (rooms.into_iter().map(|(k, r)| (LimitKind::Room, k, r)))
            .chain(prefixes.into_iter().map(|(k, r)| (LimitKind::Prefix, k, r)));
        for (kind, key, rule) in wanted {
            let change = RuleChange::setting(rule);
            let same = stored
                .iter()
                .find(|r| r.kind == kind && r.key == key)
                .is_some_and(|r| change.merged(r.rule()) == r.rule());
            if !same && !rule.is_empty() {
                store
                    .set_limit(kind, &key, Some(change), now, &caller)
                    .await?;
            }
        }
        let base = Limits::new(default).with_alone_default(alone_after);
        let handle = Arc::new(LimitsHandle {
            current: RwLock::new(Arc::new(Policy {
                limits: base.clone(),
                grace,
            })),
            store,
            base,
            grace,
            stale: AtomicBool::new(true),
            loaded_at: Mutex::new(Instant::now()),
        });
        handle.reload().await?;
        Ok(handle)
    }

    /// Marks the copy stale: the next [`LimitsHandle::policy`] reloads.
    pub fn mark_stale(&self) {
        self.stale.store(true, Ordering::SeqCst);
    }

    /// The policy in force, reloaded first if stale; the last copy if the
    /// store cannot be read (a delivery is not refused for it).
    pub async fn policy(&self) -> Arc<Policy> {
        let old = self
            .loaded_at
            .lock()
            .map(|t| t.elapsed() >= MAX_AGE)
            .unwrap_or(true);
        if self.stale.load(Ordering::SeqCst) || old {
            if let Err(e) = self.reload().await {
                tracing::warn!(error = %e, "could not reload the limits; using the last ones");
            }
        }
        self.snapshot()
    }

    /// The copy as it is, without reloading.
    pub fn snapshot(&self) -> Arc<Policy> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Reads the rules from the store now.
    pub async fn reload(&self) -> Result<(), StoreError> {
        // Cleared first: a change notified while reading marks it again.
        self.stale.store(false, Ordering::SeqCst);
        let rules = (self.store.limit_rules().await)
            .inspect_err(|_| self.stale.store(true, Ordering::SeqCst))?;
        let (rooms, prefixes): (Vec<_>, Vec<_>) =
            rules.into_iter().partition(|r| r.kind == LimitKind::Room);
        let limits = (self.base.clone()).with_full_rules(
            rooms.into_iter().map(keyed),
            prefixes.into_iter().map(keyed),
        );
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(Policy {
            limits,
            grace: self.grace,
        });
        if let Ok(mut t) = self.loaded_at.lock() {
            *t = Instant::now();
        }
        Ok(())
    }
}
