//! What an attacker and an unlucky operator tried: requests forged from
//! other sites, absurd durations at every entry point, bad input that must
//! not look like a broken store, port clashes, two services on one SQLite
//! file, short tokens, guessed tokens, oversized and empty-keyed requests.

use std::time::{Duration, SystemTime};

use eyeson_hard_limit::config::{Config, Flags};
use eyeson_hard_limit::Application;

use crate::helpers::*;

const TOKEN: &str = "a-long-enough-admin-token-0f9e";

/// A client that sends the admin token with every request.
fn with_token(token: &str) -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert("authorization", format!("Bearer {token}").parse().unwrap());
    reqwest::Client::builder()
        .default_headers(headers)
        .build()
        .unwrap()
}

/// The admin listener's own `Host` (what a browser on the console sends).
fn own_host(app: &TestApp) -> String {
    app.admin.trim_start_matches("http://").to_owned()
}

async fn deadline_in_store(app: &TestApp, room: &str) -> String {
    app.meetings()
        .await
        .into_iter()
        .find(|m| m["room_id"] == room)
        .unwrap_or_else(|| panic!("{room} is listed"))["deadline"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// A page on another site can neither change nor read anything through
/// the operator's browser: a foreign `Origin` (the no-cors fetch of a
/// page), a foreign `Host` (DNS rebinding), a `text/plain` body (what a
/// no-cors fetch or a form can send) are refused before any handler; the
/// same requests from the listener's own origin work. With and without a
/// token.
#[tokio::test]
async fn requests_from_other_sites_are_refused() {
    for token in [None, Some(TOKEN)] {
        let mut app = spawn_app_with(|c| c.admin_token = token.map(|t| t.parse().unwrap())).await;
        if let Some(t) = token {
            app.http = with_token(t);
        }
        app.meeting_starts("csrf", SystemTime::now() - Duration::from_secs(60))
            .await;
        let before = deadline_in_store(&app, "csrf").await;
        let auth = format!("Bearer {}", token.unwrap_or("none"));
        let post = |path: &str, content_type: &str, origin: Option<&str>, host: Option<&str>| {
            let mut r = app
                .http
                .post(format!("{}/meetings/csrf/{path}", app.admin))
                .header("content-type", content_type)
                .header("authorization", &auth)
                .body(r#"{"by":"2h"}"#);
            if let Some(o) = origin {
                r = r.header("origin", o);
            }
            if let Some(h) = host {
                r = r.header("host", h);
            }
            r.send()
        };
        // The attacks.
        for (path, ct, origin, host, status, reason) in [
            (
                "end",
                "text/plain",
                Some("http://evil.example"),
                None,
                403,
                "origin",
            ),
            (
                "end",
                "application/json",
                Some("http://evil.example"),
                None,
                403,
                "origin",
            ),
            ("end", "application/json", Some("null"), None, 403, "origin"),
            ("extend", "text/plain", None, None, 415, "Content-Type"),
            (
                "extend",
                "application/x-www-form-urlencoded",
                None,
                None,
                415,
                "Content-Type",
            ),
            (
                "end",
                "application/json",
                None,
                Some("evil.example:8044"),
                403,
                "Host",
            ),
        ] {
            let r = post(path, ct, origin, host).await.unwrap();
            assert_eq!(r.status(), status, "{path} {ct} {origin:?} {host:?}");
            let body: serde_json::Value = r.json().await.unwrap();
            assert!(body["error"].as_str().unwrap().contains(reason), "{body}");
        }
        // A rebinding page reads nothing either.
        for path in ["/meetings", "/metrics", "/", "/console.js"] {
            let r = app
                .http
                .get(format!("{}{path}", app.admin))
                .header("host", "evil.example")
                .header("authorization", &auth)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 403, "{path} with a foreign Host");
        }
        let r = app
            .http
            .get(format!("{}/meetings", app.admin))
            .header("sec-fetch-site", "cross-site")
            .header("authorization", &auth)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 403, "Sec-Fetch-Site: cross-site");
        assert_eq!(
            deadline_in_store(&app, "csrf").await,
            before,
            "nothing moved"
        );
        assert!(app.fake.deletes().is_empty(), "nothing ended");
        let metrics = app.metrics().await;
        for reason in ["host", "origin", "content_type"] {
            let series = format!("hard_limit_admin_requests_refused_total{{reason=\"{reason}\"}}");
            assert!(
                metric_value(&metrics, &series).is_some_and(|v| v >= 1.0),
                "{series} counted in {metrics}"
            );
        }

        // The listener's own origin, and localhost, work.
        let own = format!("http://{}", own_host(&app));
        let r = post("extend", "application/json", Some(&own), None)
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "own origin");
        assert_ne!(deadline_in_store(&app, "csrf").await, before);
        let port = own_host(&app).rsplit_once(':').unwrap().1.to_owned();
        let r = app
            .http
            .get(format!("{}/meetings", app.admin))
            .header("host", format!("localhost:{port}"))
            .header("origin", format!("http://localhost:{port}"))
            .header("sec-fetch-site", "same-origin")
            .header("authorization", &auth)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "localhost on a loopback listener");
        app.stop().await;
    }
}

/// A name given with `--admin-host` (a proxy's) is accepted as Host and
/// Origin; others are not.
#[tokio::test]
async fn admin_host_names_are_accepted() {
    let app = spawn_app_with(|c| c.admin_host = vec!["console.example.com".into()]).await;
    let get = |host: &'static str| {
        app.http
            .get(format!("{}/meetings", app.admin))
            .header("host", host)
            .header("origin", format!("https://{host}"))
            .send()
    };
    assert_eq!(get("console.example.com").await.unwrap().status(), 200);
    assert_eq!(get("console.example.org").await.unwrap().status(), 403);
}

/// Every duration the service accepts has one range: limits and
/// extensions 1 s to 30 days. Outside it: 400 naming the field and the
/// range, nothing stored, and the store stays healthy.
#[tokio::test]
async fn absurd_durations_are_refused_at_the_admin_api() {
    let app = spawn_app().await;
    app.meeting_starts("dur", SystemTime::now() - Duration::from_secs(60))
        .await;
    let before = deadline_in_store(&app, "dur").await;
    let post = |body: serde_json::Value| {
        app.http
            .post(format!("{}/meetings/dur/extend", app.admin))
            .json(&body)
            .send()
    };
    for (body, field) in [
        (serde_json::json!({"by": "999999999h"}), "by:"),
        (serde_json::json!({"by": "31days"}), "by:"),
        (serde_json::json!({"by": "500ms"}), "by:"),
        (
            serde_json::json!({"until": "9999-12-31T00:00:00Z"}),
            "until:",
        ),
    ] {
        let r = post(body.clone()).await.unwrap();
        assert_eq!(r.status(), 400, "{body}");
        let text = r.text().await.unwrap();
        assert!(
            text.contains(field) && text.contains("30days"),
            "{body}: {text}"
        );
    }
    assert_eq!(
        deadline_in_store(&app, "dur").await,
        before,
        "nothing moved"
    );
    let r = post(serde_json::json!({"by": "2h"})).await.unwrap();
    assert_eq!(r.status(), 200, "an ordinary extension still works");

    for limit in ["1000000000d", "31days", "1ns", "999us", "500ms"] {
        let r = app
            .http
            .put(format!("{}/limits/rooms/y", app.admin))
            .json(&serde_json::json!({ "limit": limit }))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "limit {limit}");
        let text = r.text().await.unwrap();
        assert!(
            text.contains("limit:") && text.contains("1s to 30days"),
            "{limit}: {text}"
        );
    }
    let health = app
        .http
        .get(format!("{}/healthz", app.url))
        .send()
        .await
        .unwrap();
    assert_eq!(
        health.status(),
        200,
        "a refused value is not a broken store"
    );
    let l: serde_json::Value = app
        .http
        .get(format!("{}/limits", app.admin))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(l["rooms"], serde_json::json!({}), "nothing stored");
}

fn config_with(tweak: impl FnOnce(&mut Flags)) -> Flags {
    let mut c = Flags::new(
        KEY.parse().unwrap(),
        "http://127.0.0.1:9".parse().unwrap(),
        "sqlite::memory:".into(),
    );
    tweak(&mut c);
    c
}

async fn start_error(flags: Flags) -> String {
    // A configuration error reads as the start's (`StartError` is transparent).
    let config = match Config::try_from(flags) {
        Ok(config) => config,
        Err(e) => return e.to_string(),
    };
    match Application::build(config).await {
        Ok(_) => panic!("the service started"),
        Err(e) => e.to_string(),
    }
}

/// The same range at start: flags and the limits file, each error naming
/// the flag or the file's entry.
#[tokio::test]
async fn absurd_durations_are_refused_at_start() {
    let day = Duration::from_secs(24 * 3600);
    type Tweak = Box<dyn FnOnce(&mut Flags)>;
    let cases: Vec<(Tweak, &str)> = vec![
        (
            Box::new(|c| c.max_duration = Duration::from_micros(500)),
            "--max-duration 500us",
        ),
        (
            Box::new(|c| c.max_duration = Duration::from_secs(999_999_999 * 3600)),
            "--max-duration",
        ),
        (
            Box::new(move |c| c.max_duration = 31 * day),
            "--max-duration",
        ),
        (Box::new(move |c| c.grace = 31 * day), "--grace"),
        (
            Box::new(|c| c.warn_before = Some(Duration::from_millis(10))),
            "--warn-before",
        ),
        (Box::new(move |c| c.lease = 40 * day), "--lease"),
        (Box::new(move |c| c.retention = 400 * day), "--retention"),
    ];
    for (tweak, needle) in cases {
        let err = start_error(config_with(tweak)).await;
        assert!(err.contains(needle), "{needle}: {err}");
        assert!(err.contains(" to "), "names the range: {err}");
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("limits.toml");
    for (text, needle) in [
        ("[rooms]\n\"x\" = \"1ns\"\n", "[rooms] \"x\""),
        (
            "[prefixes]\n\"web-\" = \"9999999h\"\n",
            "[prefixes] \"web-\"",
        ),
    ] {
        std::fs::write(&file, text).unwrap();
        let err = start_error(config_with(|c| c.limits = Some(file.clone()))).await;
        assert!(
            err.contains(needle) && err.contains("1s to 30days") && err.contains("limits.toml"),
            "{err}"
        );
    }
    // The bounds themselves are accepted.
    let (_dir, database) = fresh_database();
    let ok = Application::build(
        config_with(|c| {
            c.database = database;
            c.listen = "127.0.0.1:0".parse().unwrap();
            c.admin_listen = "127.0.0.1:0".parse().unwrap();
            c.max_duration = 30 * day;
            c.grace = 30 * day;
        })
        .try_into()
        .unwrap(),
    )
    .await;
    assert!(ok.is_ok(), "{:?}", ok.err());
}

/// A port already in use: the message names the flag and the address.
#[tokio::test]
async fn a_port_clash_names_the_flag_and_the_address() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    for (flag, public) in [("--listen", true), ("--admin-listen", false)] {
        let err = start_error(config_with(|c| {
            c.listen = "127.0.0.1:0".parse().unwrap();
            c.admin_listen = "127.0.0.1:0".parse().unwrap();
            if public {
                c.listen = addr;
            } else {
                c.admin_listen = addr;
            }
        }))
        .await;
        assert!(
            err.starts_with(&format!("{flag} {addr}: ")) && err.contains("in use"),
            "{err}"
        );
    }
}

/// A second service on one SQLite file refuses to start, naming the file
/// and the process that holds it; once the first has stopped it starts.
#[tokio::test]
async fn two_services_on_one_sqlite_file_are_refused() {
    let first = spawn_app().await;
    let database = first.database.clone();
    let err = start_error(config_with(|c| {
        c.database = database.clone();
        c.listen = "127.0.0.1:0".parse().unwrap();
        c.admin_listen = "127.0.0.1:0".parse().unwrap();
    }))
    .await;
    let file = database.trim_start_matches("sqlite://");
    assert!(err.contains(file), "names the file: {err}");
    assert!(
        err.contains(&format!("pid {}", std::process::id())),
        "names the process: {err}"
    );
    assert!(
        err.contains("PostgreSQL"),
        "says the way to run several: {err}"
    );
    let (_fake, database, _dir) = first.stop().await;
    let second = Application::build(
        config_with(|c| {
            c.database = database.clone();
            c.listen = "127.0.0.1:0".parse().unwrap();
            c.admin_listen = "127.0.0.1:0".parse().unwrap();
        })
        .try_into()
        .unwrap(),
    )
    .await;
    assert!(
        second.is_ok(),
        "after the first stopped: {:?}",
        second.err()
    );
}

/// A token shorter than 16 characters is refused at start.
#[tokio::test]
async fn a_short_admin_token_is_refused() {
    for short in ["ZQ", "fifteen-chars-Z"] {
        let err = start_error(config_with(|c| {
            c.admin_token = Some(short.parse().unwrap())
        }))
        .await;
        assert!(err.contains("--admin-token") && err.contains("16"), "{err}");
        assert!(!err.contains(short), "the message repeats no token: {err}");
    }
}

/// Failed authentications are counted, and an address that keeps failing
/// is slowed down (refused unchecked for a moment) while another address
/// is not.
#[tokio::test]
async fn failed_authentications_are_counted_and_slowed_down() {
    let app = spawn_app_with(|c| c.admin_token = Some(TOKEN.parse().unwrap())).await;
    // Another address (127.0.0.2 is loopback too), never slowed down here.
    let other = reqwest::Client::builder()
        .local_address(std::net::IpAddr::from([127, 0, 0, 2]))
        .build()
        .unwrap();
    let count = || async {
        let text = other
            .get(format!("{}/metrics", app.admin))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        metric_value(&text, "hard_limit_admin_auth_failures_total")
            .unwrap_or_else(|| panic!("the metric is exported: {text}"))
    };
    let before = count().await;
    let mut statuses = Vec::new();
    for i in 0..12 {
        let r = app
            .http
            .get(format!("{}/meetings", app.admin))
            .bearer_auth(format!("guess-{i}-xxxxxxxxxxxxxxx"))
            .send()
            .await
            .unwrap();
        statuses.push(r.status().as_u16());
    }
    assert_eq!(statuses[..5], [401; 5], "a few failures are answered");
    assert!(statuses.contains(&429), "then slowed down: {statuses:?}");
    // The metric counts them all (other tests in this binary may add more).
    assert!(count().await - before >= 12.0);
    let r = other
        .get(format!("{}/meetings", app.admin))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "another address is unaffected");
}

/// Small things: an empty prefix or room id is a 400 naming it, and a body
/// over 2 MiB is a JSON 413 like every other error.
#[tokio::test]
async fn an_empty_key_and_an_oversized_body_get_json_errors() {
    let app = spawn_app().await;
    for (path, field) in [("prefixes/", "prefix:"), ("rooms/", "room_id:")] {
        let r = app
            .http
            .put(format!("{}/limits/{path}", app.admin))
            .json(&serde_json::json!({"limit": "1h"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{path}");
        let body: serde_json::Value = r.json().await.unwrap();
        assert!(body["error"].as_str().unwrap().contains(field), "{body}");
    }
    let big = format!(r#"{{"limit": "{}"}}"#, "1".repeat(3 << 20));
    let r = app
        .http
        .put(format!("{}/limits/rooms/big", app.admin))
        .header("content-type", "application/json")
        .body(big)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    let body: serde_json::Value = r.json().await.unwrap();
    assert!(body["error"].as_str().unwrap().contains("2 MiB"), "{body}");
}

/// The console's policy allows no inline script and no eval; its script is
/// a file of its own origin.
#[tokio::test]
async fn the_console_needs_no_inline_script() {
    let app = spawn_app().await;
    let r = app
        .http
        .get(format!("{}/", app.admin))
        .send()
        .await
        .unwrap();
    let csp = r.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    let script_src = csp
        .split(';')
        .map(str::trim)
        .find(|d| d.starts_with("script-src"))
        .unwrap_or_else(|| panic!("no script-src: {csp}"));
    assert_eq!(
        script_src, "script-src 'self'",
        "no unsafe-inline, no unsafe-eval"
    );
    let page = r.text().await.unwrap();
    assert!(page.contains(r#"<script src="/console.js"></script>"#));
    assert!(!page.contains("<script>"), "no inline script");
    let js = app
        .http
        .get(format!("{}/console.js", app.admin))
        .send()
        .await
        .unwrap();
    assert_eq!(js.status(), 200);
    assert!(js.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/javascript"));
    assert!(js.text().await.unwrap().contains("async function api("));
}
