//! The hard-deadline notice: small, non-modal, never takes focus.
//!
//! Like the dialog it lives in a shadow root and is built element by
//! element. The visible countdown changes every second, but it is hidden
//! from screen readers; a separate polite `status` region is rewritten only
//! on whole minutes and at 30 and 10 seconds, so assistive technology is
//! told the time without being interrupted every second.

use web_sys::{Document, Element, ShadowRootInit, ShadowRootMode};

use crate::dialog::child;
use crate::machine::Millis;
use crate::options::{format_time, split_time};

const STYLE: &str = ":host{all:initial;position:fixed;right:1rem;bottom:1rem;z-index:2147483646;pointer-events:none;font:14px/1.4 system-ui,sans-serif}
div{max-width:min(22rem,calc(100vw - 2rem));padding:.6rem .9rem;border-radius:.5rem;background:#fff8e1;color:#3b2f00;border:1px solid #c79a00;box-shadow:0 .25rem 1rem rgba(0,0,0,.2)}
.s{position:absolute;width:1px;height:1px;overflow:hidden;clip-path:inset(50%);white-space:nowrap}
@media (prefers-color-scheme:dark){div{background:#2e2a1c;color:#ffe9a8;border-color:#8a6d00}}";

/// A shown notice; removed on drop.
pub struct Notice {
    host: Element,
    time: Element,
    spoken: Element,
    template: (String, String),
}

impl core::fmt::Debug for Notice {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("Notice")
    }
}

/// Whether the spoken text should change at `seconds` left.
fn announce(seconds: Millis) -> bool {
    seconds % 60 == 0 || seconds == 30 || seconds == 10
}

impl Notice {
    /// Shows the notice with `template` (`{time}` is the countdown).
    pub fn open(template: &str, remaining: Millis) -> Option<Notice> {
        let document = web_sys::window()?.document()?;
        let notice = Notice::build(&document, template).ok()?;
        notice.speak(remaining);
        notice.show(remaining);
        Some(notice)
    }

    fn build(document: &Document, template: &str) -> Result<Notice, wasm_bindgen::JsValue> {
        let body = document.body().ok_or(wasm_bindgen::JsValue::NULL)?;
        let host = document.create_element("div")?;
        host.set_attribute("data-eyeson-guard-notice", "")?;
        let root = host.attach_shadow(&ShadowRootInit::new(ShadowRootMode::Open))?;
        child(document, &root, "style", &[], STYLE)?;
        let (before, after) = split_time(template);
        let box_ = child(document, &root, "div", &[], "")?;
        let visible = child(document, &box_, "span", &[("aria-hidden", "true")], "")?;
        visible.append_with_str_1(before)?;
        let time = child(document, &visible, "span", &[("id", "t")], "")?;
        visible.append_with_str_1(after)?;
        let spoken = child(
            document,
            &box_,
            "span",
            &[
                ("role", "status"),
                ("aria-live", "polite"),
                ("aria-atomic", "true"),
                ("class", "s"),
            ],
            "",
        )?;
        body.append_child(&host)?;
        Ok(Notice {
            host,
            time,
            spoken,
            template: (before.into(), after.into()),
        })
    }

    fn speak(&self, remaining: Millis) {
        let mut text = self.template.0.clone();
        text.push_str(&format_time(remaining));
        text.push_str(&self.template.1);
        self.spoken.set_text_content(Some(&text));
    }

    /// Shows `remaining` ms (and tells screen readers now and then).
    pub fn show(&self, remaining: Millis) {
        self.time.set_text_content(Some(&format_time(remaining)));
        if announce(remaining.div_ceil(1000)) {
            self.speak(remaining);
        }
    }
}

impl Drop for Notice {
    fn drop(&mut self) {
        self.host.remove();
    }
}
