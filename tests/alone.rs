//! Browser tests of the hard-limit service's alone deadline (issue 18): the
//! service ends a meeting whose counted participants have been at most one
//! for its `--alone-after`, and answers that end as `alone_deadline` beside
//! `deadline`. The guard's notice counts down to whichever comes first, with
//! `text.aloneNotice` for the alone one, `onHardLimit(endMs, kind)` says
//! which, and a participant change (the SDK's `add_user` / `remove_user`,
//! or its `podium` turning `solo` on or off) reads the service again.
//!
//! The SDK is the tests' one fake (tests/support/fake-eyeson.js) and the
//! service a stand-in `fetch`, as in tests/presence.rs (the validation of
//! `text.aloneNotice` is there, with the other options' errors). A file of
//! its own because the test runner allows each file 20 s in all.
#![cfg(target_arch = "wasm32")]

use eyeson_guard::{EyesonSdkArg, InactivityGuard, OptionsArg};
use js_sys::Array;
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen_test::*;

#[path = "support/wasm.rs"]
mod support;
use support::{eventually, get, obj, pause};

wasm_bindgen_test_configure!(run_in_browser);

#[wasm_bindgen(module = "/tests/support/fake-eyeson.js")]
extern "C" {
    type FakeEyeson;
    #[wasm_bindgen(constructor)]
    fn new() -> FakeEyeson;
    #[wasm_bindgen(method)]
    fn emit(this: &FakeEyeson, event: &JsValue);
}

#[wasm_bindgen(inline_js = r#"
export function roomSetup(room, user, client) {
  return { type: "room_setup", content: { ready: true, room: { id: room, guest_token: `gt-${room}` }, user: { id: user }, signaling: { options: { client_id: client } } } };
}

// The hard-limit service as `fetch` sees it (as in tests/presence.rs: it
// shows a meeting only to the room's guest token). `alone` is its alone
// deadline: undefined leaves the field out (a service without the alone
// rule), null answers `"alone_deadline": null` (no alone period running), a
// time answers it as the service formats times (Timestamp::to_rfc3339:
// ISO-8601 with milliseconds in UTC, toISOString's format).
export class Service {
  constructor() {
    this.calls = 0; this.deadline = null; this.alone = undefined; this.original = window.fetch;
    window.fetch = async (url, init) => {
      this.calls++;
      const token = new Headers(init && init.headers).get("x-eyeson-guest-token");
      const room = decodeURIComponent(String(url).split("/meetings/")[1]);
      if (token !== `gt-${room}`) return new Response(JSON.stringify({ error: "no open meeting in this room" }), { status: 404 });
      const body = { room_id: room, started_at: new Date().toISOString(), deadline: new Date(this.deadline).toISOString(), state: "running" };
      if (this.alone !== undefined) body.alone_deadline = this.alone === null ? null : new Date(this.alone).toISOString();
      return new Response(JSON.stringify(body), { headers: { "content-type": "application/json" } });
    };
  }
  restore() { window.fetch = this.original; }
}

// The notice's visible text, what the live region says, and how many there are.
export function notice() {
  const hosts = document.querySelectorAll("[data-eyeson-guard-notice]");
  if (hosts.length === 0) return null;
  const root = hosts[0].shadowRoot;
  return { visible: root.querySelector("[aria-hidden=true]").textContent, spoken: root.querySelector("[role=status]").textContent, count: hosts.length };
}
// onHardLimit's two arguments, as "kind@ms".
export function logEnds(into) { return (ms, kind) => into.push(`${kind}@${ms}`); }
"#)]
extern "C" {
    #[wasm_bindgen(js_name = roomSetup)]
    fn room_setup(room: &str, user: &str, client: &str) -> JsValue;

    type Service;
    #[wasm_bindgen(constructor)]
    fn new() -> Service;
    #[wasm_bindgen(method, setter)]
    fn set_deadline(this: &Service, at: f64);
    #[wasm_bindgen(method, setter)]
    fn set_alone(this: &Service, at: JsValue);
    #[wasm_bindgen(method, getter)]
    fn calls(this: &Service) -> u32;
    #[wasm_bindgen(method)]
    fn restore(this: &Service);

    fn notice() -> JsValue;
    #[wasm_bindgen(js_name = logEnds)]
    fn log_ends(into: &Array) -> JsValue;
}

fn now() -> f64 {
    js_sys::Date::now()
}

/// A guard in room r1 (user u1, client c1) that has joined, reading the
/// service, its notice `lead` ms ahead, `onHardLimit` logged into `calls`.
fn joined(sdk: &FakeEyeson, lead: u32, calls: &Array, text: Option<JsValue>) -> InactivityGuard {
    let mut options = vec![
        ("timeoutMs", 7_200_000.into()),
        ("crossTab", false.into()),
        ("hardLimit", "https://limits.test".into()),
        ("hardLimitNoticeMs", lead.into()),
        ("onHardLimit", log_ends(calls)),
    ];
    if let Some(text) = text {
        options.push(("text", text));
    }
    let sdk_arg: &EyesonSdkArg = sdk.unchecked_ref();
    let g = InactivityGuard::new(sdk_arg, Some(obj(&options).unchecked_into::<OptionsArg>()))
        .expect("valid options");
    sdk.emit(&room_setup("r1", "u1", "c1"));
    sdk.emit(&obj(&[("type", "accept".into())]));
    g
}

/// `onHardLimit`'s calls so far, as "kind@ms".
fn ends(calls: &Array) -> Vec<String> {
    calls.iter().map(|c| c.as_string().unwrap()).collect()
}

fn end(kind: &str, at: f64) -> String {
    format!("{kind}@{at}")
}

fn visible_notice() -> Option<String> {
    let n = notice();
    (!n.is_null()).then(|| get(&n, "visible").as_string().unwrap())
}

#[wasm_bindgen_test]
async fn an_alone_deadline_sooner_shows_the_alone_notice_until_someone_joins() {
    let service = Service::new();
    let deadline = now() + 3_600_000.0;
    let alone = now() + 4_000.0;
    service.set_deadline(deadline);
    service.set_alone(alone.into());
    let sdk = FakeEyeson::new();
    let calls = Array::new();
    let g = joined(&sdk, 10_000, &calls, None);
    assert!(eventually(2_000, || calls.length() == 1).await);
    assert_eq!(
        ends(&calls),
        [end("alone", alone)],
        "the sooner end, and which"
    );
    assert!(eventually(1_000, || visible_notice().is_some()).await);
    let visible = visible_notice().unwrap();
    assert!(
        visible.starts_with("You are the only participant. This meeting ends in ")
            && visible.ends_with(" s unless someone joins."),
        "{visible}"
    );
    let n = notice();
    let spoken = get(&n, "spoken").as_string().unwrap();
    assert!(
        spoken.starts_with("You are the only participant. This meeting ends in "),
        "screen readers are told the alone text too: {spoken}"
    );
    assert_eq!(get(&n, "count"), 1);

    // Someone joins: the SDK's add_user (from signalling's memberlist), and
    // the service has ended the alone period (`null`). The guard reads
    // again (debounced) and the notice goes: the deadline is an hour away.
    service.set_alone(JsValue::NULL);
    let before = service.calls();
    sdk.emit(&obj(&[
        ("type", "add_user".into()),
        ("user", obj(&[("id", "u2".into())])),
        ("initial", false.into()),
    ]));
    assert!(eventually(3_000, || calls.length() == 2).await);
    assert_eq!(service.calls(), before + 1, "one read for the change");
    assert_eq!(ends(&calls)[1], end("deadline", deadline));
    assert!(
        eventually(500, || notice().is_null()).await,
        "the notice goes"
    );
    g.stop();
    service.restore();
}

#[wasm_bindgen_test]
async fn when_the_alone_deadline_goes_the_notice_counts_down_to_the_deadline_again() {
    let service = Service::new();
    let deadline = now() + 50_000.0;
    let alone = now() + 30_000.0;
    service.set_deadline(deadline);
    service.set_alone(alone.into());
    let sdk = FakeEyeson::new();
    let calls = Array::new();
    let text = obj(&[
        ("notice", "Ende in {time}.".into()),
        ("aloneNotice", "Allein; Ende in {time}.".into()),
    ]);
    let g = joined(&sdk, 60_000, &calls, Some(text));
    // The SDK's podium: the local user alone (a change: read again soon).
    sdk.emit(&obj(&[("type", "podium".into()), ("solo", true.into())]));
    assert!(eventually(2_000, || calls.length() == 1).await);
    assert_eq!(ends(&calls), [end("alone", alone)]);
    assert!(eventually(1_000, || visible_notice().is_some()).await);
    let visible = visible_notice().unwrap();
    assert!(visible.starts_with("Allein; Ende in "), "{visible}");
    assert!(
        eventually(3_000, || service.calls() == 2).await,
        "podium's read"
    );
    pause(50).await;
    assert_eq!(calls.length(), 1, "the same ends: no callback");

    // Someone joined: the podium is no longer solo; the service's alone
    // period is over (here it answers one later than the deadline, which
    // cannot come first). The notice counts down to the deadline.
    service.set_alone((deadline + 1.0).into());
    sdk.emit(&obj(&[("type", "podium".into()), ("solo", false.into())]));
    assert!(eventually(3_000, || calls.length() == 2).await);
    assert_eq!(ends(&calls)[1], end("deadline", deadline));
    assert!(
        eventually(500, || visible_notice()
            .is_some_and(|v| v.starts_with("Ende in ")))
        .await
    );
    assert_eq!(
        get(&notice(), "count"),
        1,
        "one notice, with the other text"
    );

    // The field gone from the answer altogether: the same end, no callback.
    service.set_alone(JsValue::UNDEFINED);
    let before = service.calls();
    sdk.emit(&obj(&[
        ("type", "remove_user".into()),
        ("userId", "c2".into()),
    ]));
    assert!(eventually(3_000, || service.calls() == before + 1).await);
    pause(50).await;
    assert_eq!(calls.length(), 2);
    assert!(visible_notice().is_some_and(|v| v.starts_with("Ende in ")));
    g.stop();
    assert!(notice().is_null(), "stop removes the notice");
    service.restore();
}
