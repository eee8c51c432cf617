//! Waiting for a JS promise without an async runtime: one callback, called
//! once with the value or the reason (wasm-bindgen-futures would add an
//! executor to every page for the few promises the guard ever waits on).

use alloc::boxed::Box;
use alloc::rc::Rc;
use core::cell::Cell;
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

/// What a settled promise gave.
pub type Settled = Result<JsValue, JsValue>;

/// Calls `done` once, later, with the value or the reason. Not generic on
/// purpose: every distinct closure type handed to wasm-bindgen adds its own
/// glue to the wasm, so all promises share one.
pub fn settle(promise: &Promise, done: Box<dyn FnOnce(Settled)>) {
    let slot = Rc::new(Cell::new(Some(done)));
    // One closure type for both sides (each type has its own glue).
    let side = |ok: bool| {
        let slot = slot.clone();
        Closure::once_into_js(move |v: JsValue| {
            if let Some(done) = slot.take() {
                done(if ok { Ok(v) } else { Err(v) })
            }
        })
    };
    let (ok, err) = (side(true), side(false));
    let _ = promise.unchecked_ref::<Thenable>().then_with(&ok, &err);
}
