//! Binding to `dialog.js`, the built-in "Are you still there?" dialog.
//!
//! The guard decides when the dialog opens and closes and what it shows (the
//! whole seconds left, computed from the deadline on every update, never by
//! decrementing a counter); the DOM work is a few lines of JS, which costs a
//! fraction of the wasm and glue that web-sys bindings for it would.

use js_sys::Function;
use wasm_bindgen::prelude::*;

#[wasm_bindgen(module = "/src/dialog.js")]
extern "C" {
    /// An open dialog.
    #[derive(Debug)]
    pub type GuardDialog;

    /// Opens the dialog; `answer()` is called for its button, Escape and
    /// Enter. Throws if the document has no body.
    #[wasm_bindgen(constructor, catch)]
    fn new(answer: &Function) -> Result<GuardDialog, JsValue>;

    #[wasm_bindgen(method)]
    fn show(this: &GuardDialog, seconds: f64);

    /// Removes the dialog and restores focus.
    #[wasm_bindgen(method)]
    pub fn close(this: &GuardDialog);
}

impl GuardDialog {
    /// Opens the dialog, or `None` if the page cannot show one.
    pub fn open(answer: &Function) -> Option<GuardDialog> {
        GuardDialog::new(answer).ok()
    }

    /// Shows the time left as whole seconds, rounded up (never "0" while
    /// time is left).
    pub fn show_remaining(&self, remaining_ms: u64) {
        self.show(remaining_ms.div_ceil(1000) as f64);
    }
}
