//! Sharing eyeson's one webhook per API key with the app: a foreign
//! registration is refused by default, replaced only with
//! `--webhook-replace`, and joined with `--forward-to`, which passes every
//! acknowledged delivery on to the app's receiver (a small axum server
//! here), byte for byte with its signature, in order per room, through an
//! outbox that survives a receiver outage and a restart.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::http::HeaderMap;
use eyeson_api::sign;
use eyeson_hard_limit::config::Flags;
use eyeson_hard_limit::Application;
use serde_json::json;

use crate::helpers::*;

const HOOK: &str = "https://hard-limit.example.com/webhook";

/// What the app's receiver got, one entry per request.
#[derive(Clone, Debug)]
struct Got {
    body: Vec<u8>,
    signature: Option<String>,
    content_type: Option<String>,
    status: u16,
}

#[derive(Default)]
struct ReceiverState {
    got: Vec<Got>,
    /// What it answers (0: 204).
    answer: u16,
}

/// The app's webhook receiver: records every request, answers as told.
struct Receiver {
    addr: SocketAddr,
    state: Arc<Mutex<ReceiverState>>,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl Receiver {
    async fn start() -> Receiver {
        Self::start_on("127.0.0.1:0".parse().unwrap()).await
    }

    async fn start_on(addr: SocketAddr) -> Receiver {
        let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(Mutex::new(ReceiverState::default()));
        let shared = state.clone();
        let app = axum::Router::new().fallback(move |headers: HeaderMap, body: Bytes| {
            let shared = shared.clone();
            async move {
                let header = |name: &str| {
                    headers
                        .get(name)
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_owned)
                };
                let mut st = shared.lock().unwrap();
                let status = if st.answer == 0 { 204 } else { st.answer };
                st.got.push(Got {
                    body: body.to_vec(),
                    signature: header("x-eyeson-signature"),
                    content_type: header("content-type"),
                    status,
                });
                axum::http::StatusCode::from_u16(status).unwrap()
            }
        });
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = rx.await;
                })
                .await
                .unwrap();
        });
        Receiver {
            addr,
            state,
            _stop: tx,
        }
    }

    fn url(&self) -> String {
        url_of(self.addr)
    }

    fn answer(&self, status: u16) {
        self.state.lock().unwrap().answer = status;
    }

    fn got(&self) -> Vec<Got> {
        self.state.lock().unwrap().got.clone()
    }

    /// The bodies it accepted (2xx), in order.
    fn delivered(&self) -> Vec<String> {
        self.got()
            .into_iter()
            .filter(|g| (200..300).contains(&g.status))
            .map(|g| String::from_utf8(g.body).unwrap())
            .collect()
    }

    async fn wait_for_delivered(&self, n: usize) {
        wait_until(
            &format!("{n} deliveries forwarded"),
            Duration::from_secs(20),
            || async { self.delivered().len() >= n },
        )
        .await;
    }
}

fn url_of(addr: SocketAddr) -> String {
    format!("http://{addr}/eyeson-hook")
}

/// The app's registration, as eyeson lists it.
fn app_hook(url: &str) -> serde_json::Value {
    json!({"id": "app", "url": url, "types": "room_update,recording_update"})
}

fn forwarding(to: &str) -> impl FnOnce(&mut Flags) + '_ {
    move |c| {
        c.webhook_url = Some(HOOK.parse().unwrap());
        c.forward_to = Some(to.parse().unwrap());
    }
}

/// A `recording_update` of `room`'s meeting, stamped now.
fn recording_update(room: &str) -> String {
    json!({
        "timestamp": unix_now(),
        "type": "recording_update",
        "recording": {"id": "rec-1", "duration": 12, "links": {"download": "https://x/r"},
                      "room": {"id": room}}
    })
    .to_string()
}

fn config_for(fake: &FakeEyeson, database: &str) -> Flags {
    let mut config = Flags::new(
        KEY.parse().unwrap(),
        fake.url().parse().unwrap(),
        database.to_owned(),
    );
    config.reconcile_every = Duration::from_secs(3600);
    config
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_foreign_registration_is_refused_by_default() {
    let fake = FakeEyeson::start(KEY).await;
    fake.set_webhook(Some(app_hook(
        "https://app.example.com/eyeson-hook?token=app-s3cret",
    )));
    let (_dir, db) = fresh_database();
    let mut config = config_for(&fake, &db);
    config.webhook_url = Some(HOOK.parse().unwrap());
    let err = Application::build(config.try_into().unwrap())
        .await
        .expect_err("a foreign registration stops the start")
        .to_string();
    assert!(
        err.contains("https://app.example.com/eyeson-hook"),
        "names the URL: {err}"
    );
    assert!(
        err.contains("recording_update,room_update"),
        "names the types: {err}"
    );
    for way in ["--forward-to", "--webhook-replace", "/webhook"] {
        assert!(err.contains(way), "names {way}: {err}");
    }
    assert!(!err.contains("app-s3cret"), "no query string: {err}");
    assert!(fake.calls("POST", "/webhooks").is_empty());
    assert_eq!(fake.webhook().unwrap()["id"], "app", "left alone");

    // The binary exits 1 with the same message (the fake answers on the
    // runtime's other thread).
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_eyeson-hard-limit"))
        .env_clear()
        .env("EYESON_API_KEY", KEY)
        .env("EYESON_API_URL", fake.url())
        .env("DATABASE_URL", &db)
        .env("LISTEN_ADDR", "127.0.0.1:0")
        .env("ADMIN_LISTEN", "127.0.0.1:0")
        .env("WEBHOOK_URL", HOOK)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("refusing to start") && stderr.contains("--forward-to"),
        "{stderr}"
    );
    assert!(fake.calls("POST", "/webhooks").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_foreign_registration_is_replaced_only_with_webhook_replace() {
    let fake = FakeEyeson::start(KEY).await;
    fake.set_webhook(Some(app_hook("https://app.example.com/eyeson-hook")));
    let (_dir, db) = fresh_database();
    let mut service = ServiceProcess::spawn(
        &fake,
        &db,
        "info",
        "replace",
        Duration::from_secs(30),
        &[("WEBHOOK_URL", HOOK), ("WEBHOOK_REPLACE", "true")],
    );
    wait_until("POST /webhooks", Duration::from_secs(10), || async {
        !fake.calls("POST", "/webhooks").is_empty()
    })
    .await;
    let posts = fake.calls("POST", "/webhooks");
    assert_eq!(posts.len(), 1);
    assert_eq!(
        posts[0].content_type.as_deref(),
        Some("application/x-www-form-urlencoded")
    );
    assert_eq!(
        posts[0].form,
        [
            ("url".to_owned(), HOOK.to_owned()),
            ("types".to_owned(), "room_update".to_owned())
        ]
    );
    wait_until("the WARN line", Duration::from_secs(10), || async {
        service.logs.lock().unwrap().iter().any(|l| {
            l.contains("WARN")
                && l.contains("--webhook-replace")
                && l.contains("https://app.example.com/eyeson-hook")
                && l.contains("recording_update,room_update")
        })
    })
    .await;
    let _ = service.child.kill();
    let _ = service.child.wait();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_foreign_registration_found_after_start_is_left_alone_and_counted() {
    let fake = FakeEyeson::start(KEY).await;
    fake.set_webhook(Some(app_hook("https://app.example.com/eyeson-hook")));
    // The check at start gets no answer: the service starts anyway.
    fake.script_webhooks(&[500]);
    let (_dir, db) = fresh_database();
    let service = ServiceProcess::spawn(
        &fake,
        &db,
        "info",
        "late-foreign",
        Duration::from_secs(30),
        &[("WEBHOOK_URL", HOOK)],
    );
    let http = reqwest::Client::new();
    wait_until(
        "refused_foreign counted",
        Duration::from_secs(15),
        || async {
            let text = http
                .get(format!("{}/metrics", service.admin))
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            text.lines().any(|l| {
                l.starts_with("hard_limit_webhook_registrations_total{outcome=\"refused_foreign\"}")
                    && l.ends_with(" 1")
            })
        },
    )
    .await;
    assert!(fake.calls("POST", "/webhooks").is_empty());
    assert_eq!(fake.webhook().unwrap()["id"], "app", "left alone");
    // The log reaches this process through a pipe: it may trail /metrics.
    wait_until("the error line", Duration::from_secs(10), || async {
        service
            .logs
            .lock()
            .unwrap()
            .iter()
            .any(|l| l.contains("ERROR") && l.contains("https://app.example.com/eyeson-hook"))
    })
    .await;
    let mut child = service.child;
    let _ = child.kill();
    let _ = child.wait();
}

#[tokio::test]
async fn forward_to_registers_the_union_and_forwards_every_type_unchanged() {
    let receiver = Receiver::start().await;
    let fake = FakeEyeson::start(KEY).await;
    fake.set_webhook(Some(app_hook(&receiver.url())));
    let app = spawn_app_on(fake, forwarding(&receiver.url())).await;
    wait_until("POST /webhooks", Duration::from_secs(10), || async {
        !app.fake.calls("POST", "/webhooks").is_empty()
    })
    .await;
    assert_eq!(
        app.fake.calls("POST", "/webhooks")[0].form,
        [
            ("url".to_owned(), HOOK.to_owned()),
            (
                "types".to_owned(),
                "recording_update,room_update".to_owned()
            )
        ]
    );

    // Unusual spacing: the receiver must get these very bytes.
    let started = start_for_deadline_in(Duration::from_secs(600));
    let room = room_update("room-f", Some(started), false).replace(",\"", ", \"");
    let recording = recording_update("room-f");
    let unrelated = json!({"timestamp": unix_now(), "type": "snapshot_update",
                           "snapshot": {"id": "s1"}})
    .to_string();
    for body in [&room, &recording, &unrelated] {
        assert_eq!(app.deliver(body).await.status(), 204);
    }
    // Not acknowledged, so not forwarded: a bad signature, a replay.
    let forged = room_update("room-x", Some(started), false);
    let wrong = sign(b"not-the-key", forged.as_bytes());
    assert_eq!(
        app.deliver_signed(&forged, Some(&wrong)).await.status(),
        401
    );
    let stale = room_update_at(unix_now() - 3600, "room-y", Some(started), false);
    assert_eq!(app.deliver(&stale).await.status(), 401);

    receiver.wait_for_delivered(3).await;
    let got = receiver.got();
    for body in [&room, &recording, &unrelated] {
        let g = got
            .iter()
            .find(|g| g.body == body.as_bytes())
            .unwrap_or_else(|| panic!("forwarded: {body}"));
        assert_eq!(
            g.signature.as_deref(),
            Some(sign(KEY.as_bytes(), body.as_bytes()).as_str())
        );
        assert_eq!(g.content_type.as_deref(), Some("application/json"));
    }
    // The room's two deliveries in the order they were received.
    let delivered = receiver.delivered();
    let at = |b: &str| delivered.iter().position(|d| d == b).unwrap();
    assert!(at(&room) < at(&recording), "in order per room");
    // The meeting is tracked as without forwarding.
    assert_eq!(
        app.state_of("room-f", started).await.as_deref(),
        Some("running")
    );
    wait_until("the outbox is empty", Duration::from_secs(10), || async {
        app.store.pending_forwards().await.unwrap() == 0
    })
    .await;
    assert_eq!(receiver.got().len(), 3, "nothing else, nothing twice");
    let metrics = app.metrics().await;
    assert!(
        metrics.contains("hard_limit_forwards_total{outcome=\"delivered\"}"),
        "{metrics}"
    );
}

/// Asserts that no delivery of a room was tried before the room's
/// earlier one was accepted: `order` is the room's bodies in the order sent.
fn assert_in_order(got: &[Got], order: &[String]) {
    let mut accepted = 0;
    for g in got {
        let Some(i) = order.iter().position(|b| b.as_bytes() == g.body) else {
            continue;
        };
        assert!(
            i <= accepted,
            "delivery {i} of the room tried before {accepted} was accepted"
        );
        if (200..300).contains(&g.status) && i == accepted {
            accepted += 1;
        }
    }
    assert_eq!(accepted, order.len(), "every delivery of the room accepted");
}

#[tokio::test]
async fn a_receiver_that_fails_then_recovers_gets_everything_in_order_per_room() {
    let receiver = Receiver::start().await;
    receiver.answer(503);
    let app = spawn_app_with(|c| c.forward_to = Some(receiver.url().parse().unwrap())).await;
    let started = start_for_deadline_in(Duration::from_secs(600));
    let a = vec![
        room_update("room-a", None, false),
        room_update("room-a", Some(started), false),
        recording_update("room-a"),
        room_update("room-a", Some(started), true),
    ];
    let b = vec![room_update("room-b", Some(started), false)];
    for body in a.iter().chain(&b) {
        assert_eq!(app.deliver(body).await.status(), 204);
    }
    wait_until("a retry", Duration::from_secs(10), || async {
        receiver.got().iter().filter(|g| g.status == 503).count() >= 3
    })
    .await;
    receiver.answer(0);
    receiver.wait_for_delivered(a.len() + b.len()).await;
    let got = receiver.got();
    assert_in_order(&got, &a);
    assert_in_order(&got, &b);
    let metrics = app.metrics().await;
    assert!(
        !metrics.contains("hard_limit_forwards_total{outcome=\"retried\"} 0"),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_receiver_that_is_not_listening_gets_everything_once_it_is() {
    // A port that is free now: nothing listens there until later.
    let addr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let app = spawn_app_with(|c| c.forward_to = Some(url_of(addr).parse().unwrap())).await;
    let started = start_for_deadline_in(Duration::from_secs(600));
    let a = vec![
        room_update("room-a", Some(started), false),
        recording_update("room-a"),
    ];
    for body in &a {
        assert_eq!(app.deliver(body).await.status(), 204);
    }
    wait_until("a failed try", Duration::from_secs(10), || async {
        app.metrics().await.lines().any(|l| {
            l.starts_with("hard_limit_forwards_total{outcome=\"retried\"}") && !l.ends_with(" 0")
        })
    })
    .await;
    let receiver = Receiver::start_on(addr).await;
    receiver.wait_for_delivered(a.len()).await;
    assert_in_order(&receiver.got(), &a);
}

#[tokio::test]
async fn the_outbox_survives_a_restart() {
    let receiver = Receiver::start().await;
    receiver.answer(503);
    let fake = FakeEyeson::start(KEY).await;
    fake.set_webhook(Some(app_hook(&receiver.url())));
    let app = spawn_app_on(fake, forwarding(&receiver.url())).await;
    let started = start_for_deadline_in(Duration::from_secs(600));
    let a = vec![
        room_update("room-a", Some(started), false),
        recording_update("room-a"),
    ];
    for body in &a {
        assert_eq!(app.deliver(body).await.status(), 204);
    }
    wait_until("a failed try", Duration::from_secs(10), || async {
        !receiver.got().is_empty()
    })
    .await;
    let (fake, db, dir) = app.stop().await;
    assert!(receiver.delivered().is_empty());
    receiver.answer(0);
    // The new process finds its own registration with the app's types.
    let app = spawn_on(fake, db, dir, forwarding(&receiver.url())).await;
    receiver.wait_for_delivered(a.len()).await;
    assert_in_order(&receiver.got(), &a);
    assert!(app.fake.calls("POST", "/webhooks").len() == 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_on_postgresql_forward_each_delivery_once() {
    let Some(db) = crate::pg::PgDb::create().await else {
        return;
    };
    let receiver = Receiver::start().await;
    let to = receiver.url();
    let one = spawn_on(FakeEyeson::start(KEY).await, db.url.clone(), None, |c| {
        c.forward_to = Some(to.parse().unwrap())
    })
    .await;
    let two = spawn_on(FakeEyeson::start(KEY).await, db.url.clone(), None, |c| {
        c.forward_to = Some(to.parse().unwrap())
    })
    .await;
    let started = start_for_deadline_in(Duration::from_secs(600));
    let mut bodies = Vec::new();
    for i in 0..40 {
        let body = room_update(&format!("room-{}", i % 8), Some(started), i >= 32);
        let body = body + &" ".repeat(i); // distinct bytes
        let app = if i % 2 == 0 { &one } else { &two };
        assert_eq!(app.deliver(&body).await.status(), 204);
        bodies.push(body);
    }
    receiver.wait_for_delivered(bodies.len()).await;
    let delivered = receiver.delivered();
    for body in &bodies {
        assert_eq!(
            delivered.iter().filter(|d| *d == body).count(),
            1,
            "forwarded exactly once while both replicas are healthy"
        );
    }
    for room in 0..8 {
        let order: Vec<String> = bodies
            .iter()
            .enumerate()
            .filter(|(i, _)| i % 8 == room)
            .map(|(_, b)| b.clone())
            .collect();
        assert_in_order(&receiver.got(), &order);
    }
    one.stop().await;
    two.stop().await;
}

#[tokio::test]
async fn a_stalled_receiver_holds_up_neither_webhooks_nor_shutdowns() {
    // Accepts connections and never answers.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((conn, _)) = listener.accept().await {
            held.push(conn);
        }
    });
    let app = spawn_app_with(|c| c.forward_to = Some(url_of(addr).parse().unwrap())).await;
    // More rooms than sends in flight: every send hangs.
    for i in 0..40 {
        let started = start_for_deadline_in(Duration::from_secs(600));
        let t = std::time::Instant::now();
        let body = room_update(&format!("room-{i}"), Some(started), false);
        assert_eq!(app.deliver(&body).await.status(), 204);
        assert!(
            t.elapsed() < Duration::from_secs(2),
            "a delivery waited {:?}",
            t.elapsed()
        );
    }
    let started = start_for_deadline_ago(Duration::from_secs(1));
    app.meeting_starts("due", started).await;
    app.wait_for_state("due", started, "shut_down").await;
}
