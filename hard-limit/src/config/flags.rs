//! The flags: one clap struct whose doc comments are `--help`. Every flag
//! also reads an environment variable, and every default is written here
//! once; [`super::Config`] is what they are checked into.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use humantime::parse_duration;
use reqwest::Url;

use crate::secrets::{AdminToken, ApiKey};

/// `--api-key`'s parser never fails: clap's error would quote the key to
/// stderr. [`super::Config`] checks it without repeating it.
fn parse_api_key(s: &str) -> Result<ApiKey, std::convert::Infallible> {
    Ok(ApiKey::unchecked(s))
}

fn parse_url(s: &str) -> Result<Url, String> {
    let url = Url::parse(s).map_err(|e| format!("not a URL: {e}"))?;
    match url.scheme() {
        "http" | "https" => Ok(url),
        other => Err(format!("scheme {other:?} is not http or https")),
    }
}

/// Settings of the service.
///
/// Every flag's environment value is hidden in `--help` (`mut_args`):
/// `DATABASE_URL` may carry a password, the URLs a token, `EYESON_API_KEY`
/// is the key, and `--help` ends up in logs and tickets.
#[derive(Clone, Debug, clap::Parser)]
#[command(mut_args = |a: clap::Arg| a.hide_env_values(true))]
pub struct Flags {
    /// eyeson API key (sent raw in the Authorization header; never logged).
    #[arg(long, env = "EYESON_API_KEY", value_parser = parse_api_key)]
    pub api_key: ApiKey,
    /// eyeson API base URL.
    #[arg(long, env = "EYESON_API_URL", default_value = "https://api.eyeson.team", value_parser = parse_url)]
    pub api_url: Url,
    /// Public address: webhooks, health, and one room's deadline (CORS).
    #[arg(long, env = "LISTEN_ADDR", default_value = "0.0.0.0:8042")]
    pub listen: SocketAddr,
    /// Admin address: the meeting list, history, metrics, operator actions
    /// and the console. Anything but loopback needs --admin-token.
    #[arg(long, env = "ADMIN_LISTEN", default_value = "127.0.0.1:8044")]
    pub admin_listen: SocketAddr,
    /// Bearer token every admin request must carry (never logged; at
    /// least 16 characters).
    #[arg(long, env = "ADMIN_TOKEN")]
    pub admin_token: Option<AdminToken>,
    /// A host name the admin listener answers to besides its own address
    /// (say the name of a reverse proxy in front of it); repeatable, or
    /// comma-separated in the variable. Requests whose Host header names
    /// anything else are refused (DNS rebinding).
    #[arg(long, env = "ADMIN_HOSTS", value_delimiter = ',')]
    pub admin_host: Vec<String>,
    /// Database URL: sqlite://path (the default; the file is created if missing) or
    /// postgres://user@host/db (several replicas on one database).
    #[arg(long, env = "DATABASE_URL", default_value = "sqlite://hard-limit.db")]
    pub database: String,
    /// Maximum meeting duration, unless the limits file says otherwise (90s, 30m, 2h).
    #[arg(long, env = "MAX_DURATION", default_value = "30m", value_parser = parse_duration)]
    pub max_duration: Duration,
    /// Extra time after the limit before the shutdown call.
    #[arg(long, env = "GRACE", default_value = "0s", value_parser = parse_duration)]
    pub grace: Duration,
    /// Optional TOML file of per-room limits: table "rooms" (exact ids),
    /// then table "prefixes" (longest match wins), else --max-duration.
    #[arg(long, env = "LIMITS_FILE")]
    pub limits: Option<PathBuf>,
    /// Public URL eyeson should POST room_update webhooks to; registered at start if set.
    #[arg(long, env = "WEBHOOK_URL", value_parser = parse_url)]
    pub webhook_url: Option<Url>,
    /// Forward every delivery this service acknowledges (every type), body
    /// and X-Eyeson-Signature unchanged, to this URL: the app's own webhook
    /// receiver. The service then registers itself for the app's types too.
    #[arg(long, env = "FORWARD_TO", value_parser = parse_url)]
    pub forward_to: Option<Url>,
    /// How long a delivery to forward is retried before it is dropped.
    #[arg(long, env = "FORWARD_RETENTION", default_value = "24h", value_parser = parse_duration)]
    pub forward_retention: Duration,
    /// Replace a webhook registered for the API key to another URL (eyeson
    /// keeps one per key: its receiver gets nothing more). Without it (or
    /// --forward-to) the service refuses to start when it finds one.
    #[arg(long, env = "WEBHOOK_REPLACE")]
    pub webhook_replace: bool,
    /// How often to re-read GET /rooms.
    #[arg(long, env = "RECONCILE_EVERY", default_value = "60s", value_parser = parse_duration)]
    pub reconcile_every: Duration,
    /// How often to correct the in-memory meeting counts of /metrics from
    /// a full count of the store (rows written behind the service's back,
    /// replicas' changes whose notification was lost, show then).
    #[arg(long, env = "RECOUNT_EVERY", default_value = "60s", value_parser = parse_duration)]
    pub recount_every: Duration,
    /// Log and record what would be shut down; call nothing.
    #[arg(long, env = "DRY_RUN")]
    pub dry_run: bool,
    /// Show the public GET /meetings/{room_id} of meetings whose deliveries
    /// carried no guest token to anyone who asks (meetings with one are
    /// only ever shown to whoever presents it). Anyone who guesses such a
    /// room's id learns whether it is live and its deadline.
    #[arg(long, env = "PUBLIC_DEADLINES")]
    pub public_deadlines: bool,
    /// Deliveries whose signed timestamp is further than this from now are
    /// refused as replays (0s turns the check off).
    #[arg(long, env = "WEBHOOK_MAX_AGE", default_value = "10m", value_parser = parse_duration)]
    pub webhook_max_age: Duration,
    /// How long a claimed shutdown is owned before another worker (or this
    /// one after a restart) may retry it. Keep it above 20s: attempts stop
    /// after half the lease, and one attempt may take the 10 s timeout.
    #[arg(long, env = "LEASE", default_value = "30s", value_parser = parse_duration)]
    pub lease: Duration,
    /// A tracked meeting that GET /rooms does not list is closed as ended
    /// only once it has been tracked at least this long.
    #[arg(long, env = "CLOSE_UNLISTED_AFTER", default_value = "60s", value_parser = parse_duration)]
    pub close_unlisted_after: Duration,
    /// A shutdown whose retries (429, 5xx, timeouts) ran out is tried again
    /// after this long, doubling per attempt up to 5 minutes.
    #[arg(long, env = "RETRY_BACKOFF", default_value = "30s", value_parser = parse_duration)]
    pub retry_backoff: Duration,
    /// Shutdown calls in flight at once (each replica claims up to twice
    /// as many due meetings ahead, so calls do not wait on commits).
    #[arg(long, env = "SHUTDOWN_CONCURRENCY", default_value_t = 32)]
    pub shutdown_concurrency: usize,
    /// How long finished meetings are kept (at least twice `--webhook-max-age`,
    /// so a replayed delivery can never bring a pruned meeting back).
    #[arg(long, env = "RETENTION", default_value = "24h", value_parser = parse_duration)]
    pub retention: Duration,
    /// A request's headers must arrive within this (counted from when the
    /// connection is ready for a request), or the connection is closed.
    #[arg(long, env = "HEADER_READ_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub header_read_timeout: Duration,
    /// A webhook body must arrive whole within this (counted from the end
    /// of its headers), or the delivery is answered 408.
    #[arg(long, env = "BODY_READ_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub body_read_timeout: Duration,
    /// A connection with no request in flight that moves no byte for this
    /// long is closed.
    #[arg(long, env = "KEEP_ALIVE_TIMEOUT", default_value = "15s", value_parser = parse_duration)]
    pub keep_alive_timeout: Duration,
    /// Connections served at once; more wait to be accepted.
    #[arg(long, env = "MAX_CONNECTIONS", default_value_t = 1024)]
    pub max_connections: usize,
    /// Warn the participants this long before the deadline, in the
    /// meeting's chat (joined as a guest with the room's guest token); off
    /// unless set.
    #[arg(long, env = "WARN_BEFORE", value_parser = parse_duration)]
    pub warn_before: Option<Duration>,
    /// The name the warning's guest joins with.
    #[arg(long, env = "WARN_NAME", default_value = "Meeting limit")]
    pub warn_name: String,
    /// The warning's chat message [default: "This meeting ends in <--warn-before>.",
    /// e.g. "This meeting ends in 5 minutes."].
    #[arg(long, env = "WARN_TEXT")]
    pub warn_text: Option<String>,
    /// The alone rule's chat message, sent `--warn-before` ahead of an
    /// alone end [default: "You are the only participant. This meeting
    /// ends in <--warn-before> unless someone joins."].
    #[arg(long, env = "ALONE_WARN_TEXT")]
    pub alone_warn_text: Option<String>,
    /// Participants the alone rule does not count: a glob (`*` any run of
    /// characters, `?` one) matched case-insensitively against a whole id
    /// or name, e.g. `recorder*`, `*bot*`. Repeatable; in the environment,
    /// comma-separated.
    #[arg(long, env = "ALONE_IGNORE", value_delimiter = ',')]
    pub alone_ignore: Vec<String>,
    /// How often each running meeting's participants are checked (the
    /// alone rule).
    #[arg(long, env = "PRESENCE_EVERY", default_value = "60s", value_parser = parse_duration)]
    pub presence_every: Duration,
    /// The most participants checks this process makes per second; when
    /// it makes checks late, `hard_limit_presence_overdue_seconds`
    /// and a log line once a minute say so.
    #[arg(long, env = "PRESENCE_RATE", default_value_t = 20)]
    pub presence_rate: u32,
    /// Test only: this background task dies at start, or `@DELAY` after it
    /// (scheduler, reconciler, ingest-writer, outcome-writer, warner,
    /// warning-writer, presence, presence-writer, forwarder, forward-writer; `reconciler@3s`), to test
    /// supervision.
    #[arg(long, env = "HARD_LIMIT_INJECT_FAULT", hide = true)]
    pub inject_fault: Option<String>,
    /// End a meeting whose counted online participants have been at most
    /// one, continuously, for this long (the alone rule); off unless set.
    /// Rooms and prefixes may set their own or turn it off (the limits
    /// file, PUT /limits/...).
    #[arg(long, env = "ALONE_AFTER", value_parser = parse_duration)]
    pub alone_after: Option<Duration>,
}

impl Flags {
    /// The flags with clap's defaults (environment variables ignored), both
    /// listeners on a free loopback port: for tests and embedding.
    pub fn new(api_key: ApiKey, api_url: Url, database: String) -> Self {
        use clap::{CommandFactory, FromArgMatches};
        // `new_has_the_defaults` checks these are the command line's.
        let defaults = Flags::command()
            .mut_args(|a| a.env(None))
            .try_get_matches_from(["eyeson-hard-limit", "--api-key", "-"])
            .and_then(|m| Flags::from_arg_matches(&m))
            .expect("the defaults parse");
        let loopback = SocketAddr::from(([127, 0, 0, 1], 0));
        Flags {
            api_key,
            api_url,
            database,
            listen: loopback,
            admin_listen: loopback,
            ..defaults
        }
    }
}
