//! # eyeson-hard-limit
//!
//! Force-ends eyeson meetings that run longer than a hard limit. The
//! browser guard (the workspace's root crate) ends abandoned meetings from
//! inside the meeting page; this service is the server-side backstop for
//! every meeting a page cannot end: a crashed tab, a custom client, a
//! participant who never leaves.
//!
//! ## How a meeting flows through the crate
//!
//! 1. eyeson POSTs a signed `room_update` to `/webhook` ([`webhook`]): the
//!    HMAC is checked over the raw bytes, the JSON parsed into a
//!    [`domain::RoomUpdate`], and [`domain::plan`] decides what it means.
//! 2. The plan is committed to the [`store`] (group commit, `synchronous =
//!    FULL`) before the handler answers 204: an acknowledged delivery is
//!    never lost. The [`scheduler`] is poked.
//! 3. The [`scheduler`] ([`runner`] job) sleeps until the earliest deadline, claims due
//!    meetings under a lease, re-checks that no newer meeting runs in the
//!    room, and calls `DELETE /rooms/{id}` through [`eyeson`], retrying
//!    429/5xx/timeouts with jittered exponential backoff. Outcomes are
//!    recorded (group-committed) only while the lease is held; a crash
//!    leaves an expiring lease, so the meeting is claimed again, not lost.
//! 4. The [`reconcile`] task reads `GET /rooms` at start and periodically,
//!    so meetings that began while the service was down are enforced too.
//! 5. With `--warn-before`, the [`warner`] claims each meeting's warning at
//!    `deadline − warn` (once per deadline, under a lease like a shutdown),
//!    joins it as a guest with the room's guest token and posts a chat
//!    message.
//! 6. With `--forward-to`, every acknowledged delivery is also written to
//!    an outbox in the same transaction, and the [`forward`] task passes it
//!    on to the app's own webhook receiver, unchanged, in order per room
//!    ([`registration`]: eyeson keeps one webhook per API key).
//! 7. With `--alone-after`, the [`presence`] job checks each running
//!    meeting's participants every `--presence-every`; a meeting alone that
//!    long is due like a deadline, and the [`scheduler`] looks once more
//!    before its `DELETE`.
//!
//! On PostgreSQL any number of replicas share one database: claims use
//! `FOR UPDATE SKIP LOCKED` and the database's clock, `LISTEN/NOTIFY` wakes
//! every replica's scheduler for a new meeting, and the singleton chores
//! (reconciliation, pruning, webhook registration) run on the one replica
//! holding an advisory lock ([`cluster`]).
//!
//! ## Where things live
//!
//! | module | what |
//! |---|---|
//! | [`alone`] | the alone rule's pure core: which online participants count (`--alone-ignore` globs), the alone clock |
//! | [`domain`] | pure core: meeting identity, limits, deadlines, states, plans |
//! | [`config`] | the flags (clap, every flag with an env var and its one default) checked once into sections; the limits file |
//! | [`secrets`] | the API key and the admin token: redacted, checked without repeating them |
//! | [`webhook`] | signature check, parsing, freshness, the handler, group commit |
//! | [`runner`] | the one leased-job runner: sleep until due, claim under a lease, attempt with retries and backoff, group-commit the outcomes ([`runner::Job`]) |
//! | [`scheduler`] | the shutdown job: `DELETE /rooms/{id}` at the deadline, unless a newer meeting runs; `Calls`, what it shares with the warner (the guard, the outcome log lines) |
//! | [`warner`] | the warning job: guest join + chat message at `deadline − --warn-before` |
//! | [`presence`] | the participants-check job of the alone rule: paced `GET /rooms/{id}/users`, the alone clock's moves, the last look before an alone end |
//! | [`wake`] | pokes for the jobs that sleep until a time the store knows |
//! | [`eyeson`] | the REST client |
//! | `eyeson_api` (crate) | the eyeson contract shared with the sandbox: signature, wire types (the lenient readers used here), paths |
//! | [`reconcile`] | `GET /rooms`, webhook registration, pruning |
//! | [`registration`] | sharing eyeson's one webhook per key with the app: what to register, refusing to cut off another URL's |
//! | [`forward`] | `--forward-to`: retries and expiry, and the job that forwards every acknowledged delivery to the app |
//! | [`lanes`] | the outbox's lanes: which forwarded deliveries keep their order |
//! | [`store`] | the narrow [`store::Engine`] trait (the questions the service asks) over its two engines, one trait object; each write returns what it changed; the SQL both engines share written once (`store/sql.rs`), only what differs in its SQLite engine and its PostgreSQL engine (replicas) |
//! | [`store_handle`] | [`store_handle::Store`], the handle the service holds: reads go to the engine as they are (it dereferences to it); its writes apply each write's effect to the gauges and the write-health flag of `/healthz` |
//! | [`http`] | the public and the admin routers, their state, error answers |
//! | [`limits`] | the limits in force: command-line default, stored per-room rules |
//! | [`serve`] | the server loop: connection cap, header and idle timeouts |
//! | [`stop`] | the one stop signal every task takes (a meeting is shut down; the process stops) |
//! | [`metrics`] | metric names and the Prometheus recorder |
//! | [`meeting_gauges`] | meetings by state in memory for `/metrics`: exact deltas from the store's writes, recounts from the store |
//! | [`app`] | build and run: the zero2prod `Application`, built from a `Config` (and a test's `TestHooks`) |
//! | [`supervisor`] | the tasks by name and stop phase, one table: registered by the app, started and watched together, stopped in order |
//! | [`cli`] | the binary's command line, logging and subcommands |
//! | [`notify`] | systemd readiness, watchdog and stopping notifications (`NOTIFY_SOCKET`) |
//! | [`cluster`] | PostgreSQL replicas as one: the `LISTEN` task (with count publishing) that emits [`cluster::Event`]s (the app routes them), the chores leader lock |
//! | [`clock`] | where "now" comes from, and the sleeps until a time (a test's manual clock drives both) |
//! | [`fault`] | test-only fault injection into the supervisor's tasks |

#![deny(missing_docs)]
// A dropped `store::Written` is a write that skipped the handle (its
// effect never reached the gauges): an error, not a warning.
#![deny(unused_must_use)]

pub mod alone;
pub mod app;
pub mod cli;
pub mod clock;
pub mod cluster;
pub mod config;
pub mod domain;
pub mod eyeson;
pub mod fault;
pub mod forward;
mod group_commit;
pub mod http;
pub mod lanes;
pub mod limits;
pub mod meeting_gauges;
pub mod metrics;
pub mod notify;
pub mod presence;
pub mod reconcile;
pub mod registration;
pub mod runner;
pub mod scheduler;
pub mod secrets;
pub mod serve;
pub mod stop;
pub mod store;
pub mod store_handle;
pub mod supervisor;
pub mod wake;
pub mod warner;
pub mod webhook;

pub use app::Application;
pub use cli::{Cli, Command};
pub use config::{Config, Flags};
