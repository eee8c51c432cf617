//! What every eyeson client may send and get: parameters in the query
//! string, a form or JSON (the body winning), `410` for every access-key
//! call once the meeting ended, `423` for everything while the API key is
//! locked.

use serde_json::{json, Map, Value};
use tokio_tungstenite::tungstenite;

use crate::support::{call_start, connect_sepp, spawn_app, TestApp, KEY};

/// Where a client puts the parameters.
#[derive(Clone, Copy, Debug)]
enum Place {
    Query,
    Form,
    Json,
}

/// A running meeting: alice in the call.
struct Running {
    app: TestApp,
    alice: Value,
    _sepp: crate::support::Socket,
}

impl Running {
    async fn start() -> Running {
        let app = spawn_app().await;
        let alice = app.join("room-1", "alice").await;
        let mut sepp = connect_sepp(&app, &alice).await;
        call_start(&mut sepp, &alice).await;
        Running {
            app,
            alice,
            _sepp: sepp,
        }
    }

    fn key(&self) -> String {
        self.alice["access_key"].as_str().unwrap().to_owned()
    }

    fn token(&self) -> String {
        self.alice["room"]["guest_token"]
            .as_str()
            .unwrap()
            .to_owned()
    }
}

/// `a[b]` fields nested as `{"a": {"b": …}}`; `true`/`false` as booleans.
fn as_json(fields: &[(&str, &str)]) -> Value {
    let mut out = Map::new();
    for (k, v) in fields {
        let value = match *v {
            "true" => json!(true),
            "false" => json!(false),
            v => json!(v),
        };
        match k.split_once('[') {
            Some((outer, inner)) => {
                let inner = inner.trim_end_matches(']');
                out.entry(outer)
                    .or_insert_with(|| json!({}))
                    .as_object_mut()
                    .unwrap()
                    .insert(inner.to_owned(), value);
            }
            None => {
                out.insert((*k).to_owned(), value);
            }
        }
    }
    Value::Object(out)
}

/// POSTs `fields` to `path` at `place`; the status and the JSON answer.
async fn post(
    app: &TestApp,
    path: &str,
    api_key: bool,
    place: Place,
    fields: &[(&str, &str)],
) -> (u16, Value) {
    let client = reqwest::Client::new();
    let mut request = match place {
        Place::Query => client.post(app.url(path)).query(fields),
        Place::Form => client.post(app.url(path)).form(fields),
        Place::Json => client.post(app.url(path)).json(&as_json(fields)),
    };
    if api_key {
        request = request.header("authorization", KEY);
    }
    let r = request.send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

fn last_event(events: &[Value], kind: &str) -> Value {
    events
        .iter()
        .rev()
        .find(|e| e["kind"] == kind)
        .cloned()
        .unwrap_or(Value::Null)
}

#[tokio::test]
async fn every_endpoint_reads_its_parameters_from_the_query_a_form_or_json() {
    // (endpoint, API key?, fields, what must come out the same)
    type Observe = fn(&Value, &[Value]) -> Value;
    type Case = (
        &'static str,
        bool,
        Vec<(&'static str, &'static str)>,
        Observe,
    );
    let cases: Vec<Case> = vec![
        (
            "POST /rooms",
            true,
            vec![
                ("id", "standup"),
                ("name", "Stand-up"),
                ("user[name]", "bob"),
            ],
            |b, _| json!([b["room"]["id"], b["room"]["name"], b["user"]["name"]]),
        ),
        (
            "POST /webhooks",
            true,
            vec![
                ("url", "http://127.0.0.1:9/hook"),
                ("types", "room_update,recording_update"),
            ],
            |b, _| json!([b["url"], b["types"]]),
        ),
        (
            "POST /guests/{token}",
            false,
            vec![("name", "Guest")],
            |b, _| json!([b["user"]["name"], b["user"]["guest"], b["room"]["id"]]),
        ),
        (
            "POST /rooms/{key}/messages",
            false,
            vec![("type", "chat"), ("content", "hello & bye")],
            |_, events| last_event(events, "chat")["content"].clone(),
        ),
        (
            "POST /_sandbox/voice",
            false,
            vec![("access_key", "{key}"), ("on", "true")],
            |_, events| last_event(events, "voice_activity")["on"].clone(),
        ),
        (
            "POST /_sandbox/bots",
            true,
            vec![("room_id", "room-1"), ("name", "Recorder"), ("on", "true")],
            |_, events| {
                let bot = last_event(events, "bot");
                json!([bot["room_id"], bot["user_name"], bot["on"]])
            },
        ),
        (
            "POST /_sandbox/lock",
            false,
            vec![("api_key", KEY), ("on", "true")],
            |_, events| last_event(events, "api_key_locked")["on"].clone(),
        ),
    ];
    for (endpoint, api_key, fields, observe) in cases {
        let mut seen = Vec::new();
        for place in [Place::Query, Place::Form, Place::Json] {
            let running = Running::start().await;
            let (key, token) = (running.key(), running.token());
            let path = endpoint
                .trim_start_matches("POST ")
                .replace("{key}", &key)
                .replace("{token}", &token);
            let fields: Vec<(&str, String)> = fields
                .iter()
                .map(|(k, v)| (*k, v.replace("{key}", &key)))
                .collect();
            let fields: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
            let (status, body) = post(&running.app, &path, api_key, place, &fields).await;
            assert!(
                (200..300).contains(&status),
                "{endpoint} with the parameters in the {place:?}: {status} {body}"
            );
            let observed = observe(&body, &running.app.events().await);
            assert!(
                !observed.is_null(),
                "{endpoint} {place:?}: nothing observed"
            );
            seen.push((place, status, observed));
        }
        let (_, status, observed) = &seen[0];
        for (place, s, o) in &seen[1..] {
            assert_eq!(
                (s, o),
                (status, observed),
                "{endpoint}: {place:?} differs from the query string"
            );
        }
    }
}

#[tokio::test]
async fn the_body_wins_over_the_query() {
    let app = spawn_app().await;
    for place in [Place::Form, Place::Json] {
        let room = format!("from-{place:?}");
        let r = reqwest::Client::new()
            .post(app.url("/rooms"))
            .header("authorization", KEY)
            .query(&[("id", "from-query"), ("user[name]", "query-user")]);
        let r = match place {
            Place::Json => r.json(&json!({"id": room})),
            _ => r.form(&[("id", room.as_str())]),
        };
        let r = r.send().await.unwrap();
        assert_eq!(r.status(), 201);
        let body: Value = r.json().await.unwrap();
        assert_eq!(
            body["room"]["id"],
            room.as_str(),
            "{place:?}: the body's id"
        );
        assert_eq!(
            body["user"]["name"], "query-user",
            "{place:?}: what the body leaves out comes from the query"
        );
    }
}

/// A websocket upgrade's refusal status.
async fn upgrade_status(url: &str) -> u16 {
    match tokio_tungstenite::connect_async(url).await {
        Ok(_) => 101,
        Err(tungstenite::Error::Http(response)) => response.status().as_u16(),
        Err(e) => panic!("{url}: {e}"),
    }
}

/// Every access-key call (and the guest token's), with the status it got.
async fn access_key_calls(running: &Running) -> Vec<(String, u16)> {
    let app = &running.app;
    let (key, token) = (running.key(), running.token());
    let user = running.alice["user"]["id"].as_str().unwrap().to_owned();
    let client = reqwest::Client::new();
    let mut out = Vec::new();
    let rest = [
        ("GET", format!("/rooms/{key}")),
        ("GET", format!("/rooms/{key}/users/{user}")),
        (
            "POST",
            format!("/rooms/{key}/messages?type=chat&content=hi"),
        ),
        ("POST", format!("/guests/{token}?name=Guest")),
        ("POST", format!("/_sandbox/voice?access_key={key}&on=true")),
        ("GET", format!("/meeting/{key}")),
        ("DELETE", format!("/rooms/{key}")),
    ];
    for (method, path) in rest {
        let r = client
            .request(method.parse().unwrap(), app.url(&path))
            .send()
            .await
            .unwrap();
        out.push((format!("{method} {path}"), r.status().as_u16()));
    }
    let host = app.addr;
    for url in [
        format!("ws://{host}/rt?access_key={key}"),
        format!("ws://{host}/sig/{key}"),
    ] {
        out.push((url.clone(), upgrade_status(&url).await));
    }
    out
}

#[tokio::test]
async fn every_access_key_call_answers_410_once_the_meeting_ended() {
    let running = Running::start().await;
    let r = reqwest::Client::new()
        .delete(running.app.url("/rooms/room-1"))
        .header("authorization", KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    for (call, status) in access_key_calls(&running).await {
        assert_eq!(status, 410, "{call}");
    }
}

#[tokio::test]
async fn a_locked_api_key_answers_423_to_everything_until_unlocked() {
    let running = Running::start().await;
    let app = &running.app;
    let (status, _) = post(
        app,
        "/_sandbox/lock",
        false,
        Place::Json,
        &[("api_key", "other"), ("on", "true")],
    )
    .await;
    assert_eq!(status, 403, "only the sandbox's key can be locked");
    let (status, body) = post(
        app,
        "/_sandbox/lock",
        false,
        Place::Json,
        &[("api_key", KEY)],
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("on is required (true or false)"))
    );
    let (status, _) = post(
        app,
        "/_sandbox/lock",
        false,
        Place::Form,
        &[("api_key", KEY), ("on", "true")],
    )
    .await;
    assert_eq!(status, 204);

    let client = reqwest::Client::new();
    let api_key_calls = [
        ("GET", "/rooms", None),
        ("POST", "/rooms", Some(("user[name]", "bob"))),
        ("DELETE", "/rooms/room-1", None),
        ("GET", "/webhooks", None),
        ("POST", "/webhooks", Some(("url", "http://127.0.0.1:9/h"))),
        ("DELETE", "/webhooks/nope", None),
        ("GET", "/rooms/room-1/users?online=true", None),
    ];
    for (method, path, field) in api_key_calls {
        let request = client
            .request(method.parse().unwrap(), app.url(path))
            .header("authorization", KEY);
        let request = match field {
            Some(f) => request.form(&[f, ("types", "room_update")]),
            None => request,
        };
        let r = request.send().await.unwrap();
        assert_eq!(r.status(), 423, "{method} {path}");
        let body: Value = r.json().await.unwrap();
        assert!(body["error"].as_str().unwrap().contains("locked"));
        // The key's own checks come first, as before.
        let wrong = client
            .request(method.parse().unwrap(), app.url(path))
            .header("authorization", "wrong")
            .send()
            .await
            .unwrap();
        assert_eq!(wrong.status(), 403, "{method} {path} with a wrong key");
    }
    for (call, status) in access_key_calls(&running).await {
        assert_eq!(status, 423, "{call}");
    }
    // A bot cannot join a locked account's meeting either.
    let bot = [("room_id", "room-1"), ("name", "Recorder"), ("on", "true")];
    let (status, body) = post(app, "/_sandbox/bots", true, Place::Form, &bot).await;
    assert_eq!((status, body["error"].is_string()), (423, true));

    let events = app.events().await;
    let locked = last_event(&events, "api_key_locked");
    assert_eq!(locked["on"], true);
    assert!(locked.get("room_id").is_none(), "{locked}");
    let refused = last_event(&events, "api_delete");
    assert_eq!(
        (refused["room_id"].as_str(), refused["status"].as_u64()),
        (Some("room-1"), Some(423))
    );
    assert!(
        !events.iter().any(|e| e["kind"] == "meeting_ended"),
        "a locked key ends nothing"
    );

    let (status, _) = post(
        app,
        "/_sandbox/lock",
        false,
        Place::Query,
        &[("api_key", KEY), ("on", "false")],
    )
    .await;
    assert_eq!(status, 204);
    let r = client
        .delete(app.url("/rooms/room-1"))
        .header("authorization", KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204, "unlocked: the meeting ran on and now ends");
}
