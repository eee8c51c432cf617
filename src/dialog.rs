//! The built-in "Are you still there?" dialog.
//!
//! The guard decides when it opens and closes and what it shows (the whole
//! seconds left, computed from the deadline on every update, never by
//! decrementing a counter). It lives in a shadow root, so the page's CSS
//! cannot break it and its CSS cannot leak into the page. It is an
//! `alertdialog`: focus moves to its one button and stays there, Escape and
//! Enter answer it, the countdown is a polite live region, and closing it
//! gives focus back to where it was.
//!
//! It is built element by element (no `innerHTML`), so it also opens on
//! pages that enforce Trusted Types, and every DOM call that can throw is
//! one whose error we receive: a page that cannot show it gets none, and
//! the guard goes on without it.

use crate::options::{format_time, split_time, Text};
use alloc::rc::Rc;

use gloo_events::{EventListener, EventListenerOptions};
use wasm_bindgen::{JsCast, JsValue};
use web_sys::{Document, Element, HtmlElement, KeyboardEvent, ShadowRootInit, ShadowRootMode};

const STYLE: &str = ":host{all:initial;position:fixed;inset:0;z-index:2147483647;display:grid;place-items:center;background:rgba(0,0,0,.5);font:16px/1.5 system-ui,sans-serif}
div{box-sizing:border-box;max-width:min(24rem,calc(100vw - 2rem));padding:1.5rem;border-radius:.75rem;background:#fff;color:#1b1b1f;box-shadow:0 .5rem 2rem rgba(0,0,0,.35)}
h2{margin:0 0 .5rem;font-size:1.25rem}p{margin:0 0 1.25rem}
button{font:inherit;font-weight:600;padding:.6rem 1.2rem;border:0;border-radius:.5rem;background:#1f5fd1;color:#fff;cursor:pointer}
button:focus-visible{outline:3px solid #f5b400;outline-offset:2px}
@media (prefers-color-scheme:dark){div{background:#25262b;color:#f1f1f4}}";

/// An open dialog; dropping it removes it and restores focus.
pub struct Dialog {
    document: Document,
    host: Element,
    count: Element,
    /// Where focus was before the dialog took it.
    before: Option<Element>,
    _listeners: [EventListener; 2],
}

impl core::fmt::Debug for Dialog {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("Dialog")
    }
}

/// Creates `<tag attr=value…>text</tag>` and appends it to `parent`.
pub(crate) fn child(
    document: &Document,
    parent: &web_sys::Node,
    tag: &str,
    attrs: &[(&str, &str)],
    text: &str,
) -> Result<Element, JsValue> {
    let el = document.create_element(tag)?;
    for (name, value) in attrs {
        el.set_attribute(name, value)?;
    }
    if !text.is_empty() {
        el.set_text_content(Some(text));
    }
    parent.append_child(&el)?;
    Ok(el)
}

impl Dialog {
    /// Opens the dialog; `answer()` is called for its button, Escape and
    /// Enter. `None` if the page cannot show one (no body yet, say).
    pub fn open(answer: Rc<dyn Fn()>, text: &Text) -> Option<Dialog> {
        let document = web_sys::window()?.document()?;
        Dialog::build(document, answer, text).ok()
    }

    fn build(document: Document, answer: Rc<dyn Fn()>, words: &Text) -> Result<Dialog, JsValue> {
        let body = document.body().ok_or(JsValue::NULL)?;
        let host = document.create_element("div")?;
        host.set_attribute("data-eyeson-guard-dialog", "")?;
        let root = host.attach_shadow(&ShadowRootInit::new(ShadowRootMode::Open))?;
        child(&document, &root, "style", &[], STYLE)?;
        let dialog = child(
            &document,
            &root,
            "div",
            &[
                ("role", "alertdialog"),
                ("aria-modal", "true"),
                ("aria-labelledby", "t"),
                ("aria-describedby", "d"),
            ],
            "",
        )?;
        child(&document, &dialog, "h2", &[("id", "t")], &words.title)?;
        let text = child(&document, &dialog, "p", &[("id", "d")], "")?;
        let (before, after) = split_time(&words.body);
        text.append_with_str_1(before)?;
        let live = child(
            &document,
            &text,
            "span",
            &[("aria-live", "polite"), ("aria-atomic", "true")],
            "",
        )?;
        let count = child(&document, &live, "span", &[("id", "c")], "")?;
        text.append_with_str_1(after)?;
        let button = child(
            &document,
            &dialog,
            "button",
            &[("type", "button"), ("id", "b")],
            &words.button,
        )?;

        let click = {
            let answer = answer.clone();
            EventListener::new(&button, "click", move |_| answer())
        };
        let focus_target = button.clone();
        let keys = EventListener::new_with_options(
            &host,
            "keydown",
            EventListenerOptions::enable_prevent_default(),
            move |e| {
                let Some(key) = e.dyn_ref::<KeyboardEvent>().map(KeyboardEvent::key) else {
                    return;
                };
                if key == "Escape" || key == "Enter" {
                    e.prevent_default(); // Enter would also click the button: answer once
                    answer();
                } else if key == "Tab" {
                    e.prevent_default(); // aria-modal: keep focus inside
                    focus(&focus_target);
                }
            },
        );

        let before = document.active_element();
        body.append_child(&host)?;
        focus(&button);
        Ok(Dialog {
            document,
            host,
            count,
            before,
            _listeners: [click, keys],
        })
    }

    /// Shows the time left (`m:ss`, or seconds under a minute), rounded up:
    /// never "0" while time is left.
    pub fn show_remaining(&self, remaining_ms: u64) {
        self.count
            .set_text_content(Some(&format_time(remaining_ms)));
    }
}

fn focus(element: &Element) {
    if let Some(el) = element.dyn_ref::<HtmlElement>() {
        let _ = el.focus();
    }
}

impl Drop for Dialog {
    /// Removes the dialog and gives focus back to where it was.
    fn drop(&mut self) {
        let had_focus = self.document.active_element().as_ref() == Some(&self.host);
        self.host.remove();
        if let (true, Some(before)) = (had_focus, &self.before) {
            focus(before);
        }
    }
}
