//! The alone rule's per-room and per-prefix setting (issue 18) through the
//! limits: `PUT /limits/...` with `alone_after` (merged into the rule, the
//! limit left alone), `GET /limits`, the audit, the limits file, and a
//! database migrated from before the setting existed. On SQLite and on
//! PostgreSQL (skipped without a server, see [`crate::pg`]).

use std::time::{Duration, SystemTime};

use eyeson_hard_limit::domain::AloneAfter;
use eyeson_hard_limit::store::{LimitKind, LimitRule};
use eyeson_hard_limit::store_handle::Store;
use serde_json::{json, Value};

use crate::helpers::*;
use crate::pg::PgDb;

const MIN: Duration = Duration::from_secs(60);

/// A service on SQLite, or on a fresh PostgreSQL database (`None` when no
/// server answers); the database outlives the service.
async fn spawn(
    postgres: bool,
    tweak: impl FnOnce(&mut eyeson_hard_limit::config::Flags),
) -> Option<(TestApp, Option<PgDb>)> {
    if !postgres {
        return Some((spawn_app_with(tweak).await, None));
    }
    let db = PgDb::create().await?;
    let app = spawn_on(FakeEyeson::start(KEY).await, db.url.clone(), None, tweak).await;
    Some((app, Some(db)))
}

async fn limits(app: &TestApp) -> Value {
    let r = app
        .http
        .get(format!("{}/limits", app.admin))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    r.json().await.unwrap()
}

async fn put(app: &TestApp, path: &str, body: &str) -> (u16, Value) {
    let r = app
        .http
        .put(format!("{}/limits/{path}", app.admin))
        .header("content-type", "application/json")
        .body(body.to_owned())
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

async fn delete(app: &TestApp, path: &str) -> (u16, Value) {
    let r = app
        .http
        .delete(format!("{}/limits/{path}", app.admin))
        .header("content-type", "application/json")
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

/// The audited details of the limit changes on a room or prefix, newest first.
async fn audited(app: &TestApp, key: &str) -> Vec<String> {
    let h = app.history(key).await;
    h["actions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            format!(
                "{} {}",
                a["event"].as_str().unwrap(),
                a["detail"].as_str().unwrap()
            )
        })
        .collect()
}

#[tokio::test]
async fn alone_after_per_room_on_sqlite() {
    alone_after_per_room_and_prefix(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alone_after_per_room_on_postgres() {
    alone_after_per_room_and_prefix(true).await;
}

/// `{"alone_after": …}` alone leaves the limit as it was (the default
/// keeps applying to new meetings), `null` turns the rule off, each part
/// is merged, a rule left with nothing is deleted, and every change is in
/// the audit saying what moved.
async fn alone_after_per_room_and_prefix(postgres: bool) {
    let Some((app, _db)) = spawn(postgres, |c| c.alone_after = Some(20 * MIN)).await else {
        return;
    };
    let l = limits(&app).await;
    assert_eq!(l["default"], "30m");
    assert_eq!(
        l["alone_after"],
        json!({"default": "20m", "rooms": {}, "prefixes": {}})
    );

    // Only the alone rule: no limit of its own.
    let (status, body) = put(&app, "rooms/kiosk", r#"{"alone_after": "5m"}"#).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body,
        json!({"kind": "room", "key": "kiosk", "limit": null, "alone_after": "5m",
               "previous": null, "previous_alone_after": null})
    );
    let l = limits(&app).await;
    assert_eq!(l["rooms"], json!({}), "kiosk sets no limit");
    assert_eq!(l["alone_after"]["rooms"], json!({"kiosk": "5m"}));
    // The default limit still applies to a meeting that starts now.
    let started = SystemTime::now() - Duration::from_secs(10);
    app.meeting_starts("kiosk", started).await;
    assert_eq!(app.public_deadline("kiosk").await, iso(started + LIMIT));

    // A limit merged in keeps the alone rule; turning the alone rule off
    // keeps the limit.
    let (status, body) = put(&app, "rooms/kiosk", r#"{"limit": "2h"}"#).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        (&body["limit"], &body["alone_after"]),
        (&json!("2h"), &json!("5m"))
    );
    let (status, body) = put(&app, "rooms/kiosk", r#"{"alone_after": null}"#).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body,
        json!({"kind": "room", "key": "kiosk", "limit": "2h", "alone_after": "off",
               "previous": "2h", "previous_alone_after": "5m"})
    );
    // Both at once, on a prefix.
    let (status, _) = put(
        &app,
        "prefixes/web-",
        r#"{"limit": "45m", "alone_after": "10m"}"#,
    )
    .await;
    assert_eq!(status, 200);
    // "off" (what GET shows) is taken back as well as null.
    let (status, _) = put(&app, "prefixes/bot-", r#"{"alone_after": "off"}"#).await;
    assert_eq!(status, 200);
    let l = limits(&app).await;
    assert_eq!(l["rooms"], json!({"kiosk": "2h"}));
    assert_eq!(l["prefixes"], json!({"web-": "45m"}));
    assert_eq!(
        l["alone_after"],
        json!({"default": "20m", "rooms": {"kiosk": "off"},
               "prefixes": {"web-": "10m", "bot-": "off"}})
    );
    let later = SystemTime::now() - Duration::from_secs(5);
    app.meeting_starts("web-1", later).await;
    assert_eq!(app.public_deadline("web-1").await, iso(later + 45 * MIN));

    // "inherit" clears the alone setting, `"limit": null` the limit: with
    // nothing left the rule is gone.
    let (status, body) = put(&app, "rooms/kiosk", r#"{"alone_after": "inherit"}"#).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        (&body["limit"], &body["alone_after"]),
        (&json!("2h"), &Value::Null)
    );
    let (status, body) = put(&app, "rooms/kiosk", r#"{"limit": null}"#).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        (&body["limit"], &body["alone_after"]),
        (&Value::Null, &Value::Null)
    );
    assert_eq!(body["previous"], "2h");
    let l = limits(&app).await;
    assert_eq!(l["rooms"], json!({}));
    assert_eq!(l["alone_after"]["rooms"], json!({}));
    assert!(app
        .store
        .limit_rules()
        .await
        .unwrap()
        .iter()
        .all(|r| r.key != "kiosk"));

    assert_eq!(
        audited(&app, "kiosk").await,
        [
            "limit_removed room limit 2h -> none",
            "limit_set room alone_after off -> none",
            "limit_set room alone_after 5m -> off",
            "limit_set room limit none -> 2h",
            "limit_set room alone_after none -> 5m",
        ]
    );
    assert_eq!(
        audited(&app, "web-").await,
        ["limit_set prefix limit none -> 45m, alone_after none -> 10m"]
    );

    // DELETE removes the whole rule, and says what it was.
    let (status, body) = delete(&app, "prefixes/web-").await;
    assert_eq!(status, 200);
    assert_eq!(
        (&body["previous"], &body["previous_alone_after"]),
        (&json!("45m"), &json!("10m"))
    );
    assert_eq!(delete(&app, "prefixes/web-").await.0, 404);
    assert_eq!(
        audited(&app, "web-").await[0],
        "limit_removed prefix limit 45m -> none, alone_after 10m -> none"
    );
    assert_eq!(
        limits(&app).await["alone_after"]["prefixes"],
        json!({"bot-": "off"})
    );
}

/// Bad values are a 400 naming the field, and nothing is stored (so
/// `/healthz` stays 200).
#[tokio::test]
async fn bad_alone_settings_are_refused_naming_the_field() {
    let app = spawn_app().await;
    for (body, needle) in [
        (
            r#"{"alone_after": "0s"}"#,
            r#"alone_after: "0s" must be from 1s to 30days"#,
        ),
        (r#"{"alone_after": "500ms"}"#, "alone_after:"),
        (r#"{"alone_after": "31days"}"#, "alone_after:"),
        (r#"{"alone_after": "999999999999h"}"#, "alone_after:"),
        (
            r#"{"alone_after": "soon"}"#,
            r#"alone_after: "soon" is not "off""#,
        ),
        (r#"{"alone_after": 300}"#, "alone_after: 300 is not"),
        (r#"{"alone_after": "5m", "limit": "0s"}"#, "limit:"),
        (r#"{"alone_after": "0s", "limit": "1h"}"#, "alone_after:"),
        (r#"{"limit": 7200}"#, "limit: 7200 is not"),
        (r#"{}"#, "neither limit nor alone_after"),
        (r#"{"alone": "5m"}"#, r#"unknown field "alone""#),
        (r#"["5m"]"#, "JSON object"),
        (r#"null"#, "JSON object"),
        ("5m", "JSON"),
    ] {
        let (status, r) = put(&app, "rooms/x", body).await;
        assert_eq!(status, 400, "{body}");
        let text = r["error"].as_str().unwrap();
        assert!(text.contains(needle), "{body}: {text}");
    }
    let (status, r) = put(&app, "prefixes/p", "{}").await;
    assert_eq!(status, 400);
    assert!(
        r["error"].as_str().unwrap().contains("\"alone_after\""),
        "{r}"
    );
    assert!(
        app.store.limit_rules().await.unwrap().is_empty(),
        "nothing stored"
    );
    let health = app
        .http
        .get(format!("{}/healthz", app.url))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
}

/// The limits file seeds `alone_after` per room and prefix (`"off"` turns
/// it off), merged like a `PUT`: a restart with the same file keeps what
/// an operator set that the file does not name, and writes nothing again.
#[tokio::test]
async fn the_limits_file_seeds_alone_after() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("limits.toml");
    std::fs::write(
        &file,
        r#"
[rooms]
"board" = "2h"
"kiosk" = { alone_after = "5m" }
"town-hall" = { limit = "3h", alone_after = "off" }
[prefixes]
"bot-" = { alone_after = "off" }
"#,
    )
    .unwrap();
    let with_file = |c: &mut eyeson_hard_limit::config::Flags| {
        c.limits = Some(file.clone());
        c.alone_after = Some(30 * MIN);
    };
    let app = spawn_app_with(with_file).await;
    let expected = json!({
        "default": "30m",
        "grace": "0s",
        "rooms": {"board": "2h", "town-hall": "3h"},
        "prefixes": {},
        "alone_after": {
            "default": "30m",
            "rooms": {"kiosk": "5m", "town-hall": "off"},
            "prefixes": {"bot-": "off"},
        },
    });
    assert_eq!(limits(&app).await, expected);
    assert_eq!(
        audited(&app, "town-hall").await,
        ["limit_set room limit none -> 3h, alone_after none -> off"]
    );
    // An operator turns the alone rule off for board (the file names only
    // its limit).
    let (status, _) = put(&app, "rooms/board", r#"{"alone_after": null}"#).await;
    assert_eq!(status, 200);
    let (fake, database, dir2) = app.stop().await;
    let app = spawn_on(fake, database, dir2, with_file).await;
    let l = limits(&app).await;
    assert_eq!(l["rooms"]["board"], "2h");
    assert_eq!(
        l["alone_after"]["rooms"]["board"], "off",
        "kept across the restart"
    );
    for key in ["kiosk", "town-hall", "bot-"] {
        assert_eq!(audited(&app, key).await.len(), 1, "{key} seeded once");
    }
    let callers: Vec<String> = {
        let h = app.history("kiosk").await;
        h["actions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["caller"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(callers, ["limits file"]);

    // A bad entry is refused at start, naming the file, the entry and the field.
    std::fs::write(&file, "[rooms]\n\"k\" = { alone_after = \"0s\" }\n").unwrap();
    let mut flags = eyeson_hard_limit::config::Flags::new(
        KEY.parse().unwrap(),
        "http://127.0.0.1:9".parse().unwrap(),
        "sqlite::memory:".into(),
    );
    with_file(&mut flags);
    let err = eyeson_hard_limit::config::Config::try_from(flags)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("limits.toml") && err.contains("\"k\"") && err.contains("alone_after"),
        "{err}"
    );
}

/// The migrations before the alone rule (0001 to 0004), as each engine
/// ran them: a database from the previous release.
fn migrator_before_alone(engine: &str) -> sqlx::migrate::Migrator {
    use sqlx::migrate::{Migration, MigrationType, Migrator};
    use sqlx::SqlSafeStr;
    let steps: [(&str, &str); 4] = match engine {
        "sqlite" => [
            (
                "meetings",
                include_str!("../../migrations/sqlite/0001_meetings.sql"),
            ),
            (
                "admin",
                include_str!("../../migrations/sqlite/0002_admin.sql"),
            ),
            (
                "warnings",
                include_str!("../../migrations/sqlite/0003_warnings.sql"),
            ),
            (
                "forward outbox",
                include_str!("../../migrations/sqlite/0004_forward_outbox.sql"),
            ),
        ],
        _ => [
            (
                "meetings",
                include_str!("../../migrations/postgres/0001_meetings.sql"),
            ),
            (
                "admin",
                include_str!("../../migrations/postgres/0002_admin.sql"),
            ),
            (
                "warnings",
                include_str!("../../migrations/postgres/0003_warnings.sql"),
            ),
            (
                "forward outbox",
                include_str!("../../migrations/postgres/0004_forward_outbox.sql"),
            ),
        ],
    };
    Migrator::with_migrations(
        steps
            .into_iter()
            .zip(1..)
            .map(|((name, sql), version)| {
                Migration::new(
                    version,
                    name.into(),
                    MigrationType::Simple,
                    sql.into_sql_str(),
                    false,
                )
            })
            .collect(),
    )
}

/// The rules a database from before 0005 holds.
const OLD_RULES: &str = "INSERT INTO room_limits (kind, key, limit_ms, updated_at) VALUES
    ('room', 'board', 7200000, 1), ('prefix', 'webinar-', 10800000, 2)";

#[tokio::test]
async fn a_database_from_before_the_alone_rule_keeps_its_limits_on_sqlite() {
    let (dir, url) = fresh_database();
    {
        use sqlx::sqlite::SqliteConnectOptions;
        use std::str::FromStr;
        let options = SqliteConnectOptions::from_str(&url)
            .unwrap()
            .create_if_missing(true);
        let pool = sqlx::SqlitePool::connect_with(options).await.unwrap();
        migrator_before_alone("sqlite").run(&pool).await.unwrap();
        sqlx::query(OLD_RULES).execute(&pool).await.unwrap();
        pool.close().await;
    }
    keeps_its_limits(url, Some(dir)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_from_before_the_alone_rule_keeps_its_limits_on_postgres() {
    let Some(db) = PgDb::create().await else {
        return;
    };
    {
        let pool = sqlx::PgPool::connect(&db.url).await.unwrap();
        migrator_before_alone("postgres").run(&pool).await.unwrap();
        sqlx::query(OLD_RULES).execute(&pool).await.unwrap();
        pool.close().await;
    }
    keeps_its_limits(db.url.clone(), None).await;
}

/// Migrated to 0005, the old rules keep their limits and inherit the alone
/// rule; the service applies them and takes an alone setting beside them.
async fn keeps_its_limits(url: String, dir: Option<tempfile::TempDir>) {
    let store = Store::connect(&url).await.unwrap();
    assert_eq!(
        store.limit_rules().await.unwrap(),
        [
            LimitRule {
                kind: LimitKind::Prefix,
                key: "webinar-".into(),
                limit: Some(180 * MIN),
                alone_after: None,
            },
            LimitRule {
                kind: LimitKind::Room,
                key: "board".into(),
                limit: Some(120 * MIN),
                alone_after: None,
            },
        ]
    );
    store.close().await;
    let app = spawn_on(FakeEyeson::start(KEY).await, url, dir, |_| {}).await;
    let l = limits(&app).await;
    assert_eq!(l["rooms"], json!({"board": "2h"}));
    assert_eq!(l["prefixes"], json!({"webinar-": "3h"}));
    assert_eq!(
        l["alone_after"],
        json!({"default": "off", "rooms": {}, "prefixes": {}})
    );
    let (status, _) = put(&app, "prefixes/webinar-", r#"{"alone_after": "15m"}"#).await;
    assert_eq!(status, 200);
    let started = SystemTime::now() - Duration::from_secs(5);
    app.meeting_starts("webinar-1", started).await;
    assert_eq!(
        app.public_deadline("webinar-1").await,
        iso(started + 180 * MIN)
    );
    let rule = app.store.limit_rules().await.unwrap().remove(0);
    assert_eq!(rule.limit, Some(180 * MIN));
    assert_eq!(rule.alone_after, Some(AloneAfter::After(15 * MIN)));
}
