//! What the admin listener checks before any handler runs (Jupyter's and
//! Grafana's checks are the model):
//!
//! - **Host**: its own address, `localhost` on loopback, or an
//!   `--admin-host` name; a DNS-rebinding page sends its own name.
//! - **Origin**: no browser request from another origin (`Origin`,
//!   `Sec-Fetch-Site`), so no page acts with the operator's browser.
//! - **Content type**: changes must be `application/json`, which no
//!   cross-site form or `no-cors` fetch can send without a preflight.
//! - **Failed authentications**: slowed down per address, and logged (as
//!   refusals are) at most once a minute with a count.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::http::{header, HeaderMap, Method};

/// Why a request was refused before any handler ran.
#[derive(Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The `Host` header names something else than this listener.
    Host(String),
    /// A browser sent it from another origin.
    Origin(String),
    /// A request that changes something without `application/json`.
    ContentType,
}

impl Refusal {
    /// The metric's `reason` label.
    pub fn reason(&self) -> &'static str {
        match self {
            Refusal::Host(_) => "host",
            Refusal::Origin(_) => "origin",
            Refusal::ContentType => "content_type",
        }
    }

    /// The error message for the client (it repeats only its own headers).
    pub fn message(&self) -> String {
        match self {
            Refusal::Host(h) => format!(
                "Host {h:?} is not this admin listener's address; if it is a name of yours (a proxy in front of it), add it with --admin-host"
            ),
            Refusal::Origin(o) => format!(
                "requests from another origin ({o}) are refused: open the console from this listener's own address"
            ),
            Refusal::ContentType => {
                "Content-Type: application/json is required for requests that change something"
                    .to_owned()
            }
        }
    }
}

/// A `Host` header's host (`name`, `1.2.3.4`, `[::1]`, optional `:port`).
fn host_part(host: &str) -> Option<String> {
    let name = if let Some(rest) = host.strip_prefix('[') {
        let (ip, after) = rest.split_once(']')?;
        if !(after.is_empty() || after.strip_prefix(':').is_some_and(is_port)) {
            return None;
        }
        ip
    } else {
        match host.rsplit_once(':') {
            Some((name, port)) if is_port(port) => name,
            Some(_) => return None,
            None => host,
        }
    };
    let name = name.strip_suffix('.').unwrap_or(name);
    (!name.is_empty()).then(|| name.to_ascii_lowercase())
}

fn is_port(s: &str) -> bool {
    !s.is_empty() && s.len() <= 5 && s.bytes().all(|b| b.is_ascii_digit())
}

/// Whether a `Host` header names the listener at `listen`: its IP (any IP
/// on all addresses), `localhost` on loopback, or one of `names`.
fn host_allowed(host: &str, listen: SocketAddr, names: &[String]) -> bool {
    let Some(name) = host_part(host) else {
        return false;
    };
    if let Ok(ip) = name.parse::<IpAddr>() {
        let own = listen.ip();
        return own.is_unspecified() || ip == own || (own.is_loopback() && ip.is_loopback());
    }
    if name == "localhost" && (listen.ip().is_loopback() || listen.ip().is_unspecified()) {
        return true;
    }
    names.iter().any(|n| {
        let n = n.strip_suffix('.').unwrap_or(n);
        n.eq_ignore_ascii_case(&name)
    })
}

/// Whether `Origin` is `http://` or `https://` and exactly the request's `Host`.
fn origin_allowed(origin: &str, host: &str) -> bool {
    let authority = origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"));
    authority.is_some_and(|a| a.eq_ignore_ascii_case(host))
}

/// The checks every admin request passes before its handler.
pub fn check(
    method: &Method,
    headers: &HeaderMap,
    listen: SocketAddr,
    names: &[String],
) -> Result<(), Refusal> {
    let text = |name| {
        headers
            .get(name)
            .map(|v| String::from_utf8_lossy(v.as_bytes()))
    };
    let host = text(header::HOST).unwrap_or_default();
    if !host_allowed(&host, listen, names) {
        return Err(Refusal::Host(host.chars().take(100).collect()));
    }
    if let Some(origin) = text(header::ORIGIN) {
        if !origin_allowed(&origin, &host) {
            return Err(Refusal::Origin(origin.chars().take(100).collect()));
        }
    }
    // Set by every current browser, and not by scripts' own choice.
    if let Some(site) = text(header::HeaderName::from_static("sec-fetch-site")) {
        if site != "same-origin" && site != "none" {
            return Err(Refusal::Origin(format!("Sec-Fetch-Site: {site}")));
        }
    }
    let json = text(header::CONTENT_TYPE).is_some_and(|t| {
        let essence = t.split(';').next().unwrap_or_default().trim();
        essence.eq_ignore_ascii_case("application/json")
    });
    let safe = matches!(*method, Method::GET | Method::HEAD);
    (safe || json).then_some(()).ok_or(Refusal::ContentType)
}

/// Failed authentications allowed from one address at once, then per second.
const BURST: f64 = 5.0;
const PER_SECOND: f64 = 2.0;
/// How often one address's failures (or the refusals) are logged at most.
const LOG_EVERY: Duration = Duration::from_secs(60);
/// Addresses remembered at most (idle ones are forgotten first).
const MAX_ADDRESSES: usize = 4096;

/// Events counted between log lines: the first at once, then at most one
/// line per `LOG_EVERY` with the count since the last.
#[derive(Debug, Default)]
pub struct LogCount {
    unlogged: u64,
    logged: Option<Instant>,
}

/// Requests refused by [`check`], counted for the log.
pub type RefusalLog = Mutex<LogCount>;

impl LogCount {
    /// Counts one event; `Some(count)` when it is time to log.
    pub fn count(&mut self, now: Instant) -> Option<u64> {
        self.unlogged += 1;
        let due = (self.logged).is_none_or(|t| now.saturating_duration_since(t) >= LOG_EVERY);
        due.then(|| {
            self.logged = Some(now);
            std::mem::take(&mut self.unlogged)
        })
    }
}

/// A poisoned lock still holds consistent counts: use them.
pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// An address's failures: a token bucket refilled at `at`, and the log.
#[derive(Debug)]
struct Entry {
    tokens: f64,
    at: Instant,
    log: LogCount,
}

impl Entry {
    fn refill(&mut self, now: Instant) {
        let secs = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + secs * PER_SECOND).min(BURST);
        self.at = now;
    }
}

/// Failed authentications per address, throttled and logged.
#[derive(Debug, Default)]
pub struct FailureThrottle {
    by_address: Mutex<HashMap<IpAddr, Entry>>,
}

/// What [`FailureThrottle::admit`] decided.
#[derive(Debug, PartialEq)]
pub enum Admit {
    /// Check the token.
    Check,
    /// Refuse unchecked.
    Wait {
        /// Until a failure is allowed again.
        retry_after: Duration,
        /// The count to log now, if any.
        log: Option<u64>,
    },
}

impl FailureThrottle {
    /// Before checking a token: an address that used up its allowance waits.
    pub fn admit(&self, ip: IpAddr, now: Instant) -> Admit {
        let mut map = lock(&self.by_address);
        let Some(e) = map.get_mut(&ip) else {
            return Admit::Check;
        };
        e.refill(now);
        if e.tokens >= 1.0 {
            return Admit::Check;
        }
        Admit::Wait {
            retry_after: Duration::from_secs_f64((1.0 - e.tokens) / PER_SECOND),
            log: e.log.count(now),
        }
    }

    /// A failed authentication from `ip`: `Some(count)` when it is time to log.
    pub fn failed(&self, ip: IpAddr, now: Instant) -> Option<u64> {
        let mut map = lock(&self.by_address);
        if map.len() >= MAX_ADDRESSES && !map.contains_key(&ip) {
            map.retain(|_, e| now.saturating_duration_since(e.at) < LOG_EVERY);
            if map.len() >= MAX_ADDRESSES {
                map.clear();
            }
        }
        let entry = map.entry(ip).or_insert(Entry {
            tokens: BURST,
            at: now,
            log: LogCount::default(),
        });
        entry.refill(now);
        entry.tokens = (entry.tokens - 1.0).max(0.0);
        entry.log.count(now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn loopback() -> SocketAddr {
        "127.0.0.1:8044".parse().unwrap()
    }

    #[test]
    fn the_host_must_be_the_listener_or_a_configured_name() {
        let none: &[String] = &[];
        let oks = "127.0.0.1:8044 127.0.0.1 localhost:8044 LOCALHOST [::1]:8044 127.0.0.2:1";
        for ok in oks.split(' ') {
            assert!(host_allowed(ok, loopback(), none), "{ok}");
        }
        let bads = " evil.example evil.example:8044 127.0.0.1:80x [::1 10.0.0.1:8044 localhost.evil.example";
        for bad in bads.split(' ') {
            assert!(!host_allowed(bad, loopback(), none), "{bad}");
        }
        let names = ["admin.example.com".to_owned()];
        assert!(host_allowed("Admin.Example.com:443", loopback(), &names));
        assert!(host_allowed("admin.example.com.", loopback(), &names));
        let (any, own) = (
            "0.0.0.0:8044".parse().unwrap(),
            "10.0.0.1:8044".parse().unwrap(),
        );
        assert!(host_allowed("10.0.0.1:8044", any, none));
        assert!(!host_allowed("evil.example", any, none));
        assert!(!host_allowed("localhost:8044", own, none), "not loopback");
        assert!(!host_allowed("10.0.0.2:8044", own, none));
    }

    #[test]
    fn only_the_listeners_own_origin_and_json_writes_pass() {
        use header::{CONTENT_TYPE, HOST, ORIGIN};
        let check = |m: Method, h: &HeaderMap| check(&m, h, loopback(), &[]);
        let reason = |h: &HeaderMap| check(Method::GET, h).unwrap_err().reason();
        let mut h = HeaderMap::new();
        let set = |h: &mut HeaderMap, name, value: &str| {
            h.insert(name, HeaderValue::from_str(value).unwrap());
        };
        set(&mut h, HOST, "127.0.0.1:8044");
        assert_eq!(check(Method::GET, &h), Ok(()));
        assert_eq!(check(Method::POST, &h), Err(Refusal::ContentType));
        set(&mut h, CONTENT_TYPE, "text/plain");
        assert_eq!(check(Method::POST, &h), Err(Refusal::ContentType));
        set(&mut h, CONTENT_TYPE, "application/json; charset=utf-8");
        assert_eq!(check(Method::DELETE, &h), Ok(()));
        set(&mut h, ORIGIN, "http://127.0.0.1:8044");
        assert_eq!(check(Method::PUT, &h), Ok(()));
        for foreign in "http://evil.example null http://127.0.0.1:8080 file://".split(' ') {
            set(&mut h, ORIGIN, foreign);
            assert_eq!(reason(&h), "origin", "{foreign}");
        }
        h.remove(ORIGIN);
        let site = header::HeaderName::from_static("sec-fetch-site");
        set(&mut h, site.clone(), "same-site");
        assert_eq!(reason(&h), "origin");
        set(&mut h, site, "same-origin");
        assert_eq!(check(Method::GET, &h), Ok(()));
        set(&mut h, HOST, "evil.example:8044");
        assert_eq!(reason(&h), "host");
    }

    #[test]
    fn failures_are_slowed_per_address_and_logged_once_a_minute() {
        let t = FailureThrottle::default();
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let t0 = Instant::now();
        assert_eq!(t.failed(a, t0), Some(1), "the first failure is logged");
        for _ in 0..4 {
            assert_eq!(t.admit(a, t0), Admit::Check);
            assert_eq!(t.failed(a, t0), None, "not again within the minute");
        }
        // The burst is used up: refused unchecked until a token refills.
        let Admit::Wait { retry_after, log } = t.admit(a, t0) else {
            panic!("a sixth failure at once was checked");
        };
        assert_eq!(log, None);
        assert!(retry_after > Duration::ZERO && retry_after <= Duration::from_millis(500));
        assert_eq!(t.admit(b, t0), Admit::Check, "another address");
        assert_eq!(t.admit(a, t0 + Duration::from_millis(500)), Admit::Check);
        // A minute later the count since the last log line is logged.
        assert_eq!(t.failed(a, t0 + LOG_EVERY), Some(6));
    }

    #[test]
    fn refusals_are_logged_once_a_minute_with_their_count() {
        let mut log = LogCount::default();
        let t0 = Instant::now();
        assert_eq!(log.count(t0), Some(1), "the first at once");
        for i in 1..1000 {
            assert_eq!(log.count(t0 + Duration::from_millis(i)), None);
        }
        assert_eq!(log.count(t0 + LOG_EVERY), Some(1000), "then the count");
        assert_eq!(log.count(t0 + LOG_EVERY + Duration::from_secs(1)), None);
    }
}
