//! The real binary as a process: kill it, start it again on the same
//! database, and check nothing acknowledged or claimed is lost.

use std::process::{Child, Command};
use std::time::{Duration, SystemTime};

use crate::helpers::*;

struct Service {
    child: Child,
    url: String,
    admin: String,
    logs: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl Service {
    fn start(fake: &FakeEyeson, database: &str, extra: &[(&str, &str)]) -> Service {
        let ServiceProcess {
            child,
            url,
            admin,
            logs,
        } = ServiceProcess::spawn(
            fake,
            database,
            "debug",
            "child",
            Duration::from_secs(20),
            extra,
        );
        Service {
            child,
            url,
            admin,
            logs,
        }
    }

    /// Asserts the API key appears in no log line (at debug level).
    fn assert_key_never_logged(&self) {
        let logs = self.logs.lock().unwrap();
        assert!(!logs.is_empty());
        for line in logs.iter() {
            assert!(!line.contains(KEY), "the API key was logged: {line}");
        }
    }

    fn kill(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    fn terminate(&mut self) -> std::process::ExitStatus {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let start = std::time::Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "no exit after SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    async fn state_of(&self, room: &str, started_at: SystemTime) -> Option<String> {
        let list: Vec<serde_json::Value> = reqwest::get(format!("{}/meetings", self.admin))
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        list.into_iter()
            .find(|m| m["room_id"] == room && m["started_at"] == iso(started_at).as_str())
            .map(|m| m["state"].as_str().unwrap_or_default().to_owned())
    }

    async fn deliver(&self, body: &str) -> u16 {
        reqwest::Client::new()
            .post(format!("{}/webhook", self.url))
            .header(
                "x-eyeson-signature",
                eyeson_api::sign(KEY.as_bytes(), body.as_bytes()),
            )
            .body(body.to_owned())
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_meeting_due_while_the_service_was_down_is_shut_down_once() {
    let fake = FakeEyeson::start(KEY).await;
    let (_dir, db) = fresh_database();
    let first = Service::start(&fake, &db, &[]);
    let started = start_for_deadline_in(Duration::from_millis(2000));
    fake.start_meeting("room-r", &iso(started));
    assert_eq!(
        first
            .deliver(&room_update("room-r", Some(started), false))
            .await,
        204
    );
    // Acknowledged, then the process dies before the deadline.
    first.kill();
    assert!(fake.deletes().is_empty());
    wait_until("the deadline passes", Duration::from_secs(5), || async {
        SystemTime::now() > started + LIMIT
    })
    .await;
    let mut second = Service::start(&fake, &db, &[]);
    wait_until(
        "the meeting is shut down",
        Duration::from_secs(15),
        || async { second.state_of("room-r", started).await.as_deref() == Some("shut_down") },
    )
    .await;
    let deletes = fake.deletes();
    assert_eq!(deletes.len(), 1);
    assert_delete(&deletes[0], "/rooms/room-r");
    second.assert_key_never_logged();
    // SIGTERM: stop accepting, finish, exit 0.
    let status = second.terminate();
    assert!(status.success(), "{status:?}");
    // A third start has nothing left to do for it.
    let third = Service::start(&fake, &db, &[]);
    assert_eq!(
        third.state_of("room-r", started).await.as_deref(),
        Some("shut_down")
    );
    let sentinel = start_for_deadline_in(Duration::from_millis(300));
    fake.start_meeting("sentinel", &iso(sentinel));
    assert_eq!(
        third
            .deliver(&room_update("sentinel", Some(sentinel), false))
            .await,
        204
    );
    wait_until("sentinel shut down", Duration::from_secs(15), || async {
        third.state_of("sentinel", sentinel).await.as_deref() == Some("shut_down")
    })
    .await;
    assert_eq!(fake.calls("DELETE", "/rooms/room-r").len(), 1);
    third.kill();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_mid_shutdown_is_retried_after_restart() {
    let fake = FakeEyeson::start(KEY).await;
    fake.script_delete("room-c", &[0]); // the first call never answers
    let (_dir, db) = fresh_database();
    let lease = [("LEASE", "1s")];
    let first = Service::start(&fake, &db, &lease);
    let started = start_for_deadline_ago(Duration::from_secs(1));
    fake.start_meeting("room-c", &iso(started));
    assert_eq!(
        first
            .deliver(&room_update("room-c", Some(started), false))
            .await,
        204
    );
    wait_until(
        "the first call is in flight",
        Duration::from_secs(10),
        || async { fake.deletes().len() == 1 },
    )
    .await;
    assert_eq!(
        first.state_of("room-c", started).await.as_deref(),
        Some("stopping")
    );
    first.kill();
    let second = Service::start(&fake, &db, &lease);
    wait_until(
        "the claim is retried after its lease",
        Duration::from_secs(15),
        || async { second.state_of("room-c", started).await.as_deref() == Some("shut_down") },
    )
    .await;
    let statuses: Vec<u16> = fake
        .calls("DELETE", "/rooms/room-c")
        .iter()
        .map(|c| c.status)
        .collect();
    assert_eq!(
        statuses,
        [0, 204],
        "one unanswered call, then exactly one shutdown"
    );
    second.kill();
}

#[test]
fn help_names_every_variable_and_hides_the_key() {
    let out = Command::new(env!("CARGO_BIN_EXE_eyeson-hard-limit"))
        .arg("--help")
        .env("EYESON_API_KEY", "super-secret-value")
        .output()
        .unwrap();
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
    for var in [
        "EYESON_API_KEY",
        "EYESON_API_URL",
        "LISTEN_ADDR",
        "DATABASE_URL",
        "MAX_DURATION",
        "GRACE",
        "LIMITS_FILE",
        "WEBHOOK_URL",
        "RECONCILE_EVERY",
        "DRY_RUN",
    ] {
        assert!(help.contains(var), "--help lacks {var}");
    }
    assert!(!help.contains("super-secret-value"), "--help shows the key");
}

/// `--help` (and `-h`, and a subcommand's help) never shows the value of
/// an environment variable: `DATABASE_URL` may hold a password, the URLs a
/// token, `EYESON_API_KEY` is the key.
#[test]
fn help_shows_no_environment_value() {
    let secrets = [
        ("EYESON_API_KEY", "key-SECRET-1"),
        ("EYESON_API_URL", "https://user:SECRET-2@api.example.com"),
        (
            "DATABASE_URL",
            "postgres://hl:SECRET-3@db.internal/hard_limit",
        ),
        (
            "WEBHOOK_URL",
            "https://hl.example.com/webhook?token=SECRET-4",
        ),
        ("LIMITS_FILE", "/etc/SECRET-5/limits.toml"),
        ("LISTEN_ADDR", "127.0.0.1:9"),
        ("MAX_DURATION", "17m"),
    ];
    for args in [&["--help"][..], &["-h"], &["unregister", "--help"]] {
        let out = Command::new(env!("CARGO_BIN_EXE_eyeson-hard-limit"))
            .args(args)
            .env_clear()
            .envs(secrets)
            .output()
            .unwrap();
        assert!(out.status.success(), "{args:?}");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        if args[0] != "unregister" {
            assert!(text.contains("DATABASE_URL"), "{args:?}: {text}");
        }
        for (var, value) in secrets {
            assert!(
                !text.contains(value),
                "{args:?} shows the value of {var}: {text}"
            );
        }
        assert!(!text.contains("SECRET"), "{args:?}: {text}");
    }
}

/// Runs the binary with a bad configuration; returns its stderr.
fn refused_start(env: &[(&str, &str)]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_eyeson-hard-limit"))
        .env_clear()
        .env("DATABASE_URL", "sqlite::memory:")
        .env("LISTEN_ADDR", "127.0.0.1:0")
        .envs(env.iter().copied())
        .output()
        .unwrap();
    assert!(!out.status.success(), "started with {env:?}");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn a_malformed_key_is_refused_without_echoing_it() {
    let err = refused_start(&[("EYESON_API_KEY", "secret with spaces")]);
    assert!(err.contains("API key"), "{err}");
    assert!(!err.contains("secret with spaces"), "{err}");
}

#[test]
fn a_bad_configuration_exits_non_zero_without_the_key() {
    let err = refused_start(&[
        ("EYESON_API_KEY", "super-secret-value"),
        ("MAX_DURATION", "0s"),
    ]);
    assert!(err.contains("--max-duration"), "{err}");
    assert!(!err.contains("super-secret-value"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unregister_deletes_only_our_own_webhook() {
    let fake = FakeEyeson::start(KEY).await;
    fake.set_webhook(Some(
        serde_json::json!({"id": "theirs", "url": "https://other/hook", "types": ["room_update"]}),
    ));
    let run = |url: &str| {
        Command::new(env!("CARGO_BIN_EXE_eyeson-hard-limit"))
            .env_clear()
            .env("EYESON_API_KEY", KEY)
            .env("EYESON_API_URL", fake.url())
            .env("WEBHOOK_URL", url)
            .arg("unregister")
            .output()
            .unwrap()
    };
    let url = "https://mine/hook";
    let out = tokio::task::block_in_place(|| run(url));
    assert!(!out.status.success(), "deleted someone else's webhook");
    assert!(fake.calls("DELETE", "/webhooks/theirs").is_empty());
    // A foreign URL's query string (it may carry a token) is not printed.
    fake.set_webhook(Some(
        serde_json::json!({"id": "theirs", "url": "https://other/hook?token=s3cr3t", "types": ["room_update"]}),
    ));
    let out = tokio::task::block_in_place(|| run(url));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("https://other/hook"),
        "{stderr}"
    );
    assert!(!stderr.contains("s3cr3t"), "{stderr}");
    // eyeson may store a bare host without the slash `Url` adds: still ours.
    fake.set_webhook(Some(
        serde_json::json!({"id": "bare", "url": "https://mine.example", "types": ["room_update"]}),
    ));
    let out = tokio::task::block_in_place(|| run("https://mine.example/"));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(fake.calls("DELETE", "/webhooks/bare").len(), 1);
    fake.set_webhook(Some(
        serde_json::json!({"id": "mine1", "url": url, "types": ["room_update"]}),
    ));
    let out = tokio::task::block_in_place(|| run(url));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let calls = fake.calls("DELETE", "/webhooks/mine1");
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].authorization.as_deref(), Some(KEY));
    assert!(fake.webhook().is_none());
}
