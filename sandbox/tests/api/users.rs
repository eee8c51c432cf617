//! `GET /rooms/{room_id}/users` and the `POST /_sandbox/bots` control over
//! real sockets: who counts online follows the SEPP socket, a bot counts
//! without one, and the fault layer covers the route like any other.

use eyeson_api::paths;
use futures_util::SinkExt;
use serde_json::{json, Value};

use crate::support::{
    call_start, connect_sepp, next_json, sepp_message, spawn_app, wait_for_events, TestApp, KEY,
    WAIT,
};

/// `GET` `path` with `key` as the `Authorization`; the status and the JSON.
async fn get(app: &TestApp, path: &str, key: Option<&str>) -> (u16, Value) {
    let mut r = reqwest::Client::new().get(app.url(path));
    if let Some(key) = key {
        r = r.header("authorization", key);
    }
    let r = r.send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// The users of `room_id` (with the API key), as (name, online).
async fn users(app: &TestApp, room_id: &str, online: Option<bool>) -> Vec<(String, bool)> {
    let (status, body) = get(app, &paths::room_users(room_id, online).unwrap(), Some(KEY)).await;
    assert_eq!(status, 200, "{body}");
    body.as_array()
        .unwrap()
        .iter()
        .map(|u| (u["name"].as_str().unwrap().to_owned(), u["online"] == true))
        .collect()
}

/// Polls the online users of `room_id` until they are `names`; panics
/// after [`WAIT`].
async fn wait_online(app: &TestApp, room_id: &str, names: &[&str]) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let online = users(app, room_id, Some(true)).await;
        if online
            .iter()
            .map(|(n, _)| n.as_str())
            .eq(names.iter().copied())
        {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {names:?} online; online: {online:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

fn owned(list: &[(&str, bool)]) -> Vec<(String, bool)> {
    list.iter().map(|(n, o)| ((*n).to_owned(), *o)).collect()
}

/// `POST /_sandbox/bots` with a form (or JSON) and the API key.
async fn bot(
    app: &TestApp,
    key: Option<&str>,
    fields: &[(&str, &str)],
    as_json: bool,
) -> (u16, Value) {
    let mut r = reqwest::Client::new().post(app.url("/_sandbox/bots"));
    r = if as_json {
        let object: serde_json::Map<String, Value> = fields
            .iter()
            .map(|(k, v)| ((*k).to_owned(), json!(v)))
            .collect();
        r.json(&object)
    } else {
        r.form(fields)
    };
    if let Some(key) = key {
        r = r.header("authorization", key);
    }
    let r = r.send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn users_are_online_while_their_sepp_socket_is_open() {
    let app = spawn_app().await;
    let path = paths::room_users("r 1", Some(true)).unwrap();
    assert_eq!(path, "/rooms/r%201/users?online=true");
    assert_eq!(get(&app, &path, None).await.0, 401);
    assert_eq!(get(&app, &path, Some("wrong")).await.0, 403);
    assert_eq!(
        get(&app, &path, Some(KEY)).await,
        (404, json!({"error": "unknown room"}))
    );

    let alice = app.join("r 1", "alice").await;
    let bob = app.join("r 1", "bob").await;
    assert_eq!(
        users(&app, "r 1", None).await,
        owned(&[("alice", false), ("bob", false)]),
        "a pending meeting's users, nobody connected"
    );
    let mut a = connect_sepp(&app, &alice).await;
    call_start(&mut a, &alice).await;
    let mut b = connect_sepp(&app, &bob).await;
    call_start(&mut b, &bob).await;

    let (status, online) = get(&app, &path, Some(KEY)).await;
    assert_eq!(status, 200);
    assert_eq!(
        online,
        json!([
            {"id": alice["user"]["id"], "room_id": "r 1", "name": "alice", "guest": false, "online": true, "avatar": null},
            {"id": bob["user"]["id"], "room_id": "r 1", "name": "bob", "guest": false, "online": true, "avatar": null},
        ])
    );

    // The service's warning guest is a user like any other: listed, and
    // offline until it starts the call itself.
    let token = alice["room"]["guest_token"].as_str().unwrap();
    let r = reqwest::Client::new()
        .post(app.url(&paths::guest(token).unwrap()))
        .form(&[("name", "Meeting limit")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);

    // Bob's tab closes: offline at once, still a participant.
    drop(b);
    wait_online(&app, "r 1", &["alice"]).await;
    let everyone = owned(&[("alice", true), ("bob", false), ("Meeting limit", false)]);
    assert_eq!(users(&app, "r 1", Some(false)).await, everyone);
    assert_eq!(users(&app, "r 1", None).await, everyone, "absent is false");
    let (_, listed) = get(&app, "/rooms/r%201/users", Some(KEY)).await;
    assert_eq!(listed[2]["guest"], true);

    // Hanging up the SDK's way counts the same.
    a.send(sepp_message(
        &alice,
        "call_terminate",
        json!({"term_code": 0}),
    ))
    .await
    .unwrap();
    wait_for_events(&app, |e| e.iter().any(|e| e["kind"] == "meeting_ended")).await;
    assert_eq!(
        get(&app, "/rooms/r%201/users?online=yes", Some(KEY)).await,
        (400, json!({"error": "online must be true or false"}))
    );
    assert_eq!(
        get(&app, &path, Some(KEY)).await,
        (410, json!({"error": "the meeting has ended"})),
        "the room's meeting ended"
    );
}

#[tokio::test]
async fn a_bot_counts_online_keeps_the_meeting_open_and_leaves_on_request() {
    let app = spawn_app().await;
    let alice = app.join("bots", "alice").await;
    let mut a = connect_sepp(&app, &alice).await;
    call_start(&mut a, &alice).await;
    assert_eq!(next_json(&mut a).await["type"], "source_update");

    let on = [("room_id", "bots"), ("name", "Recorder"), ("on", "true")];
    assert_eq!(bot(&app, None, &on, false).await.0, 401);
    assert_eq!(bot(&app, Some("wrong"), &on, false).await.0, 403);
    assert_eq!(bot(&app, Some(KEY), &on, false).await.0, 204);

    // Alice's SDK sees it in the podium; the users endpoint counts it.
    let podium = next_json(&mut a).await;
    assert_eq!(podium["type"], "source_update");
    let events = app.events().await;
    let logged = events.iter().find(|e| e["kind"] == "bot").unwrap();
    assert_eq!(
        (&logged["room_id"], &logged["user_name"], &logged["on"]),
        (&json!("bots"), &json!("Recorder"), &json!(true))
    );
    assert_eq!(
        podium["data"]["src"],
        json!([alice["user"]["id"], logged["user_id"]])
    );
    assert!(events
        .iter()
        .any(|e| e["kind"] == "user_joined" && e["user_name"] == "Recorder"));
    assert_eq!(
        users(&app, "bots", Some(true)).await,
        owned(&[("alice", true), ("Recorder", true)])
    );

    for (fields, status, error) in [
        (
            &[("name", "x"), ("on", "true")][..],
            400,
            "room_id is required",
        ),
        (
            &[("room_id", "bots"), ("on", "true")][..],
            400,
            "name is required",
        ),
        (
            &[("room_id", "bots"), ("name", "x"), ("on", "yes")][..],
            400,
            "on must be true or false",
        ),
        (
            &[("room_id", "nope"), ("name", "x"), ("on", "true")][..],
            404,
            "unknown room",
        ),
        (&on[..], 409, "a bot of that name is already in the call"),
        (
            &[("room_id", "bots"), ("name", "x"), ("on", "false")][..],
            409,
            "no bot of that name is in the call",
        ),
    ] {
        assert_eq!(
            bot(&app, Some(KEY), fields, true).await,
            (status, json!({"error": error})),
            "{fields:?}"
        );
    }

    // Alice leaves; the bot alone keeps the meeting running.
    drop(a);
    wait_online(&app, "bots", &["Recorder"]).await;
    let running = app.get_api("/rooms").await;
    assert_eq!(running[0]["id"], "bots");

    let off = [("room_id", "bots"), ("name", "Recorder"), ("on", "false")];
    assert_eq!(bot(&app, Some(KEY), &off, true).await.0, 204);
    let events = wait_for_events(&app, |e| e.iter().any(|e| e["kind"] == "meeting_ended")).await;
    let tail: Vec<(&str, Option<&str>, Option<&str>)> = events
        .iter()
        .rev()
        .take(3)
        .rev()
        .map(|e| {
            (
                e["kind"].as_str().unwrap(),
                e["reason"].as_str(),
                e["user_name"].as_str(),
            )
        })
        .collect();
    assert_eq!(
        tail,
        [
            ("bot", None, Some("Recorder")),
            ("user_left", Some("disconnect"), Some("Recorder")),
            ("meeting_ended", Some("last_user_left"), None),
        ]
    );
    assert_eq!(
        bot(&app, Some(KEY), &on, false).await,
        (410, json!({"error": "the meeting has ended"}))
    );
}

#[tokio::test]
async fn the_users_route_takes_scripted_faults_like_any_other() {
    let app = spawn_app().await;
    app.join("faulty", "alice").await;
    let script = reqwest::Client::new()
        .post(app.url("/_sandbox/faults"))
        .header("authorization", KEY)
        .form(&[
            ("method", "GET"),
            ("path", paths::ROOM_USERS_ROUTE),
            ("faults", "429,cut"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(script.status(), 204);

    let path = app.url(&paths::room_users("faulty", Some(true)).unwrap());
    let c = reqwest::Client::new();
    let limited = c
        .get(&path)
        .header("authorization", KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(limited.status(), 429);
    assert_eq!(limited.headers()["retry-after"], "1");
    assert_eq!(
        limited.json::<Value>().await.unwrap(),
        json!({"error": "scripted fault"})
    );
    let cut = c
        .get(&path)
        .header("authorization", KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(cut.status(), 200);
    let text = cut.text().await.unwrap();
    assert!(
        serde_json::from_str::<Value>(&text).is_err(),
        "cut: {text:?}"
    );
    assert_eq!(
        users(&app, "faulty", None).await,
        owned(&[("alice", false)])
    );
}
