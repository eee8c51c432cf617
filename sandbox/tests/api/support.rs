//! Helpers: the sandbox in-process on port 0, a webhook receiver, websocket
//! clients, and bounded waits.

use std::net::SocketAddr;
use std::time::Duration;

use axum::body::Bytes;
use axum::http::HeaderMap;
use eyeson_sandbox::config::Config;
use eyeson_sandbox::Application;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub const KEY: &str = "test-key";
/// The bound on every wait.
pub const WAIT: Duration = Duration::from_secs(5);

pub type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

pub struct TestApp {
    pub addr: SocketAddr,
    client: reqwest::Client,
}

pub async fn spawn_app() -> TestApp {
    let config = Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        api_key: KEY.into(),
        sdk: None,
    };
    let app = Application::build(&config).await.unwrap();
    let addr = app.local_addr();
    tokio::spawn(app.run_until(std::future::pending()));
    TestApp {
        addr,
        client: reqwest::Client::new(),
    }
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// `POST /rooms` with the API key; the answer's JSON.
    pub async fn join(&self, room: &str, user: &str) -> Value {
        let r = self
            .client
            .post(self.url("/rooms"))
            .header("authorization", KEY)
            .form(&[("id", room), ("user[name]", user)])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
        r.json().await.unwrap()
    }

    pub async fn register_webhook(&self, url: &str) -> Value {
        let r = self
            .client
            .post(self.url("/webhooks"))
            .header("authorization", KEY)
            .form(&[("url", url), ("types", "room_update")])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
        r.json().await.unwrap()
    }

    pub async fn get_api(&self, path: &str) -> Value {
        let r = self
            .client
            .get(self.url(path))
            .header("authorization", KEY)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        r.json().await.unwrap()
    }

    pub async fn events(&self) -> Vec<Value> {
        self.client
            .get(self.url("/_sandbox/events"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }
}

/// Polls `/_sandbox/events` until `done` holds; panics after [`WAIT`].
pub async fn wait_for_events(app: &TestApp, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let events = app.events().await;
        if done(&events) {
            return events;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out; events: {events:#?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A webhook receiver answering `status`; yields (signature, raw body).
pub struct Receiver {
    pub url: String,
    rx: mpsc::UnboundedReceiver<(String, Bytes)>,
}

impl Receiver {
    pub async fn next(&mut self) -> (String, Vec<u8>) {
        let (sig, body) = tokio::time::timeout(WAIT, self.rx.recv())
            .await
            .expect("a webhook delivery in time")
            .unwrap();
        (sig, body.to_vec())
    }
}

pub async fn spawn_receiver(status: u16) -> Receiver {
    let (tx, rx) = mpsc::unbounded_channel();
    let status = axum::http::StatusCode::from_u16(status).unwrap();
    let router = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: HeaderMap, body: Bytes| {
            let tx = tx.clone();
            async move {
                let sig = headers
                    .get("x-eyeson-signature")
                    .map(|v| v.to_str().unwrap().to_owned())
                    .unwrap_or_default();
                let _ = tx.send((sig, body));
                status
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await });
    Receiver { url, rx }
}

/// The SEPP socket of a user, as the SDK opens it.
pub async fn connect_sepp(app: &TestApp, joined: &Value) -> Socket {
    let options = &joined["signaling"]["options"];
    let url = format!(
        "{}?auth_token={}",
        options["endpoint"].as_str().unwrap(),
        options["auth_token"].as_str().unwrap()
    );
    assert!(url.contains(&app.addr.to_string()));
    let (ws, _) = tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(url))
        .await
        .unwrap()
        .unwrap();
    ws
}

/// The ActionCable socket, with the subprotocol the Rails client asks for.
pub async fn connect_cable(_app: &TestApp, joined: &Value) -> Socket {
    let mut request = joined["links"]["websocket"]
        .as_str()
        .unwrap()
        .into_client_request()
        .unwrap();
    request.headers_mut().insert(
        "sec-websocket-protocol",
        "actioncable-v1-json".parse().unwrap(),
    );
    let (ws, response) = tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(request))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        response.headers()["sec-websocket-protocol"],
        "actioncable-v1-json"
    );
    ws
}

/// A SEPP message from the client of `joined`.
pub fn sepp_message(joined: &Value, kind: &str, data: Value) -> Message {
    let options = &joined["signaling"]["options"];
    Message::text(
        json!({"type": kind, "msg_id": "m1", "from": options["client_id"], "to": options["conf_id"], "data": data})
            .to_string(),
    )
}

/// Sends `call_start` with a minimal offer; returns the answer message.
pub async fn call_start(ws: &mut Socket, joined: &Value) -> Value {
    let offer =
        "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\n\
a=ice-ufrag:abcd\r\na=ice-pwd:offerofferofferofferoffer\r\na=setup:actpass\r\na=sendrecv\r\n";
    let data = json!({"sdp": {"type": "offer", "sdp": offer}, "display_name": "x", "mute_video": false, "platform": "web-1.9.6"});
    ws.send(sepp_message(joined, "call_start", data))
        .await
        .unwrap();
    next_json(ws).await
}

/// The next text message as JSON, skipping pings; bounded by [`WAIT`].
pub async fn next_json(ws: &mut Socket) -> Value {
    loop {
        let message = tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("a message in time")
            .expect("socket open")
            .unwrap();
        if let Message::Text(text) = message {
            return serde_json::from_str(text.as_str()).unwrap();
        }
    }
}

/// Standard base64 (the SEPP token's parts).
pub fn base64_decode(s: &str) -> Vec<u8> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.decode(s).unwrap()
}
