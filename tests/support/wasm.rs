//! What the browser test crates (`web.rs`, `presence.rs`, `alone.rs`)
//! share: waiting, polling and building plain JS objects.

#![allow(dead_code)] // each crate uses what it needs

use js_sys::{Promise, Reflect};
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;

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
