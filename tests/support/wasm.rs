//! What the browser test crates (`web.rs`, `presence.rs`, `alone.rs`)
//! share: the fake SDK's binding and its `room_setup` event; waiting,
//! polling and building plain JS objects.

#![allow(dead_code)] // each crate uses what it needs

use js_sys::{Promise, Reflect};
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;

/// The tests' one fake eyeson SDK (tests/support/fake-eyeson.js).
#[wasm_bindgen(module = "/tests/support/fake-eyeson.js")]
extern "C" {
    pub type FakeEyeson;
    #[wasm_bindgen(constructor)]
    pub fn new() -> FakeEyeson;
    /// `new FakeEyeson({ started: false })`: the SDK before `start()`.
    #[wasm_bindgen(constructor)]
    pub fn with(options: &JsValue) -> FakeEyeson;
    #[wasm_bindgen(method)]
    pub fn emit(this: &FakeEyeson, event: &JsValue);
    #[wasm_bindgen(method)]
    pub fn destroy(this: &FakeEyeson);
    #[wasm_bindgen(method)]
    pub fn terminations(this: &FakeEyeson) -> u32;
    #[wasm_bindgen(method, js_name = listenerCount)]
    pub fn listener_count(this: &FakeEyeson) -> u32;
    #[wasm_bindgen(method, getter, js_name = offEventAllCalls)]
    pub fn off_event_all_calls(this: &FakeEyeson) -> u32;
    #[wasm_bindgen(method, getter)]
    pub fn sent(this: &FakeEyeson) -> js_sys::Array;
}

#[wasm_bindgen(inline_js = r#"
// What the SDK delivers once the meeting is set up (eyeson's
// RoomReceivedEvent); the room's guest token is `gt-<room>` in these tests.
export function roomSetup(room, user, client) {
  return { type: "room_setup", content: { ready: true, room: { id: room, guest_token: `gt-${room}` }, user: { id: user }, signaling: { options: { client_id: client } } } };
}
"#)]
extern "C" {
    /// A `room_setup` event for `room`, user and client ids.
    #[wasm_bindgen(js_name = roomSetup)]
    pub fn room_setup(room: &str, user: &str, client: &str) -> JsValue;
}

#[wasm_bindgen(inline_js = r#"
export function sleep(ms) { return new Promise((r) => setTimeout(r, ms)); }
"#)]
extern "C" {
    fn sleep(ms: u32) -> Promise;
}

/// Waits `ms` on the page's timers.
pub async fn pause(ms: u32) {
    let _ = JsFuture::from(sleep(ms)).await;
}

/// Polls `cond` every 5 ms for at most `within` ms.
pub async fn eventually(within: u32, cond: impl Fn() -> bool) -> bool {
    let start = js_sys::Date::now();
    loop {
        if cond() {
            return true;
        }
        if js_sys::Date::now() - start > within as f64 {
            return false;
        }
        pause(5).await;
    }
}

/// A plain object of these fields.
pub fn obj(pairs: &[(&str, JsValue)]) -> JsValue {
    let o = js_sys::Object::new();
    for (k, v) in pairs {
        Reflect::set(&o, &JsValue::from_str(k), v).unwrap();
    }
    o.into()
}

/// A field of an object.
pub fn get(o: &JsValue, k: &str) -> JsValue {
    Reflect::get(o, &k.into()).unwrap()
}
