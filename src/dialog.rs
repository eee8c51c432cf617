//! The built-in "Are you still there?" dialog.
//!
//! It lives in a shadow root, so the page's CSS cannot break it and its CSS
//! cannot leak into the page. It is an `alertdialog`: focus moves to its one
//! button (and stays there while it is open), Escape and Enter answer it, and
//! the countdown is an `aria-live` region. The countdown text is computed from
//! the deadline on every update, never by decrementing a counter.

use js_sys::{Function, Reflect};
use wasm_bindgen::{JsCast, JsValue};
use web_sys::{Document, Element, HtmlElement, ShadowRootInit, ShadowRootMode};

const HTML: &str = r#"<style>
:host{all:initial;position:fixed;inset:0;z-index:2147483647;display:grid;place-items:center;background:rgba(0,0,0,.5);font:16px/1.5 system-ui,sans-serif}
div{box-sizing:border-box;max-width:min(24rem,calc(100vw - 2rem));padding:1.5rem;border-radius:.75rem;background:#fff;color:#1b1b1f;box-shadow:0 .5rem 2rem rgba(0,0,0,.35)}
h2{margin:0 0 .5rem;font-size:1.25rem}
p{margin:0 0 1.25rem}
button{font:inherit;font-weight:600;padding:.6rem 1.2rem;border:0;border-radius:.5rem;background:#1f5fd1;color:#fff;cursor:pointer}
button:focus-visible{outline:3px solid #f5b400;outline-offset:2px}
@media (prefers-color-scheme:dark){div{background:#25262b;color:#f1f1f4}}
</style><div role="alertdialog" aria-modal="true" aria-labelledby="t" aria-describedby="d">
<h2 id="t">Are you still there?</h2>
<p id="d">You will leave the meeting in <span id="c" aria-live="polite" aria-atomic="true"></span> seconds.</p>
<button type="button" id="b">I'm still here</button></div>"#;

/// An open dialog; [`Dialog::close`] removes it.
#[derive(Debug)]
pub struct Dialog {
    host: Element,
    countdown: Element,
    button: HtmlElement,
    /// Where focus was before the dialog took it.
    focus_before: Option<HtmlElement>,
}

impl Dialog {
    /// Shows the dialog; `on_event` receives its `click` and `keydown`
    /// events (see [`is_answer`]). `None` if there is no document body.
    pub fn open(on_event: &Function) -> Option<Dialog> {
        let document = web_sys::window()?.document()?;
        let body = document.body()?;
        let host = document.create_element("div").ok()?;
        let _ = host.set_attribute("data-eyeson-guard-dialog", "");
        let shadow = host
            .attach_shadow(&ShadowRootInit::new(ShadowRootMode::Open))
            .ok()?;
        shadow.set_inner_html(HTML);
        let countdown = shadow.get_element_by_id("c")?;
        let button: HtmlElement = shadow.get_element_by_id("b")?.dyn_into().ok()?;
        let _ = button.add_event_listener_with_callback("click", on_event);
        let _ = host.add_event_listener_with_callback("keydown", on_event);
        let focus_before = active_element(&document);
        body.append_child(&host).ok()?;
        let _ = button.focus();
        Some(Dialog {
            host,
            countdown,
            button,
            focus_before,
        })
    }

    /// Shows `remaining_ms` as whole seconds, rounded up (never "0" while
    /// time is left).
    pub fn show_remaining(&self, remaining_ms: u64) {
        let mut digits = [0u8; 20];
        self.countdown
            .set_text_content(Some(decimal(remaining_ms.div_ceil(1000), &mut digits)));
    }

    /// Keeps keyboard focus inside the dialog: Tab stays on its button.
    pub fn trap_focus(&self, event: &JsValue) {
        if field(event, "key").as_deref() == Some("Tab") {
            if let Some(e) = event.dyn_ref::<web_sys::Event>() {
                e.prevent_default();
            }
            let _ = self.button.focus();
        }
    }

    /// Removes the dialog and gives focus back to where it was.
    pub fn close(self) {
        let document = web_sys::window().and_then(|w| w.document());
        let had_focus = document
            .as_ref()
            .and_then(active_element)
            .is_some_and(|a| a.is_same_node(Some(&self.host)));
        self.host.remove();
        if had_focus {
            if let Some(el) = self.focus_before {
                let _ = el.focus();
            }
        }
    }
}

/// Whether a dialog event answers "I'm still here": a click on its button,
/// Escape, or Enter.
pub fn is_answer(event: &JsValue) -> bool {
    match field(event, "type").as_deref() {
        Some("click") => true,
        Some("keydown") => matches!(field(event, "key").as_deref(), Some("Escape" | "Enter")),
        _ => false,
    }
}

fn field(event: &JsValue, name: &str) -> Option<String> {
    Reflect::get(event, &JsValue::from_str(name))
        .ok()?
        .as_string()
}

fn active_element(document: &Document) -> Option<HtmlElement> {
    document.active_element()?.dyn_into().ok()
}

/// Formats `n` in decimal without pulling in `core::fmt` (which would add
/// kilobytes to the wasm).
fn decimal(mut n: u64, buf: &mut [u8; 20]) -> &str {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    core::str::from_utf8(&buf[i..]).unwrap_or("")
}

#[cfg(test)]
mod tests {
    use super::decimal;

    #[test]
    fn decimal_formats_like_display() {
        let mut buf = [0u8; 20];
        for n in [0u64, 7, 10, 59, 60, 1000, 123_456_789, u64::MAX] {
            assert_eq!(decimal(n, &mut buf), n.to_string());
        }
    }
}
