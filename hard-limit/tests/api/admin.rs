//! The admin listener: what moved there, the Bearer token, and the refusal
//! to expose it unprotected.

use std::time::{Duration, SystemTime};

use crate::fake_eyeson::guest_token_of;
use crate::helpers::*;

const TOKEN: &str = "op-token-7f3a9c21";

#[tokio::test]
async fn the_public_listener_no_longer_lists_rooms_or_metrics() {
    let app = spawn_app().await;
    app.meeting_starts("pub-room", start_for_deadline_in(Duration::from_secs(900)))
        .await;
    for path in ["/meetings", "/metrics", "/meetings/pub-room/history", "/"] {
        let r = app
            .http
            .get(format!("{}{path}", app.url))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 404, "public {path}");
    }
    // What stays public: one room's own deadline, to its guest token.
    let r = app
        .http
        .get(format!("{}/meetings/pub-room", app.url))
        .header("x-eyeson-guest-token", guest_token_of("pub-room"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // And the admin side has the rest, on its own port.
    assert_ne!(app.url, app.admin);
    assert_eq!(app.meetings().await.len(), 1);
    assert!(app.metrics().await.contains("hard_limit_"));
    for path in ["/webhook", "/healthz"] {
        let r = app
            .http
            .get(format!("{}{path}", app.admin))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 404, "admin {path}");
    }
}

#[tokio::test]
async fn with_a_token_every_admin_request_needs_it() {
    let app = spawn_app_with(|c| c.admin_token = Some(TOKEN.parse().unwrap())).await;
    for path in ["/meetings", "/metrics"] {
        let url = format!("{}{path}", app.admin);
        let r = app.http.get(&url).send().await.unwrap();
        assert_eq!(r.status(), 401, "{path} without a token");
        assert!(r.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .starts_with("Bearer"));
        let body = r.text().await.unwrap();
        assert!(body.contains("admin token"), "{body}");
        for wrong in [
            "Bearer op-token-7f3a9c22",
            "Bearer op-token-7f3a9c2",
            "Bearer op-token-7f3a9c210",
            "Basic b3A6dG9rZW4=",
            TOKEN,
            "Bearer",
        ] {
            let r = get_checked(&app, &url, wrong).await;
            assert_eq!(r.status(), 401, "{path} with {wrong:?}");
        }
        for right in [format!("Bearer {TOKEN}"), format!("bearer {TOKEN}")] {
            let r = get_checked(&app, &url, &right).await;
            assert_eq!(r.status(), 200, "{path} with the token");
        }
    }
    // The console page itself loads without one (it asks for the token).
    let r = app
        .http
        .get(format!("{}/", app.admin))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(!r.text().await.unwrap().contains(TOKEN));
}

/// A GET with this Authorization header, once the service checks it:
/// after a burst of failures an address is refused unchecked (429) until
/// `Retry-After` has passed.
pub async fn get_checked(app: &TestApp, url: &str, authorization: &str) -> reqwest::Response {
    for _ in 0..20 {
        let r = app
            .http
            .get(url)
            .header("authorization", authorization)
            .send()
            .await
            .unwrap();
        if r.status() != 429 {
            return r;
        }
        let wait: u64 = r.headers()["retry-after"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!((1..=2).contains(&wait), "Retry-After {wait}");
        tokio::time::sleep(Duration::from_secs(wait)).await;
    }
    panic!("still throttled after 20 tries");
}

/// The binary: the token is in no log line (debug level, with requests
/// that carry it and that get it wrong), not in `--help` and not in
/// `/metrics`; a non-loopback admin address without a token refuses to
/// start, naming both flags.
#[tokio::test]
async fn the_token_never_leaks_and_an_open_admin_port_is_refused() {
    let fake = FakeEyeson::start(KEY).await;
    let (_dir, database) = fresh_database();
    let svc = ServiceProcess::spawn(
        &fake,
        &database,
        "debug",
        "admin",
        Duration::from_secs(20),
        &[("ADMIN_TOKEN", TOKEN)],
    );
    let http = reqwest::Client::new();
    let ok = http
        .get(format!("{}/metrics", svc.admin))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    let text = ok.text().await.unwrap();
    assert!(!text.contains(TOKEN), "token in /metrics");
    let bad = http
        .get(format!("{}/meetings", svc.admin))
        .bearer_auth(format!("{TOKEN}x"))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 401);
    assert!(!bad.text().await.unwrap().contains(TOKEN));
    let mut child = svc.child;
    child.kill().unwrap();
    child.wait().unwrap();
    let logs = svc.logs.lock().unwrap().clone();
    assert!(logs.iter().any(|l| l.contains("listening")));
    for line in &logs {
        assert!(!line.contains(TOKEN), "token logged: {line}");
    }

    let bin = env!("CARGO_BIN_EXE_eyeson-hard-limit");
    let help = std::process::Command::new(bin)
        .arg("--help")
        .env("ADMIN_TOKEN", TOKEN)
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(help.contains("--admin-token"), "{help}");
    assert!(!help.contains(TOKEN), "token in --help");

    let refused = std::process::Command::new(bin)
        .env_clear()
        .env("EYESON_API_KEY", KEY)
        .env("EYESON_API_URL", fake.url())
        .env("LISTEN_ADDR", "127.0.0.1:0")
        .env("ADMIN_LISTEN", "0.0.0.0:0")
        .env("DATABASE_URL", &database)
        .output()
        .unwrap();
    assert!(!refused.status.success());
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(
        err.contains("--admin-listen") && err.contains("--admin-token"),
        "{err}"
    );
}

async fn post_json(app: &TestApp, path: &str, body: serde_json::Value) -> reqwest::Response {
    app.http
        .post(format!("{}{path}", app.admin))
        .json(&body)
        .send()
        .await
        .unwrap()
}

/// The scheduler is asleep towards the old deadline when the extension
/// lands: it must not end the meeting then. A second room due just after
/// the old deadline shows the scheduler has run past it.
#[tokio::test]
async fn an_extension_moves_the_deadline_and_the_old_one_does_not_fire() {
    let app = spawn_app().await;
    let a = start_for_deadline_in(Duration::from_millis(1500));
    let witness = start_for_deadline_in(Duration::from_millis(2500));
    app.meeting_starts("ext-a", a).await;
    app.meeting_starts("ext-witness", witness).await;
    let r = post_json(
        &app,
        "/meetings/ext-a/extend",
        serde_json::json!({"by": "1h"}),
    )
    .await;
    assert_eq!(r.status(), 200);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["old_deadline"], iso(a + LIMIT));
    assert_eq!(body["deadline"], iso(a + LIMIT + Duration::from_secs(3600)));
    assert_eq!(
        app.public_deadline("ext-a").await,
        iso(a + LIMIT + Duration::from_secs(3600))
    );
    app.wait_for_state("ext-witness", witness, "shut_down")
        .await;
    assert_eq!(app.fake.deletes().len(), 1, "only the witness was ended");
    assert_eq!(app.state_of("ext-a", a).await.as_deref(), Some("running"));

    // `until`: a fixed time; earlier than the current deadline is allowed.
    let until = SystemTime::now() + Duration::from_secs(600);
    let r = post_json(
        &app,
        "/meetings/ext-a/extend",
        serde_json::json!({"until": iso(until)}),
    )
    .await;
    assert_eq!(r.status(), 200);
    assert_eq!(app.public_deadline("ext-a").await, iso(until));
}

#[tokio::test]
async fn bad_extensions_are_refused_naming_the_field() {
    let app = spawn_app().await;
    let a = start_for_deadline_in(Duration::from_secs(900));
    app.meeting_starts("ext-bad", a).await;
    let cases = [
        (serde_json::json!({"by": "soon"}), 400, "by:"),
        (serde_json::json!({"by": "0s"}), 400, "by:"),
        (serde_json::json!({"by": "-5m"}), 400, "by:"),
        (serde_json::json!({"until": "tomorrow"}), 400, "until:"),
        (
            serde_json::json!({"until": "2001-01-01T00:00:00Z"}),
            400,
            "until:",
        ),
        (
            serde_json::json!({"by": "1m", "until": "2030-01-01T00:00:00Z"}),
            400,
            "not both",
        ),
        (serde_json::json!({}), 400, "by"),
        (serde_json::json!({"for": "1m"}), 400, "unknown field"),
        (serde_json::json!({"by": 15}), 400, "by"),
        (
            serde_json::json!({"by": "1m", "started_at": "2001-01-01T00:00:00Z"}),
            409,
            "started_at:",
        ),
        (
            serde_json::json!({"by": "1m", "started_at": "x"}),
            400,
            "started_at:",
        ),
    ];
    for (body, status, needle) in cases {
        let r = post_json(&app, "/meetings/ext-bad/extend", body.clone()).await;
        assert_eq!(r.status(), status, "{body}");
        let text = r.text().await.unwrap();
        assert!(text.contains(needle), "{body}: {text}");
    }
    let r = app
        .http
        .post(format!("{}/meetings/ext-bad/extend", app.admin))
        .header("content-type", "application/json")
        .body("not json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let r = post_json(
        &app,
        "/meetings/nobody/extend",
        serde_json::json!({"by": "1m"}),
    )
    .await;
    assert_eq!(r.status(), 404);
    assert_eq!(
        app.public_deadline("ext-bad").await,
        iso(a + LIMIT),
        "nothing moved"
    );
    assert!(app.fake.deletes().is_empty());
}

/// End now goes through the scheduler: one DELETE, recorded `shut_down`;
/// a stopping meeting can neither be extended nor ended again (409); the
/// history shows the action among the meeting's transitions.
#[tokio::test]
async fn end_now_shuts_the_meeting_down_once_and_the_history_shows_it() {
    let app = spawn_app().await;
    let a = start_for_deadline_in(Duration::from_secs(900));
    app.meeting_starts("end-me", a).await;
    let r = post_json(
        &app,
        "/meetings/end-me/end",
        serde_json::json!({"started_at": iso(a)}),
    )
    .await;
    assert_eq!(r.status(), 202);
    app.wait_for_state("end-me", a, "shut_down").await;
    let deletes = app.fake.deletes();
    assert_eq!(deletes.len(), 1);
    assert_delete(&deletes[0], "/rooms/end-me");
    assert!(!app.fake.is_running("end-me"));
    let r = post_json(&app, "/meetings/end-me/end", serde_json::json!({})).await;
    assert_eq!(r.status(), 404, "no open meeting any more");

    let h = app.history("end-me").await;
    let events: Vec<&str> = h["meetings"][0]["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    assert_eq!(events, ["started", "tracked", "end", "shut_down"], "{h}");
    let end = &h["actions"][0];
    assert_eq!(end["event"], "end");
    assert_eq!(end["old_deadline"], iso(a + LIMIT));
    assert!(
        end["caller"].as_str().unwrap().starts_with("127.0.0.1:"),
        "{end}"
    );
    assert_eq!(h["meetings"][0]["state"], "shut_down");
}

#[tokio::test]
async fn a_stopping_meeting_cannot_be_moved() {
    let app = spawn_app().await;
    let a = start_for_deadline_in(Duration::from_secs(900));
    app.meeting_starts("stuck", a).await;
    // The DELETE hangs: the meeting stays `stopping` while it is in flight.
    app.fake.script_delete("stuck", &[0]);
    let r = post_json(&app, "/meetings/stuck/end", serde_json::json!({})).await;
    assert_eq!(r.status(), 202);
    app.wait_for_state("stuck", a, "stopping").await;
    for (path, body) in [
        ("/meetings/stuck/extend", serde_json::json!({"by": "1h"})),
        ("/meetings/stuck/end", serde_json::json!({})),
    ] {
        let r = post_json(&app, path, body).await;
        assert_eq!(r.status(), 409, "{path}");
        assert!(r.text().await.unwrap().contains("stopping"));
    }
}

async fn limits(app: &TestApp) -> serde_json::Value {
    app.http
        .get(format!("{}/limits", app.admin))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

async fn put_limit(app: &TestApp, path: &str, body: &str) -> reqwest::Response {
    app.http
        .put(format!("{}/limits/{path}", app.admin))
        .header("content-type", "application/json")
        .body(body.to_owned())
        .send()
        .await
        .unwrap()
}

/// Limits set at run time apply to meetings that start afterwards (not to
/// those already tracked); the limits file seeds them; bad input names
/// the field; every change is in the room's history.
#[tokio::test]
async fn runtime_limits_apply_to_later_meetings() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("limits.toml");
    std::fs::write(&file, "[rooms]\n\"seeded\" = \"2h\"\n").unwrap();
    let app = spawn_app_with(|c| c.limits = Some(file.clone())).await;
    let l = limits(&app).await;
    assert_eq!(l["default"], "30m");
    assert_eq!(l["rooms"]["seeded"], "2h");

    let before = SystemTime::now() - Duration::from_secs(60);
    app.meeting_starts("web-early", before).await;
    assert_eq!(app.public_deadline("web-early").await, iso(before + LIMIT));

    let r = put_limit(&app, "prefixes/web-", r#"{"limit": "45m"}"#).await;
    assert_eq!(r.status(), 200);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["previous"], serde_json::Value::Null);
    let r = put_limit(&app, "rooms/web-vip", r#"{"limit": "3h"}"#).await;
    assert_eq!(r.status(), 200);
    let l = limits(&app).await;
    assert_eq!(l["prefixes"]["web-"], "45m");
    assert_eq!(l["rooms"]["web-vip"], "3h");

    let later = SystemTime::now() - Duration::from_secs(30);
    for room in ["web-late", "web-vip", "other"] {
        app.meeting_starts(room, later).await;
    }
    assert_eq!(
        app.public_deadline("web-late").await,
        iso(later + Duration::from_secs(45 * 60))
    );
    assert_eq!(
        app.public_deadline("web-vip").await,
        iso(later + Duration::from_secs(3 * 3600))
    );
    assert_eq!(app.public_deadline("other").await, iso(later + LIMIT));
    assert_eq!(
        app.public_deadline("web-early").await,
        iso(before + LIMIT),
        "a meeting tracked before keeps its deadline"
    );

    for (path, body, needle) in [
        ("rooms/x", r#"{"limit": "soon"}"#, "limit:"),
        ("rooms/x", r#"{"limit": "0s"}"#, "limit:"),
        ("rooms/x", r#"{"max": "1h"}"#, "limit"),
        ("rooms/x", "1h", "JSON"),
    ] {
        let r = put_limit(&app, path, body).await;
        assert_eq!(r.status(), 400, "{body}");
        let text = r.text().await.unwrap();
        assert!(text.contains(needle), "{body}: {text}");
    }

    let del = |path: &str| {
        app.http
            .delete(format!("{}/limits/{path}", app.admin))
            .header("content-type", "application/json")
            .send()
    };
    assert_eq!(del("rooms/web-vip").await.unwrap().status(), 200);
    assert_eq!(del("rooms/web-vip").await.unwrap().status(), 404);
    assert_eq!(del("prefixes/web-").await.unwrap().status(), 200);
    let l = limits(&app).await;
    assert_eq!(l["rooms"], serde_json::json!({"seeded": "2h"}));
    assert_eq!(l["prefixes"], serde_json::json!({}));

    let h = app.history("web-vip").await;
    let actions: Vec<&str> = h["actions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["event"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["limit_removed", "limit_set"], "{h}");
}

/// One clock for every part of the service, driven by the test: a
/// deadline half an hour away is enforced once the clock is moved past
/// it, "the past" for an extension is the service's clock, not the
/// wall's, and so is "fresh" for a delivery's signature.
#[tokio::test]
async fn the_service_runs_on_the_clock_it_is_given() {
    use eyeson_hard_limit::app::TestHooks;
    use eyeson_hard_limit::clock::{Clock, ManualClock, SharedClock};
    use eyeson_hard_limit::domain::Timestamp;
    let clock = std::sync::Arc::new(ManualClock::new(Timestamp::from_system_time(
        SystemTime::now(),
    )));
    let hooks = TestHooks {
        clock: SharedClock(clock.clone()),
        ..TestHooks::default()
    };
    let app = spawn_app_hooked(hooks, |_| {}).await;
    let started = SystemTime::now() - Duration::from_secs(60);
    app.meeting_starts("clocked", started).await;
    // Twenty minutes on (nine before the deadline), ten minutes from the
    // wall's now is in the past for the service.
    clock.advance(Duration::from_secs(20 * 60));
    let r = post_json(
        &app,
        "/meetings/clocked/extend",
        serde_json::json!({"until": iso(SystemTime::now() + Duration::from_secs(600))}),
    )
    .await;
    assert_eq!(r.status(), 400);
    assert!(app.fake.deletes().is_empty());
    clock.advance(LIMIT - Duration::from_secs(20 * 60));
    // A delivery signed at the service's "now" is fresh.
    let now = clock.now().0;
    let at = std::time::UNIX_EPOCH + Duration::from_millis(now as u64);
    let body = room_update_at(now / 1000, "other", Some(at), false);
    assert_eq!(app.deliver(&body).await.status(), 204);
    wait_until(
        "the meeting is shut down",
        Duration::from_secs(10),
        || async { app.fake.deletes().len() == 1 },
    )
    .await;
    app.wait_for_state("clocked", started, "shut_down").await;
}

/// Time is the clock's alone: once the scheduler and the warner sleep
/// until their times on a manual clock, moving that clock is all it takes
/// (no delivery, no poke, no real time passing) for the warning at
/// `deadline − warn`, and then for the shutdown at the deadline.
#[tokio::test]
async fn moving_the_clock_alone_warns_then_ends_the_meeting() {
    use eyeson_hard_limit::app::TestHooks;
    use eyeson_hard_limit::clock::{ManualClock, SharedClock};
    use eyeson_hard_limit::domain::Timestamp;
    let warn = Duration::from_secs(5 * 60);
    let clock = std::sync::Arc::new(ManualClock::new(Timestamp::from_system_time(
        SystemTime::now(),
    )));
    let hooks = TestHooks {
        clock: SharedClock(clock.clone()),
        ..TestHooks::default()
    };
    let app = spawn_app_hooked(hooks, |c| c.warn_before = Some(warn)).await;
    // Deadline in 29 minutes of the clock, the warning in 24.
    let started = SystemTime::now() - Duration::from_secs(60);
    app.meeting_starts("clocked", started).await;
    let asleep = |want: usize| {
        let clock = clock.clone();
        move || {
            let n = clock.sleepers();
            async move { n == want }
        }
    };
    wait_until(
        "the scheduler and the warner sleep on the clock",
        Duration::from_secs(10),
        asleep(2),
    )
    .await;
    assert!(app.fake.messages().is_empty());
    clock.advance(LIMIT - Duration::from_secs(4 * 60));
    wait_until("the warning", Duration::from_secs(10), || async {
        app.fake.messages().iter().any(|m| m.room == "clocked")
    })
    .await;
    assert!(app.fake.deletes().is_empty(), "ended before its deadline");
    // The warner has nothing left to wait for; the scheduler still sleeps
    // until the deadline.
    wait_until(
        "the scheduler sleeps on the clock",
        Duration::from_secs(10),
        asleep(1),
    )
    .await;
    clock.advance(Duration::from_secs(4 * 60));
    wait_until(
        "the meeting is shut down",
        Duration::from_secs(10),
        || async { app.fake.deletes().len() == 1 },
    )
    .await;
    app.wait_for_state("clocked", started, "shut_down").await;
}

/// With `--warn-before`, an extension through the admin API re-arms the
/// in-meeting warning and wakes the warner itself (nothing else happens
/// meanwhile that could wake it): a second warning before the new deadline.
#[tokio::test]
async fn an_extension_rearms_the_in_meeting_warning_at_once() {
    let before = Duration::from_secs(2);
    let app = spawn_app_with(move |c| c.warn_before = Some(before)).await;
    let started = start_for_deadline_in(Duration::from_millis(2_500));
    app.meeting_starts("warned", started).await;
    let warned = |n: usize| {
        let fake = &app.fake;
        move || async move {
            fake.messages()
                .iter()
                .filter(|m| m.room == "warned")
                .count()
                == n
        }
    };
    wait_until("the first warning", Duration::from_secs(10), warned(1)).await;
    let new_deadline = SystemTime::now() + Duration::from_secs(4);
    let r = post_json(
        &app,
        "/meetings/warned/extend",
        serde_json::json!({"until": iso(new_deadline)}),
    )
    .await;
    assert_eq!(r.status(), 200);
    wait_until("the second warning", Duration::from_secs(10), warned(2)).await;
    let second = app
        .fake
        .messages()
        .into_iter()
        .filter(|m| m.room == "warned")
        .nth(1)
        .unwrap();
    assert!(
        second.at + Duration::from_millis(5) >= new_deadline - before,
        "the re-armed warning came before its time"
    );
    assert!(
        second.at < new_deadline,
        "the warning came after the deadline"
    );
    app.wait_for_state("warned", started, "shut_down").await;
    assert_eq!(app.fake.deletes().len(), 1);
}
