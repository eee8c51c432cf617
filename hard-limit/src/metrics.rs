//! Prometheus metrics: names, labels, and the one process-wide recorder
//! (the README's table says what each metric means). Every series that
//! can be known up front exists from the start, so a first event counts in
//! `rate()` and a dashboard or alert sees 0, not a missing series.
//!
//! The recorder is global (that is how the `metrics` facade works), so it is
//! installed once per process; several services in one test process share it.

use std::sync::OnceLock;

use metrics::{counter, gauge, Unit};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::domain::{ShutdownOutcome, WarningOutcome};

/// Defines each described metric's name (documented by its help) and the
/// [`DESCRIBED`] table: name, kind, unit, help.
macro_rules! described {
    ($($name:ident = $metric:literal, $kind:ident, $unit:expr, $help:literal;)*) => {
        $(#[doc = $help] pub const $name: &str = $metric;)*

        /// The metrics the recorder renders: name, kind, unit, help.
        const DESCRIBED: &[(&str, Kind, Option<Unit>, &str)] = &[$(($name, Kind::$kind, $unit, $help)),*];
    };
}

described! {
    DELIVERIES = "hard_limit_webhook_deliveries_total", Counter, None, "Webhook deliveries by outcome and reason";
    SHUTDOWNS = "hard_limit_shutdowns_total", Counter, None, "Claimed meetings by how their shutdown ended";
    SHUTDOWN_RETRIES = "hard_limit_shutdown_retries_total", Counter, None, "Shutdown calls retried after 429/5xx/timeouts";
    LATENESS = "hard_limit_enforcement_lateness_seconds", Histogram, Some(Unit::Seconds), "Time the shutdown call completed minus the meeting's deadline";
    SHUTDOWN_ATTEMPTS = "hard_limit_shutdown_attempts", Histogram, None, "Claims a meeting's shutdown took (more than 1: deferred after retryable failures, or a lost lease), observed at its final outcome";
    API_KEY_LOCKED = "hard_limit_api_key_locked", Gauge, None, "1 while eyeson's last answer was 423 Locked (the API key is locked: usage limits exceeded), else 0";
    RECONCILES = "hard_limit_reconcile_runs_total", Counter, None, "GET /rooms reconciliations by outcome";
    REGISTRATIONS = "hard_limit_webhook_registrations_total", Counter, None, "Webhook registrations at start by outcome";
    FORWARDS = "hard_limit_forwards_total", Counter, None, "Attempts to forward a delivery to --forward-to, by outcome";
    FORWARDS_PENDING = "hard_limit_forwards_pending", Gauge, None, "Deliveries waiting in the forwarding outbox (recounted every 10 s)";
    RECONCILE_CLOSES_REFUSED = "hard_limit_reconcile_closes_refused_total", Counter, None, "Reconciliations that closed nothing because they would have closed more than 10 and more than 20% of the open meetings";
    CHORES_LEADER = "hard_limit_chores_leader", Gauge, None, "1 on the replica that runs reconciliation, pruning and registration, else 0";
    ADMIN_AUTH_FAILURES = "hard_limit_admin_auth_failures_total", Counter, None, "Admin requests with a missing or wrong token";
    ADMIN_REFUSED = "hard_limit_admin_requests_refused_total", Counter, None, "Admin requests refused before any handler, by reason";
    PRESENCE_CHECKS = "hard_limit_presence_checks_total", Counter, None, "Participants checks of the alone rule by outcome (alone: at most one counted; company: two or more; gone: eyeson has no such meeting; off: the rule is off for the room; failed)";
    PRESENCE_RETRIES = "hard_limit_presence_retries_total", Counter, None, "Participants checks retried after 429/5xx/timeouts";
    PRESENCE_OVERDUE = "hard_limit_presence_overdue_seconds", Gauge, Some(Unit::Seconds), "How long the most overdue participants check has waited (0: none is late)";
    WARNINGS = "hard_limit_warnings_total", Counter, None, "In-meeting warnings by how they ended";
    WARNING_RETRIES = "hard_limit_warning_retries_total", Counter, None, "Warning calls (guest join, chat message) retried after 429/5xx/timeouts";
    WARNING_LATENESS = "hard_limit_warning_lateness_seconds", Histogram, Some(Unit::Seconds), "Time the chat message was posted minus the time the warning was due";
}

/// Tracked meetings by state (rendered from [`crate::meeting_gauges`]).
pub const MEETINGS: &str = "hard_limit_meetings";
/// 1 while every background task runs (rendered by `/metrics`).
pub const TASKS_OK: &str = "hard_limit_background_tasks_ok";
/// 1 while the store accepts writes (rendered by `/metrics`).
pub const STORE_WRITABLE: &str = "hard_limit_store_writable";
/// How long the earliest due work has waited unclaimed (rendered by `/metrics`).
pub const OVERDUE: &str = "hard_limit_overdue_seconds";
/// Running meetings due within the next hour (rendered by `/metrics`).
pub const DUE_NEXT_HOUR: &str = "hard_limit_meetings_due_next_hour";
/// Registration outcomes.
pub const REGISTRATION_OUTCOMES: &[&str] = &[
    "registered",
    "unchanged",
    "replaced_foreign",
    "refused_foreign",
    "error",
];
/// Forwarding outcomes.
pub const FORWARD_OUTCOMES: &[&str] = &["delivered", "retried", "expired", "refused"];
/// The reasons of [`ADMIN_REFUSED`].
pub const ADMIN_REFUSED_REASONS: [&str; 4] = ["host", "origin", "content_type", "throttled"];
/// Outcomes of [`PRESENCE_CHECKS`].
pub const PRESENCE_OUTCOMES: [&str; 5] = ["alone", "company", "gone", "off", "failed"];
/// Every delivery outcome and its reasons (space-separated).
pub const DELIVERY_LABELS: &[(&str, &str)] = &[
    ("accepted", "tracked duplicate ended late_for_ended_meeting"),
    ("ignored", "not_started other_type"),
    (
        "rejected",
        "missing_signature bad_signature too_large unreadable",
    ),
    ("rejected", "malformed stale future_start body_timeout"),
    ("error", "store"),
];

/// What a metric is, for its description.
#[derive(Clone, Copy)]
enum Kind {
    Counter,
    Gauge,
    Histogram,
}

/// The lateness histograms' buckets, in seconds.
const LATENESS_BUCKETS: [f64; 13] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the recorder (first call) and returns the handle that renders
/// `/metrics`.
pub fn install() -> PrometheusHandle {
    HANDLE
        .get_or_init(|| {
            let buckets = [
                (LATENESS, &LATENESS_BUCKETS[..]),
                (WARNING_LATENESS, &LATENESS_BUCKETS),
                (SHUTDOWN_ATTEMPTS, &[1.0, 2.0, 3.0, 5.0, 10.0, 20.0, 50.0]),
            ];
            let builder =
                buckets
                    .into_iter()
                    .fold(PrometheusBuilder::new(), |b, (name, buckets)| {
                        let matcher = Matcher::Full(name.to_owned());
                        b.set_buckets_for_metric(matcher, buckets)
                            .expect("bucket list is not empty")
                    });
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

/// Describes every metric and makes the series known up front exist.
fn describe() {
    metrics::with_recorder(|r| {
        for &(name, kind, unit, help) in DESCRIBED {
            let (name, help) = (name.into(), help.into());
            match kind {
                Kind::Counter => r.describe_counter(name, unit, help),
                Kind::Gauge => r.describe_gauge(name, unit, help),
                Kind::Histogram => r.describe_histogram(name, unit, help),
            }
        }
    });
    for name in [
        SHUTDOWN_RETRIES,
        RECONCILE_CLOSES_REFUSED,
        ADMIN_AUTH_FAILURES,
        PRESENCE_RETRIES,
        WARNING_RETRIES,
    ] {
        counter!(name).increment(0);
    }
    for name in [API_KEY_LOCKED, CHORES_LEADER, PRESENCE_OVERDUE] {
        gauge!(name).set(0.0);
    }
    let shutdowns = [
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
    ]
    .map(ShutdownOutcome::as_str);
    let warnings = [
        WarningOutcome::Sent,
        WarningOutcome::MeetingEnded,
        WarningOutcome::NoGuestToken,
        WarningOutcome::SkippedNewerMeeting,
        WarningOutcome::DryRun,
        WarningOutcome::Company,
        WarningOutcome::Failed,
        WarningOutcome::Deferred,
    ]
    .map(WarningOutcome::label);
    // Every replica reconciles from the start, so "no replica reconciles"
    // is a sum of zeros an alert can see.
    for (name, label, values) in [
        (RECONCILES, "outcome", &["ok", "error"][..]),
        (REGISTRATIONS, "outcome", REGISTRATION_OUTCOMES),
        (ADMIN_REFUSED, "reason", &ADMIN_REFUSED_REASONS[..]),
        (SHUTDOWNS, "outcome", &shutdowns[..]),
        (PRESENCE_CHECKS, "outcome", &PRESENCE_OUTCOMES[..]),
        (WARNINGS, "outcome", &warnings[..]),
    ] {
        for value in values {
            counter!(name, label => *value).increment(0);
        }
    }
    for (outcome, reasons) in DELIVERY_LABELS {
        for reason in reasons.split(' ') {
            counter!(DELIVERIES, "outcome" => *outcome, "reason" => reason).increment(0);
        }
    }
}

/// Counts one delivery.
pub fn delivery(outcome: &'static str, reason: &'static str) {
    counter!(DELIVERIES, "outcome" => outcome, "reason" => reason).increment(1);
}

/// Makes the forwarding series exist (only a service that forwards shows them).
pub fn forwarding_on() {
    for o in FORWARD_OUTCOMES {
        counter!(FORWARDS, "outcome" => *o).increment(0);
    }
    gauge!(FORWARDS_PENDING).set(0.0);
}
