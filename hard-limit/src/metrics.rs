//! Prometheus metrics: names, labels, and the one process-wide recorder.
//!
//! | metric | labels | what |
//! |---|---|---|
//! | `hard_limit_meetings` | `state` | tracked meetings by state, kept in memory ([`crate::meeting_gauges`]): a scrape does not query the store. Changes this process makes show at once; on PostgreSQL other replicas' changes within about 0.25 s (published with `NOTIFY hard_limit_counts`); rows written behind the service's back (and notifications lost) at its next recount from the store (every `--recount-every`, 60 s by default; at once after forgetting future starts and after the PostgreSQL `LISTEN` connection (re)connects) |
//! | `hard_limit_webhook_deliveries_total` | `outcome` (`accepted`, `ignored`, `rejected`, `error`), `reason` | every delivery |
//! | `hard_limit_shutdowns_total` | `outcome` | every claimed meeting's end (and each claim deferred: `deferred`, `locked`) |
//! | `hard_limit_api_key_locked` | | 1 while eyeson's last answer was `423 Locked` (the API key is locked), else 0 |
//! | `hard_limit_shutdown_retries_total` | | retried shutdown calls (429/5xx/timeouts) |
//! | `hard_limit_shutdown_attempts` | | histogram: claims a shutdown took, at its final outcome |
//! | `hard_limit_enforcement_lateness_seconds` | | histogram: shutdown call completed − deadline |
//! | `hard_limit_reconcile_runs_total` | `outcome` | `GET /rooms` reconciliations |
//! | `hard_limit_reconcile_closes_refused_total` | | reconciliations that closed nothing: they would have closed too many meetings |
//! | `hard_limit_webhook_registrations_total` | `outcome` | start-up registration (`registered`, `unchanged`, `replaced_foreign`, `refused_foreign`, `error`) |
//! | `hard_limit_admin_auth_failures_total` | | admin requests with a missing or wrong token (and those refused unchecked while their address was slowed down) |
//! | `hard_limit_admin_requests_refused_total` | `reason` (`host`, `origin`, `content_type`, `throttled`) | admin requests refused before any handler ran |
//! | `hard_limit_forwards_total` | `outcome` | deliveries forwarded to `--forward-to`, by how each attempt ended (`delivered`, `retried`, `expired`, `refused`) |
//! | `hard_limit_forwards_pending` | | entries in the forwarding outbox (all replicas'), recounted every 10 s |
//! | `hard_limit_warnings_total` | `outcome` | in-meeting warnings by how they ended (`sent`, `meeting_ended`, `no_guest_token`, `skipped_newer_meeting`, `dry_run`, `failed`, `deferred`) |
//! | `hard_limit_warning_retries_total` | | retried warning calls (429/5xx/timeouts) |
//! | `hard_limit_warning_lateness_seconds` | | histogram: chat message posted − (deadline − `--warn-before`) |
//! | `hard_limit_chores_leader` | | 1 on the replica running reconciliation and pruning, else 0 |
//! | `hard_limit_background_tasks_ok` | | 1 while every background task runs, 0 once one ended |
//! | `hard_limit_store_writable` | | 1 while the store accepts writes (after a failed write: a probe write at scrape decides) |
//! | `hard_limit_overdue_seconds` | | now − the earliest running deadline or expired shutdown lease (0 if none passed); one indexed read per scrape |
//! | `hard_limit_meetings_due_next_hour` | | running meetings due within the next hour, overdue ones included, counted up to 10,000 |
//!
//! The recorder is global (that is how the `metrics` facade works), so it is
//! installed once per process; several services in one test process share it.

use std::sync::OnceLock;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::domain::{ShutdownOutcome, WarningOutcome};

/// Tracked meetings by state (rendered by `/metrics` from
/// [`crate::meeting_gauges`], not through the recorder).
pub const MEETINGS: &str = "hard_limit_meetings";
/// Webhook deliveries by outcome and reason.
pub const DELIVERIES: &str = "hard_limit_webhook_deliveries_total";
/// Shutdowns by outcome.
pub const SHUTDOWNS: &str = "hard_limit_shutdowns_total";
/// 1 while eyeson's last answer was 423 (the API key is locked).
pub const API_KEY_LOCKED: &str = "hard_limit_api_key_locked";
/// Retried shutdown calls.
pub const SHUTDOWN_RETRIES: &str = "hard_limit_shutdown_retries_total";
/// Enforcement lateness histogram.
pub const LATENESS: &str = "hard_limit_enforcement_lateness_seconds";
/// Claims a meeting's shutdown took, observed at its final outcome.
pub const SHUTDOWN_ATTEMPTS: &str = "hard_limit_shutdown_attempts";
/// Reconciliation runs by outcome.
pub const RECONCILES: &str = "hard_limit_reconcile_runs_total";
/// Reconciliations that closed nothing because they would have closed too
/// many meetings (a partial `GET /rooms`, most likely).
pub const RECONCILE_CLOSES_REFUSED: &str = "hard_limit_reconcile_closes_refused_total";
/// 1 on the replica that runs the singleton chores (reconciliation,
/// pruning, registration), else 0.
pub const CHORES_LEADER: &str = "hard_limit_chores_leader";
/// 1 while every background task runs (rendered by `/metrics`).
pub const TASKS_OK: &str = "hard_limit_background_tasks_ok";
/// 1 while the store accepts writes (rendered by `/metrics`).
pub const STORE_WRITABLE: &str = "hard_limit_store_writable";
/// How long the earliest due work has waited unclaimed (rendered by
/// `/metrics` from one indexed read).
pub const OVERDUE: &str = "hard_limit_overdue_seconds";
/// Running meetings due within the next hour (rendered by `/metrics`,
/// capped).
pub const DUE_NEXT_HOUR: &str = "hard_limit_meetings_due_next_hour";
/// Webhook registrations by outcome.
pub const REGISTRATIONS: &str = "hard_limit_webhook_registrations_total";
/// Registration outcomes, so each series exists from the start.
pub const REGISTRATION_OUTCOMES: &[&str] = &[
    "registered",
    "unchanged",
    "replaced_foreign",
    "refused_foreign",
    "error",
];
/// Forwarding attempts by outcome.
pub const FORWARDS: &str = "hard_limit_forwards_total";
/// Entries waiting in the forwarding outbox.
pub const FORWARDS_PENDING: &str = "hard_limit_forwards_pending";
/// Forwarding outcomes.
pub const FORWARD_OUTCOMES: &[&str] = &["delivered", "retried", "expired", "refused"];

/// Admin requests whose token was missing or wrong.
pub const ADMIN_AUTH_FAILURES: &str = "hard_limit_admin_auth_failures_total";
/// Admin requests refused before any handler (foreign Host or Origin, not
/// JSON, an address slowed down after failed authentications).
pub const ADMIN_REFUSED: &str = "hard_limit_admin_requests_refused_total";
/// The reasons of [`ADMIN_REFUSED`].
pub const ADMIN_REFUSED_REASONS: [&str; 4] = ["host", "origin", "content_type", "throttled"];

/// In-meeting warnings by outcome.
pub const WARNINGS: &str = "hard_limit_warnings_total";
/// Retried warning calls.
pub const WARNING_RETRIES: &str = "hard_limit_warning_retries_total";
/// How late the chat message went out.
pub const WARNING_LATENESS: &str = "hard_limit_warning_lateness_seconds";

/// The alone rule's participants checks by outcome.
pub const PRESENCE_CHECKS: &str = "hard_limit_presence_checks_total";
/// Outcomes of [`PRESENCE_CHECKS`].
pub const PRESENCE_OUTCOMES: [&str; 5] = ["alone", "company", "gone", "off", "failed"];
/// Retried participants checks.
pub const PRESENCE_RETRIES: &str = "hard_limit_presence_retries_total";
/// How long the most overdue participants check has waited (0: none is
/// late); `--presence-rate` too low for the meetings shows here.
pub const PRESENCE_OVERDUE: &str = "hard_limit_presence_overdue_seconds";

/// Every delivery reason, so each series exists from the start.
pub const DELIVERY_LABELS: &[(&str, &str)] = &[
    ("accepted", "tracked"),
    ("accepted", "duplicate"),
    ("accepted", "ended"),
    ("accepted", "late_for_ended_meeting"),
    ("ignored", "not_started"),
    ("ignored", "other_type"),
    ("rejected", "missing_signature"),
    ("rejected", "bad_signature"),
    ("rejected", "too_large"),
    ("rejected", "unreadable"),
    ("rejected", "malformed"),
    ("rejected", "stale"),
    ("rejected", "future_start"),
    ("rejected", "body_timeout"),
    ("error", "store"),
];

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the recorder (first call) and returns the handle that renders
/// `/metrics`.
pub fn install() -> PrometheusHandle {
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(
                    Matcher::Full(LATENESS.to_owned()),
                    &[
                        0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
                    ],
                )
                .expect("bucket list is not empty")
                .set_buckets_for_metric(
                    Matcher::Full(WARNING_LATENESS.to_owned()),
                    &[
                        0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
                    ],
                )
                .expect("bucket list is not empty")
                .set_buckets_for_metric(
                    Matcher::Full(SHUTDOWN_ATTEMPTS.to_owned()),
                    &[1.0, 2.0, 3.0, 5.0, 10.0, 20.0, 50.0],
                )
                .expect("bucket list is not empty");
            let recorder = builder.build_recorder();
            let handle = recorder.handle();
            if metrics::set_global_recorder(recorder).is_err() {
                tracing::warn!("another metrics recorder is installed; /metrics will be empty");
            }
            describe();
            handle
        })
        .clone()
}

fn describe() {
    metrics::describe_counter!(DELIVERIES, "Webhook deliveries by outcome and reason");
    metrics::describe_counter!(SHUTDOWNS, "Claimed meetings by how their shutdown ended");
    metrics::describe_counter!(
        SHUTDOWN_RETRIES,
        "Shutdown calls retried after 429/5xx/timeouts"
    );
    // From the start, so a first retry counts in rate() and a dashboard
    // shows 0, not "no data".
    metrics::counter!(SHUTDOWN_RETRIES).increment(0);
    metrics::describe_histogram!(
        LATENESS,
        metrics::Unit::Seconds,
        "Time the shutdown call completed minus the meeting's deadline"
    );
    metrics::describe_histogram!(
        SHUTDOWN_ATTEMPTS,
        "Claims a meeting's shutdown took (more than 1: deferred after retryable failures, or a lost lease), observed at its final outcome"
    );
    metrics::describe_gauge!(
        API_KEY_LOCKED,
        "1 while eyeson's last answer was 423 Locked (the API key is locked: usage limits exceeded), else 0"
    );
    metrics::gauge!(API_KEY_LOCKED).set(0.0);
    metrics::describe_counter!(RECONCILES, "GET /rooms reconciliations by outcome");
    // From the start on every replica, so "no replica reconciles" is a
    // sum of zeros an alert can see, not a missing series.
    for outcome in ["ok", "error"] {
        metrics::counter!(RECONCILES, "outcome" => outcome).increment(0);
    }
    metrics::describe_counter!(REGISTRATIONS, "Webhook registrations at start by outcome");
    for o in REGISTRATION_OUTCOMES {
        metrics::counter!(REGISTRATIONS, "outcome" => *o).increment(0);
    }
    metrics::describe_counter!(
        FORWARDS,
        "Attempts to forward a delivery to --forward-to, by outcome"
    );
    metrics::describe_gauge!(
        FORWARDS_PENDING,
        "Deliveries waiting in the forwarding outbox (recounted every 10 s)"
    );
    metrics::describe_counter!(
        RECONCILE_CLOSES_REFUSED,
        "Reconciliations that closed nothing because they would have closed more than 10 and more than 20% of the open meetings"
    );
    metrics::counter!(RECONCILE_CLOSES_REFUSED).increment(0);
    metrics::describe_gauge!(
        CHORES_LEADER,
        "1 on the replica that runs reconciliation, pruning and registration, else 0"
    );
    metrics::gauge!(CHORES_LEADER).set(0.0);
    metrics::describe_counter!(
        ADMIN_AUTH_FAILURES,
        "Admin requests with a missing or wrong token"
    );
    metrics::counter!(ADMIN_AUTH_FAILURES).increment(0);
    metrics::describe_counter!(
        ADMIN_REFUSED,
        "Admin requests refused before any handler, by reason"
    );
    for reason in ADMIN_REFUSED_REASONS {
        metrics::counter!(ADMIN_REFUSED, "reason" => reason).increment(0);
    }
    for (outcome, reason) in DELIVERY_LABELS {
        metrics::counter!(DELIVERIES, "outcome" => *outcome, "reason" => *reason).increment(0);
    }
    for o in [
        ShutdownOutcome::ShutDown,
        ShutdownOutcome::AlreadyEnded,
        ShutdownOutcome::SkippedNewerMeeting,
        ShutdownOutcome::DryRun,
        ShutdownOutcome::Refused,
        ShutdownOutcome::GaveUp,
        ShutdownOutcome::Deferred,
        ShutdownOutcome::Locked,
        ShutdownOutcome::EndedAlone,
        ShutdownOutcome::AloneCancelled,
    ] {
        metrics::counter!(SHUTDOWNS, "outcome" => o.as_str()).increment(0);
    }
    metrics::describe_counter!(
        PRESENCE_CHECKS,
        "Participants checks of the alone rule by outcome (alone: at most one counted; company: two or more; gone: eyeson has no such meeting; off: the rule is off for the room; failed)"
    );
    for o in PRESENCE_OUTCOMES {
        metrics::counter!(PRESENCE_CHECKS, "outcome" => o).increment(0);
    }
    metrics::describe_counter!(
        PRESENCE_RETRIES,
        "Participants checks retried after 429/5xx/timeouts"
    );
    metrics::counter!(PRESENCE_RETRIES).increment(0);
    metrics::describe_gauge!(
        PRESENCE_OVERDUE,
        metrics::Unit::Seconds,
        "How long the most overdue participants check has waited (0: none is late)"
    );
    metrics::gauge!(PRESENCE_OVERDUE).set(0.0);
    metrics::describe_counter!(WARNINGS, "In-meeting warnings by how they ended");
    metrics::describe_counter!(
        WARNING_RETRIES,
        "Warning calls (guest join, chat message) retried after 429/5xx/timeouts"
    );
    metrics::counter!(WARNING_RETRIES).increment(0);
    metrics::describe_histogram!(
        WARNING_LATENESS,
        metrics::Unit::Seconds,
        "Time the chat message was posted minus the time the warning was due"
    );
    for o in [
        WarningOutcome::Sent,
        WarningOutcome::MeetingEnded,
        WarningOutcome::NoGuestToken,
        WarningOutcome::SkippedNewerMeeting,
        WarningOutcome::DryRun,
        WarningOutcome::Company,
        WarningOutcome::Failed,
        WarningOutcome::Deferred,
    ] {
        metrics::counter!(WARNINGS, "outcome" => o.label()).increment(0);
    }
}

/// Sets [`API_KEY_LOCKED`] from an answer of eyeson's.
pub fn api_key_locked(locked: bool) {
    metrics::gauge!(API_KEY_LOCKED).set(if locked { 1.0 } else { 0.0 });
}

/// Counts one finished warning.
pub fn warning(outcome: WarningOutcome) {
    metrics::counter!(WARNINGS, "outcome" => outcome.label()).increment(1);
}

/// Records how late a chat message went out.
pub fn warning_lateness(seconds: f64) {
    metrics::histogram!(WARNING_LATENESS).record(seconds);
}

/// Counts one delivery.
pub fn delivery(outcome: &'static str, reason: &'static str) {
    metrics::counter!(DELIVERIES, "outcome" => outcome, "reason" => reason).increment(1);
}

/// Counts one participants check.
pub fn presence_check(outcome: &'static str) {
    metrics::counter!(PRESENCE_CHECKS, "outcome" => outcome).increment(1);
}

/// Sets [`PRESENCE_OVERDUE`].
pub fn presence_overdue(seconds: f64) {
    metrics::gauge!(PRESENCE_OVERDUE).set(seconds);
}

/// Counts one finished shutdown.
pub fn shutdown(outcome: ShutdownOutcome) {
    metrics::counter!(SHUTDOWNS, "outcome" => outcome.as_str()).increment(1);
}

/// Records how many claims a shutdown took, at its final outcome.
pub fn attempts(claims: i64) {
    metrics::histogram!(SHUTDOWN_ATTEMPTS).record(claims as f64);
}

/// Records how late a shutdown completed.
pub fn lateness(seconds: f64) {
    metrics::histogram!(LATENESS).record(seconds);
}

/// Counts one forwarding attempt's outcome.
pub fn forward(outcome: &'static str) {
    metrics::counter!(FORWARDS, "outcome" => outcome).increment(1);
}

/// Sets the outbox's size.
pub fn forwards_pending(n: u64) {
    metrics::gauge!(FORWARDS_PENDING).set(n as f64);
}

/// Makes the forwarding series exist (only a service that forwards shows them).
pub fn forwarding_on() {
    for o in FORWARD_OUTCOMES {
        metrics::counter!(FORWARDS, "outcome" => *o).increment(0);
    }
    metrics::gauge!(FORWARDS_PENDING).set(0.0);
}
