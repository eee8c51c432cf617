//! PostgreSQL for tests: a fresh database per test, dropped afterwards.
//!
//! The server is `HARD_LIMIT_TEST_PG` (default
//! `postgres://postgres@127.0.0.1:5432/test`). It is tried once per test
//! run; if it cannot be reached every PostgreSQL test prints
//! `skipping PostgreSQL tests: <why>` (once, straight to the terminal, past
//! the test harness's capture) and passes without doing anything.
#![allow(dead_code)]

use std::io::Write;
use std::sync::{OnceLock, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Duration;

use sqlx::{Connection, PgConnection};

/// Where the tests find PostgreSQL.
pub fn admin_url() -> String {
    std::env::var("HARD_LIMIT_TEST_PG")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

static AVAILABLE: OnceLock<Result<(), String>> = OnceLock::new();

/// Whether PostgreSQL answers (checked once, on a thread of its own so any
/// test runtime may ask).
pub fn available() -> bool {
    let result = AVAILABLE.get_or_init(|| {
        let url = admin_url();
        let r = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                match tokio::time::timeout(Duration::from_secs(5), PgConnection::connect(&url))
                    .await
                {
                    Ok(Ok(c)) => {
                        let _ = c.close().await;
                        Ok(())
                    }
                    Ok(Err(e)) => Err(format!("cannot connect to {url}: {e}")),
                    Err(_) => Err(format!("cannot connect to {url}: timed out")),
                }
            })
        })
        .join()
        .unwrap();
        if let Err(why) = &r {
            let _ = writeln!(
                std::io::stderr(),
                "skipping PostgreSQL tests: {why} (set HARD_LIMIT_TEST_PG to a reachable server)"
            );
        }
        r
    });
    result.is_ok()
}

/// Every PostgreSQL test holds this shared while its database exists; the
/// test that restarts the server holds it exclusively, so no other test of
/// this binary loses its connections to the restart.
static SERVER: RwLock<()> = RwLock::new(());

enum ServerUse {
    Shared(#[allow(dead_code)] RwLockReadGuard<'static, ()>),
    Exclusive(#[allow(dead_code)] RwLockWriteGuard<'static, ()>),
}

/// A fresh database on the test server; dropped (with its connections)
/// when this value is.
pub struct PgDb {
    /// Its name.
    pub name: String,
    /// A URL for it.
    pub url: String,
    _server: ServerUse,
}

fn url_with_database(admin: &str, name: &str) -> String {
    let mut url = reqwest::Url::parse(admin).expect("HARD_LIMIT_TEST_PG is a URL");
    url.set_path(&format!("/{name}"));
    url.to_string()
}

impl PgDb {
    /// Creates a database `hl_test_<random>`; `None` (after the one skip
    /// message) if PostgreSQL is not reachable.
    pub async fn create() -> Option<PgDb> {
        if !available() {
            return None;
        }
        let shared = SERVER.read().unwrap_or_else(|e| e.into_inner());
        PgDb::create_with(ServerUse::Shared(shared)).await
    }

    /// Like [`PgDb::create`], for a test that will restart the server: waits
    /// until no other test of this binary uses it, and keeps them out.
    pub async fn create_exclusive() -> Option<PgDb> {
        if !available() {
            return None;
        }
        let exclusive = SERVER.write().unwrap_or_else(|e| e.into_inner());
        PgDb::create_with(ServerUse::Exclusive(exclusive)).await
    }

    async fn create_with(server: ServerUse) -> Option<PgDb> {
        use std::hash::{BuildHasher, RandomState};
        let nonce = RandomState::new().hash_one(std::time::SystemTime::now());
        let name = format!("hl_test_{}_{nonce:016x}", std::process::id());
        let mut admin = PgConnection::connect(&admin_url())
            .await
            .expect("PostgreSQL answered a moment ago");
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut admin)
            .await
            .unwrap();
        let _ = admin.close().await;
        let url = url_with_database(&admin_url(), &name);
        Some(PgDb {
            name,
            url,
            _server: server,
        })
    }

    /// The same database reached through another address (a proxy).
    pub fn url_via(&self, addr: std::net::SocketAddr) -> String {
        let mut url = reqwest::Url::parse(&self.url).unwrap();
        url.set_host(Some(&addr.ip().to_string())).unwrap();
        url.set_port(Some(addr.port())).unwrap();
        url.to_string()
    }
}

impl Drop for PgDb {
    fn drop(&mut self) {
        let name = self.name.clone();
        // Drop may run inside a runtime: do the async work on a thread.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                if let Ok(mut admin) = PgConnection::connect(&admin_url()).await {
                    let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                        "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                    )))
                    .execute(&mut admin)
                    .await;
                    let _ = admin.close().await;
                }
            })
        })
        .join();
    }
}
