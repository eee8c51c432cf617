//! A store that answers reads but refuses writes (a read-only file or
//! directory, a read-only PostgreSQL database): refused at start-up with
//! a message naming the store, and `/healthz` 503 from a failed write
//! until a write commits again.

use std::time::{Duration, Instant};

use eyeson_hard_limit::config::Flags;
use eyeson_hard_limit::store_handle::Store;
use eyeson_hard_limit::Application;
use sqlx::{Connection, PgConnection};

use crate::helpers::*;
use crate::pg::{admin_url, PgDb};

async fn health(app: &TestApp) -> u16 {
    app.http
        .get(format!("{}/healthz", app.url))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

fn a_start() -> String {
    room_update(
        "room-ro",
        Some(start_for_deadline_in(Duration::from_secs(900))),
        false,
    )
}

#[tokio::test]
async fn healthz_is_503_from_a_failed_write_until_one_commits_sqlite() {
    let app = spawn_app().await;
    let Some(store) = app.store.sqlite().cloned() else {
        unreachable!()
    };
    assert_eq!(health(&app).await, 200);
    store.refuse_writes_for_tests(true);
    assert_eq!(app.deliver(&a_start()).await.status(), 503);
    assert_eq!(health(&app).await, 503, "a failed commit is not healthy");
    assert_eq!(health(&app).await, 503, "still not writable");
    // Writable again: the health check's own probe write finds out,
    // without waiting for a delivery.
    store.refuse_writes_for_tests(false);
    assert_eq!(health(&app).await, 200);
    assert_eq!(app.deliver(&a_start()).await.status(), 204);
    assert_eq!(health(&app).await, 200);
}

/// Runs SQL as the test server's administrator.
async fn admin(sql: String) {
    let mut c = PgConnection::connect(&admin_url()).await.unwrap();
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
        .execute(&mut c)
        .await
        .unwrap();
    let _ = c.close().await;
}

/// Makes a database read-only (or writable again) for every connection,
/// the service's pooled ones included (they are ended and reconnect).
async fn set_read_only(db: &PgDb, on: bool) {
    let setting = if on {
        "SET default_transaction_read_only = on"
    } else {
        "RESET default_transaction_read_only"
    };
    admin(format!("ALTER DATABASE {} {setting}", db.name)).await;
    admin(format!(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
         WHERE datname = '{}' AND pid <> pg_backend_pid()",
        db.name
    ))
    .await;
}

#[tokio::test]
async fn healthz_is_503_from_a_failed_write_until_one_commits_postgres() {
    let Some(db) = PgDb::create().await else {
        return;
    };
    let app = spawn_on(FakeEyeson::start(KEY).await, db.url.clone(), None, |_| {}).await;
    assert_eq!(health(&app).await, 200);
    set_read_only(&db, true).await;
    wait_until("a delivery is refused", Duration::from_secs(10), || async {
        app.deliver(&a_start()).await.status() == 503
    })
    .await;
    assert_eq!(health(&app).await, 503, "a failed commit is not healthy");
    set_read_only(&db, false).await;
    wait_until("/healthz recovers", Duration::from_secs(10), || async {
        health(&app).await == 200
    })
    .await;
    assert_eq!(app.deliver(&a_start()).await.status(), 204);
    app.stop().await;
}

#[tokio::test]
async fn a_read_only_postgres_database_is_refused_at_start() {
    let Some(db) = PgDb::create().await else {
        return;
    };
    let fake = FakeEyeson::start(KEY).await;
    let config = || {
        Flags::new(
            KEY.parse().unwrap(),
            fake.url().parse().unwrap(),
            db.url.clone(),
        )
    };
    // Read-only before the first start: the migrations fail.
    set_read_only(&db, true).await;
    let err = Application::build(config().try_into().unwrap())
        .await
        .expect_err("a read-only database is refused")
        .to_string();
    assert!(err.contains(&db.name), "names the database: {err}");
    assert!(err.contains("read-only"), "{err}");
    assert!(!err.contains("postgres://"), "no URL in the message: {err}");
    // Migrated while writable, then read-only: refused all the same
    // (sqlx's migration check or the service's own write check).
    set_read_only(&db, false).await;
    Store::connect(&db.url).await.unwrap().close().await;
    set_read_only(&db, true).await;
    let err = Application::build(config().try_into().unwrap())
        .await
        .expect_err("a read-only database is refused")
        .to_string();
    assert!(err.contains(&db.name), "names the database: {err}");
    assert!(
        err.contains("read-only") || err.contains("not writable"),
        "{err}"
    );
    assert!(!err.contains("postgres://"), "no URL in the message: {err}");
}

fn is_root() -> bool {
    std::process::Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// Starts the binary on `database` (as user nobody when the tests run as
/// root, who could write anything) and returns its exit status and stderr,
/// or panics if it is still running after 20 s.
fn run_to_exit(fake_url: &str, database: &str) -> (std::process::ExitStatus, String) {
    use std::process::{Command, Stdio};
    let bin = env!("CARGO_BIN_EXE_eyeson-hard-limit");
    let mut cmd = if is_root() {
        let mut c = Command::new("setpriv");
        c.args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--",
            bin,
        ]);
        c
    } else {
        Command::new(bin)
    };
    let mut child = cmd
        .env_clear()
        .env("EYESON_API_KEY", KEY)
        .env("EYESON_API_URL", fake_url)
        .env("LISTEN_ADDR", "127.0.0.1:0")
        .env("DATABASE_URL", database)
        .env("RECONCILE_EVERY", "1h")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("binary starts");
    let start = Instant::now();
    loop {
        if child.try_wait().unwrap().is_some() {
            let out = child.wait_with_output().unwrap();
            return (
                out.status,
                String::from_utf8_lossy(&out.stderr).into_owned(),
            );
        }
        if start.elapsed() > Duration::from_secs(20) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the service started on a store it cannot write");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[tokio::test]
async fn a_read_only_sqlite_file_or_directory_is_refused_at_start() {
    use std::os::unix::fs::PermissionsExt;
    let fake = FakeEyeson::start(KEY).await;
    for dir_read_only in [false, true] {
        let (dir, database) = fresh_database();
        Store::connect(&database).await.unwrap().close().await;
        let file = dir.path().join("hard-limit.db");
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o444)).unwrap();
        let dir_mode = if dir_read_only { 0o555 } else { 0o777 };
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(dir_mode)).unwrap();
        let (status, stderr) = run_to_exit(&fake.url(), &database);
        // Writable again, so the directory can be removed.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
        assert!(!status.success(), "exit non-zero");
        assert!(
            stderr.contains(&file.display().to_string()),
            "the message names the file: {stderr}"
        );
        assert!(
            stderr.contains("not writable") || stderr.contains("cannot open"),
            "{stderr}"
        );
    }
}
