//! The sandbox over real sockets on 127.0.0.1 (port 0): the REST contract,
//! the websockets, the lifecycle and the signed webhooks. Every wait is for a
//! condition, bounded by [`WAIT`].

mod clients;
mod support;
mod users;

use futures_util::SinkExt;
use serde_json::{json, Value};
use support::{
    call_start, connect_cable, connect_sepp, next_json, spawn_app, spawn_receiver, wait_for_events,
    KEY, WAIT,
};

/// The next message must be a podium (SEPP `source_update`); its `src`.
async fn podium(ws: &mut support::Socket) -> Value {
    let m = next_json(ws).await;
    assert_eq!(m["type"], "source_update", "{m}");
    m["data"]["src"].clone()
}

#[tokio::test]
async fn rest_contract_and_eyesons_error_answers() {
    let app = spawn_app().await;
    let c = reqwest::Client::new();

    let r = c
        .post(app.url("/rooms"))
        .form(&[("user[name]", "alice")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401, "no key");
    let r = c
        .post(app.url("/rooms"))
        .header("authorization", "wrong")
        .form(&[("user[name]", "alice")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403, "wrong key");
    let r = c
        .post(app.url("/rooms"))
        .header("authorization", KEY)
        .form(&[("id", "r1")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400, "user[name] is required");

    let joined = app.join("r1", "alice").await;
    let key = joined["access_key"].as_str().unwrap().to_owned();
    assert!(
        key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
        "{key}"
    );
    assert_eq!(joined["room"]["id"], "r1");
    assert_eq!(joined["user"]["name"], "alice");
    assert_eq!(joined["ready"], true);
    assert_eq!(
        joined["links"]["websocket"],
        format!("ws://{}/rt?access_key={key}", app.addr)
    );

    // What the SDK fetches, cross-origin.
    let r = c
        .get(app.url(&format!("/rooms/{key}")))
        .header("origin", "http://127.0.0.1:1")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["access-control-allow-origin"], "*");
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/json"));
    let room: Value = r.json().await.unwrap();
    let sig = &room["signaling"]["options"];
    assert_eq!(room["signaling"]["type"], "sepp");
    assert_eq!(sig["endpoint"], format!("ws://{}/sig/{key}", app.addr));
    let payload = sig["auth_token"]
        .as_str()
        .unwrap()
        .split('.')
        .nth(1)
        .unwrap()
        .to_owned();
    let payload: Value = serde_json::from_slice(&support::base64_decode(&payload)).unwrap();
    assert_eq!(payload["client_id"], sig["client_id"]);
    assert_eq!(payload["conf_id"], sig["conf_id"]);
    assert!(payload["exp"].as_u64().unwrap() > 0);

    let preflight = c
        .request(reqwest::Method::OPTIONS, app.url(&format!("/rooms/{key}")))
        .header("origin", "http://127.0.0.1:1")
        .header("access-control-request-method", "DELETE")
        .send()
        .await
        .unwrap();
    assert_eq!(preflight.status(), 204);
    assert!(preflight.headers()["access-control-allow-methods"]
        .to_str()
        .unwrap()
        .contains("DELETE"));

    let user_id = joined["user"]["id"].as_str().unwrap();
    let user: Value = c
        .get(app.url(&format!("/rooms/{key}/users/{user_id}")))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        user,
        json!({"id": user_id, "name": "alice", "avatar": null, "guest": false})
    );

    let r = c.get(app.url("/rooms/nosuchkey")).send().await.unwrap();
    assert_eq!(r.status(), 404);
    let listed: Value = c
        .get(app.url("/rooms"))
        .header("authorization", KEY)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(listed, json!([]), "pending until somebody starts the call");
    assert_eq!(c.get(app.url("/rooms")).send().await.unwrap().status(), 401);
    assert_eq!(
        c.get(app.url("/_sandbox/events"))
            .send()
            .await
            .unwrap()
            .json::<Value>()
            .await
            .unwrap(),
        json!([])
    );
}

#[tokio::test]
async fn webhook_registration_is_one_per_key() {
    let app = spawn_app().await;
    let c = reqwest::Client::new();
    let hooks = app.url("/webhooks");
    assert_eq!(
        c.get(&hooks)
            .header("authorization", KEY)
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
    assert_eq!(c.get(&hooks).send().await.unwrap().status(), 401);
    let bad = c
        .post(&hooks)
        .header("authorization", KEY)
        .form(&[("url", "http://x/")])
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400, "types is required");

    let first: Value = app.register_webhook("http://127.0.0.1:9/one").await;
    let second: Value = app.register_webhook("http://127.0.0.1:9/two").await;
    let current: Value = c
        .get(&hooks)
        .header("authorization", KEY)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(current["id"], second["id"]);
    assert_eq!(current["url"], "http://127.0.0.1:9/two");
    assert_eq!(current["types"], json!(["room_update"]));

    let stale = format!("/webhooks/{}", first["id"].as_str().unwrap());
    assert_eq!(
        c.delete(app.url(&stale))
            .header("authorization", KEY)
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
    let current_path = format!("/webhooks/{}", second["id"].as_str().unwrap());
    assert_eq!(
        c.delete(app.url(&current_path))
            .header("authorization", "nope")
            .send()
            .await
            .unwrap()
            .status(),
        403
    );
    assert_eq!(
        c.delete(app.url(&current_path))
            .header("authorization", KEY)
            .send()
            .await
            .unwrap()
            .status(),
        204
    );
    assert_eq!(
        c.get(&hooks)
            .header("authorization", KEY)
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
}

#[tokio::test]
async fn a_meeting_runs_from_the_first_call_to_the_last_leave_with_signed_webhooks() {
    let app = spawn_app().await;
    let mut receiver = spawn_receiver(204).await;
    app.register_webhook(&receiver.url).await;
    let alice = app.join("standup", "alice").await;
    let bob = app.join("standup", "bob").await;
    assert_eq!(alice["room"]["id"], bob["room"]["id"]);

    let mut a = connect_sepp(&app, &alice).await;
    let answer = call_start(&mut a, &alice).await;
    assert_eq!(answer["type"], "call_accepted");
    assert_eq!(answer["from"], alice["signaling"]["options"]["conf_id"]);
    assert_eq!(answer["to"], alice["signaling"]["options"]["client_id"]);
    assert_eq!(answer["data"]["sdp"]["type"], "answer");
    assert!(answer["data"]["sdp"]["sdp"]
        .as_str()
        .unwrap()
        .contains("a=setup:active"));

    let (signature, body) = receiver.next().await;
    assert_eq!(
        signature,
        eyeson_sandbox::webhook::sign(KEY, &body),
        "signed with the API key"
    );
    let started: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(started["type"], "room_update");
    assert_eq!(started["room"]["id"], "standup");
    assert_eq!(started["room"]["shutdown"], false);
    assert!(started["timestamp"].as_u64().unwrap() > 1_600_000_000);
    let started_at = started["room"]["started_at"].as_str().unwrap().to_owned();
    let running: Value = app.get_api("/rooms").await;
    assert_eq!(running[0]["started_at"], started_at.as_str());

    let mut b = connect_sepp(&app, &bob).await;
    call_start(&mut b, &bob).await;

    // Alice hangs up the SDK's way; Bob's socket just drops.
    a.send(support::sepp_message(
        &alice,
        "call_terminate",
        json!({"call_id": answer["data"]["call_id"], "term_code": 0}),
    ))
    .await
    .unwrap();
    wait_for_events(&app, |e| e.iter().any(|e| e["kind"] == "user_left")).await;
    drop(b);

    let (signature, body) = receiver.next().await;
    assert_eq!(signature, eyeson_sandbox::webhook::sign(KEY, &body));
    let ended: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(ended["room"]["shutdown"], true);
    assert_eq!(ended["room"]["id"], "standup");

    let events = wait_for_events(&app, |e| {
        e.iter()
            .filter(|e| e["kind"] == "webhook_delivered")
            .count()
            == 2
    })
    .await;
    let summary: Vec<(String, String, String)> = events
        .iter()
        .map(|e| {
            let s = |k: &str| {
                e[k].as_str()
                    .map(str::to_owned)
                    .unwrap_or_else(|| e[k].to_string())
            };
            (s("kind"), s("reason"), s("user_name"))
        })
        .collect();
    let expected = [
        ("meeting_started", "null", "null"),
        ("webhook_delivered", "null", "null"),
        ("user_joined", "null", "alice"),
        ("user_joined", "null", "bob"),
        ("user_left", "terminate", "alice"),
        ("user_left", "disconnect", "bob"),
        ("meeting_ended", "last_user_left", "null"),
        ("webhook_delivered", "null", "null"),
    ];
    // Deliveries are asynchronous: compare them apart from the rest.
    let without = |v: &[(String, String, String)]| -> Vec<(String, String, String)> {
        v.iter()
            .filter(|e| e.0 != "webhook_delivered")
            .cloned()
            .collect()
    };
    let expected: Vec<(String, String, String)> = expected
        .iter()
        .map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string()))
        .collect();
    assert_eq!(without(&summary), without(&expected));
    for e in &events {
        assert_eq!(e["room_id"], "standup");
        let at = e["at"].as_str().unwrap();
        assert!(
            at.len() == 24 && at.ends_with('Z') && at.as_bytes()[19] == b'.',
            "RFC 3339 with ms: {at}"
        );
        if e["kind"] == "webhook_delivered" {
            assert_eq!(e["status"], 204);
        }
    }
    assert_eq!(events[0]["started_at"], started_at.as_str());

    let c = reqwest::Client::new();
    let gone = c
        .get(app.url(&format!("/rooms/{}", alice["access_key"].as_str().unwrap())))
        .send()
        .await
        .unwrap();
    assert_eq!(gone.status(), 410);
    let hook: Value = app.get_api("/webhooks").await;
    assert_eq!(hook["last_response_code"], "204");
}

#[tokio::test]
async fn api_delete_ends_the_meeting_and_pushes_call_terminated() {
    let app = spawn_app().await;
    let alice = app.join("r 1", "alice").await; // custom ids may contain spaces
    let mut a = connect_sepp(&app, &alice).await;
    let accepted = call_start(&mut a, &alice).await;
    let c = reqwest::Client::new();
    let path = app.url("/rooms/r%201");

    assert_eq!(
        c.delete(&path)
            .header("authorization", "wrong")
            .send()
            .await
            .unwrap()
            .status(),
        403
    );
    assert_eq!(
        c.delete(&path)
            .header("authorization", KEY)
            .send()
            .await
            .unwrap()
            .status(),
        204
    );
    assert_eq!(podium(&mut a).await, json!([alice["user"]["id"]]));
    let pushed = next_json(&mut a).await;
    assert_eq!(pushed["type"], "call_terminated");
    assert_eq!(pushed["data"]["term_code"], 200);
    assert_eq!(pushed["data"]["call_id"], accepted["data"]["call_id"]);
    assert_eq!(pushed["from"], alice["signaling"]["options"]["conf_id"]);

    assert_eq!(
        c.delete(&path)
            .header("authorization", KEY)
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
    drop(a);
    let events = app.events().await;
    let kinds: Vec<(&str, Option<&str>, Option<u64>)> = events
        .iter()
        .map(|e| {
            (
                e["kind"].as_str().unwrap(),
                e["reason"].as_str(),
                e["status"].as_u64(),
            )
        })
        .collect();
    assert_eq!(
        kinds,
        vec![
            ("meeting_started", None, None),
            ("user_joined", None, None),
            ("api_delete", None, Some(204)),
            ("user_left", Some("meeting_ended"), None),
            ("meeting_ended", Some("api_delete"), None),
            ("api_delete", None, Some(404)),
        ]
    );
    assert_eq!(events[2]["room_id"], "r 1");
    let gone = c
        .get(app.url(&format!("/rooms/{}", alice["access_key"].as_str().unwrap())))
        .send()
        .await
        .unwrap();
    assert_eq!(gone.status(), 410);

    // The room hosts a new meeting after that.
    let again = app.join("r 1", "alice").await;
    assert_ne!(again["access_key"], alice["access_key"]);
}

#[tokio::test]
async fn actioncable_welcomes_confirms_and_pushes_room_setup() {
    let app = spawn_app().await;
    let alice = app.join("cable", "alice").await;
    let mut ws = connect_cable(&app, &alice).await;
    assert_eq!(next_json(&mut ws).await, json!({"type": "welcome"}));
    let identifier = json!({"channel": "RoomChannel"}).to_string();
    ws.send(tokio_tungstenite::tungstenite::Message::text(
        json!({"command": "subscribe", "identifier": identifier}).to_string(),
    ))
    .await
    .unwrap();
    let confirm = next_json(&mut ws).await;
    assert_eq!(
        confirm,
        json!({"identifier": identifier, "type": "confirm_subscription"})
    );
    let setup = next_json(&mut ws).await;
    assert_eq!(setup["identifier"], identifier.as_str());
    assert_eq!(setup["message"]["type"], "room_setup");
    assert_eq!(setup["message"]["content"]["room"]["id"], "cable");
    assert_eq!(
        setup["message"]["content"]["access_key"],
        alice["access_key"]
    );

    let refused =
        tokio_tungstenite::connect_async(format!("ws://{}/rt?access_key=unknown", app.addr)).await;
    match refused {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 404)
        }
        other => panic!("unknown keys are refused before the upgrade: {other:?}"),
    }
}

#[tokio::test]
async fn an_unreachable_receiver_is_logged_with_status_0() {
    let app = spawn_app().await;
    // A port nobody listens on: bind one, then free it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    app.register_webhook(&format!("http://127.0.0.1:{port}/hook"))
        .await;
    let alice = app.join("r", "alice").await;
    let mut a = connect_sepp(&app, &alice).await;
    call_start(&mut a, &alice).await;
    let events =
        wait_for_events(&app, |e| e.iter().any(|e| e["kind"] == "webhook_delivered")).await;
    let delivered = events
        .iter()
        .find(|e| e["kind"] == "webhook_delivered")
        .unwrap();
    assert_eq!(delivered["status"], 0);
    assert_eq!(delivered["url"], format!("http://127.0.0.1:{port}/hook"));
}

#[tokio::test]
async fn the_binary_prints_its_bound_address() {
    use tokio::io::AsyncBufReadExt;
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_eyeson-sandbox"))
        .args(["--listen", "127.0.0.1:0"])
        .env("EYESON_API_KEY", "from-env")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let line = tokio::time::timeout(WAIT, lines.next_line())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let url = line.strip_prefix("listening on ").expect(&line).to_owned();
    assert!(
        url.starts_with("http://127.0.0.1:") && !url.ends_with(":0"),
        "{url}"
    );
    let c = reqwest::Client::new();
    let r = c
        .get(format!("{url}/rooms"))
        .header("authorization", "from-env")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "the key comes from EYESON_API_KEY");
    child.kill().await.unwrap();
}

#[tokio::test]
async fn a_resumed_call_keeps_the_user_and_the_sdks_own_delete_ends_the_meeting() {
    let app = spawn_app().await;
    let alice = app.join("resume", "alice").await;
    let bob = app.join("resume", "bob").await;
    let mut a = connect_sepp(&app, &alice).await;
    let accepted = call_start(&mut a, &alice).await;
    let mut b = connect_sepp(&app, &bob).await;
    call_start(&mut b, &bob).await;

    // A second socket for Alice (the SDK resuming) supersedes the first:
    // the old one closing is no disconnect.
    let mut a2 = connect_sepp(&app, &alice).await;
    let data =
        json!({"call_id": accepted["data"]["call_id"], "sdp": {"type": "offer", "sdp": "v=0\r\n"}});
    a2.send(support::sepp_message(&alice, "call_resume", data))
        .await
        .unwrap();
    let resumed = next_json(&mut a2).await;
    assert_eq!(resumed["type"], "call_resumed");
    assert_eq!(resumed["data"]["call_id"], accepted["data"]["call_id"]);
    drop(a);

    // terminate_meeting: DELETE /rooms/{access_key} without a key ends it for all.
    let c = reqwest::Client::new();
    let key = alice["access_key"].as_str().unwrap();
    let r = c
        .delete(app.url(&format!("/rooms/{key}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let both = json!([alice["user"]["id"], bob["user"]["id"]]);
    assert_eq!(
        podium(&mut a2).await,
        both,
        "the resumed socket is told the podium"
    );
    assert_eq!(podium(&mut b).await, both);
    assert_eq!(next_json(&mut a2).await["type"], "call_terminated");
    assert_eq!(next_json(&mut b).await["type"], "call_terminated");
    let r = c
        .delete(app.url(&format!("/rooms/{key}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 410);

    let events = app.events().await;
    let kinds: Vec<(&str, Option<&str>)> = events
        .iter()
        .map(|e| (e["kind"].as_str().unwrap(), e["reason"].as_str()))
        .collect();
    assert_eq!(
        kinds,
        vec![
            ("meeting_started", None),
            ("user_joined", None),
            ("user_joined", None),
            ("user_left", Some("meeting_ended")),
            ("user_left", Some("meeting_ended")),
            ("meeting_ended", Some("api_delete")),
        ]
    );
}

/// Subscribes `ws` to the `RoomChannel` and reads through the confirmation
/// and the `room_setup` push.
async fn subscribe_room(ws: &mut support::Socket) -> String {
    assert_eq!(next_json(ws).await, json!({"type": "welcome"}));
    let identifier = json!({"channel": "RoomChannel"}).to_string();
    ws.send(tokio_tungstenite::tungstenite::Message::text(
        json!({"command": "subscribe", "identifier": identifier}).to_string(),
    ))
    .await
    .unwrap();
    assert_eq!(next_json(ws).await["type"], "confirm_subscription");
    assert_eq!(next_json(ws).await["message"]["type"], "room_setup");
    identifier
}

async fn post_form(app: &support::TestApp, path: &str, form: &[(&str, &str)]) -> (u16, Value) {
    let r = reqwest::Client::new()
        .post(app.url(path))
        .form(form)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn a_guest_joins_a_running_meeting_and_its_chat_reaches_every_sdk() {
    let app = spawn_app().await;
    let alice = app.join("chat", "alice").await;
    let bob = app.join("chat", "bob").await;
    let token = alice["room"]["guest_token"].as_str().unwrap().to_owned();
    // Pending (nobody in the call yet): no meeting runs, the guest gets 410.
    let (status, body) = post_form(&app, &format!("/guests/{token}"), &[("name", "Bot")]).await;
    assert_eq!((status, body["error"].is_string()), (410, true));

    let mut a = connect_sepp(&app, &alice).await;
    call_start(&mut a, &alice).await;
    let mut cable_a = connect_cable(&app, &alice).await;
    let mut cable_b = connect_cable(&app, &bob).await;
    let identifier = subscribe_room(&mut cable_a).await;
    subscribe_room(&mut cable_b).await;

    let (status, guest) = post_form(
        &app,
        &format!("/guests/{token}"),
        &[("name", "Meeting limit")],
    )
    .await;
    assert_eq!(status, 201);
    assert_eq!(guest["room"]["id"], "chat");
    assert_eq!(guest["user"]["name"], "Meeting limit");
    assert_eq!(guest["user"]["guest"], true);
    let key = guest["access_key"].as_str().unwrap();
    assert_ne!(key, alice["access_key"].as_str().unwrap());

    let (status, _) = post_form(
        &app,
        &format!("/rooms/{key}/messages"),
        &[
            ("type", "chat"),
            ("content", "This meeting ends in 5 minutes."),
        ],
    )
    .await;
    assert_eq!(status, 201);
    // The RoomChannel message the SDK turns into a `chat` event, on both SDKs.
    for ws in [&mut cable_a, &mut cable_b] {
        let pushed = loop {
            let m = next_json(ws).await;
            if m["type"] != "ping" {
                break m;
            }
        };
        assert_eq!(pushed["identifier"], identifier.as_str());
        let message = &pushed["message"];
        assert_eq!(message["type"], "chat");
        assert_eq!(message["content"], "This meeting ends in 5 minutes.");
        assert_eq!(message["cid"], guest["user"]["id"]);
        assert!(message["created_at"].as_str().unwrap().ends_with('Z'));
    }
    // The SDK looks the sender up by cid.
    let sender = app
        .get_api(&format!(
            "/rooms/{}/users/{}",
            alice["access_key"].as_str().unwrap(),
            guest["user"]["id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(
        (sender["name"].as_str(), sender["guest"].as_bool()),
        (Some("Meeting limit"), Some(true))
    );

    let events = app.events().await;
    let joined = events.iter().find(|e| e["kind"] == "guest_joined").unwrap();
    assert_eq!(joined["user_name"], "Meeting limit");
    let chat = events.iter().find(|e| e["kind"] == "chat").unwrap();
    assert_eq!(chat["room_id"], "chat");
    assert_eq!(chat["content"], "This meeting ends in 5 minutes.");
    assert_eq!(chat["user_name"], "Meeting limit");
    assert_eq!(chat["reached"], 2, "pushed to both connected SDKs");
    assert!(
        !events
            .iter()
            .any(|e| e["kind"] == "user_joined" && e["user_name"] == "Meeting limit"),
        "a guest that never starts the call is no participant"
    );
}

#[tokio::test]
async fn guest_joins_and_messages_refuse_what_eyeson_refuses() {
    let app = spawn_app().await;
    let alice = app.join("strict", "alice").await;
    let token = alice["room"]["guest_token"].as_str().unwrap().to_owned();
    let mut a = connect_sepp(&app, &alice).await;
    let answer = call_start(&mut a, &alice).await;

    let guest_path = format!("/guests/{token}");
    assert_eq!(
        post_form(&app, &guest_path, &[]).await.0,
        400,
        "a name is required"
    );
    assert_eq!(post_form(&app, &guest_path, &[("name", " ")]).await.0, 400);
    assert_eq!(
        post_form(&app, "/guests/AAAAAAAAAAAAAAAAAAAAAAAA", &[("name", "x")])
            .await
            .0,
        410,
        "no meeting runs for an unknown token"
    );
    let (_, guest) = post_form(&app, &guest_path, &[("name", "Bot")]).await;
    let messages = format!("/rooms/{}/messages", guest["access_key"].as_str().unwrap());
    let (status, body) = post_form(&app, &messages, &[("type", "custom"), ("content", "x")]).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("type must be chat"))
    );
    let (status, body) = post_form(&app, &messages, &[("content", "x")]).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("type is required"))
    );
    let (status, body) = post_form(&app, &messages, &[("type", "chat"), ("content", "  ")]).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("content is required"))
    );
    assert_eq!(
        post_form(
            &app,
            "/rooms/unknownkey/messages",
            &[("type", "chat"), ("content", "x")]
        )
        .await
        .0,
        404
    );

    // The guest never started the call: when alice leaves, the meeting
    // ends (the guest keeps nothing alive), and then both calls answer 410.
    a.send(support::sepp_message(
        &alice,
        "call_terminate",
        json!({"call_id": answer["data"]["call_id"], "term_code": 0}),
    ))
    .await
    .unwrap();
    let events = wait_for_events(&app, |e| e.iter().any(|e| e["kind"] == "meeting_ended")).await;
    let ended = events
        .iter()
        .find(|e| e["kind"] == "meeting_ended")
        .unwrap();
    assert_eq!(ended["reason"], "last_user_left");
    assert_eq!(
        post_form(&app, &messages, &[("type", "chat"), ("content", "x")])
            .await
            .0,
        410
    );
    assert_eq!(
        post_form(&app, &guest_path, &[("name", "Bot")]).await.0,
        410
    );
    assert!(!events.iter().any(|e| e["kind"] == "chat"));
}

#[tokio::test]
async fn the_podium_follows_joins_and_leaves_and_voice_reaches_everyone_in_the_call() {
    let app = spawn_app().await;
    let alice = app.join("talk", "alice").await;
    let bob = app.join("talk", "bob").await;
    let (ua, ub) = (&alice["user"]["id"], &bob["user"]["id"]);
    assert_eq!(
        alice["signaling"]["options"]["client_id"], *ua,
        "the SDK looks client ids up as user ids"
    );
    let c = reqwest::Client::new();
    let voice = |body: Value| c.post(app.url("/_sandbox/voice")).json(&body).send();

    let mut a = connect_sepp(&app, &alice).await;
    call_start(&mut a, &alice).await;
    let alone = next_json(&mut a).await;
    assert_eq!(alone["from"], alice["signaling"]["options"]["conf_id"]);
    assert_eq!(alone["to"], *ua);
    assert_eq!(
        alone["data"],
        json!({"src": [ua], "asrc": [0], "vsrc": [0], "dims": [{"x": 0, "y": 0, "w": 1280, "h": 720}]})
    );
    let r = voice(json!({"access_key": bob["access_key"], "on": true}))
        .await
        .unwrap();
    assert_eq!(r.status(), 409, "bob is not in the call yet");
    assert_eq!(
        r.json::<Value>().await.unwrap(),
        json!({"error": "the user is not in the call"})
    );

    let mut b = connect_sepp(&app, &bob).await;
    call_start(&mut b, &bob).await;
    assert_eq!(podium(&mut a).await, json!([ua, ub]));
    assert_eq!(podium(&mut b).await, json!([ua, ub]));

    let r = voice(json!({"access_key": bob["access_key"], "on": true}))
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    for (ws, to) in [(&mut a, ua), (&mut b, ub)] {
        let m = next_json(ws).await;
        assert_eq!(m["type"], "voice_activity");
        assert_eq!(m["to"], *to);
        assert_eq!(m["data"], json!({"cid": ub, "on": true}));
    }
    // The SDK resolves `cid` through the users endpoint.
    let user: Value = c
        .get(app.url(&format!(
            "/rooms/{}/users/{}",
            alice["access_key"].as_str().unwrap(),
            ub.as_str().unwrap()
        )))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(user["name"], "bob");

    let r = c
        .post(app.url("/_sandbox/voice"))
        .form(&[
            ("access_key", bob["access_key"].as_str().unwrap()),
            ("on", "false"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(
        next_json(&mut a).await["data"],
        json!({"cid": ub, "on": false})
    );
    assert_eq!(
        next_json(&mut b).await["data"],
        json!({"cid": ub, "on": false})
    );

    for (body, status, error) in [
        (json!({"on": true}), 400, "access_key is required"),
        (
            json!({"access_key": alice["access_key"], "on": "loud"}),
            400,
            "on must be true or false",
        ),
        (
            json!({"access_key": alice["access_key"]}),
            400,
            "on is required (true or false)",
        ),
        (
            json!({"access_key": "nope", "on": true}),
            404,
            "unknown access key",
        ),
    ] {
        let r = voice(body.clone()).await.unwrap();
        assert_eq!(r.status(), status, "{body}");
        assert_eq!(r.json::<Value>().await.unwrap(), json!({"error": error}));
    }

    // Bob leaves: Alice is alone again.
    drop(b);
    assert_eq!(podium(&mut a).await, json!([ua]));
    let events = app.events().await;
    let voices: Vec<(&Value, &Value)> = events
        .iter()
        .filter(|e| e["kind"] == "voice_activity")
        .map(|e| (&e["user_id"], &e["on"]))
        .collect();
    assert_eq!(voices, [(ub, &json!(true)), (ub, &json!(false))]);
}

#[tokio::test]
async fn scripted_faults_answer_before_the_api_and_then_let_it_through() {
    let app = spawn_app().await;
    let http = reqwest::Client::new();
    let script = |form: &'static [(&'static str, &'static str)], key: Option<&'static str>| {
        let mut r = http.post(app.url("/_sandbox/faults")).form(form);
        if let Some(key) = key {
            r = r.header("authorization", key);
        }
        async move { r.send().await.unwrap().status().as_u16() }
    };
    let rooms = || {
        http.get(app.url("/rooms"))
            .header("authorization", KEY)
            .send()
    };
    let queue: &[(&str, &str)] = &[("method", "GET"), ("path", "/rooms"), ("faults", "429,cut")];
    assert_eq!(script(queue, None).await, 401, "the API key's control");
    assert_eq!(script(queue, Some("wrong")).await, 403);
    assert_eq!(
        script(&[("method", "GET"), ("path", "/rooms")], Some(KEY)).await,
        400
    );
    assert_eq!(script(queue, Some(KEY)).await, 204);

    let limited = rooms().await.unwrap();
    assert_eq!(limited.status(), 429);
    assert_eq!(limited.headers()["retry-after"], "1");
    let cut = rooms().await.unwrap();
    assert_eq!(cut.status(), 200);
    let text = cut.text().await.unwrap();
    assert!(
        serde_json::from_str::<Value>(&text).is_err(),
        "cut: {text:?}"
    );
    let whole = rooms().await.unwrap();
    assert_eq!(whole.json::<Value>().await.unwrap(), json!([]));

    // A standing fault answers every request until cleared; the API's own
    // checks still answer what no fault covers.
    let outage: &[(&str, &str)] = &[
        ("method", "DELETE"),
        ("path", "/rooms/{id}"),
        ("faults", "503"),
        ("standing", "true"),
    ];
    assert_eq!(script(outage, Some(KEY)).await, 204);
    for room in ["a", "b"] {
        let r = http
            .delete(app.url(&format!("/rooms/{room}")))
            .header("authorization", KEY)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 503);
    }
    let clear: &[(&str, &str)] = &[
        ("method", "DELETE"),
        ("path", "/rooms/{id}"),
        ("standing", "true"),
    ];
    assert_eq!(script(clear, Some(KEY)).await, 204);
    let r = http
        .delete(app.url("/rooms/a"))
        .header("authorization", KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404, "no meeting runs in the room");
}
