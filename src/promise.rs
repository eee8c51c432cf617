//! Waiting for a JS promise without an async runtime: two one-shot
//! callbacks (wasm-bindgen-futures would add an executor to every page for
//! the three promises the guard ever waits on).

use js_sys::Promise;
use wasm_bindgen::prelude::*;

#[wasm_bindgen]
extern "C" {
    /// A promise, bound here for a `then` that takes plain JS functions.
    type Thenable;
    /// `promise.then(ok, err)` with plain JS functions, so that each side can
    /// be a `Closure::once_into_js` (freed when called; the side not called
    /// is collected with the promise).
    #[wasm_bindgen(method, js_name = then)]
    fn then_with(this: &Thenable, ok: &JsValue, err: &JsValue) -> JsValue;
}

/// Calls `ok` with the value or `err` with the reason, once, later.
pub fn settle(
    promise: &Promise,
    ok: impl FnOnce(JsValue) + 'static,
    err: impl FnOnce(JsValue) + 'static,
) {
    let _ = promise
        .unchecked_ref::<Thenable>()
        .then_with(&Closure::once_into_js(ok), &Closure::once_into_js(err));
}
