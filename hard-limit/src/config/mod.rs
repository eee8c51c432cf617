//! The raw [`Flags`] (clap) are checked once into a [`Config`] of sections
//! holding only valid values; an error names the flag or the file's entry
//! (and the range). Test hooks are not configuration: see
//! [`crate::app::Application::build_with`].

mod flags;
pub mod limits_file;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use reqwest::Url;

pub use flags::Flags;
pub use limits_file::LimitRules;

use crate::alone::IgnorePattern;
use crate::domain::{in_range, MAX_DURATION, MAX_RETENTION, MIN_LIMIT};
use crate::registration::Mode;
use crate::secrets::{AdminToken, ApiKey};
use crate::serve::ConnLimits;
use crate::warner::Warning;

/// The checked configuration of the service, by concern.
#[derive(Clone, Debug)]
pub struct Config {
    /// Where eyeson is and the key to it.
    pub eyeson: Eyeson,
    /// The two listeners.
    pub listen: Listen,
    /// How deliveries are accepted.
    pub webhooks: Webhooks,
    /// The database.
    pub database: Database,
    /// Limits and how they are enforced.
    pub enforcement: Enforcement,
    /// The in-meeting warning (`--warn-before`), if on.
    pub warning: Option<Warning>,
    /// Forwarding to the app (`--forward-to`), if on.
    pub forwarding: Option<Forwarding>,
    /// The webhook registration.
    pub registration: Registration,
    /// The alone rule's participants checks.
    pub presence: Presence,
    /// Test only: the task `--inject-fault` kills, and after how long.
    pub inject_fault: Option<(&'static str, Duration)>,
}

/// The eyeson API.
#[derive(Clone, Debug)]
pub struct Eyeson {
    /// `--api-url`.
    pub api_url: Url,
    /// `--api-key`, checked.
    pub api_key: ApiKey,
}

/// The public and the admin listener.
#[derive(Clone, Debug)]
pub struct Listen {
    /// `--listen`.
    pub public: SocketAddr,
    /// `--admin-listen`.
    pub admin: SocketAddr,
    /// `--admin-token`, checked; required off loopback.
    pub admin_token: Option<AdminToken>,
    /// `--admin-host`, each a host name.
    pub admin_hosts: Vec<String>,
    /// `--public-deadlines`.
    pub public_deadlines: bool,
    /// Timeouts and the connection cap of both listeners.
    pub conn: ConnLimits,
}

/// How deliveries are accepted.
#[derive(Clone, Copy, Debug)]
pub struct Webhooks {
    /// `--webhook-max-age` (zero: no replay check).
    pub max_age: Duration,
    /// `--body-read-timeout`.
    pub body_read_timeout: Duration,
}

/// The database.
#[derive(Clone, Debug)]
pub struct Database {
    /// `--database`.
    pub url: String,
    /// `--retention`: at least twice `--webhook-max-age`.
    pub retention: Duration,
}

/// Limits and their enforcement.
#[derive(Clone, Debug)]
pub struct Enforcement {
    /// `--max-duration`: the limit of rooms without a rule.
    pub max_duration: Duration,
    /// `--grace`.
    pub grace: Duration,
    /// `--alone-after`: the alone rule of rooms without a rule (`None`: off).
    pub alone_after: Option<Duration>,
    /// The `--limits` file's rules (none without one).
    pub limit_rules: LimitRules,
    /// `--lease`.
    pub lease: Duration,
    /// `--retry-backoff`.
    pub retry_backoff: Duration,
    /// `--shutdown-concurrency`.
    pub concurrency: usize,
    /// `--dry-run`.
    pub dry_run: bool,
    /// `--reconcile-every`.
    pub reconcile_every: Duration,
    /// `--close-unlisted-after`.
    pub close_unlisted_after: Duration,
    /// `--recount-every`.
    pub recount_every: Duration,
}

/// Forwarding every acknowledged delivery to the app.
#[derive(Clone, Debug)]
pub struct Forwarding {
    /// `--forward-to`: not `--webhook-url`.
    pub to: Url,
    /// `--forward-retention`.
    pub retention: Duration,
}

/// The alone rule's participants checks.
#[derive(Clone, Debug)]
pub struct Presence {
    /// `--presence-every`.
    pub every: Duration,
    /// `--presence-rate`: checks per second, at least 1.
    pub rate: u32,
    /// `--alone-ignore`.
    pub ignore: Vec<IgnorePattern>,
    /// `--warn-name`: the service's own guest, never counted.
    pub own_guest: String,
}

/// The webhook registration.
#[derive(Clone, Debug)]
pub struct Registration {
    /// `--webhook-url`: registered at start if set.
    pub webhook_url: Option<Url>,
    /// What to do with another URL's webhook.
    pub mode: Mode,
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

fn invalid<T>(message: &'static str) -> Result<T, ConfigError> {
    Err(ConfigError::Invalid(message))
}

impl TryFrom<Flags> for Config {
    type Error = ConfigError;

    /// Checks what clap cannot, and reads the limits file last.
    fn try_from(f: Flags) -> Result<Self, ConfigError> {
        let eyeson = Eyeson::try_from(&f)?;
        durations_in_range(&f)?;
        if f.reconcile_every.is_zero() {
            return invalid("--reconcile-every must be more than 0s");
        }
        if f.recount_every.is_zero() {
            return invalid("--recount-every must be more than 0s");
        }
        if f.lease < Duration::from_secs(1) {
            return invalid("--lease must be at least 1s");
        }
        if f.retry_backoff.is_zero() {
            return invalid("--retry-backoff must be more than 0s");
        }
        if f.shutdown_concurrency == 0 {
            return invalid("--shutdown-concurrency must be at least 1");
        }
        let listen = listen(&f)?;
        let forwarding = forwarding(&f)?;
        let presence = presence(&f)?;
        let warning = f.warn_before.map(|before| {
            let (text, alone) = (f.warn_text.as_deref(), f.alone_warn_text.as_deref());
            Warning::new(before, &f.warn_name, text, alone)
        });
        let warning = warning.transpose().map_err(ConfigError::Invalid)?;
        let inject_fault = match f.inject_fault.as_deref().map(crate::fault::parse) {
            Some(None) => return invalid("--inject-fault names no background task"),
            fault => fault.flatten(),
        };
        // A pruned meeting must never come back through a replayed webhook.
        if f.retention < f.webhook_max_age.saturating_mul(2) {
            return invalid("--retention must be at least twice --webhook-max-age");
        }
        let limit_rules = f.limits.as_deref().map(limits_file::load).transpose()?;
        Ok(Config {
            eyeson,
            listen,
            webhooks: Webhooks {
                max_age: f.webhook_max_age,
                body_read_timeout: f.body_read_timeout,
            },
            enforcement: Enforcement {
                max_duration: f.max_duration,
                grace: f.grace,
                alone_after: f.alone_after,
                limit_rules: limit_rules.unwrap_or_default(),
                lease: f.lease,
                retry_backoff: f.retry_backoff,
                concurrency: f.shutdown_concurrency,
                dry_run: f.dry_run,
                reconcile_every: f.reconcile_every,
                close_unlisted_after: f.close_unlisted_after,
                recount_every: f.recount_every,
            },
            warning,
            forwarding,
            registration: Registration {
                mode: match (f.webhook_replace, f.forward_to.is_some()) {
                    (true, _) => Mode::Replace,
                    (false, true) => Mode::Forward,
                    (false, false) => Mode::Refuse,
                },
                webhook_url: f.webhook_url,
            },
            database: Database {
                url: f.database,
                retention: f.retention,
            },
            presence,
            inject_fault,
        })
    }
}

impl TryFrom<&Flags> for Eyeson {
    type Error = ConfigError;
    fn try_from(f: &Flags) -> Result<Self, ConfigError> {
        Ok(Eyeson {
            api_url: f.api_url.clone(),
            api_key: f.api_key.clone().checked().map_err(ConfigError::Invalid)?,
        })
    }
}

fn listen(f: &Flags) -> Result<Listen, ConfigError> {
    let timeouts = [
        f.header_read_timeout,
        f.body_read_timeout,
        f.keep_alive_timeout,
    ];
    if timeouts.iter().any(Duration::is_zero) {
        return invalid("--header-read-timeout, --body-read-timeout and --keep-alive-timeout must be more than 0s");
    }
    let admin_token = f.admin_token.clone().map(AdminToken::checked).transpose();
    let admin_token = admin_token.map_err(ConfigError::Invalid)?;
    if admin_token.is_none() && !f.admin_listen.ip().is_loopback() {
        return invalid("--admin-listen is not a loopback address: set --admin-token (ADMIN_TOKEN) too, or listen on 127.0.0.1");
    }
    if f.max_connections == 0 {
        return invalid("--max-connections must be at least 1");
    }
    if let Some(host) = f.admin_host.iter().find(|h| !is_host_name(h)) {
        return Err(ConfigError::OutOfRange(format!(
            "--admin-host {host:?} is not a host name (letters, digits, '-' and '.', without a port or scheme)"
        )));
    }
    Ok(Listen {
        public: f.listen,
        admin: f.admin_listen,
        admin_token,
        admin_hosts: f.admin_host.clone(),
        public_deadlines: f.public_deadlines,
        conn: ConnLimits {
            header_read_timeout: f.header_read_timeout,
            keep_alive_timeout: f.keep_alive_timeout,
            max_connections: f.max_connections,
        },
    })
}

fn forwarding(f: &Flags) -> Result<Option<Forwarding>, ConfigError> {
    let Some(to) = &f.forward_to else {
        return Ok(None);
    };
    if f.webhook_replace {
        return invalid("--forward-to and --webhook-replace contradict each other: --forward-to keeps the app's webhook working by forwarding to it, --webhook-replace cuts it off; choose one");
    }
    if f.webhook_url.as_ref() == Some(to) {
        return invalid(
            "--forward-to is --webhook-url: the service would forward every delivery to itself",
        );
    }
    if f.forward_retention.is_zero() {
        return invalid("--forward-retention must be more than 0s");
    }
    Ok(Some(Forwarding {
        to: to.clone(),
        retention: f.forward_retention,
    }))
}

fn presence(f: &Flags) -> Result<Presence, ConfigError> {
    if f.presence_rate == 0 {
        return invalid("--presence-rate must be at least 1");
    }
    if f.presence_every < Duration::from_secs(1) {
        return invalid("--presence-every must be at least 1s");
    }
    let Ok(ignore) = f.alone_ignore.iter().map(|p| p.parse()).collect() else {
        return invalid("each --alone-ignore pattern must be non-empty and at most 200 characters");
    };
    Ok(Presence {
        every: f.presence_every,
        rate: f.presence_rate,
        ignore,
        own_guest: f.warn_name.trim().to_owned(),
    })
}

/// Whether `s` is a DNS name or an IP address as a `Host` header carries
/// it (no port, no scheme).
fn is_host_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
}

/// Every duration flag within its range ([`MAX_DURATION`] at most, limits
/// at least [`MIN_LIMIT`]): a typo such as `500us` for a limit or
/// `999999999h` is refused, naming the flag.
fn durations_in_range(f: &Flags) -> Result<(), ConfigError> {
    let any = (Duration::ZERO, MAX_DURATION);
    let limit = (MIN_LIMIT, MAX_DURATION);
    let history = (Duration::ZERO, MAX_RETENTION);
    let checks = [
        ("--max-duration", Some(f.max_duration), limit),
        ("--grace", Some(f.grace), any),
        ("--reconcile-every", Some(f.reconcile_every), any),
        ("--recount-every", Some(f.recount_every), any),
        ("--webhook-max-age", Some(f.webhook_max_age), any),
        ("--lease", Some(f.lease), any),
        ("--close-unlisted-after", Some(f.close_unlisted_after), any),
        ("--retry-backoff", Some(f.retry_backoff), any),
        ("--retention", Some(f.retention), history),
        ("--header-read-timeout", Some(f.header_read_timeout), any),
        ("--body-read-timeout", Some(f.body_read_timeout), any),
        ("--keep-alive-timeout", Some(f.keep_alive_timeout), any),
        ("--warn-before", f.warn_before, limit),
        ("--alone-after", f.alone_after, limit),
        ("--forward-retention", Some(f.forward_retention), any),
        ("--presence-every", Some(f.presence_every), any),
    ];
    for (flag, value, (min, max)) in checks {
        if let Some(d) = value {
            in_range(d, min, max).map_err(|range| {
                let d = humantime::format_duration(d);
                ConfigError::OutOfRange(format!("{flag} {d}: {range}"))
            })?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::Cli;
    use clap::{CommandFactory, Parser};

    fn flags() -> Flags {
        let url = Url::parse("http://x").unwrap();
        Flags::new("k".parse().unwrap(), url, "sqlite::memory:".into())
    }

    fn check(f: &Flags) -> Result<Config, ConfigError> {
        Config::try_from(f.clone())
    }

    /// The error refusing `f`, which names every one of `needles`.
    fn refused(f: &Flags, needles: &[&str]) -> String {
        let err = check(f).unwrap_err().to_string();
        for n in needles {
            assert!(err.contains(n), "{err} lacks {n}");
        }
        err
    }

    /// The command line with the key and `args`.
    fn parse(args: &[&str]) -> Cli {
        let key = ["eyeson-hard-limit", "--api-key", "k"];
        Cli::try_parse_from(key.iter().chain(args)).unwrap()
    }

    #[test]
    fn new_has_the_defaults_of_the_command_line() {
        let (parsed, new) = (parse(&[]).flags, flags());
        // Everything but the two listeners (port 0 on loopback) and what
        // `new` is given.
        let parsed = Flags {
            listen: new.listen,
            admin_listen: new.admin_listen,
            api_url: new.api_url.clone(),
            database: new.database.clone(),
            ..parsed
        };
        assert_eq!(format!("{parsed:?}"), format!("{new:?}"));
    }

    #[test]
    fn api_key_is_redacted() {
        let mut f = flags();
        f.api_key = "s3cr3t-key".parse().unwrap();
        assert!(!format!("{f:?}").contains("s3cr3t"));
        assert!(!format!("{:?}", check(&f).unwrap()).contains("s3cr3t"));
    }

    #[test]
    fn the_warning_text_follows_warn_before_unless_given() {
        let mut f = flags();
        assert_eq!(check(&f).unwrap().warning, None);
        f.warn_before = Some(Duration::from_secs(300));
        let w = check(&f).unwrap().warning.unwrap();
        assert_eq!(w.text, "This meeting ends in 5 minutes.");
        assert_eq!(w.name, "Meeting limit");
        f.warn_text = Some("  ".into());
        refused(&f, &["--warn-text"]);
        f.warn_text = None;
        f.warn_before = Some(Duration::ZERO);
        refused(&f, &["--warn-before"]);
    }

    #[test]
    fn retention_must_outlast_the_replay_window() {
        let mut f = flags();
        f.webhook_max_age = Duration::from_secs(30);
        f.retention = Duration::from_secs(59);
        refused(
            &f,
            &["--retention must be at least twice --webhook-max-age"],
        );
        f.retention = Duration::from_secs(60);
        assert!(check(&f).is_ok());
    }

    #[test]
    fn admin_token_is_redacted_and_required_off_loopback() {
        const TOKEN: &str = "t0ken-s3cret-long-enough";
        let mut f = flags();
        f.admin_listen = "0.0.0.0:8044".parse().unwrap();
        refused(&f, &["--admin-listen", "--admin-token"]);
        f.admin_token = Some(TOKEN.parse().unwrap());
        assert!(!format!("{:?}", check(&f).unwrap()).contains(TOKEN));
        assert!(!format!("{f:?}").contains(TOKEN));
        for (bad, says) in [
            ("has space", "--admin-token"),
            ("fifteen-chars-Z", "at least 16"),
        ] {
            f.admin_token = Some(bad.parse().unwrap());
            let err = refused(&f, &[says]);
            assert!(!err.contains(bad), "{err}");
        }
        f.admin_token = None;
        f.admin_listen = "[::1]:0".parse().unwrap();
        assert!(check(&f).is_ok(), "loopback needs no token");
        assert!(!format!("{:?}", parse(&["--admin-token", TOKEN])).contains(TOKEN));
    }

    #[test]
    fn forward_to_and_webhook_replace_are_not_taken_together() {
        let mut f = flags();
        let mode = |f: &Flags| check(f).unwrap().registration.mode;
        assert_eq!(mode(&f), Mode::Refuse);
        f.webhook_replace = true;
        assert_eq!(mode(&f), Mode::Replace);
        f.forward_to = Some(Url::parse("https://app.example.com/hook").unwrap());
        refused(&f, &["--forward-to", "--webhook-replace"]);
        f.webhook_replace = false;
        assert_eq!(mode(&f), Mode::Forward);
        // Forwarding to itself would loop.
        f.webhook_url = f.forward_to.clone();
        refused(&f, &["itself"]);
        f.webhook_url = None;
        f.forward_retention = Duration::ZERO;
        refused(&f, &["--forward-retention"]);
        // The flags and their variables parse.
        let to = "https://app.example.com/hook";
        let cli = parse(&["--forward-to", to, "--forward-retention", "2h"]);
        assert_eq!(cli.flags.forward_retention, Duration::from_secs(7200));
    }

    #[test]
    fn an_injected_fault_must_name_a_task() {
        let mut f = flags();
        f.inject_fault = Some("reconciler@3s".into());
        let fault = check(&f).unwrap().inject_fault;
        assert_eq!(fault, Some(("reconciler", Duration::from_secs(3))));
        f.inject_fault = Some("nobody".into());
        refused(&f, &["--inject-fault"]);
    }

    #[test]
    fn the_limits_file_is_read_into_the_config() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("limits.toml");
        std::fs::write(&file, "[rooms]\n\"board\" = \"2h\"\n").unwrap();
        let mut f = flags();
        f.limits = Some(file.clone());
        let rules = check(&f).unwrap().enforcement.limit_rules;
        let two_hours = crate::domain::Rule::limit(Duration::from_secs(7200));
        assert_eq!(rules.rooms, [("board".to_owned(), two_hours)]);
        std::fs::write(&file, "[rooms]\nx = \"soon\"\n").unwrap();
        refused(&f, &["limits.toml", "\"x\""]);
        f.limits = Some(dir.path().join("missing.toml"));
        refused(&f, &["cannot read limits file"]);
    }

    #[test]
    fn alone_after_is_off_unless_set_and_checked_like_a_limit() {
        let mut f = flags();
        assert_eq!(check(&f).unwrap().enforcement.alone_after, None);
        let half_hour = Some(Duration::from_secs(1800));
        f.alone_after = half_hour;
        assert_eq!(check(&f).unwrap().enforcement.alone_after, half_hour);
        for bad in [Duration::ZERO, Duration::from_millis(500), MAX_DURATION * 2] {
            f.alone_after = Some(bad);
            refused(&f, &["--alone-after"]);
        }
        let cli = parse(&["--alone-after", "20m"]);
        assert_eq!(cli.flags.alone_after, Some(Duration::from_secs(1200)));
    }

    #[test]
    fn every_interval_flag_has_the_30_day_ceiling() {
        let mut f = flags();
        f.forward_retention = MAX_DURATION * 2;
        refused(&f, &["--forward-retention"]);
        let mut f = flags();
        f.presence_every = MAX_DURATION * 2;
        refused(&f, &["--presence-every"]);
    }

    #[test]
    fn the_cli_is_consistent_and_help_names_flags_and_variables() {
        Cli::command().debug_assert();
        let help = Cli::command().render_long_help().to_string();
        let wanted = "--admin-token ADMIN_TOKEN --alone-after ALONE_AFTER --max-duration \
                      EYESON_API_KEY FORWARD_TO FORWARD_RETENTION WEBHOOK_REPLACE";
        for v in wanted.split_whitespace() {
            assert!(help.contains(v), "{v}");
        }
    }
}
