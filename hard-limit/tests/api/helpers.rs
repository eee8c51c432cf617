//! `spawn_app()` and friends: a real service on 127.0.0.1 (port 0) with a
//! fresh SQLite file, talking to a fresh [`FakeEyeson`].
#![allow(dead_code)]

use std::future::Future;
use std::time::{Duration, Instant, SystemTime};

use eyeson_api::sign;
use eyeson_hard_limit::app::TestHooks;
use eyeson_hard_limit::config::Flags;
use eyeson_hard_limit::Application;
use serde_json::{json, Value};

pub use crate::fake_eyeson::FakeEyeson;

/// The API key every test uses.
pub const KEY: &str = "test-api-key-not-secret";

/// The default limit in tests (long: deadlines are placed by `started_at`).
pub const LIMIT: Duration = Duration::from_secs(30 * 60);

/// A running service under test.
pub struct TestApp {
    /// `http://127.0.0.1:PORT`: the public listener.
    pub url: String,
    /// `http://127.0.0.1:PORT`: the admin listener.
    pub admin: String,
    /// The fake eyeson it talks to.
    pub fake: FakeEyeson,
    /// HTTP client for the tests.
    pub http: reqwest::Client,
    /// The database URL (for restarts).
    pub database: String,
    /// The service's store (for test hooks and direct checks).
    pub store: eyeson_hard_limit::store_handle::Store,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
    _dir: Option<tempfile::TempDir>,
}

/// Logs for test runs: `TEST_LOG=1 cargo test`.
pub fn init_logs() {
    if std::env::var_os("TEST_LOG").is_some() {
        eyeson_hard_limit::cli::init_tracing();
    }
}

/// A service with the test defaults.
pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

/// A service with tweaked configuration.
pub async fn spawn_app_with(tweak: impl FnOnce(&mut Flags)) -> TestApp {
    spawn_app_on(FakeEyeson::start(KEY).await, tweak).await
}

/// A service with a fresh database on a fake prepared by the test.
pub async fn spawn_app_on(fake: FakeEyeson, tweak: impl FnOnce(&mut Flags)) -> TestApp {
    let (dir, database) = fresh_database();
    spawn_on(fake, database, Some(dir), tweak).await
}

/// A temporary directory and the URL of a database file in it.
pub fn fresh_database() -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let database = format!("sqlite://{}", dir.path().join("hard-limit.db").display());
    (dir, database)
}

/// A service on a given fake and database.
pub async fn spawn_on(
    fake: FakeEyeson,
    database: String,
    dir: Option<tempfile::TempDir>,
    tweak: impl FnOnce(&mut Flags),
) -> TestApp {
    spawn_hooked(fake, database, dir, TestHooks::default(), tweak).await
}

/// A service with a test's hooks (a manual clock, a fault to fire) and a
/// fresh database.
pub async fn spawn_app_hooked(hooks: TestHooks, tweak: impl FnOnce(&mut Flags)) -> TestApp {
    let (dir, database) = fresh_database();
    spawn_hooked(
        FakeEyeson::start(KEY).await,
        database,
        Some(dir),
        hooks,
        tweak,
    )
    .await
}

/// A service on a given fake and database, with a test's hooks.
pub async fn spawn_hooked(
    fake: FakeEyeson,
    database: String,
    dir: Option<tempfile::TempDir>,
    hooks: TestHooks,
    tweak: impl FnOnce(&mut Flags),
) -> TestApp {
    init_logs();
    let mut config = Flags::new(
        KEY.parse().unwrap(),
        fake.url().parse().unwrap(),
        database.clone(),
    );
    config.reconcile_every = Duration::from_secs(3600);
    config.max_duration = LIMIT;
    tweak(&mut config);
    let config = config.try_into().expect("the configuration is valid");
    let app = Application::build_with(config, hooks)
        .await
        .expect("service builds");
    let url = format!("http://{}", app.local_addr());
    let admin = format!("http://{}", app.admin_addr());
    let store = app.store();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        app.run_until_stopped(async {
            let _ = rx.await;
        })
        .await
        .expect("service runs");
    });
    TestApp {
        url,
        admin,
        fake,
        http: reqwest::Client::new(),
        database,
        store,
        stop: Some(tx),
        task: Some(task),
        _dir: dir,
    }
}

impl TestApp {
    /// Stops the service gracefully and waits until it has stopped;
    /// returns the fake and the database directory for a restart.
    pub async fn stop(mut self) -> (FakeEyeson, String, Option<tempfile::TempDir>) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            tokio::time::timeout(Duration::from_secs(20), task)
                .await
                .expect("service stops within 20 s")
                .expect("service task does not panic");
        }
        let dir = self._dir.take();
        let database = self.database.clone();
        // Move the fake out without running TestApp's Drop twice.
        let fake = take_fake(self);
        (fake, database, dir)
    }

    /// POSTs a body with a correct signature.
    pub async fn deliver(&self, body: &str) -> reqwest::Response {
        self.deliver_signed(body, Some(&sign(KEY.as_bytes(), body.as_bytes())))
            .await
    }

    /// POSTs a body with the given signature header (or none).
    pub async fn deliver_signed(&self, body: &str, signature: Option<&str>) -> reqwest::Response {
        let mut req = self
            .http
            .post(format!("{}/webhook", self.url))
            .header("content-type", "application/json")
            .body(body.to_owned());
        if let Some(sig) = signature {
            req = req.header("x-eyeson-signature", sig);
        }
        req.send().await.expect("service answers")
    }

    /// A meeting starts in the fake and eyeson tells the service; asserts 204.
    pub async fn meeting_starts(&self, room: &str, started_at: SystemTime) {
        self.fake.start_meeting(room, &iso(started_at));
        let r = self
            .deliver(&room_update(room, Some(started_at), false))
            .await;
        assert_eq!(r.status(), 204, "delivery for {room} accepted");
    }

    /// `GET /meetings` as JSON.
    pub async fn meetings(&self) -> Vec<Value> {
        self.admin_json("/meetings").await
    }

    /// `GET /meetings/{room}/history` as JSON.
    pub async fn history(&self, room: &str) -> Value {
        self.admin_json(&format!("/meetings/{room}/history")).await
    }

    async fn admin_json<T: serde::de::DeserializeOwned>(&self, path: &str) -> T {
        let r = self.http.get(format!("{}{path}", self.admin)).send();
        r.await.unwrap().json().await.unwrap()
    }

    /// The deadline the room's own page sees.
    pub async fn public_deadline(&self, room: &str) -> String {
        let m = self.public_meeting(room).await;
        m["deadline"].as_str().unwrap().to_owned()
    }

    /// `GET /meetings/{room}` on the public side, as the room's own page asks
    /// (with its guest token).
    pub async fn public_meeting(&self, room: &str) -> Value {
        let r = self.http.get(format!("{}/meetings/{room}", self.url));
        let r = r
            .header(
                "x-eyeson-guest-token",
                crate::fake_eyeson::guest_token_of(room),
            )
            .send();
        r.await.unwrap().json().await.unwrap()
    }

    /// The state of a meeting in `GET /meetings`, if listed.
    pub async fn state_of(&self, room: &str, started_at: SystemTime) -> Option<String> {
        let started = iso(started_at);
        self.meetings()
            .await
            .into_iter()
            .find(|m| m["room_id"] == room && m["started_at"] == started.as_str())
            .map(|m| m["state"].as_str().unwrap().to_owned())
    }

    /// Waits (bounded) until the meeting reaches `state`.
    pub async fn wait_for_state(&self, room: &str, started_at: SystemTime, state: &str) {
        wait_until(
            &format!("{room} becomes {state}"),
            Duration::from_secs(15),
            || async { self.state_of(room, started_at).await.as_deref() == Some(state) },
        )
        .await;
    }

    /// `GET /metrics` text.
    pub async fn metrics(&self) -> String {
        self.http
            .get(format!("{}/metrics", self.admin))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }
}

/// The value of one series (`name{labels}` exactly as rendered) in a
/// `/metrics` text, if it is there.
pub fn metric_value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
}

fn take_fake(mut app: TestApp) -> FakeEyeson {
    // TestApp has no Drop impl, so moving a field out is plain Rust.
    app.stop.take();
    app.task.take();
    let TestApp { fake, .. } = app;
    fake
}

/// ISO-8601 with milliseconds, as eyeson writes `started_at`.
pub fn iso(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}

/// `started_at` such that the meeting's deadline (with [`LIMIT`]) is `in_`
/// from now, truncated to whole milliseconds like eyeson's.
pub fn start_for_deadline_in(in_: Duration) -> SystemTime {
    let t = SystemTime::now() + in_ - LIMIT;
    let ms = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    SystemTime::UNIX_EPOCH + Duration::from_millis(ms)
}

/// `started_at` such that the deadline passed `ago`.
pub fn start_for_deadline_ago(ago: Duration) -> SystemTime {
    let t = SystemTime::now() - ago - LIMIT;
    let ms = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    SystemTime::UNIX_EPOCH + Duration::from_millis(ms)
}

/// Unix seconds now.
pub fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// A `room_update` delivery body stamped now.
pub fn room_update(room: &str, started_at: Option<SystemTime>, shutdown: bool) -> String {
    room_update_at(unix_now(), room, started_at, shutdown)
}

/// A `room_update` delivery body with a given `timestamp`.
pub fn room_update_at(
    ts: i64,
    room: &str,
    started_at: Option<SystemTime>,
    shutdown: bool,
) -> String {
    json!({
        "timestamp": ts,
        "type": "room_update",
        "room": {
            "id": room,
            "name": "Test room",
            "ready": started_at.is_some(),
            "started_at": started_at.map(iso),
            "shutdown": shutdown,
            "guest_token": crate::fake_eyeson::guest_token_of(room),
            "options": {"show_names": true}
        }
    })
    .to_string()
}

/// Polls `check` every 20 ms until it is true; panics after `timeout`.
pub async fn wait_until<F, Fut>(what: &str, timeout: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let start = Instant::now();
    loop {
        if check().await {
            return;
        }
        assert!(
            start.elapsed() < timeout,
            "timed out after {timeout:?} waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Asserts the shape of a DELETE the fake received: method, raw path and
/// the raw Authorization header.
pub fn assert_delete(r: &crate::fake_eyeson::Recorded, raw_path: &str) {
    assert_eq!(r.method, reqwest::Method::DELETE);
    assert_eq!(r.path, raw_path);
    assert_eq!(r.authorization.as_deref(), Some(KEY), "raw key, no Bearer");
}

/// The real binary as a process, pointed at `fake` and `database`, with its
/// stderr collected (and echoed with `label` when `TEST_LOG` is set). Returns
/// once it logged the address it listens on (within `ready_within`).
pub struct ServiceProcess {
    pub child: std::process::Child,
    pub url: String,
    /// The admin listener.
    pub admin: String,
    pub logs: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl ServiceProcess {
    pub fn spawn(
        fake: &FakeEyeson,
        database: &str,
        rust_log: &str,
        label: &str,
        ready_within: Duration,
        extra: &[(&str, &str)],
    ) -> ServiceProcess {
        use std::io::{BufRead, BufReader};
        use std::process::{Command, Stdio};

        let mut cmd = Command::new(env!("CARGO_BIN_EXE_eyeson-hard-limit"));
        cmd.env_clear()
            .env("EYESON_API_KEY", KEY)
            .env("EYESON_API_URL", fake.url())
            .env("LISTEN_ADDR", "127.0.0.1:0")
            .env("ADMIN_LISTEN", "127.0.0.1:0")
            .env("DATABASE_URL", database)
            .env("RECONCILE_EVERY", "1h")
            .env("RUST_LOG", rust_log)
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (k, v) in extra {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("binary starts");
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let logs = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = logs.clone();
        let label = label.to_owned();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if std::env::var_os("TEST_LOG").is_some() {
                    eprintln!("[{label}] {line}");
                }
                sink.lock().unwrap().push(line.clone());
                let _ = tx.send(line);
            }
        });
        let deadline = Instant::now() + ready_within;
        let field = |line: &str, name: &str| {
            line.split(name)
                .nth(1)
                .and_then(|rest| rest.split_whitespace().next())
                .map(str::to_owned)
        };
        let (addr, admin) = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = rx.recv_timeout(left).expect("the service logs its address");
            if line.contains("listening") {
                if let (Some(a), Some(b)) = (field(&line, " addr="), field(&line, " admin=")) {
                    break (a, b);
                }
            }
        };
        ServiceProcess {
            child,
            url: format!("http://{addr}"),
            admin: format!("http://{admin}"),
            logs,
        }
    }
}
