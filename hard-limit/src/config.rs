//! The command line: one clap struct whose doc comments are `--help`; every
//! flag also reads an environment variable. Also the limits file and the
//! API key newtype that keeps the key out of logs.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use clap::{Parser, Subcommand};
use reqwest::Url;
use serde::Deserialize;

use crate::domain::{Limits, Policy};

/// The eyeson API key. Its `Debug` is redacted and it has no `Display`, so
/// it cannot end up in a log line, an error message or a URL by accident;
/// [`ApiKey::expose`] is the one, greppable, way to read it.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey(String);

impl ApiKey {
    /// The key itself, for the `Authorization` header and the HMAC.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKey(<redacted>)")
    }
}

impl ApiKey {
    /// Checks and wraps a key. The error never contains the key.
    pub fn new(key: &str) -> Result<Self, &'static str> {
        let key = key.trim();
        if key.is_empty() {
            return Err("the API key is empty");
        }
        if !key.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(
                "the API key must be printable ASCII without spaces (it is sent as a header)",
            );
        }
        Ok(ApiKey(key.to_owned()))
    }
}

impl FromStr for ApiKey {
    type Err = &'static str;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ApiKey::new(s)
    }
}

/// The operator token for the admin listener. Like [`ApiKey`]: a redacted
/// `Debug`, no `Display`, read only through [`AdminToken::expose`].
#[derive(Clone, PartialEq, Eq)]
pub struct AdminToken(String);

impl AdminToken {
    /// The token itself, for the constant-time comparison only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AdminToken(<redacted>)")
    }
}

impl FromStr for AdminToken {
    type Err = std::convert::Infallible;
    /// Never fails: clap would quote a refused value (the token) in its
    /// error; [`Config::policy`] checks it without repeating it.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(AdminToken(s.to_owned()))
    }
}

/// clap's parser for `--api-key`: it never fails, because clap's error
/// message would quote the value (the key) to stderr. The key is checked in
/// [`Config::policy`], whose error does not repeat it.
fn parse_api_key(s: &str) -> Result<ApiKey, std::convert::Infallible> {
    Ok(ApiKey(s.to_owned()))
}

fn parse_duration(s: &str) -> Result<Duration, humantime::DurationError> {
    humantime::parse_duration(s)
}

fn parse_url(s: &str) -> Result<Url, String> {
    let url = Url::parse(s).map_err(|e| format!("not a URL: {e}"))?;
    match url.scheme() {
        "http" | "https" => Ok(url),
        other => Err(format!("scheme {other:?} is not http or https")),
    }
}

/// Command line of `eyeson-hard-limit`.
#[derive(Debug, Parser)]
#[command(name = "eyeson-hard-limit", version, about, long_about = None)]
pub struct Cli {
    /// Settings shared by every subcommand.
    #[command(flatten)]
    pub config: Config,
    /// Log lines as `text` (for people) or `json` (one object per line,
    /// for log shippers: `timestamp`, `level`, `target`, `message` and the
    /// event's own fields).
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// What to do; without one, run the service.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// How log lines are written (to stderr).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// `2026-12-06T18:00:00.000000Z  INFO target: message key=value`.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the service (the default).
    Run,
    /// Delete the webhook registered for this API key, then exit. Refuses if
    /// --webhook-url is set and a different URL is registered (it belongs to
    /// someone else). The service itself never unregisters.
    Unregister,
}

/// Settings of the service.
///
/// Every flag's environment value is hidden in `--help`
/// (`hide_env_values`): `DATABASE_URL` may carry a password,
/// `EYESON_API_URL` and `WEBHOOK_URL` a token, `EYESON_API_KEY` is the
/// key, and `--help` output ends up in terminals, CI logs and tickets.
/// Keep it on for every new flag.
#[derive(Clone, Debug, Parser)]
pub struct Config {
    /// eyeson API key (sent raw in the Authorization header; never logged).
    #[arg(long, env = "EYESON_API_KEY", hide_env_values = true, value_parser = parse_api_key)]
    pub api_key: ApiKey,

    /// eyeson API base URL.
    #[arg(long, env = "EYESON_API_URL", default_value = "https://api.eyeson.team", value_parser = parse_url, hide_env_values = true)]
    pub api_url: Url,

    /// Public address: webhooks, health, and one room's deadline (CORS).
    #[arg(
        long,
        env = "LISTEN_ADDR",
        default_value = "0.0.0.0:8042",
        hide_env_values = true
    )]
    pub listen: SocketAddr,

    /// Admin address: the meeting list, history, metrics, operator actions
    /// and the console. Anything but loopback needs --admin-token.
    #[arg(
        long,
        env = "ADMIN_LISTEN",
        default_value = "127.0.0.1:8044",
        hide_env_values = true
    )]
    pub admin_listen: SocketAddr,

    /// Bearer token every admin request must carry (never logged; at
    /// least 16 characters).
    #[arg(long, env = "ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<AdminToken>,

    /// A host name the admin listener answers to besides its own address
    /// (say the name of a reverse proxy in front of it); repeatable, or
    /// comma-separated in the variable. Requests whose Host header names
    /// anything else are refused (DNS rebinding).
    #[arg(
        long,
        env = "ADMIN_HOSTS",
        value_delimiter = ',',
        hide_env_values = true
    )]
    pub admin_host: Vec<String>,

    /// Database URL: sqlite://path (the default; the file is created if missing) or
    /// postgres://user@host/db (several replicas on one database).
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = "sqlite://hard-limit.db",
        hide_env_values = true
    )]
    pub database: String,

    /// Maximum meeting duration, unless the limits file says otherwise (90s, 30m, 2h).
    #[arg(long, env = "MAX_DURATION", default_value = "30m", value_parser = parse_duration, hide_env_values = true)]
    pub max_duration: Duration,

    /// Extra time after the limit before the shutdown call.
    #[arg(long, env = "GRACE", default_value = "0s", value_parser = parse_duration, hide_env_values = true)]
    pub grace: Duration,

    /// Optional TOML file of per-room limits: table "rooms" (exact ids),
    /// then table "prefixes" (longest match wins), else --max-duration.
    #[arg(long, env = "LIMITS_FILE", hide_env_values = true)]
    pub limits: Option<PathBuf>,

    /// Public URL eyeson should POST room_update webhooks to; registered at start if set.
    #[arg(long, env = "WEBHOOK_URL", value_parser = parse_url, hide_env_values = true)]
    pub webhook_url: Option<Url>,

    /// Forward every delivery this service acknowledges (every type), body
    /// and X-Eyeson-Signature unchanged, to this URL: the app's own webhook
    /// receiver. The service then registers itself for the app's types too.
    #[arg(long, env = "FORWARD_TO", value_parser = parse_url, hide_env_values = true)]
    pub forward_to: Option<Url>,

    /// How long a delivery to forward is retried before it is dropped.
    #[arg(long, env = "FORWARD_RETENTION", default_value = "24h", value_parser = parse_duration, hide_env_values = true)]
    pub forward_retention: Duration,

    /// Replace a webhook registered for the API key to another URL (eyeson
    /// keeps one per key: its receiver gets nothing more). Without it (or
    /// --forward-to) the service refuses to start when it finds one.
    #[arg(long, env = "WEBHOOK_REPLACE", hide_env_values = true)]
    pub webhook_replace: bool,

    /// How often to re-read GET /rooms.
    #[arg(long, env = "RECONCILE_EVERY", default_value = "60s", value_parser = parse_duration, hide_env_values = true)]
    pub reconcile_every: Duration,

    /// How often to correct the in-memory meeting counts of /metrics from
    /// a full count of the store (rows written behind the service's back,
    /// replicas' changes whose notification was lost, show then).
    #[arg(long, env = "RECOUNT_EVERY", default_value = "60s", value_parser = parse_duration, hide_env_values = true)]
    pub recount_every: Duration,

    /// Log and record what would be shut down; call nothing.
    #[arg(long, env = "DRY_RUN", hide_env_values = true)]
    pub dry_run: bool,

    /// Show the public GET /meetings/{room_id} of meetings whose deliveries
    /// carried no guest token to anyone who asks (meetings with one are
    /// only ever shown to whoever presents it). Anyone who guesses such a
    /// room's id learns whether it is live and its deadline.
    #[arg(long, env = "PUBLIC_DEADLINES", hide_env_values = true)]
    pub public_deadlines: bool,

    /// Deliveries whose signed timestamp is further than this from now are
    /// refused as replays (0s turns the check off).
    #[arg(long, env = "WEBHOOK_MAX_AGE", default_value = "10m", value_parser = parse_duration, hide_env_values = true)]
    pub webhook_max_age: Duration,

    /// How long a claimed shutdown is owned before another worker (or this
    /// one after a restart) may retry it. Keep it above 20s: attempts stop
    /// after half the lease, and one attempt may take the 10 s timeout.
    #[arg(long, env = "LEASE", default_value = "30s", value_parser = parse_duration, hide_env_values = true)]
    pub lease: Duration,

    /// A tracked meeting that GET /rooms does not list is closed as ended
    /// only once it has been tracked at least this long.
    #[arg(long, env = "CLOSE_UNLISTED_AFTER", default_value = "60s", value_parser = parse_duration, hide_env_values = true)]
    pub close_unlisted_after: Duration,

    /// A shutdown whose retries (429, 5xx, timeouts) ran out is tried again
    /// after this long, doubling per attempt up to 5 minutes.
    #[arg(long, env = "RETRY_BACKOFF", default_value = "30s", value_parser = parse_duration, hide_env_values = true)]
    pub retry_backoff: Duration,

    /// Shutdown calls in flight at once (each replica claims up to twice
    /// as many due meetings ahead, so calls do not wait on commits).
    #[arg(
        long,
        env = "SHUTDOWN_CONCURRENCY",
        default_value_t = 32,
        hide_env_values = true
    )]
    pub shutdown_concurrency: usize,

    /// How long finished meetings are kept (at least twice `webhook_max_age`,
    /// so a replayed delivery can never bring a pruned meeting back).
    #[arg(long, env = "RETENTION", default_value = "24h", value_parser = parse_duration, hide_env_values = true)]
    pub retention: Duration,

    /// A request's headers must arrive within this (counted from when the
    /// connection is ready for a request), or the connection is closed.
    #[arg(long, env = "HEADER_READ_TIMEOUT", default_value = "10s", value_parser = parse_duration, hide_env_values = true)]
    pub header_read_timeout: Duration,

    /// A webhook body must arrive whole within this (counted from the end
    /// of its headers), or the delivery is answered 408.
    #[arg(long, env = "BODY_READ_TIMEOUT", default_value = "10s", value_parser = parse_duration, hide_env_values = true)]
    pub body_read_timeout: Duration,

    /// A connection with no request in flight that moves no byte for this
    /// long is closed.
    #[arg(long, env = "KEEP_ALIVE_TIMEOUT", default_value = "15s", value_parser = parse_duration, hide_env_values = true)]
    pub keep_alive_timeout: Duration,

    /// Connections served at once; more wait to be accepted.
    #[arg(
        long,
        env = "MAX_CONNECTIONS",
        default_value_t = 1024,
        hide_env_values = true
    )]
    pub max_connections: usize,

    /// Warn the participants this long before the deadline, in the
    /// meeting's chat (joined as a guest with the room's guest token); off
    /// unless set.
    #[arg(long, env = "WARN_BEFORE", value_parser = parse_duration, hide_env_values = true)]
    pub warn_before: Option<Duration>,

    /// The name the warning's guest joins with.
    #[arg(
        long,
        env = "WARN_NAME",
        default_value = "Meeting limit",
        hide_env_values = true
    )]
    pub warn_name: String,

    /// The warning's chat message [default: "This meeting ends in <--warn-before>.",
    /// e.g. "This meeting ends in 5 minutes."].
    #[arg(long, env = "WARN_TEXT", hide_env_values = true)]
    pub warn_text: Option<String>,

    /// Test only: this background task dies at start, or `@DELAY` after it
    /// (scheduler, reconciler, ingest-writer, outcome-writer, warner,
    /// warning-writer, forwarder, forward-writer; `reconciler@3s`), to test
    /// supervision.
    #[arg(long, env = "HARD_LIMIT_INJECT_FAULT", hide = true)]
    pub inject_fault: Option<String>,

    /// Test only: a fault a test fires when it wants (see [`crate::fault`]).
    #[arg(skip)]
    pub faults: crate::fault::Faults,

    /// Where "now" comes from for every part of the service (the system
    /// clock; tests drive a [`crate::clock::ManualClock`]).
    #[arg(skip)]
    pub clock: crate::clock::SharedClock,
}

impl Config {
    /// A configuration with the defaults, for tests and embedding.
    pub fn new(api_key: ApiKey, api_url: Url, database: String) -> Self {
        Config {
            api_key,
            api_url,
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            admin_listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            admin_token: None,
            admin_host: Vec::new(),
            database,
            max_duration: Duration::from_secs(30 * 60),
            grace: Duration::ZERO,
            limits: None,
            webhook_url: None,
            forward_to: None,
            forward_retention: Duration::from_secs(24 * 3600),
            webhook_replace: false,
            reconcile_every: Duration::from_secs(60),
            recount_every: Duration::from_secs(60),
            dry_run: false,
            public_deadlines: false,
            webhook_max_age: Duration::from_secs(600),
            lease: Duration::from_secs(30),
            close_unlisted_after: Duration::from_secs(60),
            retry_backoff: Duration::from_secs(30),
            shutdown_concurrency: 32,
            retention: Duration::from_secs(24 * 3600),
            header_read_timeout: Duration::from_secs(10),
            body_read_timeout: Duration::from_secs(10),
            keep_alive_timeout: Duration::from_secs(15),
            max_connections: 1024,
            warn_before: None,
            warn_name: "Meeting limit".into(),
            warn_text: None,
            inject_fault: None,
            faults: crate::fault::Faults::default(),
            clock: crate::clock::SharedClock::default(),
        }
    }

    /// Checks what clap cannot, and reads the limits file.
    pub fn policy(&self) -> Result<Policy, ConfigError> {
        ApiKey::new(self.api_key.expose()).map_err(ConfigError::Invalid)?;
        self.durations_in_range()?;
        if self.reconcile_every.is_zero() {
            return Err(ConfigError::Invalid(
                "--reconcile-every must be more than 0s",
            ));
        }
        if self.recount_every.is_zero() {
            return Err(ConfigError::Invalid("--recount-every must be more than 0s"));
        }
        if self.lease < Duration::from_secs(1) {
            return Err(ConfigError::Invalid("--lease must be at least 1s"));
        }
        if self.retry_backoff.is_zero() {
            return Err(ConfigError::Invalid("--retry-backoff must be more than 0s"));
        }
        if self.shutdown_concurrency == 0 {
            return Err(ConfigError::Invalid(
                "--shutdown-concurrency must be at least 1",
            ));
        }
        if self.header_read_timeout.is_zero()
            || self.body_read_timeout.is_zero()
            || self.keep_alive_timeout.is_zero()
        {
            return Err(ConfigError::Invalid(
                "--header-read-timeout, --body-read-timeout and --keep-alive-timeout must be more than 0s",
            ));
        }
        match &self.admin_token {
            Some(t)
                if t.expose().is_empty() || !t.expose().bytes().all(|b| b.is_ascii_graphic()) =>
            {
                return Err(ConfigError::Invalid(
                    "--admin-token must be printable ASCII without spaces (it is sent as a header)",
                ));
            }
            Some(t) if t.expose().len() < MIN_ADMIN_TOKEN => {
                return Err(ConfigError::Invalid(
                    "--admin-token must be at least 16 characters (try: openssl rand -hex 32)",
                ));
            }
            None if !self.admin_listen.ip().is_loopback() => {
                return Err(ConfigError::Invalid(
                    "--admin-listen is not a loopback address: set --admin-token (ADMIN_TOKEN) too, or listen on 127.0.0.1",
                ));
            }
            _ => {}
        }
        if self.forward_to.is_some() && self.webhook_replace {
            return Err(ConfigError::Invalid(
                "--forward-to and --webhook-replace contradict each other: --forward-to keeps the app's webhook working by forwarding to it, --webhook-replace cuts it off; choose one",
            ));
        }
        if let (Some(to), Some(me)) = (&self.forward_to, &self.webhook_url) {
            if to == me {
                return Err(ConfigError::Invalid(
                    "--forward-to is --webhook-url: the service would forward every delivery to itself",
                ));
            }
        }
        if self.forward_to.is_some() && self.forward_retention.is_zero() {
            return Err(ConfigError::Invalid(
                "--forward-retention must be more than 0s",
            ));
        }
        if self.max_connections == 0 {
            return Err(ConfigError::Invalid("--max-connections must be at least 1"));
        }
        for host in &self.admin_host {
            if !is_host_name(host) {
                return Err(ConfigError::OutOfRange(format!(
                    "--admin-host {host:?} is not a host name (letters, digits, '-' and '.', without a port or scheme)"
                )));
            }
        }
        self.warning()?;
        if let Some(flag) = &self.inject_fault {
            if crate::fault::parse(Some(flag)).is_none() {
                return Err(ConfigError::Invalid(
                    "--inject-fault names no background task",
                ));
            }
        }
        // A pruned meeting must never come back through a replayed webhook:
        // keep rows at least twice as long as deliveries are accepted.
        if self.retention < self.webhook_max_age.saturating_mul(2) {
            return Err(ConfigError::Invalid(
                "--retention must be at least twice --webhook-max-age",
            ));
        }
        let mut limits = Limits::new(self.max_duration);
        if let Some(path) = &self.limits {
            limits = load_limits(path, limits)?;
        }
        Ok(Policy {
            limits,
            grace: self.grace,
        })
    }
}

/// The shortest `--admin-token`: 16 characters, so guessing it over HTTP
/// (slowed to a few tries a second per address) is hopeless.
pub const MIN_ADMIN_TOKEN: usize = 16;

/// Whether `s` is a DNS name or an IP address as a `Host` header carries it
/// (no port, no scheme).
fn is_host_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
}

impl Config {
    /// Every duration flag within its range ([`crate::domain::MAX_DURATION`]
    /// at most; limits at least [`crate::domain::MIN_LIMIT`]): a typo such
    /// as `500us` for a limit or `999999999h` is refused, naming the flag.
    fn durations_in_range(&self) -> Result<(), ConfigError> {
        use crate::domain::{in_range, limit_in_range, MAX_DURATION, MAX_RETENTION};
        let any = |d| in_range(d, Duration::ZERO, MAX_DURATION);
        let checks: [(&str, Duration, Result<Duration, crate::domain::OutOfRange>); 13] = [
            (
                "--max-duration",
                self.max_duration,
                limit_in_range(self.max_duration),
            ),
            ("--grace", self.grace, any(self.grace)),
            (
                "--reconcile-every",
                self.reconcile_every,
                any(self.reconcile_every),
            ),
            (
                "--recount-every",
                self.recount_every,
                any(self.recount_every),
            ),
            (
                "--webhook-max-age",
                self.webhook_max_age,
                any(self.webhook_max_age),
            ),
            ("--lease", self.lease, any(self.lease)),
            (
                "--close-unlisted-after",
                self.close_unlisted_after,
                any(self.close_unlisted_after),
            ),
            (
                "--retry-backoff",
                self.retry_backoff,
                any(self.retry_backoff),
            ),
            (
                "--retention",
                self.retention,
                in_range(self.retention, Duration::ZERO, MAX_RETENTION),
            ),
            (
                "--header-read-timeout",
                self.header_read_timeout,
                any(self.header_read_timeout),
            ),
            (
                "--body-read-timeout",
                self.body_read_timeout,
                any(self.body_read_timeout),
            ),
            (
                "--keep-alive-timeout",
                self.keep_alive_timeout,
                any(self.keep_alive_timeout),
            ),
            (
                "--warn-before",
                self.warn_before.unwrap_or(MAX_DURATION),
                self.warn_before.map_or(Ok(MAX_DURATION), limit_in_range),
            ),
        ];
        for (flag, value, checked) in checks {
            if let Err(range) = checked {
                return Err(ConfigError::OutOfRange(format!(
                    "{flag} {}: {range}",
                    humantime::format_duration(value)
                )));
            }
        }
        Ok(())
    }

    /// What the registration does with a webhook registered to another URL.
    pub fn registration_mode(&self) -> crate::registration::Mode {
        use crate::registration::Mode;
        if self.webhook_replace {
            Mode::Replace
        } else if self.forward_to.is_some() {
            Mode::Forward
        } else {
            Mode::Refuse
        }
    }

    /// The in-meeting warning, if `--warn-before` is set; its text defaults
    /// to "This meeting ends in <warn-before>." so it stays true when only
    /// `--warn-before` is changed.
    pub fn warning(&self) -> Result<Option<crate::warner::Warning>, ConfigError> {
        let Some(before) = self.warn_before else {
            return Ok(None);
        };
        if before.is_zero() {
            return Err(ConfigError::Invalid(
                "--warn-before must be more than 0s (leave it unset for no warning)",
            ));
        }
        let name = self.warn_name.trim();
        if name.is_empty() || name.chars().any(char::is_control) {
            return Err(ConfigError::Invalid(
                "--warn-name must not be empty or have control characters",
            ));
        }
        let text = match &self.warn_text {
            Some(t) => t.trim().to_owned(),
            None => format!("This meeting ends in {}.", in_words(before)),
        };
        if text.is_empty() {
            return Err(ConfigError::Invalid("--warn-text must not be empty"));
        }
        if text.chars().count() > MAX_WARN_TEXT {
            return Err(ConfigError::Invalid(
                "--warn-text is longer than 1000 characters",
            ));
        }
        Ok(Some(crate::warner::Warning {
            before,
            name: name.to_owned(),
            text,
        }))
    }
}

/// Longest `--warn-text`, in characters (a chat line, not a letter).
const MAX_WARN_TEXT: usize = 1000;

/// A duration for people: "5 minutes", "1 hour and 30 minutes", "45 seconds".
pub fn in_words(d: Duration) -> String {
    let secs = d.as_secs().max(1);
    let parts: Vec<String> = [
        (secs / 3600, "hour"),
        (secs / 60 % 60, "minute"),
        (secs % 60, "second"),
    ]
    .into_iter()
    .filter(|(n, _)| *n > 0)
    .map(|(n, unit)| format!("{n} {unit}{}", if n == 1 { "" } else { "s" }))
    .collect();
    match parts.as_slice() {
        [] => "1 second".into(),
        [one] => one.clone(),
        [init @ .., last] => format!("{} and {last}", init.join(", ")),
    }
}

/// A configuration problem, reported before anything starts.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A flag value that clap accepted but the service cannot use.
    #[error("{0}")]
    Invalid(&'static str),
    /// A value outside its range, naming the flag, the value and the range.
    #[error("{0}")]
    OutOfRange(String),
    /// The limits file could not be read.
    #[error("cannot read limits file {path}: {source}")]
    ReadLimits {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The limits file is not valid.
    #[error("limits file {path}: {message}")]
    BadLimits {
        /// The file.
        path: PathBuf,
        /// What is wrong, naming the entry.
        message: String,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LimitsFile {
    #[serde(default)]
    rooms: BTreeMap<String, String>,
    #[serde(default)]
    prefixes: BTreeMap<String, String>,
}

/// Reads a limits file:
///
/// ```toml
/// [rooms]            # exact room ids
/// "board-room" = "2h"
/// [prefixes]         # longest matching prefix wins
/// "webinar-" = "3h"
/// ```
pub fn load_limits(path: &Path, base: Limits) -> Result<Limits, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::ReadLimits {
        path: path.to_owned(),
        source,
    })?;
    parse_limits(&text, base).map_err(|message| ConfigError::BadLimits {
        path: path.to_owned(),
        message,
    })
}

/// Parses the text of a limits file (see [`load_limits`]).
pub fn parse_limits(text: &str, base: Limits) -> Result<Limits, String> {
    let (exact, prefixes) = parse_limit_rules(text)?;
    Ok(base.with_rules(exact, prefixes))
}

/// The rules of a limits file: (exact room ids, prefixes).
pub type LimitFileRules = (Vec<(String, Duration)>, Vec<(String, Duration)>);

/// Reads the rules of the `--limits` file (none without one), to seed the
/// store's limits at start.
pub fn load_limit_rules(path: Option<&Path>) -> Result<LimitFileRules, ConfigError> {
    let Some(path) = path else {
        return Ok((Vec::new(), Vec::new()));
    };
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::ReadLimits {
        path: path.to_owned(),
        source,
    })?;
    parse_limit_rules(&text).map_err(|message| ConfigError::BadLimits {
        path: path.to_owned(),
        message,
    })
}

fn parse_limit_rules(text: &str) -> Result<LimitFileRules, String> {
    let file: LimitsFile = toml::from_str(text).map_err(|e| e.to_string())?;
    let convert = |table: &str, map: BTreeMap<String, String>| {
        map.into_iter()
            .map(|(k, v)| {
                if k.is_empty() {
                    return Err(format!("[{table}] has an empty key"));
                }
                let d = humantime::parse_duration(&v)
                    .map_err(|e| format!("[{table}] {k:?} = {v:?}: {e}"))?;
                crate::domain::limit_in_range(d)
                    .map_err(|range| format!("[{table}] {k:?} = {v:?}: a limit {range}"))?;
                Ok((k, d))
            })
            .collect::<Result<Vec<_>, String>>()
    };
    let exact = convert("rooms", file.rooms)?;
    let prefixes = convert("prefixes", file.prefixes)?;
    Ok((exact, prefixes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::RoomId;
    use clap::CommandFactory;

    #[test]
    fn api_key_is_redacted() {
        let k: ApiKey = "s3cr3t-key".parse().unwrap();
        assert_eq!(format!("{k:?}"), "ApiKey(<redacted>)");
        let cfg = Config::new(k, Url::parse("http://x").unwrap(), "sqlite::memory:".into());
        assert!(!format!("{cfg:?}").contains("s3cr3t"));
    }

    #[test]
    fn the_warning_text_follows_warn_before_unless_given() {
        let mut cfg = Config::new(
            "k".parse().unwrap(),
            Url::parse("http://x").unwrap(),
            "sqlite::memory:".into(),
        );
        assert_eq!(cfg.warning().unwrap(), None);
        cfg.warn_before = Some(Duration::from_secs(300));
        let w = cfg.warning().unwrap().unwrap();
        assert_eq!(w.text, "This meeting ends in 5 minutes.");
        assert_eq!(w.name, "Meeting limit");
        cfg.warn_before = Some(Duration::from_secs(5400));
        assert_eq!(
            cfg.warning().unwrap().unwrap().text,
            "This meeting ends in 1 hour and 30 minutes."
        );
        assert_eq!(
            in_words(Duration::from_secs(3661)),
            "1 hour, 1 minute and 1 second"
        );
        cfg.warn_text = Some("Bye soon".into());
        assert_eq!(cfg.warning().unwrap().unwrap().text, "Bye soon");
        cfg.warn_text = Some("  ".into());
        let e = cfg.warning().unwrap_err().to_string();
        assert!(e.contains("--warn-text"), "{e}");
        cfg.warn_text = None;
        cfg.warn_before = Some(Duration::ZERO);
        assert!(cfg
            .warning()
            .unwrap_err()
            .to_string()
            .contains("--warn-before"));
    }

    #[test]
    fn retention_must_outlast_the_replay_window() {
        let key: ApiKey = "k".parse().unwrap();
        let mut cfg = Config::new(
            key,
            Url::parse("http://x").unwrap(),
            "sqlite::memory:".into(),
        );
        cfg.webhook_max_age = Duration::from_secs(30);
        cfg.retention = Duration::from_secs(59);
        let Err(err) = cfg.policy() else {
            panic!("59 s < 2 × 30 s was accepted")
        };
        assert!(err
            .to_string()
            .contains("--retention must be at least twice --webhook-max-age"));
        cfg.retention = Duration::from_secs(60);
        assert!(cfg.policy().is_ok());
    }

    #[test]
    fn admin_token_is_redacted_and_required_off_loopback() {
        let key: ApiKey = "k".parse().unwrap();
        let mut cfg = Config::new(
            key,
            Url::parse("http://x").unwrap(),
            "sqlite::memory:".into(),
        );
        cfg.admin_listen = "0.0.0.0:8044".parse().unwrap();
        let err = cfg.policy().unwrap_err().to_string();
        assert!(
            err.contains("--admin-listen") && err.contains("--admin-token"),
            "{err}"
        );
        cfg.admin_token = Some("t0ken-s3cret-long-enough".parse().unwrap());
        assert!(cfg.policy().is_ok());
        assert!(!format!("{cfg:?}").contains("t0ken-s3cret-long-enough"));
        cfg.admin_token = Some("has space".parse().unwrap());
        let err = cfg.policy().unwrap_err().to_string();
        assert!(
            err.contains("--admin-token") && !err.contains("has space"),
            "{err}"
        );
        cfg.admin_token = Some("fifteen-chars-Z".parse().unwrap());
        let err = cfg.policy().unwrap_err().to_string();
        assert!(
            err.contains("at least 16") && !err.contains("fifteen-chars-Z"),
            "{err}"
        );
        cfg.admin_token = None;
        cfg.admin_listen = "[::1]:0".parse().unwrap();
        assert!(cfg.policy().is_ok(), "loopback needs no token");
    }

    #[test]
    fn help_hides_the_admin_token() {
        let cli = Cli::try_parse_from([
            "eyeson-hard-limit",
            "--api-key",
            "k",
            "--admin-token",
            "t0ken-s3cret-long-enough",
        ])
        .unwrap();
        assert!(!format!("{cli:?}").contains("t0ken-s3cret-long-enough"));
        let help = Cli::command().render_long_help().to_string();
        assert!(help.contains("--admin-token") && help.contains("ADMIN_TOKEN"));
    }

    #[test]
    fn forward_to_and_webhook_replace_are_not_taken_together() {
        use crate::registration::Mode;
        let mut cfg = Config::new(
            "k".parse().unwrap(),
            Url::parse("http://x").unwrap(),
            "sqlite::memory:".into(),
        );
        assert_eq!(cfg.registration_mode(), Mode::Refuse);
        cfg.webhook_replace = true;
        assert_eq!(cfg.registration_mode(), Mode::Replace);
        cfg.forward_to = Some(Url::parse("https://app.example.com/hook").unwrap());
        let err = cfg.policy().unwrap_err().to_string();
        assert!(
            err.contains("--forward-to") && err.contains("--webhook-replace"),
            "{err}"
        );
        cfg.webhook_replace = false;
        assert_eq!(cfg.registration_mode(), Mode::Forward);
        assert!(cfg.policy().is_ok());
        // Forwarding to itself would loop.
        cfg.webhook_url = cfg.forward_to.clone();
        assert!(cfg.policy().unwrap_err().to_string().contains("itself"));
        cfg.webhook_url = None;
        cfg.forward_retention = Duration::ZERO;
        assert!(cfg
            .policy()
            .unwrap_err()
            .to_string()
            .contains("--forward-retention"));
        // The flags and their variables parse.
        let cli = Cli::try_parse_from([
            "eyeson-hard-limit",
            "--api-key",
            "k",
            "--forward-to",
            "https://app.example.com/hook",
            "--forward-retention",
            "2h",
        ])
        .unwrap();
        assert_eq!(cli.config.forward_retention, Duration::from_secs(7200));
        let help = Cli::command().render_long_help().to_string();
        for v in ["FORWARD_TO", "FORWARD_RETENTION", "WEBHOOK_REPLACE"] {
            assert!(help.contains(v), "{v}");
        }
    }

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn help_hides_the_api_key_env_value() {
        let help = Cli::command().render_long_help().to_string();
        assert!(help.contains("EYESON_API_KEY"));
        assert!(help.contains("--max-duration"));
    }

    #[test]
    fn limits_file_parses_and_names_bad_entries() {
        let l = parse_limits(
            "[rooms]\n\"board\" = \"2h\"\n[prefixes]\n\"web\" = \"10m\"\n",
            Limits::new(Duration::from_secs(60)),
        )
        .unwrap();
        assert_eq!(
            l.for_room(&RoomId::parse("board").unwrap()),
            Duration::from_secs(7200)
        );
        assert_eq!(
            l.for_room(&RoomId::parse("webby").unwrap()),
            Duration::from_secs(600)
        );
        let err = parse_limits(
            "[rooms]\nx = \"soon\"\n",
            Limits::new(Duration::from_secs(1)),
        )
        .unwrap_err();
        assert!(err.contains("\"x\""), "{err}");
        assert!(parse_limits("[other]\n", Limits::new(Duration::from_secs(1))).is_err());
    }
}
