//! Integration tests: the real service over HTTP on 127.0.0.1, a fresh
//! SQLite file per test, and a fake eyeson API that checks every call.
//! One test binary (zero2prod style) so it is linked once.

mod fake_eyeson;
mod helpers;
mod pg;

mod admin;
mod alone;
mod alone_limits;
mod chaos;
mod disk_full;
mod endpoints;
mod forward;
mod future_start;
mod log_format;
mod meeting_gauges;
mod notify;
mod participants;
mod properties;
mod read_only;
mod reconcile;
mod registration;
mod replicas;
mod restart;
mod safe_defaults;
mod shutdown;
mod stalls;
mod store_suite;
mod supervision;
mod warnings;
mod webhook;
