//! Several replicas as real processes on one PostgreSQL database and one
//! fake eyeson: work spread, every meeting shut down exactly once, a
//! replica killed with SIGKILL while it holds leases, the database lost and
//! back mid-run. Skipped (with one message) when PostgreSQL is unreachable.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::process::{Child, Command};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use tokio::net::{TcpListener, TcpStream};

use crate::fake_eyeson::guest_token_of;
use crate::helpers::*;
use crate::pg::PgDb;

/// One replica: the real binary.
struct Replica {
    child: Child,
    url: String,
    admin: String,
    logs: Arc<Mutex<Vec<String>>>,
}

impl Replica {
    fn start(fake: &FakeEyeson, database: &str, extra: &[(&str, &str)]) -> Replica {
        let ServiceProcess {
            child,
            url,
            admin,
            logs,
        } = ServiceProcess::spawn(
            fake,
            database,
            "info",
            "replica",
            Duration::from_secs(30),
            &[&[("MAX_DURATION", "30m")], extra].concat(),
        );
        Replica {
            child,
            url,
            admin,
            logs,
        }
    }

    /// SIGKILL: no chance to finish or release anything.
    fn kill9(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// Asserts the process is alive and never logged a panic.
    fn assert_healthy_process(&mut self) {
        assert!(self.child.try_wait().unwrap().is_none(), "a replica exited");
        let logs = self.logs.lock().unwrap();
        assert!(
            !logs.iter().any(|l| l.contains("panicked")),
            "a replica panicked"
        );
    }

    /// Waits (bounded) until a log line contains `what`.
    async fn wait_for_log(&self, what: &str) {
        wait_until(what, Duration::from_secs(10), || async {
            self.logs.lock().unwrap().iter().any(|l| l.contains(what))
        })
        .await;
    }

    async fn health(&self, http: &reqwest::Client) -> u16 {
        match http.get(format!("{}/healthz", self.url)).send().await {
            Ok(r) => r.status().as_u16(),
            Err(_) => 0,
        }
    }

    /// `GET /meetings` on this replica's admin listener.
    async fn meetings(&self, http: &reqwest::Client) -> Vec<serde_json::Value> {
        let r = http.get(format!("{}/meetings", self.admin)).send();
        r.await.unwrap().json().await.unwrap()
    }

    async fn shutdowns(&self, http: &reqwest::Client) -> u64 {
        let text = http
            .get(format!("{}/metrics", self.admin))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        text.lines()
            .find(|l| l.starts_with("hard_limit_shutdowns_total{outcome=\"shut_down\"}"))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse::<f64>().ok())
            .map(|v| v as u64)
            .unwrap_or(0)
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn post(http: &reqwest::Client, url: &str, body: &str) -> u16 {
    match http
        .post(format!("{url}/webhook"))
        .header(
            "x-eyeson-signature",
            eyeson_api::sign(KEY.as_bytes(), body.as_bytes()),
        )
        .body(body.to_owned())
        .send()
        .await
    {
        Ok(r) => r.status().as_u16(),
        Err(_) => 0,
    }
}

/// Delivers `room_update`s for `meetings`, spread round-robin over the
/// replicas, `concurrency` at a time. Like eyeson, a delivery that is not
/// answered 204 is retried (on the next replica) until it is, within
/// `patience`. Returns how many answers were not 204.
async fn deliver_all(
    replicas: &[String],
    meetings: &[(String, SystemTime)],
    concurrency: usize,
    patience: Duration,
) -> usize {
    let http = reqwest::Client::new();
    let sem = Arc::new(tokio::sync::Semaphore::new(concurrency));
    let mut tasks = tokio::task::JoinSet::new();
    for (i, (room, started)) in meetings.iter().enumerate() {
        let permit = sem.clone().acquire_owned().await.unwrap();
        let http = http.clone();
        let replicas = replicas.to_vec();
        let body = room_update(room, Some(*started), false);
        tasks.spawn(async move {
            let start = Instant::now();
            let mut refused = 0;
            let mut n = i;
            loop {
                if post(&http, &replicas[n % replicas.len()], &body).await == 204 {
                    break;
                }
                refused += 1;
                assert!(start.elapsed() < patience, "a delivery was never accepted");
                n += 1;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            drop(permit);
            refused
        });
    }
    let mut refused = 0;
    while let Some(r) = tasks.join_next().await {
        refused += r.unwrap();
    }
    refused
}

/// Successful (204) DELETEs per raw room path.
fn successful_deletes(fake: &FakeEyeson) -> HashMap<String, usize> {
    let mut by_room = HashMap::new();
    for d in fake.deletes() {
        if d.status == 204 {
            *by_room.entry(d.path).or_default() += 1;
        }
    }
    by_room
}

fn meetings(
    prefix: &str,
    n: usize,
    first_due: Duration,
    spread: Duration,
) -> Vec<(String, SystemTime)> {
    (0..n)
        .map(|i| {
            let due = first_due + spread.mul_f64(i as f64 / n as f64);
            (format!("{prefix}-{i}"), start_for_deadline_in(due))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_shut_down_a_thousand_meetings_exactly_once() {
    let Some(db) = PgDb::create().await else {
        return;
    };
    let fake = FakeEyeson::start(KEY).await;
    let hook = "https://hard-limit.example.com/webhook";
    let all = meetings("busy", 1000, Duration::from_secs(5), Duration::from_secs(3));
    for (room, started) in &all {
        fake.start_meeting(room, &iso(*started));
    }
    let mut replicas: Vec<Replica> = (0..3)
        .map(|_| Replica::start(&fake, &db.url, &[("WEBHOOK_URL", hook)]))
        .collect();
    let urls: Vec<String> = replicas.iter().map(|r| r.url.clone()).collect();
    let began = Instant::now();
    let refused = deliver_all(&urls, &all, 48, Duration::from_secs(20)).await;
    assert_eq!(refused, 0, "every delivery accepted at once");
    let ingest = began.elapsed();
    wait_until(
        "all 1000 meetings shut down",
        Duration::from_secs(30),
        || async { fake.deletes().len() >= 1000 },
    )
    .await;
    // Leases would let a double claim show up within seconds; the metrics
    // agree with the fake once every outcome is recorded.
    let http = reqwest::Client::new();
    wait_until("outcomes recorded", Duration::from_secs(10), || async {
        let mut sum = 0;
        for r in &replicas {
            sum += r.shutdowns(&http).await;
        }
        sum >= 1000
    })
    .await;
    let mut per_replica = Vec::new();
    for r in &replicas {
        per_replica.push(r.shutdowns(&http).await);
    }
    let deletes = fake.deletes();
    assert_eq!(deletes.len(), 1000, "one DELETE per meeting, none twice");
    let by_room = successful_deletes(&fake);
    assert_eq!(by_room.len(), 1000);
    assert!(by_room.values().all(|n| *n == 1));
    let late: Vec<f64> = {
        let due: HashMap<String, SystemTime> = all
            .iter()
            .map(|(room, s)| (format!("/rooms/{room}"), *s + LIMIT))
            .collect();
        deletes
            .iter()
            .map(|d| match d.answered_at.duration_since(due[&d.path]) {
                Ok(late) => late.as_secs_f64(),
                Err(early) => panic!("{} shut down {:?} early", d.path, early.duration()),
            })
            .collect()
    };
    let max_late = late.iter().cloned().fold(0.0, f64::max);
    assert!(max_late < 5.0, "worst lateness {max_late}s");
    // Work spread over replicas: at least two shut meetings down.
    assert!(
        per_replica.iter().filter(|n| **n > 0).count() >= 2,
        "shutdowns per replica: {per_replica:?}"
    );
    // Registration converged: one POST among three replicas, never a DELETE.
    wait_until(
        "the webhook is registered",
        Duration::from_secs(10),
        || async { fake.webhook().is_some() },
    )
    .await;
    assert_eq!(fake.calls("POST", "/webhooks").len(), 1);
    assert!(fake
        .requests()
        .iter()
        .all(|r| !(r.method == reqwest::Method::DELETE && r.path.starts_with("/webhooks"))));
    for r in &mut replicas {
        r.assert_healthy_process();
    }
    eprintln!(
        "1000 deliveries in {ingest:?}; shutdowns per replica: {per_replica:?}; worst lateness {max_late:.3}s"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_killed_while_holding_leases_loses_nothing() {
    let Some(db) = PgDb::create().await else {
        return;
    };
    let fake = FakeEyeson::start(KEY).await;
    let n = 20;
    let all: Vec<(String, SystemTime)> = (0..n)
        .map(|i| {
            (
                format!("held-{i}"),
                start_for_deadline_ago(Duration::from_secs(1)),
            )
        })
        .collect();
    for (room, started) in &all {
        fake.start_meeting(room, &iso(*started));
        // The first DELETE hangs: whoever claims first is stuck holding the lease.
        fake.script_delete(room, &[0]);
    }
    let lease = [("LEASE", "3s")];
    let doomed = Replica::start(&fake, &db.url, &lease);
    let refused = deliver_all(
        std::slice::from_ref(&doomed.url),
        &all,
        8,
        Duration::from_secs(10),
    )
    .await;
    assert_eq!(refused, 0);
    wait_until(
        "the doomed replica holds every lease",
        Duration::from_secs(10),
        || async { fake.deletes().iter().filter(|d| d.status == 0).count() == n },
    )
    .await;
    let killed_at = Instant::now();
    doomed.kill9();
    let mut survivors: Vec<Replica> = (0..2)
        .map(|_| Replica::start(&fake, &db.url, &lease))
        .collect();
    wait_until(
        "every held meeting shut down",
        Duration::from_secs(20),
        || async { successful_deletes(&fake).len() == n },
    )
    .await;
    assert!(
        killed_at.elapsed() >= Duration::from_secs(1),
        "reclaimed only after the lease expired"
    );
    let by_room = successful_deletes(&fake);
    assert!(by_room.values().all(|c| *c == 1), "{by_room:?}");
    // Exactly two calls per meeting: the hung one and the successful retry.
    assert_eq!(fake.deletes().len(), 2 * n);
    let http = reqwest::Client::new();
    wait_until("outcomes recorded", Duration::from_secs(10), || async {
        let mut sum = 0;
        for r in &survivors {
            sum += r.shutdowns(&http).await;
        }
        sum == n as u64
    })
    .await;
    // The counter moves when the call completes; the outcome commits a
    // moment later.
    wait_until(
        "every outcome recorded",
        Duration::from_secs(10),
        || async {
            let list = survivors[0].meetings(&http).await;
            list.len() == n && list.iter().all(|m| m["state"] == "shut_down")
        },
    )
    .await;
    for r in &mut survivors {
        r.assert_healthy_process();
    }
}

/// A TCP proxy between the replicas and PostgreSQL that the test can cut
/// (every connection dropped, new ones refused) and restore: the database
/// "restarts" from the replicas' point of view without touching the
/// machine's PostgreSQL service.
struct Proxy {
    addr: SocketAddr,
    up: Arc<AtomicBool>,
    conns: Arc<Mutex<Vec<tokio::task::AbortHandle>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    async fn start(target: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let up = Arc::new(AtomicBool::new(true));
        let conns: Arc<Mutex<Vec<tokio::task::AbortHandle>>> = Arc::default();
        let (up2, conns2) = (up.clone(), conns.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else {
                    continue;
                };
                // Checked and registered under one lock, so a connection
                // accepted while the proxy is being cut cannot slip through.
                let mut conns = conns2.lock().unwrap();
                if !up2.load(Ordering::SeqCst) {
                    drop(inbound);
                    continue;
                }
                let piping = tokio::spawn(async move {
                    if let Ok(mut outbound) = TcpStream::connect(target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                conns.retain(|c| !c.is_finished());
                conns.push(piping.abort_handle());
            }
        });
        Proxy {
            addr,
            up,
            conns,
            task,
        }
    }

    fn cut(&self) {
        let mut conns = self.conns.lock().unwrap();
        self.up.store(false, Ordering::SeqCst);
        for c in conns.drain(..) {
            c.abort();
        }
    }

    fn restore(&self) {
        self.up.store(true, Ordering::SeqCst);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
        self.cut();
    }
}

fn pg_addr(db: &PgDb) -> SocketAddr {
    let url = reqwest::Url::parse(&db.url).unwrap();
    let host = url.host_str().unwrap_or("127.0.0.1");
    let host = if host == "localhost" {
        "127.0.0.1"
    } else {
        host
    };
    format!("{host}:{}", url.port().unwrap_or(5432))
        .parse()
        .expect("HARD_LIMIT_TEST_PG names an IP address")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn losing_the_database_mid_run_loses_no_acknowledged_webhook() {
    let Some(db) = PgDb::create().await else {
        return;
    };
    let proxy = Proxy::start(pg_addr(&db)).await;
    let via_proxy = db.url_via(proxy.addr);
    let fake = FakeEyeson::start(KEY).await;
    let http = reqwest::Client::new();
    // Before the outage: 200 meetings due 2–4 s from now.
    let before = meetings("early", 200, Duration::from_secs(2), Duration::from_secs(2));
    // During and after: 200 more, delivered while the database is gone
    // (retried until acknowledged, as eyeson does).
    let during = meetings("late", 200, Duration::from_secs(5), Duration::from_secs(2));
    for (room, started) in before.iter().chain(&during) {
        fake.start_meeting(room, &iso(*started));
    }
    let lease = [("LEASE", "3s")];
    let mut replicas: Vec<Replica> = (0..2)
        .map(|_| Replica::start(&fake, &via_proxy, &lease))
        .collect();
    let urls: Vec<String> = replicas.iter().map(|r| r.url.clone()).collect();
    let admins: Vec<String> = replicas.iter().map(|r| r.admin.clone()).collect();
    assert_eq!(
        deliver_all(&urls, &before, 32, Duration::from_secs(10)).await,
        0
    );
    // Let some shutdowns happen, then cut the database mid-run.
    wait_until("shutdowns begin", Duration::from_secs(10), || async {
        successful_deletes(&fake).len() >= 20
    })
    .await;
    proxy.cut();
    let cut_at = Instant::now();
    for r in &replicas {
        wait_until("/healthz turns 503", Duration::from_secs(10), || async {
            r.health(&http).await == 503
        })
        .await;
    }
    let body = room_update(
        "probe",
        Some(start_for_deadline_in(Duration::from_secs(60))),
        false,
    );
    assert_eq!(
        post(&http, &urls[0], &body).await,
        503,
        "webhooks answer 503"
    );
    // Deliveries during the outage: refused with 503, retried; the
    // database comes back while they are being retried.
    let sender = {
        let urls = urls.clone();
        let during = during.clone();
        tokio::spawn(async move { deliver_all(&urls, &during, 16, Duration::from_secs(30)).await })
    };
    wait_until(
        "some deliveries refused",
        Duration::from_secs(10),
        || async { cut_at.elapsed() > Duration::from_secs(2) },
    )
    .await;
    proxy.restore();
    let refused = sender.await.unwrap();
    assert!(
        refused > 0,
        "deliveries during the outage were refused (503)"
    );
    for r in &replicas {
        wait_until("/healthz recovers", Duration::from_secs(10), || async {
            r.health(&http).await == 200
        })
        .await;
    }
    wait_until(
        "every meeting enforced",
        Duration::from_secs(30),
        || async { successful_deletes(&fake).len() == before.len() + during.len() },
    )
    .await;
    let by_room = successful_deletes(&fake);
    assert!(
        by_room.values().all(|n| *n == 1),
        "one shutdown per meeting"
    );
    assert!(
        fake.deletes()
            .iter()
            .all(|d| d.status == 204 || d.status == 404),
        "repeats (outcome lost with the connection) only ever met 404"
    );
    // The probe (never acknowledged) is not tracked; everything is settled.
    wait_until(
        "every outcome recorded",
        Duration::from_secs(15),
        || async {
            let list: Vec<serde_json::Value> =
                match http.get(format!("{}/meetings", admins[1])).send().await {
                    Ok(r) => r.json().await.unwrap_or_default(),
                    Err(_) => return false,
                };
            list.len() == before.len() + during.len()
                && list
                    .iter()
                    .all(|m| m["state"] == "shut_down" || m["state"] == "ended")
        },
    )
    .await;
    // And the server side of a restart: PostgreSQL ends every backend of
    // the replicas. The next delivery and shutdown still go through.
    {
        use sqlx::Connection;
        let mut admin = sqlx::PgConnection::connect(&crate::pg::admin_url())
            .await
            .unwrap();
        let ended: i64 = sqlx::query_scalar(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
             WHERE datname = $1 AND pid <> pg_backend_pid()",
        )
        .bind(&db.name)
        .fetch_one(&mut admin)
        .await
        .unwrap();
        assert!(ended > 0, "the replicas had connections");
        let _ = admin.close().await;
    }
    let after = meetings(
        "after",
        10,
        Duration::from_millis(1500),
        Duration::from_millis(500),
    );
    for (room, started) in &after {
        fake.start_meeting(room, &iso(*started));
    }
    deliver_all(&urls, &after, 4, Duration::from_secs(15)).await;
    wait_until(
        "meetings after the backends ended enforced",
        Duration::from_secs(15),
        || async { successful_deletes(&fake).len() == before.len() + during.len() + after.len() },
    )
    .await;
    assert!(successful_deletes(&fake).values().all(|n| *n == 1));
    for r in &mut replicas {
        r.assert_healthy_process();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_meeting_written_through_one_replica_wakes_the_others() {
    let Some(db) = PgDb::create().await else {
        return;
    };
    let fake = FakeEyeson::start(KEY).await;
    // Both idle: nothing is open, so each scheduler sleeps its full minute
    // (waiting for the other's log line makes sure it went to sleep before
    // the meeting existed).
    let debug = [("RUST_LOG", "info,eyeson_hard_limit::runner=debug")];
    let writer = Replica::start(&fake, &db.url, &debug);
    let mut other = Replica::start(&fake, &db.url, &debug);
    other.wait_for_log("scheduler sleeping pause=60s").await;
    let started = start_for_deadline_in(Duration::from_millis(1500));
    fake.start_meeting("woken", &iso(started));
    let http = reqwest::Client::new();
    assert_eq!(
        post(
            &http,
            &writer.url,
            &room_update("woken", Some(started), false)
        )
        .await,
        204
    );
    // The replica that took the delivery dies before the deadline: only a
    // NOTIFY can have told the other one about the meeting in time.
    writer.kill9();
    wait_until(
        "the other replica shuts the meeting down at its deadline",
        Duration::from_secs(10),
        || async { successful_deletes(&fake).len() == 1 },
    )
    .await;
    let late = fake.deletes()[0]
        .answered_at
        .duration_since(started + LIMIT)
        .expect("not before the deadline");
    assert!(late < Duration::from_secs(2), "woken late: {late:?}");
    other.assert_healthy_process();
}

/// How to restart the machine's PostgreSQL: `pg_ctlcluster VERSION main
/// restart` for the Debian cluster the tests use. `None` (the test skips,
/// saying why) when the tests use another server or this one cannot be
/// restarted from here.
fn pg_restart_command() -> Result<Command, String> {
    let url = reqwest::Url::parse(&crate::pg::admin_url()).map_err(|e| e.to_string())?;
    if !matches!(url.host_str(), Some("127.0.0.1" | "localhost"))
        || url.port().unwrap_or(5432) != 5432
    {
        return Err(format!(
            "the tests use {}, not the local cluster",
            url.host_str().unwrap_or("?")
        ));
    }
    let version = std::fs::read_dir("/etc/postgresql")
        .map_err(|e| format!("no /etc/postgresql: {e}"))?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .max()
        .ok_or("no cluster under /etc/postgresql")?;
    if Command::new("pg_ctlcluster")
        .arg("--help")
        .output()
        .is_err()
    {
        return Err("pg_ctlcluster is not installed".into());
    }
    let uid = Command::new("id")
        .arg("-u")
        .output()
        .map_err(|e| e.to_string())?;
    if String::from_utf8_lossy(&uid.stdout).trim() != "0" {
        return Err("restarting the cluster needs root".into());
    }
    let mut cmd = Command::new("pg_ctlcluster");
    cmd.args(["--skip-systemctl-redirect", &version, "main", "restart"]);
    Ok(cmd)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_postgresql_restart_during_a_burst_loses_nothing() {
    let restart = match pg_restart_command() {
        Ok(cmd) => cmd,
        Err(why) => {
            eprintln!("skipping the PostgreSQL restart test: {why}");
            return;
        }
    };
    // Exclusive: no other test of this binary may use the server meanwhile.
    let Some(db) = PgDb::create_exclusive().await else {
        return;
    };
    let fake = FakeEyeson::start(KEY).await;
    let http = reqwest::Client::new();
    // 300 meetings due 2–6 s from now: the first third is delivered, then
    // the server restarts while shutdowns are under way and the other two
    // thirds are being delivered.
    let burst = meetings("burst", 300, Duration::from_secs(2), Duration::from_secs(4));
    for (room, started) in &burst {
        fake.start_meeting(room, &iso(*started));
    }
    let lease = [("LEASE", "3s")];
    let mut replicas: Vec<Replica> = (0..2)
        .map(|_| Replica::start(&fake, &db.url, &lease))
        .collect();
    let urls: Vec<String> = replicas.iter().map(|r| r.url.clone()).collect();
    let (first, rest) = burst.split_at(100);
    assert_eq!(
        deliver_all(&urls, first, 16, Duration::from_secs(10)).await,
        0
    );
    wait_until("shutdowns begin", Duration::from_secs(10), || async {
        successful_deletes(&fake).len() >= 10
    })
    .await;

    let mut restart = restart;
    let restarting = tokio::task::spawn_blocking(move || restart.output());
    let sender = {
        let (urls, rest) = (urls.clone(), rest.to_vec());
        // Retried until acknowledged, as eyeson does; the server is back
        // within seconds.
        tokio::spawn(async move { deliver_all(&urls, &rest, 16, Duration::from_secs(60)).await })
    };
    let out = restarting.await.unwrap().expect("pg_ctlcluster runs");
    assert!(
        out.status.success(),
        "pg_ctlcluster restart failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let refused = sender.await.unwrap();
    eprintln!("PostgreSQL restarted during the burst; {refused} deliveries refused and retried");

    wait_until(
        "every meeting enforced",
        Duration::from_secs(60),
        || async { successful_deletes(&fake).len() == burst.len() },
    )
    .await;
    assert!(
        successful_deletes(&fake).values().all(|n| *n == 1),
        "one shutdown per meeting"
    );
    let early: Vec<_> = fake
        .deletes()
        .into_iter()
        .filter(|d| {
            let room = d.path.trim_start_matches("/rooms/");
            let started = burst.iter().find(|(r, _)| r == room).unwrap().1;
            d.answered_at < started + LIMIT
        })
        .collect();
    assert!(
        early.is_empty(),
        "{} shut down before the deadline",
        early.len()
    );
    for r in &replicas {
        wait_until("/healthz is 200 again", Duration::from_secs(15), || async {
            r.health(&http).await == 200
        })
        .await;
    }
    for r in &mut replicas {
        r.assert_healthy_process();
    }
}

/// An operator's change through one replica reaches the others at once
/// (NOTIFY): a deadline moved earlier on one replica is enforced by
/// another that was asleep for a minute, and a limit set on one applies
/// on the other to meetings that start afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_changes_through_one_replica_reach_the_others() {
    let Some(db) = PgDb::create().await else {
        return;
    };
    let fake = FakeEyeson::start(KEY).await;
    let debug = [("RUST_LOG", "info,eyeson_hard_limit::runner=debug")];
    let writer = Replica::start(&fake, &db.url, &debug);
    let mut other = Replica::start(&fake, &db.url, &debug);
    other.wait_for_log("scheduler sleeping pause=60s").await;
    let http = reqwest::Client::new();

    // Limits: set on the writer, in force on the other within the test's
    // patience (its own reload interval is 30 s: only a NOTIFY is in time).
    let put = |body: serde_json::Value| {
        let req = http.put(format!("{}/limits/rooms/ltd", writer.admin));
        async move { req.json(&body).send().await.unwrap().status() }
    };
    let others_limits = || async {
        let r = http.get(format!("{}/limits", other.admin)).send().await;
        r.unwrap().json::<serde_json::Value>().await.unwrap()
    };
    assert_eq!(put(serde_json::json!({"limit": "1h"})).await, 200);
    wait_until(
        "the other replica has the limit",
        Duration::from_secs(10),
        || async { others_limits().await["rooms"]["ltd"] == "1h" },
    )
    .await;
    // The alone setting goes the same way (and leaves the limit as it is).
    assert_eq!(put(serde_json::json!({"alone_after": null})).await, 200);
    wait_until(
        "the other replica has the alone setting",
        Duration::from_secs(10),
        || async {
            let l = others_limits().await;
            l["alone_after"]["rooms"]["ltd"] == "off" && l["rooms"]["ltd"] == "1h"
        },
    )
    .await;
    let started = SystemTime::now() - Duration::from_secs(5);
    fake.start_meeting("ltd", &iso(started));
    assert_eq!(
        post(&http, &other.url, &room_update("ltd", Some(started), false)).await,
        204
    );
    let m: serde_json::Value = http
        .get(format!("{}/meetings/ltd", other.url))
        .header("x-eyeson-guest-token", guest_token_of("ltd"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(m["deadline"], iso(started + Duration::from_secs(3600)));

    // A deadline moved earlier through the writer, which then dies.
    let started = start_for_deadline_in(Duration::from_secs(600));
    fake.start_meeting("moved", &iso(started));
    let sleeps = || {
        other
            .logs
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.contains("scheduler sleeping pause=60s"))
            .count()
    };
    let before = sleeps();
    assert_eq!(
        post(
            &http,
            &writer.url,
            &room_update("moved", Some(started), false)
        )
        .await,
        204
    );
    // Woken by the new meeting, the other replica is asleep again.
    wait_until(
        "the other replica sleeps again",
        Duration::from_secs(10),
        || async { sleeps() > before },
    )
    .await;
    let until = SystemTime::now() + Duration::from_millis(1500);
    let r = http
        .post(format!("{}/meetings/moved/extend", writer.admin))
        .json(&serde_json::json!({"until": iso(until)}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    writer.kill9();
    wait_until(
        "the other replica ends the meeting at its new deadline",
        Duration::from_secs(10),
        || async { successful_deletes(&fake).get("/rooms/moved") == Some(&1) },
    )
    .await;
    let d = fake
        .deletes()
        .into_iter()
        .find(|d| d.path == "/rooms/moved")
        .unwrap();
    let late = d
        .answered_at
        .duration_since(until)
        .expect("not before the new deadline");
    assert!(late < Duration::from_secs(2), "woken late: {late:?}");
    assert_eq!(fake.deletes().len(), 1);
    other.assert_healthy_process();
}

/// The alone rule on two replicas, one killed while its participants
/// checks hang: the survivor takes the checks over once their leases end,
/// and every lone meeting is ended exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alone_meetings_end_once_when_a_checking_replica_is_killed() {
    let Some(db) = PgDb::create().await else {
        return;
    };
    let fake = FakeEyeson::start(KEY).await;
    let n = 12;
    let all: Vec<(String, SystemTime)> = (0..n)
        .map(|i| (format!("lone-{i}"), SystemTime::now()))
        .collect();
    for (room, started) in &all {
        fake.start_meeting(room, &iso(*started));
        fake.bot(room, "Ada", true);
        // The first check hangs: whoever claims it first holds its lease.
        fake.script_users(room, [eyeson_sandbox::script::Fault::Hang]);
    }
    let env = [
        ("LEASE", "3s"),
        ("ALONE_AFTER", "2s"),
        ("PRESENCE_EVERY", "1s"),
    ];
    let doomed = Replica::start(&fake, &db.url, &env);
    assert_eq!(
        deliver_all(
            std::slice::from_ref(&doomed.url),
            &all,
            4,
            Duration::from_secs(10)
        )
        .await,
        0
    );
    wait_until(
        "the doomed replica's checks hang",
        Duration::from_secs(10),
        || async {
            all.iter().all(|(room, _)| {
                !fake
                    .calls("GET", &format!("/rooms/{room}/users"))
                    .is_empty()
            })
        },
    )
    .await;
    let killed_at = Instant::now();
    doomed.kill9();
    let mut survivor = Replica::start(&fake, &db.url, &env);
    wait_until(
        "every lone meeting ended",
        Duration::from_secs(30),
        || async { successful_deletes(&fake).len() == n },
    )
    .await;
    assert!(
        killed_at.elapsed() >= Duration::from_secs(2),
        "only after the leases"
    );
    let by_room = successful_deletes(&fake);
    assert!(by_room.values().all(|c| *c == 1), "{by_room:?}");
    let http = reqwest::Client::new();
    wait_until("recorded ended_alone", Duration::from_secs(10), || async {
        let list = survivor.meetings(&http).await;
        list.len() == n && list.iter().all(|m| m["ended_alone"] == true)
    })
    .await;
    survivor.assert_healthy_process();
}
