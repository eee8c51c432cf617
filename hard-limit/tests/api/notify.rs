//! systemd's `Type=notify` and watchdog, without systemd: the test binds
//! the notification socket itself and runs the real binary with
//! `NOTIFY_SOCKET` and `WATCHDOG_USEC`, as systemd would.

use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use eyeson_api::sign;
use tokio::net::UnixDatagram;

use crate::helpers::*;

/// The watchdog period given to the service: it pings every 100 ms.
const WATCHDOG_USEC: &str = "200000";

struct Notified {
    socket: UnixDatagram,
    _dir: tempfile::TempDir,
    path: std::path::PathBuf,
}

impl Notified {
    fn bind() -> Notified {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify.sock");
        let socket = UnixDatagram::bind(&path).unwrap();
        Notified {
            socket,
            _dir: dir,
            path,
        }
    }

    /// The next datagram, or `None` if none arrives within `within`.
    async fn next(&self, within: Duration) -> Option<String> {
        let mut buf = vec![0u8; 4096];
        let n = tokio::time::timeout(within, self.socket.recv(&mut buf))
            .await
            .ok()?
            .unwrap();
        Some(String::from_utf8(buf[..n].to_vec()).unwrap())
    }

    /// Every datagram already queued.
    fn drain(&self) -> Vec<String> {
        let mut buf = vec![0u8; 4096];
        let mut out = Vec::new();
        while let Ok(n) = self.socket.try_recv(&mut buf) {
            out.push(String::from_utf8(buf[..n].to_vec()).unwrap());
        }
        out
    }
}

struct Service {
    child: Child,
    logs: Arc<Mutex<Vec<String>>>,
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Service {
    fn logged(&self, what: &str) -> bool {
        self.logs.lock().unwrap().iter().any(|l| l.contains(what))
    }
}

/// The binary under `NOTIFY_SOCKET`, without waiting for anything.
fn spawn(fake: &FakeEyeson, database: &str, notify: &Notified, extra: &[(&str, &str)]) -> Service {
    use std::io::{BufRead, BufReader};
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_eyeson-hard-limit"));
    cmd.env_clear()
        .env("EYESON_API_KEY", KEY)
        .env("EYESON_API_URL", fake.url())
        .env("LISTEN_ADDR", "127.0.0.1:0")
        .env("ADMIN_LISTEN", "127.0.0.1:0")
        .env("DATABASE_URL", database)
        .env("RECONCILE_EVERY", "1h")
        .env("RUST_LOG", "info")
        .env("NOTIFY_SOCKET", &notify.path)
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    for (k, v) in extra {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("binary starts");
    let stderr = child.stderr.take().unwrap();
    let logs = Arc::new(Mutex::new(Vec::new()));
    let sink = logs.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if std::env::var_os("TEST_LOG").is_some() {
                eprintln!("[notify] {line}");
            }
            sink.lock().unwrap().push(line);
        }
    });
    Service { child, logs }
}

/// `READY=1` with its status line: the public and the admin address.
async fn ready(notify: &Notified) -> (String, String) {
    let first = notify
        .next(Duration::from_secs(20))
        .await
        .expect("a notification within 20 s");
    let status = first
        .strip_prefix("READY=1\nSTATUS=listening on ")
        .unwrap_or_else(|| panic!("READY=1 first: {first:?}"));
    let (public, admin) = status.split_once(", admin on ").unwrap();
    (format!("http://{public}"), format!("http://{admin}"))
}

#[tokio::test]
async fn ready_once_listening_watchdog_while_running_stopping_on_sigterm() {
    let fake = FakeEyeson::start(KEY).await;
    let (_dir, database) = fresh_database();
    let notify = Notified::bind();
    let mut service = spawn(
        &fake,
        &database,
        &notify,
        &[("WATCHDOG_USEC", WATCHDOG_USEC)],
    );
    let (public, admin) = ready(&notify).await;
    // At READY both listeners are bound and the store is open: the first
    // requests after it succeed, nothing to retry.
    let http = reqwest::Client::new();
    let health = http.get(format!("{public}/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    let metrics = http.get(format!("{admin}/metrics")).send().await.unwrap();
    assert_eq!(metrics.status(), 200);

    let mut pings = 0;
    let start = Instant::now();
    while pings < 5 {
        let left = Duration::from_secs(10).saturating_sub(start.elapsed());
        let m = notify
            .next(left)
            .await
            .expect("five watchdog pings within 10 s");
        assert_eq!(m, "WATCHDOG=1");
        pings += 1;
    }

    let pid = service.child.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let stopping = async {
        loop {
            match notify.next(Duration::from_secs(10)).await.as_deref() {
                Some("WATCHDOG=1") => continue,
                other => return other.map(str::to_owned),
            }
        }
    };
    assert_eq!(stopping.await.as_deref(), Some("STOPPING=1"));
    let status = service.child.wait().unwrap();
    assert!(status.success(), "{status:?}");
}

#[tokio::test]
async fn the_watchdog_stops_when_a_background_task_dies() {
    let fake = FakeEyeson::start(KEY).await;
    // The shutdown call hangs: after the reconciler dies, the scheduler
    // waits for it (up to 3/4 of the lease), so the process stays alive
    // long enough to see that the pings stopped, not the process.
    fake.script_delete("wd-room", &[0]);
    let (_dir, database) = fresh_database();
    let notify = Notified::bind();
    let service = spawn(
        &fake,
        &database,
        &notify,
        &[
            ("WATCHDOG_USEC", WATCHDOG_USEC),
            ("HARD_LIMIT_INJECT_FAULT", "reconciler@4s"),
            ("LEASE", "20s"),
        ],
    );
    let (public, _) = ready(&notify).await;
    let started = start_for_deadline_ago(Duration::from_secs(1));
    fake.start_meeting("wd-room", &iso(started));
    let body = room_update("wd-room", Some(started), false);
    let r = reqwest::Client::new()
        .post(format!("{public}/webhook"))
        .header("content-type", "application/json")
        .header("x-eyeson-signature", sign(KEY.as_bytes(), body.as_bytes()))
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    wait_until("the hanging DELETE", Duration::from_secs(10), || async {
        !fake.deletes().is_empty()
    })
    .await;
    assert!(
        !service.logged("ended unexpectedly"),
        "the fault fired before the DELETE was in flight; the test needs a later one"
    );
    assert_eq!(
        notify.next(Duration::from_secs(2)).await.as_deref(),
        Some("WATCHDOG=1"),
        "pinging while every task runs"
    );
    wait_until("the reconciler dies", Duration::from_secs(15), || async {
        service.logged("a background task ended unexpectedly")
    })
    .await;
    notify.drain();
    // Ten watchdog periods: no ping, while the process still serves.
    assert_eq!(notify.next(Duration::from_secs(1)).await, None);
    let health = reqwest::get(format!("{public}/healthz")).await.unwrap();
    assert_eq!(health.status(), 503, "alive, and unhealthy");
}

#[tokio::test]
async fn no_readiness_when_start_fails() {
    let fake = FakeEyeson::start(KEY).await;
    let (_dir, database) = fresh_database();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let notify = Notified::bind();
    let mut service = spawn(&fake, &database, &notify, &[("LISTEN_ADDR", &addr)]);
    let status = service.child.wait().unwrap();
    assert!(!status.success());
    wait_until("the start-up error", Duration::from_secs(5), || async {
        service.logged("Address already in use")
    })
    .await;
    assert_eq!(notify.drain(), Vec::<String>::new(), "no READY=1");
}
