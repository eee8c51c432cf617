//! Benchmarks of the hard-limit service: each prints measured figures.
//!
//! ```sh
//! cargo run --release -p eyeson-hard-limit --example bench -- burst [meetings] [window_ms]
//! cargo run --release -p eyeson-hard-limit --example bench -- lateness [meetings] [window_ms]
//! cargo run --release -p eyeson-hard-limit --example bench -- ingest [deliveries] [concurrency] [--forward]
//! cargo run --release -p eyeson-hard-limit --example bench -- scale [meetings]
//! cargo run --release -p eyeson-hard-limit --example bench -- warnings [meetings]
//! cargo run --release -p eyeson-hard-limit --example bench -- alone [meetings] [rate] [every] [alone_after] [--spread D]
//! # PostgreSQL, several replicas (each a process of its own; a fresh
//! # database hl_bench_* is created through the URL's server and dropped):
//! cargo run --release -p eyeson-hard-limit --example bench -- lateness --database postgres://postgres@127.0.0.1/test --replicas 3
//! cargo run --release -p eyeson-hard-limit --example bench -- ingest --database postgres://postgres@127.0.0.1/test --replicas 3
//! cargo run --release -p eyeson-hard-limit --example bench -- burst --database postgres://postgres@127.0.0.1/test --replicas 3 --kill-one
//! ```
//!
//! - `burst`: N meetings (default 10,000) whose deadlines fall within a
//!   window (default 3 s), enforced against the in-process fake eyeson;
//!   prints p50/p99/max of (shutdown answered − deadline), the DELETE
//!   calls, meetings ended twice, early shutdowns. `--kill-one` kills the
//!   first of several replicas in the middle of the window. `lateness` is
//!   the same with 1,000 meetings by default (its earlier figures).
//! - `ingest`: the service in this process with the default SQLite store
//!   (durable: committed before 204); a load generator in a second process
//!   (this binary re-run with `ingest-load`) posts signed deliveries over
//!   loopback; prints deliveries per second. With `--forward` every
//!   service also forwards each delivery (`--forward-to`) to a receiver in
//!   this process that answers 204 (the outbox row is written in the same
//!   transaction), and it prints how long after the load the receiver had
//!   them all.
//! - `scale`: N tracked meetings (default 1,000,000) in a SQLite file; a
//!   fresh service process (`scale-serve`) opens it and reports resident
//!   memory, the time to find and claim the next due meeting, and the time
//!   of 50 `GET /metrics` scrapes, next to 50 of a service tracking 10
//!   meetings (a scrape must cost the same), and of one recount of the
//!   gauges from the store.
//!
//! - `warnings`: N meetings (default 1,000) whose in-meeting warnings
//!   (`--warn-before 5s`) all fall due at the same instant; prints
//!   p50/p99/max of (chat message accepted by the fake eyeson − warning
//!   due), and counts messages and duplicates (checked after every
//!   meeting's deadline has passed and it was shut down). `--database` and
//!   `--replicas` as for `lateness`.
//!
//! - `soak`: the service as a process of its own under steady churn for
//!   the given minutes (default 30) at the given rate (default 20 new
//!   meetings per second): most run into the 20 s limit and are shut down,
//!   a fifth are ended by eyeson's shutdown webhook, a tenth are delivered
//!   twice; finished meetings are pruned after 2 minutes. Every 30 s it
//!   samples the service's resident memory, open file descriptors, the
//!   database's size and the lateness of that period's shutdowns; at the end
//!   it checks one DELETE per limited meeting, none early, none for the
//!   webhook-ended ones.
//!
//! - `alone`: N meetings (default 1,000) with two participants each
//!   (sandbox bots) and the alone rule on (`--alone-after`, default 20 s),
//!   checked every `every` (default 60 s, `--presence-every`) at `rate`
//!   requests/s (default 20, `--presence-rate`). 80% become lone: one bot
//!   leaves at a moment spread over one `every` (in an order unrelated to
//!   the check order); 10% keep both bots; 10% lose one and get it back
//!   `alone_after`/2 later (`--spread D`: the leaves over D instead). Prints p50/p99/max of (first 2xx `DELETE`
//!   answered − (the leave + `alone_after`)), the `GET /rooms/*/users`
//!   rate eyeson saw (peak per wall-clock second, mean), the interval
//!   between two checks of one meeting, the DELETEs (one per lone meeting,
//!   none for the others) and the highest
//!   `hard_limit_presence_overdue_seconds` scraped (in-process service
//!   only). Durations: seconds, or humantime (`90s`, `2m`).
//!
//! One example binary with subcommands rather than four: with the
//! workspace's release profile (fat LTO) every binary costs minutes to link.

#[path = "../tests/api/fake_eyeson.rs"]
mod fake_eyeson;

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use eyeson_api::sign;
use eyeson_hard_limit::config::Flags;
use eyeson_hard_limit::domain::{MeetingKey, MeetingState, RoomId, Timestamp};
use eyeson_hard_limit::store::SqliteStore;
use eyeson_hard_limit::store_handle::Store;
use eyeson_hard_limit::Application;
use fake_eyeson::FakeEyeson;
use serde_json::json;

const KEY: &str = "bench-api-key";
const LIMIT: Duration = Duration::from_secs(30 * 60);
/// The soak's hard limit and retention.
const SOAK_LIMIT: Duration = Duration::from_secs(20);
const SOAK_RETENTION: Duration = Duration::from_secs(120);
/// `--warn-before` of the services, when the benchmark is `warnings`.
static WARN: std::sync::OnceLock<Duration> = std::sync::OnceLock::new();
/// `ingest --forward`: every service forwards to this receiver.
static FORWARD_TO: std::sync::OnceLock<reqwest::Url> = std::sync::OnceLock::new();
const WARN_BEFORE: Duration = Duration::from_secs(5);
/// The alone rule of the services, when the benchmark is `alone`.
static ALONE: std::sync::OnceLock<AloneRule> = std::sync::OnceLock::new();

/// `--presence-every`, `--presence-rate`, `--alone-after` of `bench alone`.
#[derive(Clone, Copy, Debug)]
struct AloneRule {
    every: Duration,
    rate: u32,
    after: Duration,
}

impl AloneRule {
    fn apply(&self, config: &mut Flags) {
        config.presence_every = self.every;
        config.presence_rate = self.rate;
        config.alone_after = Some(self.after);
    }
}

/// Positional arguments, without the `--database URL` / `--replicas N` options.
fn positional() -> Vec<String> {
    let mut out = Vec::new();
    let mut args = std::env::args();
    while let Some(a) = args.next() {
        if a == "--database" || a == "--replicas" || a == "--spread" {
            args.next();
        } else if a != "--kill-one" && a != "--forward" {
            out.push(a);
        }
    }
    out
}

fn option(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

fn arg(n: usize, default: u64) -> u64 {
    positional()
        .get(n)
        .and_then(|a| a.parse().ok())
        .unwrap_or(default)
}

/// A duration argument: seconds, or humantime (`90s`, `2m`).
fn duration_arg(n: usize, default: Duration) -> Duration {
    positional().get(n).map_or(default, |a| {
        a.parse::<u64>()
            .map(Duration::from_secs)
            .or_else(|_| humantime::parse_duration(a))
            .unwrap_or_else(|e| panic!("{a:?}: {e}"))
    })
}

/// Where the services keep their meetings: the default SQLite file, or a
/// fresh database on the PostgreSQL server `--database` names.
struct BenchDb {
    url: String,
    _dir: Option<tempfile::TempDir>,
    pg: Option<(String, String)>,
}

impl BenchDb {
    async fn create(file: &str) -> BenchDb {
        match option("--database") {
            Some(admin) if admin.starts_with("postgres") => {
                use sqlx::Connection;
                let name = format!("hl_bench_{}", std::process::id());
                let mut conn = sqlx::PgConnection::connect(&admin).await.unwrap();
                sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
                    .execute(&mut conn)
                    .await
                    .unwrap();
                let _ = conn.close().await;
                let mut url = reqwest::Url::parse(&admin).unwrap();
                url.set_path(&format!("/{name}"));
                BenchDb {
                    url: url.to_string(),
                    _dir: None,
                    pg: Some((admin, name)),
                }
            }
            Some(other) => BenchDb {
                url: other,
                _dir: None,
                pg: None,
            },
            None => {
                let dir = bench_dir();
                BenchDb {
                    url: format!("sqlite://{}", dir.path().join(file).display()),
                    _dir: Some(dir),
                    pg: None,
                }
            }
        }
    }

    fn engine(&self) -> &'static str {
        if self.pg.is_some() {
            "PostgreSQL"
        } else {
            "SQLite"
        }
    }

    async fn drop_database(self) {
        if let Some((admin, name)) = self.pg {
            use sqlx::Connection;
            let mut conn = sqlx::PgConnection::connect(&admin).await.unwrap();
            sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
            )))
            .execute(&mut conn)
            .await
            .unwrap();
            let _ = conn.close().await;
        }
    }
}

/// The services under test: one in this process (SQLite, one replica, as
/// before), or `--replicas N` processes of this binary (`serve`) on one
/// database (always processes on PostgreSQL, so 1, 2 and 3 replicas are
/// measured the same way).
struct Services {
    urls: Vec<String>,
    /// The admin address of the in-process service (`/metrics`).
    admin: Option<String>,
    children: Vec<std::process::Child>,
    in_process: Option<(
        tokio::sync::oneshot::Sender<()>,
        tokio::task::JoinHandle<()>,
    )>,
}

impl Services {
    async fn start(fake: &FakeEyeson, db: &BenchDb) -> Services {
        let replicas = option("--replicas")
            .and_then(|r| r.parse::<usize>().ok())
            .unwrap_or(1)
            .max(1);
        if replicas == 1 && db.pg.is_none() {
            let (url, admin, _store, stop, task) = start_service(fake, db.url.clone()).await;
            return Services {
                urls: vec![url],
                admin: Some(admin),
                children: Vec::new(),
                in_process: Some((stop, task)),
            };
        }
        let exe = std::env::current_exe().unwrap();
        let mut urls = Vec::new();
        let mut children = Vec::new();
        for _ in 0..replicas {
            let mut args = vec!["serve".to_owned(), db.url.clone(), fake.url()];
            if WARN.get().is_some() {
                args.push("warn".into());
            }
            if let Some(a) = ALONE.get() {
                args.push("alone".into());
                args.push(a.every.as_millis().to_string());
                args.push(a.rate.to_string());
                args.push(a.after.as_millis().to_string());
            }
            let mut child = Command::new(&exe)
                .args(&args)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .spawn()
                .unwrap();
            let mut line = String::new();
            std::io::BufRead::read_line(
                &mut std::io::BufReader::new(child.stdout.take().unwrap()),
                &mut line,
            )
            .unwrap();
            urls.push(line.trim().to_owned());
            children.push(child);
        }
        Services {
            urls,
            admin: None,
            children,
            in_process: None,
        }
    }

    async fn stop(self) {
        if let Some((stop, task)) = self.in_process {
            let _ = stop.send(());
            task.await.unwrap();
        }
        for mut c in self.children {
            // Closing stdin asks `serve` to stop.
            drop(c.stdin.take());
            let _ = tokio::task::spawn_blocking(move || c.wait()).await;
        }
    }
}

/// One replica for the benchmarks: `serve DATABASE FAKE_URL`; prints its
/// URL, stops when stdin closes.
async fn serve() {
    let args = positional();
    let (db, fake_url) = (args[2].clone(), args[3].clone());
    let mut config = Flags::new(KEY.parse().unwrap(), fake_url.parse().unwrap(), db);
    config.reconcile_every = Duration::from_secs(3600);
    config.max_duration = LIMIT;
    config.close_unlisted_after = Duration::from_secs(86_400);
    if args.get(4).map(String::as_str) == Some("soak") {
        // Minutes of churn must exercise pruning: short limit, short
        // retention (allowed because the replay window is shorter still),
        // chores every few seconds.
        config.max_duration = SOAK_LIMIT;
        config.webhook_max_age = Duration::from_secs(30);
        config.retention = SOAK_RETENTION;
        config.reconcile_every = Duration::from_secs(5);
    }
    if args.get(4).map(String::as_str) == Some("warn") {
        config.warn_before = Some(WARN_BEFORE);
    }
    if args.get(4).map(String::as_str) == Some("alone") {
        let n = |i: usize| args[i].parse::<u64>().unwrap();
        AloneRule {
            every: Duration::from_millis(n(5)),
            rate: n(6) as u32,
            after: Duration::from_millis(n(7)),
        }
        .apply(&mut config);
    }
    config.listen = "127.0.0.1:0".parse().unwrap();
    let app = Application::build(config.try_into().unwrap())
        .await
        .unwrap();
    println!("http://{}", app.local_addr());
    use std::io::Write;
    std::io::stdout().flush().unwrap();
    app.run_until_stopped(async {
        let _ = tokio::task::spawn_blocking(|| {
            let mut sink = Vec::new();
            let _ = std::io::Read::read_to_end(&mut std::io::stdin(), &mut sink);
        })
        .await;
    })
    .await
    .unwrap();
}

fn main() {
    let mode = positional().get(1).cloned().unwrap_or_default();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    match mode.as_str() {
        "burst" => rt.block_on(burst(arg(2, 10_000) as usize, arg(3, 3000))),
        "lateness" => rt.block_on(burst(arg(2, 1000) as usize, arg(3, 3000))),
        "ingest" => rt.block_on(ingest(arg(2, 20_000) as usize, arg(3, 64) as usize)),
        "ingest-load" => rt.block_on(ingest_load()),
        "scale" => rt.block_on(scale(arg(2, 1_000_000) as usize)),
        "warnings" => rt.block_on(warnings(arg(2, 1000) as usize)),
        "scale-serve" => rt.block_on(scale_serve()),
        "serve" => rt.block_on(serve()),
        "soak" => rt.block_on(soak(arg(2, 30), arg(3, 20))),
        "alone" => rt.block_on(alone(
            arg(2, 1000) as usize,
            arg(3, 20) as u32,
            duration_arg(4, Duration::from_secs(60)),
            duration_arg(5, Duration::from_secs(20)),
        )),
        _ => {
            eprintln!(
                "usage: bench (burst [n] [window_ms] [--kill-one] | lateness [n] [window_ms] | ingest [n] [concurrency] [--forward] | scale [n] | warnings [n] | soak [minutes] [meetings_per_s] | alone [n] [rate] [every] [alone_after]) [--database URL] [--replicas N]"
            );
            std::process::exit(2);
        }
    }
}

fn bench_dir() -> tempfile::TempDir {
    // On the real disk (not tmpfs) so fsync costs what it costs.
    match std::env::var_os("BENCH_DIR") {
        Some(d) => tempfile::tempdir_in(d).unwrap(),
        None => tempfile::tempdir().unwrap(),
    }
}

fn iso(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}

fn ms_floor(t: SystemTime) -> SystemTime {
    let ms = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    SystemTime::UNIX_EPOCH + Duration::from_millis(ms)
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn delivery(room: &str, started: SystemTime) -> String {
    json!({"timestamp": unix_now(), "type": "room_update",
           "room": {"id": room, "name": room, "ready": true, "started_at": iso(started),
                    "shutdown": false, "guest_token": fake_eyeson::guest_token_of(room)}})
    .to_string()
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

async fn start_service(
    fake: &FakeEyeson,
    database: String,
) -> (
    String,
    String,
    Store,
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<()>,
) {
    let mut config = Flags::new(KEY.parse().unwrap(), fake.url().parse().unwrap(), database);
    config.reconcile_every = Duration::from_secs(3600);
    config.max_duration = LIMIT;
    // The fake lists only what a benchmark registered in it; a million rows
    // it never heard of must not be closed as "ended silently".
    config.close_unlisted_after = Duration::from_secs(86_400);
    config.warn_before = WARN.get().copied();
    config.forward_to = FORWARD_TO.get().cloned();
    if let Some(a) = ALONE.get() {
        a.apply(&mut config);
    }
    let app = Application::build(config.try_into().unwrap())
        .await
        .unwrap();
    let url = format!("http://{}", app.local_addr());
    let admin = format!("http://{}", app.admin_addr());
    let store = app.store();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        app.run_until_stopped(async {
            let _ = rx.await;
        })
        .await
        .unwrap();
    });
    (url, admin, store, tx, task)
}

/// `burst` (and `lateness`, its earlier name with 1,000 meetings by
/// default): N meetings whose deadlines fall within a window, as when
/// scheduled meetings that began on the hour reach their limit together.
/// With `--kill-one` (PostgreSQL, 2 or more replicas) the first replica is
/// killed (SIGKILL) in the middle of the window: the others must take over
/// its leases, and still end every meeting exactly once.
async fn burst(n: usize, window_ms: u64) {
    let kill_one = std::env::args().any(|a| a == "--kill-one");
    let fake = FakeEyeson::start(KEY).await;
    let db = BenchDb::create("burst.db").await;
    let mut services = Services::start(&fake, &db).await;
    let replicas = services.urls.len();
    if kill_one && services.children.len() < 2 {
        eprintln!("--kill-one needs --replicas 2 or more (on PostgreSQL)");
        std::process::exit(2);
    }
    let http = reqwest::Client::new();
    // Every delivery must be in before the first deadline: allow 1 ms per
    // meeting (ten times the slowest ingest measured) and at least 5 s.
    let lead = Duration::from_secs(5).max(Duration::from_millis(n as u64));
    let first_deadline = ms_floor(SystemTime::now() + lead);
    let mut deadlines = Vec::with_capacity(n);
    let ingest_started = Instant::now();
    let mut pending = tokio::task::JoinSet::new();
    for i in 0..n {
        let deadline = first_deadline + Duration::from_millis(window_ms * i as u64 / n as u64);
        let started = deadline - LIMIT;
        let room = format!("burst-{i}");
        fake.start_meeting(&room, &iso(started));
        deadlines.push((room.clone(), deadline));
        let body = delivery(&room, started);
        let sig = sign(KEY.as_bytes(), body.as_bytes());
        let http = http.clone();
        let url = services.urls[i % replicas].clone();
        pending.spawn(async move {
            let r = http
                .post(format!("{url}/webhook"))
                .header("x-eyeson-signature", sig)
                .body(body)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 204);
        });
        while pending.len() >= 64 {
            pending.join_next().await.unwrap().unwrap();
        }
    }
    while let Some(r) = pending.join_next().await {
        r.unwrap();
    }
    let ingest_took = ingest_started.elapsed();
    if SystemTime::now() > first_deadline {
        eprintln!("warning: ingest took {ingest_took:?}, past the first deadline: the figures below are not valid");
    }
    if kill_one {
        let kill_at = first_deadline + Duration::from_millis(window_ms / 2);
        if let Ok(wait) = kill_at.duration_since(SystemTime::now()) {
            tokio::time::sleep(wait).await;
        }
        let mut victim = services.children.remove(0);
        victim.kill().unwrap();
        let _ = victim.wait();
    }
    // The killed replica's claims wait for their lease (30 s) to expire.
    let patience = Duration::from_secs(60 + window_ms / 1000);
    let wait_start = Instant::now();
    let shut = |fake: &FakeEyeson| {
        let mut rooms: Vec<String> = fake
            .deletes()
            .into_iter()
            .filter(|r| r.status == 204)
            .map(|r| r.path)
            .collect();
        rooms.sort_unstable();
        rooms.dedup();
        rooms.len()
    };
    while shut(&fake) < n && wait_start.elapsed() < patience {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // A little longer, so that a duplicate call would be seen.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let deletes = fake.deletes();
    let mut first_204: std::collections::HashMap<String, SystemTime> =
        std::collections::HashMap::new();
    let mut ok_calls = 0;
    for r in deletes.iter().filter(|r| r.status == 204) {
        ok_calls += 1;
        let room = r.path.trim_start_matches("/rooms/").to_owned();
        let at = first_204.entry(room).or_insert(r.answered_at);
        *at = (*at).min(r.answered_at);
    }
    let duplicates = ok_calls - first_204.len();
    let repeated = deletes.len() - ok_calls;
    let mut late_ms: Vec<f64> = deadlines
        .iter()
        .filter_map(|(room, deadline)| {
            let at = first_204.get(room)?;
            Some(match at.duration_since(*deadline) {
                Ok(d) => d.as_secs_f64() * 1000.0,
                Err(e) => -(e.duration().as_secs_f64() * 1000.0),
            })
        })
        .collect();
    late_ms.sort_by(f64::total_cmp);
    let early = late_ms.iter().filter(|l| **l < 0.0).count();
    println!(
        "bench burst: {n} meetings, deadlines spread over {window_ms} ms, {} store, {replicas} replica(s){}",
        db.engine(),
        if kill_one { ", one killed mid-burst" } else { "" }
    );
    println!("  ingest of {n} signed deliveries: {ingest_took:.2?}");
    if !late_ms.is_empty() {
        println!(
            "  lateness (first 2xx DELETE answer - deadline): min {:.1} ms, p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
            late_ms[0],
            percentile(&late_ms, 0.5),
            percentile(&late_ms, 0.99),
            late_ms[late_ms.len() - 1]
        );
    }
    if kill_one {
        // The killed replica's claims wait for their lease (30 s).
        let waited = late_ms.iter().filter(|l| **l > 1000.0).count();
        println!("  shut down after the killed replica's lease expired: {waited}");
    }
    println!("  never shut down: {}", n - first_204.len());
    println!("  shut down before the deadline: {early}");
    println!(
        "  DELETE calls: {} ({ok_calls} answered 2xx; meetings ended twice: {duplicates}; repeated calls answered 404: {repeated})",
        deletes.len()
    );
    println!(
        "  exactly once: {}",
        first_204.len() == n && duplicates == 0 && early == 0
    );
    services.stop().await;
    db.drop_database().await;
}

async fn warnings(n: usize) {
    WARN.set(WARN_BEFORE).unwrap();
    let fake = FakeEyeson::start(KEY).await;
    let db = BenchDb::create("warnings.db").await;
    let services = Services::start(&fake, &db).await;
    let replicas = services.urls.len();
    let http = reqwest::Client::new();
    // Every warning due at the same instant, a few seconds after ingest.
    let due = ms_floor(SystemTime::now() + Duration::from_secs(5));
    let deadline = due + WARN_BEFORE;
    let ingest_started = Instant::now();
    let mut pending = tokio::task::JoinSet::new();
    for i in 0..n {
        // Distinct starts (the identity), one deadline: per-room limits are
        // equal, so the starts are equal too; the rooms differ.
        let started = deadline - LIMIT;
        let room = format!("warn-{i}");
        fake.start_meeting(&room, &iso(started));
        let body = delivery(&room, started);
        let sig = sign(KEY.as_bytes(), body.as_bytes());
        let http = http.clone();
        let url = services.urls[i % replicas].clone();
        pending.spawn(async move {
            let r = http
                .post(format!("{url}/webhook"))
                .header("x-eyeson-signature", sig)
                .body(body)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 204);
        });
        while pending.len() >= 32 {
            pending.join_next().await.unwrap().unwrap();
        }
    }
    while let Some(r) = pending.join_next().await {
        r.unwrap();
    }
    let ingest_took = ingest_started.elapsed();
    if SystemTime::now() > due {
        eprintln!("warning: ingest took {ingest_took:?}, past the warning time");
    }
    // Wait for every meeting to be shut down (after its deadline), so a
    // duplicate warning would have had its chance to show.
    let wait_start = Instant::now();
    while fake.deletes().iter().filter(|r| r.status == 204).count() < n {
        assert!(
            wait_start.elapsed() < Duration::from_secs(120),
            "not all meetings were shut down"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let messages = fake.messages();
    let mut first: std::collections::HashMap<String, SystemTime> = Default::default();
    let mut duplicates = 0;
    for m in &messages {
        if first.insert(m.room.clone(), m.at).is_some() {
            duplicates += 1;
        }
    }
    let mut late_ms: Vec<f64> = first
        .values()
        .map(|at| match at.duration_since(due) {
            Ok(d) => d.as_secs_f64() * 1000.0,
            Err(e) => -(e.duration().as_secs_f64() * 1000.0),
        })
        .collect();
    late_ms.sort_by(f64::total_cmp);
    let early = late_ms.iter().filter(|l| **l < 0.0).count();
    let after_deadline = first.values().filter(|at| **at >= deadline).count();
    println!(
        "bench warnings: {n} meetings whose warnings (--warn-before {WARN_BEFORE:?}) fall due at one instant, {} store, {replicas} replica(s)",
        db.engine()
    );
    println!("  ingest of {n} signed deliveries: {ingest_took:.2?}");
    if !late_ms.is_empty() {
        println!(
            "  lateness (chat message accepted - warning due): min {:.1} ms, p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
            late_ms[0],
            percentile(&late_ms, 0.5),
            percentile(&late_ms, 0.99),
            late_ms[late_ms.len() - 1]
        );
    }
    println!(
        "  messages: {} for {} of {n} meetings; duplicates: {duplicates}; before the warning time: {early}; at or after the deadline: {after_deadline}",
        messages.len(),
        first.len()
    );
    println!(
        "  guest joins: {}; DELETE calls: {}",
        fake.guest_joins().len(),
        fake.deletes().len()
    );
    services.stop().await;
    db.drop_database().await;
}

/// A receiver for `ingest --forward`: answers 204, counts what it got.
async fn forward_receiver() -> (reqwest::Url, Arc<std::sync::atomic::AtomicUsize>) {
    let got = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let count = got.clone();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/eyeson-hook", listener.local_addr().unwrap());
    let app = axum::Router::new().fallback(move || {
        let count = count.clone();
        async move {
            count.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            axum::http::StatusCode::NO_CONTENT
        }
    });
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url.parse().unwrap(), got)
}

async fn ingest(n: usize, concurrency: usize) {
    let forwarded = if std::env::args().any(|a| a == "--forward") {
        let (url, got) = forward_receiver().await;
        FORWARD_TO.set(url).unwrap();
        Some(got)
    } else {
        None
    };
    let fake = FakeEyeson::start(KEY).await;
    let db = BenchDb::create("ingest.db").await;
    let services = Services::start(&fake, &db).await;
    let replicas = services.urls.len();
    let url = services.urls.join(",");
    let exe = std::env::current_exe().unwrap();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(exe)
            .args([
                "ingest-load",
                &url,
                &n.to_string(),
                &concurrency.to_string(),
            ])
            .stderr(Stdio::inherit())
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(out.status.success(), "load generator failed");
    let report = String::from_utf8_lossy(&out.stdout);
    // Forwarding runs behind ingest: how long until the receiver had all.
    let forwarded = match forwarded {
        Some(got) => {
            let t0 = Instant::now();
            while got.load(std::sync::atomic::Ordering::Relaxed) < n
                && t0.elapsed() < Duration::from_secs(120)
            {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Some((got.load(std::sync::atomic::Ordering::Relaxed), t0.elapsed()))
        }
        None => None,
    };
    // Counted once the services stopped: SQLite allows one process per file.
    services.stop().await;
    let store = Store::connect(&db.url).await.unwrap();
    let stored = store
        .count_by_state()
        .await
        .unwrap()
        .iter()
        .map(|(_, c)| *c)
        .sum::<u64>();
    store.close().await;
    println!(
        "bench ingest: {n} signed deliveries, {concurrency} connections, load generator in a second process, {} store, {replicas} replica(s)",
        db.engine()
    );
    print!("{report}");
    println!("  meetings committed in the store: {stored} (expected {n})");
    if let Some((got, after)) = forwarded {
        println!(
            "  forwarded (--forward): {got} of {n} received by the app's receiver, {after:.2?} after the load ended"
        );
    }
    db.drop_database().await;
}

/// The load generator (second process): `ingest-load URL N CONCURRENCY`.
async fn ingest_load() {
    let urls: Vec<String> = positional()[2].split(',').map(str::to_owned).collect();
    let n = arg(3, 20_000) as usize;
    let concurrency = arg(4, 64) as usize;
    let started = ms_floor(SystemTime::now());
    // Bodies and signatures are prepared up front: the figure is the
    // service's, not the generator's HMAC speed.
    let bodies: Vec<(String, String)> = (0..n)
        .map(|i| {
            let body = delivery(&format!("ingest-{i}"), started);
            let sig = sign(KEY.as_bytes(), body.as_bytes());
            (body, sig)
        })
        .collect();
    let bodies = Arc::new(bodies);
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(concurrency)
        .build()
        .unwrap();
    let t0 = Instant::now();
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..concurrency {
        let (bodies, next, http, urls) = (bodies.clone(), next.clone(), http.clone(), urls.clone());
        workers.spawn(async move {
            let mut latencies = Vec::new();
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some((body, sig)) = bodies.get(i) else {
                    break;
                };
                let t = Instant::now();
                let url = &urls[i % urls.len()];
                let r = http
                    .post(format!("{url}/webhook"))
                    .header("x-eyeson-signature", sig)
                    .header("content-type", "application/json")
                    .body(body.clone())
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 204);
                latencies.push(t.elapsed().as_secs_f64() * 1000.0);
            }
            latencies
        });
    }
    let mut lat = Vec::with_capacity(n);
    while let Some(r) = workers.join_next().await {
        lat.extend(r.unwrap());
    }
    let took = t0.elapsed();
    lat.sort_by(f64::total_cmp);
    println!(
        "  {:.0} deliveries/s ({n} in {took:.2?}); latency p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        n as f64 / took.as_secs_f64(),
        percentile(&lat, 0.5),
        percentile(&lat, 0.99),
        lat[lat.len() - 1]
    );
}

async fn scale(n: usize) {
    let dir = bench_dir();
    let path = dir.path().join("scale.db");
    let db = format!("sqlite://{}", path.display());
    let store = Store::from(SqliteStore::connect(&db).await.unwrap());
    let now = Timestamp::from_system_time(SystemTime::now());
    let due = 2_000.min(n);
    let t0 = Instant::now();
    let mut batch = Vec::with_capacity(50_000);
    for i in 0..n {
        // `due` meetings are overdue; the rest fall due over the next 30 days.
        let deadline = if i < due {
            Timestamp(now.0 - 1_000 - i as i64)
        } else {
            Timestamp(now.0 + 60_000 + (i as i64 * 2_591) % 2_592_000_000)
        };
        // Started in the past whatever the deadline (a start far ahead of
        // the clock would be forgotten by the reconciler's chores).
        let key = MeetingKey {
            room_id: RoomId::parse(&format!("room-{i:07}")).unwrap(),
            started_at: Timestamp(deadline.0.min(now.0) - LIMIT.as_millis() as i64),
        };
        batch.push((key, deadline, MeetingState::Running));
        if batch.len() == 50_000 {
            store.bulk_insert(&batch, now).await.unwrap();
            batch.clear();
        }
    }
    store.bulk_insert(&batch, now).await.unwrap();
    store.close().await;
    let fill = t0.elapsed();
    let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
    println!(
        "bench scale: {n} tracked meetings in SQLite ({} MB file, filled in {fill:.1?})",
        size / 1_000_000
    );
    let exe = std::env::current_exe().unwrap();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(exe)
            .args(["scale-serve", &db, &due.to_string()])
            .stderr(Stdio::inherit())
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(out.status.success(), "service process failed");
    print!("{}", String::from_utf8_lossy(&out.stdout));
}

/// A `kB` field (`VmRSS:`, `VmHWM:`) of a process's `/proc/PROC/status`
/// (`PROC` = `self` or a pid).
fn status_kb(proc: &str, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{proc}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Scrapes timed by [`time_scrapes`].
const SCRAPES: usize = 50;

/// p50 and max (ms) of [`SCRAPES`] `GET /metrics`, each checked to show
/// `running` running meetings.
async fn time_scrapes(http: &reqwest::Client, admin: &str, running: u64) -> (f64, f64) {
    let want = format!("hard_limit_meetings{{state=\"running\"}} {running}\n");
    let mut ms = Vec::with_capacity(SCRAPES);
    for _ in 0..SCRAPES {
        let t = Instant::now();
        let text = http
            .get(format!("{admin}/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        ms.push(t.elapsed().as_secs_f64() * 1000.0);
        assert!(text.contains(&want), "expected {want:?} in\n{text}");
    }
    ms.sort_by(f64::total_cmp);
    (percentile(&ms, 0.5), ms[ms.len() - 1])
}

/// A fresh service process on the filled database: `scale-serve DB DUE`.
async fn scale_serve() {
    let db = std::env::args().nth(2).unwrap();
    let due = arg(3, 2_000) as usize;
    let fake = FakeEyeson::start(KEY).await;
    // Time the store's claim path directly first (one meeting per claim),
    // on its own connection pool, before the service's scheduler runs.
    let store = Store::connect(&db).await.unwrap();
    let samples = (due / 2).max(1);
    let mut next_ms = Vec::with_capacity(samples);
    let mut claim_ms = Vec::with_capacity(samples);
    let now = Timestamp::from_system_time(SystemTime::now());
    for _ in 0..samples {
        let t = Instant::now();
        let next = store.next_wake().await.unwrap();
        next_ms.push(t.elapsed().as_secs_f64() * 1000.0);
        assert!(next.is_some_and(|t| t <= now));
        let t = Instant::now();
        let c = store
            .claim_due(now, Duration::from_secs(3600), "bench", 1)
            .await
            .unwrap();
        claim_ms.push(t.elapsed().as_secs_f64() * 1000.0);
        assert_eq!(c.len(), 1);
    }
    store.close().await;
    next_ms.sort_by(f64::total_cmp);
    claim_ms.sort_by(f64::total_cmp);
    println!(
        "  next due (earliest deadline): p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms",
        percentile(&next_ms, 0.5),
        percentile(&next_ms, 0.99),
        next_ms[next_ms.len() - 1]
    );
    println!(
        "  claim one due meeting (commit included): p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms",
        percentile(&claim_ms, 0.5),
        percentile(&claim_ms, 0.99),
        claim_ms[claim_ms.len() - 1]
    );
    // Now the whole service on the same file: it enforces the remaining due
    // meetings (the fake answers 404: not running), answers /metrics
    // (counts every row) and /meetings, and its memory is read.
    let (_url, admin, store, stop, task) = start_service(&fake, db).await;
    let t = Instant::now();
    while fake.deletes().len() < due - samples {
        assert!(
            t.elapsed() < Duration::from_secs(120),
            "service did not enforce"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let enforce = t.elapsed();
    // Before this benchmark's own full counts below (each fills the page
    // cache of the reader connection it runs on).
    let rss_enforced = status_kb("self", "VmRSS:");
    let http = reqwest::Client::new();
    let counts = store.count_by_state().await.unwrap();
    let running = counts
        .iter()
        .find(|(s, _)| *s == MeetingState::Running)
        .map_or(0, |(_, n)| *n);
    let (scrape_p50, scrape_max) = time_scrapes(&http, &admin, running).await;
    let listed: Vec<serde_json::Value> = http
        .get(format!("{admin}/meetings?limit=1000"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(listed.len(), 1000);
    let t = Instant::now();
    store.gauges().recount(&*store).await.unwrap();
    let recount = t.elapsed();
    println!(
        "  service on the filled store enforced {} due meetings in {enforce:.2?} (VmRSS then {} MB)",
        due - samples,
        rss_enforced / 1024
    );
    println!(
        "  GET /metrics, {SCRAPES} scrapes, {} tracked meetings: p50 {scrape_p50:.3} ms, max {scrape_max:.3} ms (one recount from the store, every --recount-every: {:.0} ms)",
        counts.iter().map(|(_, n)| n).sum::<u64>(),
        recount.as_secs_f64() * 1000.0
    );
    let (rss, hwm) = (status_kb("self", "VmRSS:"), status_kb("self", "VmHWM:"));
    {
        // The same scrapes on a service tracking 10 meetings, in this
        // process (same recorder, same machine state).
        let dir = bench_dir();
        let small = format!("sqlite://{}", dir.path().join("small.db").display());
        let now = Timestamp::from_system_time(SystemTime::now());
        let rows: Vec<_> = (0..10)
            .map(|i| {
                let key = MeetingKey {
                    room_id: RoomId::parse(&format!("small-{i}")).unwrap(),
                    started_at: Timestamp(now.0 - 60_000),
                };
                (
                    key,
                    now.plus(Duration::from_secs(3600)),
                    MeetingState::Running,
                )
            })
            .collect();
        let s = Store::from(SqliteStore::connect(&small).await.unwrap());
        s.bulk_insert(&rows, now).await.unwrap();
        s.close().await;
        let (_url, small_admin, small_store, small_stop, small_task) =
            start_service(&fake, small).await;
        let (p50, max) = time_scrapes(&http, &small_admin, 10).await;
        println!(
            "  GET /metrics, {SCRAPES} scrapes, 10 tracked meetings: p50 {p50:.3} ms, max {max:.3} ms"
        );
        let _ = small_stop.send(());
        small_task.await.unwrap();
        drop(small_store);
    }
    println!("  store by state: {counts:?} (the stopping ones were claimed by the timing loop above under a 1 h lease)");
    println!(
        "  resident memory of the service process (before the 10-meeting service started in it): VmRSS {} MB, peak VmHWM {} MB",
        rss / 1024,
        hwm / 1024
    );
    let _ = stop.send(());
    task.await.unwrap();
}

/// `soak [minutes] [rate]`: see the module documentation.
async fn soak(minutes: u64, rate: u64) {
    use std::collections::HashMap;
    use std::sync::Mutex;

    let fake = Arc::new(FakeEyeson::start(KEY).await);
    let db = BenchDb::create("soak.db").await;
    let exe = std::env::current_exe().unwrap();
    let mut child = Command::new(&exe)
        .args(["serve", &db.url, &fake.url(), "soak"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let pid = child.id();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    let url = line.trim().to_owned();
    let http = reqwest::Client::new();
    let post = move |body: String| {
        let (http, url) = (http.clone(), url.clone());
        async move {
            let sig = sign(KEY.as_bytes(), body.as_bytes());
            // Retried until acknowledged, as eyeson does.
            for _ in 0..50 {
                if let Ok(r) = http
                    .post(format!("{url}/webhook"))
                    .header("x-eyeson-signature", &sig)
                    .body(body.clone())
                    .send()
                    .await
                {
                    if r.status() == 204 {
                        return true;
                    }
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            false
        }
    };
    let service = pid.to_string();
    let proc_status = |field: &str| status_kb(&service, field);
    let fds = || {
        std::fs::read_dir(format!("/proc/{pid}/fd"))
            .map(|d| d.count())
            .unwrap_or(0)
    };
    let db_bytes = || async {
        match &db.pg {
            Some(_) => {
                use sqlx::Connection;
                let Ok(mut c) = sqlx::PgConnection::connect(&db.url).await else {
                    return 0;
                };
                let size: i64 = sqlx::query_scalar("SELECT pg_database_size(current_database())")
                    .fetch_one(&mut c)
                    .await
                    .unwrap_or(0);
                let _ = c.close().await;
                size as u64
            }
            None => {
                let file = db.url.trim_start_matches("sqlite://");
                ["", "-wal", "-shm"]
                    .iter()
                    .filter_map(|ext| std::fs::metadata(format!("{file}{ext}")).ok())
                    .map(|m| m.len())
                    .sum()
            }
        }
    };

    // Per meeting: its deadline, and whether eyeson ended it by webhook.
    let meetings: Arc<Mutex<HashMap<String, (SystemTime, bool)>>> = Arc::default();
    let mut tasks = tokio::task::JoinSet::new();
    let started = Instant::now();
    let until = started + Duration::from_secs(minutes * 60);
    let interval = Duration::from_secs_f64(1.0 / rate.max(1) as f64);
    let sample_every = Duration::from_secs(30);
    let mut next_sample = started + sample_every;
    let mut seen_deletes = 0usize;
    let mut lost = 0usize;
    let mut i: u64 = 0;
    println!(
        "bench soak: {minutes} min, {rate} meetings/s, {} store, limit {SOAK_LIMIT:?}, retention {SOAK_RETENTION:?}",
        db.engine()
    );
    println!(
        "  {:>6} {:>9} {:>8} {:>5} {:>10} {:>9} {:>9} {:>9} {:>9}",
        "t", "meetings", "RSS MB", "fds", "db KB", "DELETEs", "p50 ms", "p99 ms", "max ms"
    );
    let mut next = Instant::now();
    while Instant::now() < until {
        let room = format!("soak-{i}");
        let start = ms_floor(SystemTime::now());
        let deadline = start + SOAK_LIMIT;
        let by_webhook = i % 5 == 1;
        fake.start_meeting(&room, &iso(start));
        meetings
            .lock()
            .unwrap()
            .insert(room.clone(), (deadline, by_webhook));
        let body = delivery(&room, start);
        let duplicate = i % 10 == 3;
        let post = post.clone();
        let fake_state = fake.clone();
        tasks.spawn(async move {
            let mut ok = post(body.clone()).await;
            if duplicate {
                ok &= post(body).await;
            }
            if by_webhook {
                // eyeson ends it a few seconds in (the last one left):
                // it is no longer listed, and the webhook says so.
                tokio::time::sleep(Duration::from_secs(2 + (i % 7))).await;
                fake_state.end_meeting(&room);
                let end = json!({"timestamp": unix_now(), "type": "room_update",
                    "room": {"id": room, "name": room, "ready": true, "started_at": iso(start),
                             "shutdown": true, "guest_token": "g"}})
                .to_string();
                ok &= post(end).await;
            }
            ok
        });
        while let Some(done) = tasks.try_join_next() {
            lost += usize::from(!done.unwrap());
        }
        i += 1;
        if Instant::now() >= next_sample {
            next_sample += sample_every;
            let deletes = fake.deletes();
            let known = meetings.lock().unwrap().clone();
            let mut late: Vec<f64> = deletes[seen_deletes..]
                .iter()
                .filter_map(|d| {
                    let (deadline, _) = known.get(d.path.trim_start_matches("/rooms/"))?;
                    Some(match d.answered_at.duration_since(*deadline) {
                        Ok(x) => x.as_secs_f64() * 1000.0,
                        Err(e) => -e.duration().as_secs_f64() * 1000.0,
                    })
                })
                .collect();
            late.sort_by(f64::total_cmp);
            let (p50, p99, max) = if late.is_empty() {
                (f64::NAN, f64::NAN, f64::NAN)
            } else {
                (
                    percentile(&late, 0.5),
                    percentile(&late, 0.99),
                    late[late.len() - 1],
                )
            };
            println!(
                "  {:>5}s {:>9} {:>8.1} {:>5} {:>10} {:>9} {:>9.1} {:>9.1} {:>9.1}",
                started.elapsed().as_secs(),
                i,
                proc_status("VmRSS:") as f64 / 1024.0,
                fds(),
                db_bytes().await / 1024,
                deletes.len() - seen_deletes,
                p50,
                p99,
                max
            );
            seen_deletes = deletes.len();
        }
        next += interval;
        tokio::time::sleep_until(next.into()).await;
    }
    while let Some(done) = tasks.join_next().await {
        lost += usize::from(!done.unwrap());
    }
    // Let the last limited meetings reach their deadline.
    tokio::time::sleep(SOAK_LIMIT + Duration::from_secs(5)).await;
    let known = meetings.lock().unwrap().clone();
    let mut per_room: HashMap<String, Vec<SystemTime>> = HashMap::new();
    for d in fake.deletes() {
        if d.status == 204 {
            per_room
                .entry(d.path.trim_start_matches("/rooms/").to_owned())
                .or_default()
                .push(d.answered_at);
        }
    }
    let limited: Vec<_> = known.iter().filter(|(_, (_, w))| !w).collect();
    let missing = limited
        .iter()
        .filter(|(r, _)| !per_room.contains_key(*r))
        .count();
    let twice = per_room.values().filter(|v| v.len() > 1).count();
    let early = limited
        .iter()
        .filter(|(r, (deadline, _))| {
            per_room
                .get(*r)
                .is_some_and(|v| v.iter().any(|t| t < deadline))
        })
        .count();
    let webhook_ended_deleted = known
        .iter()
        .filter(|(r, (_, w))| *w && per_room.contains_key(*r))
        .count();
    println!(
        "  end: {} meetings ({} limited, {} ended by webhook); deliveries never acknowledged {lost}",
        known.len(),
        limited.len(),
        known.len() - limited.len()
    );
    println!(
        "  limited meetings without a DELETE {missing}, DELETEd twice {twice}, early {early}; webhook-ended meetings DELETEd {webhook_ended_deleted}"
    );
    println!(
        "  service at the end: RSS {:.1} MB (peak {:.1} MB), {} fds, database {} KB",
        proc_status("VmRSS:") as f64 / 1024.0,
        proc_status("VmHWM:") as f64 / 1024.0,
        fds(),
        db_bytes().await / 1024
    );
    drop(child.stdin.take());
    let _ = tokio::task::spawn_blocking(move || child.wait()).await;
    db.drop_database().await;
}

fn gcd(a: usize, b: usize) -> usize {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

/// Signed milliseconds `a − b`.
fn minus_ms(a: SystemTime, b: SystemTime) -> f64 {
    match a.duration_since(b) {
        Ok(d) => d.as_secs_f64() * 1000.0,
        Err(e) => -(e.duration().as_secs_f64() * 1000.0),
    }
}

/// `GET /rooms/{room}/users`: the room, else `None`.
fn users_room(r: &fake_eyeson::Recorded) -> Option<&str> {
    if r.method != reqwest::Method::GET {
        return None;
    }
    r.path.strip_prefix("/rooms/")?.strip_suffix("/users")
}

/// `alone [n] [rate] [every] [alone_after]`: see the module documentation.
async fn alone(n: usize, rate: u32, every: Duration, after: Duration) {
    use std::collections::HashMap;

    #[derive(Clone, Copy, PartialEq, Eq, Debug)]
    enum Kind {
        /// One bot leaves for good: to be ended once.
        Lone,
        /// Both bots stay: never ended.
        Company,
        /// One bot leaves and comes back `after / 2` later: never ended.
        Back,
    }
    let kind = |i: usize| match i % 10 {
        8 => Kind::Company,
        9 => Kind::Back,
        _ => Kind::Lone,
    };
    let room = |i: usize| format!("alone-{i}");

    ALONE.set(AloneRule { every, rate, after }).unwrap();
    let fake = Arc::new(FakeEyeson::start(KEY).await);
    let db = BenchDb::create("alone.db").await;
    let services = Services::start(&fake, &db).await;
    let replicas = services.urls.len();
    let http = reqwest::Client::new();
    let round = n as f64 / (rate as f64 * replicas as f64);
    println!(
        "bench alone: {n} meetings, --presence-rate {rate}/s, --presence-every {every:?}, --alone-after {after:?}, {} store, {replicas} replica(s)",
        db.engine()
    );
    println!(
        "  a round of checks takes N/rate = {round:.0} s ({})",
        if round <= every.as_secs_f64() {
            "within --presence-every"
        } else {
            "longer than --presence-every: checks cannot keep up, each meeting is checked about every N/rate"
        }
    );

    // Every meeting starts with two participants (bots), then the
    // service hears of it.
    let started = ms_floor(SystemTime::now());
    let ingest_started = Instant::now();
    let mut pending = tokio::task::JoinSet::new();
    for i in 0..n {
        let r = room(i);
        fake.start_meeting(&r, &iso(started));
        fake.bot(&r, "ada", true);
        fake.bot(&r, "bob", true);
        let body = delivery(&r, started);
        let sig = sign(KEY.as_bytes(), body.as_bytes());
        let http = http.clone();
        let url = services.urls[i % replicas].clone();
        pending.spawn(async move {
            let r = http
                .post(format!("{url}/webhook"))
                .header("x-eyeson-signature", sig)
                .body(body)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 204);
        });
        while pending.len() >= 64 {
            pending.join_next().await.unwrap().unwrap();
        }
    }
    while let Some(r) = pending.join_next().await {
        r.unwrap();
    }
    let ingest_took = ingest_started.elapsed();
    println!("  ingest of {n} signed deliveries: {ingest_took:.2?}");

    // The leaves: spread evenly over one `every` from 5 s on, in an order
    // unrelated to the order the rooms are checked in (about the ingest
    // order): slot k·step mod m, step coprime to m.
    let spread = option("--spread").map_or(every, |a| {
        a.parse::<u64>()
            .map(Duration::from_secs)
            .or_else(|_| humantime::parse_duration(&a))
            .unwrap()
    });
    let movers: Vec<usize> = (0..n).filter(|i| kind(*i) != Kind::Company).collect();
    let m = movers.len().max(1);
    let mut step = ((m as f64 * 0.618) as usize).max(1);
    while gcd(step, m) != 1 {
        step += 1;
    }
    let mut schedule: Vec<(Duration, usize, bool)> = Vec::new();
    for (k, &i) in movers.iter().enumerate() {
        let slot = (k * step) % m;
        let at = Duration::from_secs_f64(spread.as_secs_f64() * slot as f64 / m as f64);
        schedule.push((at, i, false));
        if kind(i) == Kind::Back {
            schedule.push((at + after / 2, i, true));
        }
    }
    schedule.sort_by_key(|s| s.0);
    let t0 = tokio::time::Instant::now() + Duration::from_secs(5);
    let mover = {
        let fake = fake.clone();
        tokio::spawn(async move {
            let mut left = HashMap::new();
            for (at, i, on) in schedule {
                tokio::time::sleep_until(t0 + at).await;
                fake.bot(&room(i), "bob", on);
                if !on {
                    left.insert(room(i), SystemTime::now());
                }
            }
            left
        })
    };

    // Wait for every lone meeting's end, scraping the overdue metric.
    let lone: Vec<String> = (0..n)
        .filter(|i| kind(*i) == Kind::Lone)
        .map(room)
        .collect();
    let patience = Duration::from_secs(5)
        + spread
        + after
        // Each alone end's last look takes a turn of the pace too.
        + Duration::from_secs_f64(round.max(every.as_secs_f64()) * 2.5)
        + Duration::from_secs(60);
    let wait_start = Instant::now();
    let mut requests: Vec<fake_eyeson::Recorded> = Vec::new();
    let mut ended: std::collections::HashSet<String> = Default::default();
    let mut overdue_max = 0f64;
    let mut last_report = Instant::now();
    loop {
        let new = fake.requests_from(requests.len());
        for r in &new {
            if r.method == reqwest::Method::DELETE && r.status == 204 {
                ended.insert(r.path.trim_start_matches("/rooms/").to_owned());
            }
        }
        requests.extend(new);
        if let Some(admin) = &services.admin {
            if let Ok(r) = http.get(format!("{admin}/metrics")).send().await {
                let text = r.text().await.unwrap_or_default();
                if let Some(v) = text
                    .lines()
                    .find(|l| l.starts_with(metrics_name::PRESENCE_OVERDUE))
                    .and_then(|l| l.split_whitespace().last())
                    .and_then(|v| v.parse::<f64>().ok())
                {
                    overdue_max = overdue_max.max(v);
                }
            }
        }
        let done = lone.iter().filter(|r| ended.contains(*r)).count();
        if mover.is_finished() && done == lone.len() {
            break;
        }
        if wait_start.elapsed() > patience {
            eprintln!(
                "  gave up waiting after {patience:?}: {done} of {} lone meetings ended",
                lone.len()
            );
            break;
        }
        if last_report.elapsed() >= Duration::from_secs(30) {
            last_report = Instant::now();
            eprintln!(
                "  … {:.0} s: {done} of {} lone meetings ended, {} requests, overdue max {overdue_max:.1} s",
                wait_start.elapsed().as_secs_f64(),
                lone.len(),
                requests.len()
            );
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let left = mover.await.unwrap();
    // A little longer, so that a second DELETE would be seen.
    tokio::time::sleep(Duration::from_secs(5)).await;
    requests.extend(fake.requests_from(requests.len()));

    // The figures.
    let mut deletes: HashMap<&str, Vec<&fake_eyeson::Recorded>> = HashMap::new();
    let mut checks: HashMap<&str, Vec<SystemTime>> = HashMap::new();
    let mut per_second: HashMap<u64, usize> = HashMap::new();
    let mut users_calls = 0usize;
    let mut users_not_200 = 0usize;
    for r in &requests {
        if r.method == reqwest::Method::DELETE {
            deletes
                .entry(r.path.trim_start_matches("/rooms/"))
                .or_default()
                .push(r);
        } else if let Some(room) = users_room(r) {
            users_calls += 1;
            users_not_200 += usize::from(r.status != 200);
            checks.entry(room).or_default().push(r.answered_at);
            let s = r
                .answered_at
                .duration_since(SystemTime::UNIX_EPOCH)
                .unwrap()
                .as_secs();
            *per_second.entry(s).or_default() += 1;
        }
    }
    let mut late_ms = Vec::new();
    let mut seen_ms = Vec::new();
    let mut after_deadline_ms = Vec::new();
    let mut missing = 0;
    for r in &lone {
        let Some(first) = deletes.get(r.as_str()).and_then(|d| {
            d.iter()
                .filter(|d| d.status == 204)
                .map(|d| d.answered_at)
                .min()
        }) else {
            missing += 1;
            continue;
        };
        let leave = left[r];
        late_ms.push(minus_ms(first, leave + after));
        // The first check that saw the meeting alone: the first after the
        // leave.
        if let Some(seen) = checks
            .get(r.as_str())
            .and_then(|c| c.iter().copied().filter(|t| *t >= leave).min())
        {
            seen_ms.push(minus_ms(seen, leave));
            // The alone deadline is about that check + alone_after.
            after_deadline_ms.push(minus_ms(first, seen + after));
        }
    }
    let ok_by_room = |r: &str| {
        deletes
            .get(r)
            .map_or(0, |d| d.iter().filter(|d| d.status == 204).count())
    };
    let twice = lone.iter().filter(|r| ok_by_room(r) > 1).count();
    let wrong = (0..n)
        .filter(|i| kind(*i) != Kind::Lone && deletes.contains_key(room(*i).as_str()))
        .count();
    let delete_calls: usize = deletes.values().map(Vec::len).sum();
    // How often one meeting was checked: the company meetings (no last
    // look before an end among their reads).
    let mut gaps = Vec::new();
    for i in (0..n).filter(|i| kind(*i) == Kind::Company) {
        if let Some(c) = checks.get(room(i).as_str()) {
            let mut c = c.clone();
            c.sort();
            gaps.extend(c.windows(2).map(|w| minus_ms(w[1], w[0]) / 1000.0));
        }
    }
    gaps.sort_by(f64::total_cmp);
    let (first_s, last_s) = (
        per_second.keys().min().copied().unwrap_or(0),
        per_second.keys().max().copied().unwrap_or(0),
    );
    let peak = per_second.values().max().copied().unwrap_or(0);
    let mean = users_calls as f64 / (last_s - first_s + 1) as f64;
    late_ms.sort_by(f64::total_cmp);
    seen_ms.sort_by(f64::total_cmp);
    after_deadline_ms.sort_by(f64::total_cmp);
    let stats = |v: &[f64]| {
        if v.is_empty() {
            "none".to_owned()
        } else {
            format!(
                "min {:.1} s, p50 {:.1} s, p99 {:.1} s, max {:.1} s",
                v[0] / 1000.0,
                percentile(v, 0.5) / 1000.0,
                percentile(v, 0.99) / 1000.0,
                v[v.len() - 1] / 1000.0
            )
        }
    };
    let early = late_ms.iter().filter(|l| **l < 0.0).count();
    let n_lone = lone.len();
    let n_company = (0..n).filter(|i| kind(*i) == Kind::Company).count();
    let n_back = n - n_lone - n_company;
    println!(
        "  {n_lone} lone (one bot leaves at a moment spread over {spread:?}), {n_company} with company throughout, {n_back} where it comes back after {:?}",
        after / 2
    );
    println!(
        "  lateness (first 2xx DELETE answered - (leave + alone_after)): {}",
        stats(&late_ms)
    );
    if let Some(p99) = (!late_ms.is_empty()).then(|| percentile(&late_ms, 0.99)) {
        println!(
            "  target p99 <= presence-every + 1 s ({:.0} s): {}",
            every.as_secs_f64() + 1.0,
            if p99 <= every.as_secs_f64() * 1000.0 + 1000.0 {
                "met"
            } else {
                "NOT met"
            }
        );
    }
    println!(
        "  of which the first check after the leave came: {}",
        stats(&seen_ms)
    );
    println!(
        "  and the DELETE after (that check + alone_after): {}",
        stats(&after_deadline_ms)
    );
    println!(
        "  GET /rooms/*/users: {users_calls} ({users_not_200} not 200) over {} s: peak {peak}/s, mean {mean:.1}/s; interval between two checks of one meeting (the company meetings): p50 {:.1} s, max {:.1} s",
        last_s - first_s + 1,
        gaps.get(gaps.len() / 2).copied().unwrap_or(f64::NAN),
        gaps.last().copied().unwrap_or(f64::NAN)
    );
    if services.admin.is_some() {
        println!(
            "  hard_limit_presence_overdue_seconds, highest scraped (each 1 s): {overdue_max:.1} s"
        );
    }
    println!(
        "  DELETE calls: {delete_calls}; lone meetings ended {} of {n_lone} (never: {missing}, twice: {twice}, before the ideal moment: {early}); meetings with company ended: {wrong}",
        n_lone - missing
    );
    println!(
        "  exactly once, none wrong: {}",
        missing == 0 && twice == 0 && wrong == 0 && early == 0
    );
    services.stop().await;
    db.drop_database().await;
}

/// The metric names the benchmarks read.
mod metrics_name {
    pub const PRESENCE_OVERDUE: &str = eyeson_hard_limit::metrics::PRESENCE_OVERDUE;
}
