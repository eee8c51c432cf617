//! `--log-format json` (`LOG_FORMAT=json`): every line the binary writes to
//! stderr is one JSON object with the documented fields, the start-up,
//! a panic and the exit error included, and no secret appears in any.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::helpers::*;

const TOKEN: &str = "admin-token-never-logged-7f3a";

/// Runs the binary until it exits by itself; its stderr lines. Blocking:
/// call it off the runtime that serves the fake.
fn run_to_exit(fake_url: &str, database: &str, extra: &[(&str, &str)]) -> Vec<String> {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_eyeson-hard-limit"));
    cmd.env_clear()
        .env("EYESON_API_KEY", KEY)
        .env("EYESON_API_URL", fake_url)
        .env("LISTEN_ADDR", "127.0.0.1:0")
        .env("ADMIN_LISTEN", "127.0.0.1:0")
        .env("ADMIN_TOKEN", TOKEN)
        .env("DATABASE_URL", database)
        .env("RECONCILE_EVERY", "1h")
        .env("RUST_LOG", "debug")
        .env("LOG_FORMAT", "json")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    for (k, v) in extra {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("binary starts");
    let stderr = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
            .collect::<Vec<_>>()
    });
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > Duration::from_secs(30) {
            let _ = child.kill();
            panic!("still running after 30 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    reader.join().unwrap()
}

/// Each line as an object with the fields every line has.
fn parse(lines: &[String]) -> Vec<serde_json::Map<String, Value>> {
    assert!(!lines.is_empty());
    lines
        .iter()
        .map(|line| {
            let v: Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("not one JSON object ({e}): {line}"));
            let o = v
                .as_object()
                .unwrap_or_else(|| panic!("not an object: {line}"))
                .clone();
            let ts = o["timestamp"].as_str().unwrap();
            assert!(ts.ends_with('Z') && ts.len() >= 20, "{line}");
            assert!(
                ["TRACE", "DEBUG", "INFO", "WARN", "ERROR"].contains(&o["level"].as_str().unwrap()),
                "{line}"
            );
            assert!(o["target"].is_string(), "{line}");
            // Some libraries' events (sqlx's statements) carry fields only.
            assert!(o.get("message").is_none_or(Value::is_string), "{line}");
            o
        })
        .collect()
}

fn find<'a>(
    lines: &'a [serde_json::Map<String, Value>],
    message: &str,
) -> &'a serde_json::Map<String, Value> {
    lines
        .iter()
        .find(|o| {
            o.get("message")
                .and_then(Value::as_str)
                .is_some_and(|m| m.contains(message))
        })
        .unwrap_or_else(|| panic!("no line with {message:?}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn json_lines_with_stable_fields_from_start_to_a_panic_and_no_secret() {
    let fake = FakeEyeson::start(KEY).await;
    let (_dir, database) = fresh_database();
    let url = fake.url();
    let raw = tokio::task::spawn_blocking(move || {
        run_to_exit(
            &url,
            &database,
            &[("HARD_LIMIT_INJECT_FAULT", "reconciler@1s")],
        )
    })
    .await
    .unwrap();
    let lines = parse(&raw);
    let listening = find(&lines, "listening");
    assert_eq!(listening["level"], "INFO");
    assert_eq!(listening["target"], "eyeson_hard_limit::app");
    assert!(listening["addr"]
        .as_str()
        .unwrap()
        .starts_with("127.0.0.1:"));
    assert!(listening["admin"]
        .as_str()
        .unwrap()
        .starts_with("127.0.0.1:"));
    assert_eq!(listening["auth"], true);
    let panicked = find(&lines, "panicked");
    assert_eq!(panicked["level"], "ERROR");
    assert!(panicked["panic"]
        .as_str()
        .unwrap()
        .contains("injected fault"));
    let ended = find(&lines, "a background task ended unexpectedly");
    assert_eq!(ended["task"], "reconciler");
    find(&lines, "the reconciler task ended unexpectedly");
    for line in &raw {
        assert!(!line.contains(KEY), "the API key in {line}");
        assert!(!line.contains(TOKEN), "the admin token in {line}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_start_up_error_is_a_json_line_too() {
    let fake = FakeEyeson::start(KEY).await;
    let (_dir, database) = fresh_database();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let url = fake.url();
    let raw = tokio::task::spawn_blocking(move || {
        run_to_exit(&url, &database, &[("LISTEN_ADDR", &addr)])
    })
    .await
    .unwrap();
    let lines = parse(&raw);
    let error = find(&lines, "Address already in use");
    assert_eq!(error["level"], "ERROR");
    assert!(error["message"]
        .as_str()
        .unwrap()
        .starts_with("--listen 127.0.0.1:"));
}
