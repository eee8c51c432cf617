//! Browser tests: real DOM events against a guard wrapping the tests' one
//! fake eyeson SDK (tests/support/fake-eyeson.js), which behaves like the real
//! one: listeners called synchronously without try/catch, `session_termination`
//! dropping every listener, `send` throwing a TypeError before `start()` and
//! once the session ended.
//!
//! Run with `npm test` (or `wasm-pack test --headless --chrome`). Timeouts
//! are short and every wait is for a condition, with a bound.
#![cfg(target_arch = "wasm32")]

use eyeson_guard::{EyesonSdkArg, InactivityGuard, OptionsArg};
use js_sys::{Array, Reflect};
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen_test::*;

#[path = "support/wasm.rs"]
mod support;
use support::{eventually, obj, pause};

wasm_bindgen_test_configure!(run_in_browser);

#[wasm_bindgen(module = "/tests/support/fake-eyeson.js")]
extern "C" {
    type FakeEyeson;
    #[wasm_bindgen(constructor)]
    fn new() -> FakeEyeson;
    /// `new FakeEyeson({ started: false })`: the SDK before `start()`.
    #[wasm_bindgen(constructor)]
    fn with(options: &JsValue) -> FakeEyeson;
    #[wasm_bindgen(method)]
    fn emit(this: &FakeEyeson, event: &JsValue);
    #[wasm_bindgen(method)]
    fn destroy(this: &FakeEyeson);
    #[wasm_bindgen(method)]
    fn terminations(this: &FakeEyeson) -> u32;
    #[wasm_bindgen(method, js_name = listenerCount)]
    fn listener_count(this: &FakeEyeson) -> u32;
    #[wasm_bindgen(method, getter, js_name = offEventAllCalls)]
    fn off_event_all_calls(this: &FakeEyeson) -> u32;
    #[wasm_bindgen(method, getter)]
    fn sent(this: &FakeEyeson) -> Array;
}

#[wasm_bindgen(inline_js = r#"
export function recorder(extra) {
  const log = [];
  const options = Object.assign({
    onPrompt: (ms) => log.push("prompt:" + ms),
    onActive: () => log.push("active"),
    onTerminate: (why) => log.push("terminate:" + why),
    onStop: (why) => log.push("stop:" + why),
  }, extra);
  return { log, options };
}
export function logOf(rec) { return rec.log.map((e) => e.split(":")[0]).join(","); }
export function logEntries(rec) { return rec.log.slice(); }
export function options(rec) { return rec.options; }

export function thrower() { return () => { throw new Error("app bug"); }; }
export function stopper(holder) { return () => holder.guard.stop(); }
export function noop() { return () => {}; }
export function mousemove(dx) { document.dispatchEvent(new MouseEvent("mousemove", { movementX: dx, movementY: 0, bubbles: true })); }
export function keydown(key, target) { (target || document.body).dispatchEvent(new KeyboardEvent("keydown", { key, bubbles: true, composed: true })); }
export function visibilitychange() { document.dispatchEvent(new Event("visibilitychange")); }
export function wake(kind) {
  if (kind === "visibilitychange" || kind === "resume") document.dispatchEvent(new Event(kind));
  else window.dispatchEvent(kind === "pageshow" ? new PageTransitionEvent("pageshow") : new FocusEvent("focus"));
}
export function click() { document.body.dispatchEvent(new MouseEvent("click", { bubbles: true })); }

// A laptop sleeping: the wall clock jumps, nothing runs meanwhile.
const realNow = Date.now;
export function jumpClock(ms) { const base = realNow(); const start = realNow(); Date.now = () => base + ms + (realNow() - start); }
export function restoreClock() { Date.now = realNow; }

// Errors escaping into a browser event loop end up here.
const escaped = [];
window.addEventListener("error", (e) => escaped.push(String(e.message)));
export function escapedErrors() { return escaped.length; }

// Every listener the page adds, to check that stop() leaves none: a listener
// counts as gone once its AbortSignal aborted or removeEventListener removed
// it (same target, type, function and capture flag, as the DOM matches them).
const added = [];
const capture = (opts) => typeof opts === "boolean" ? opts : !!(opts && opts.capture);
const originalAdd = EventTarget.prototype.addEventListener;
const originalRemove = EventTarget.prototype.removeEventListener;
EventTarget.prototype.addEventListener = function (type, fn, opts) {
  added.push({ target: this, type, fn, capture: capture(opts), signal: opts && opts.signal, removed: false });
  return originalAdd.call(this, type, fn, opts);
};
EventTarget.prototype.removeEventListener = function (type, fn, opts) {
  for (const l of added) {
    if (l.target === this && l.type === type && l.fn === fn && l.capture === capture(opts)) l.removed = true;
  }
  return originalRemove.call(this, type, fn, opts);
};
export function listenerMark() { return added.length; }
export function liveListenersSince(mark) {
  return added.slice(mark).filter((l) => (l.target === document || l.target === window) && !l.removed && !(l.signal && l.signal.aborted)).length;
}
export function dialogHost() { return document.querySelector("[data-eyeson-guard-dialog]"); }
export function dialogCount() { return document.querySelectorAll("[data-eyeson-guard-dialog]").length; }
export function dialogInfo() {
  const host = dialogHost();
  if (!host) return null;
  const root = host.shadowRoot;
  return {
    role: root.querySelector("[role=alertdialog]") && "alertdialog",
    live: root.getElementById("c").parentElement.getAttribute("aria-live"),
    countdown: root.getElementById("c").textContent,
    focused: document.activeElement === host && root.activeElement === root.getElementById("b"),
    leaked: probeLeak(),
  };
}
// The dialog's `div { padding: 1.5rem }` must not reach the page's divs.
function probeLeak() {
  const probe = document.body.appendChild(document.createElement("div"));
  const padding = getComputedStyle(probe).paddingTop;
  probe.remove();
  return padding;
}
export function clickDialogButton() { dialogHost().shadowRoot.getElementById("b").click(); }
export function dialogKey(key) { keydown(key, dialogHost().shadowRoot.getElementById("b")); }
"#)]
extern "C" {

    type Recorder;
    fn recorder(extra: &JsValue) -> Recorder;
    #[wasm_bindgen(js_name = logOf)]
    fn log_of(rec: &Recorder) -> String;
    #[wasm_bindgen(js_name = logEntries)]
    fn log_entries(rec: &Recorder) -> Array;
    fn options(rec: &Recorder) -> JsValue;

    fn thrower() -> JsValue;
    fn stopper(holder: &JsValue) -> JsValue;
    fn noop() -> JsValue;
    fn mousemove(dx: i32);
    fn keydown(key: &str, target: &JsValue);
    fn visibilitychange();
    fn wake(kind: &str);
    fn click();
    #[wasm_bindgen(js_name = jumpClock)]
    fn jump_clock(ms: f64);
    #[wasm_bindgen(js_name = restoreClock)]
    fn restore_clock();
    #[wasm_bindgen(js_name = escapedErrors)]
    fn escaped_errors() -> u32;
    #[wasm_bindgen(js_name = listenerMark)]
    fn listener_mark() -> u32;
    #[wasm_bindgen(js_name = liveListenersSince)]
    fn live_listeners_since(mark: u32) -> u32;
    #[wasm_bindgen(js_name = dialogCount)]
    fn dialog_count() -> u32;
    #[wasm_bindgen(js_name = dialogInfo)]
    fn dialog_info() -> JsValue;
    #[wasm_bindgen(js_name = clickDialogButton)]
    fn click_dialog_button();
    #[wasm_bindgen(js_name = dialogKey)]
    fn dialog_key(key: &str);
}

fn event(kind: &str) -> JsValue {
    obj(&[("type", kind.into())])
}

fn guard(sdk: &FakeEyeson, rec: &Recorder) -> InactivityGuard {
    let sdk: &EyesonSdkArg = sdk.unchecked_ref();
    InactivityGuard::new(sdk, Some(options(rec).unchecked_into::<OptionsArg>()))
        .expect("valid options")
}

fn quick(timeout: u32, prompt: u32, dialog: bool) -> Recorder {
    recorder(&obj(&[
        ("timeoutMs", timeout.into()),
        ("promptMs", prompt.into()),
        ("dialog", dialog.into()),
    ]))
}

fn state(g: &InactivityGuard) -> String {
    JsValue::from(g.state()).as_string().unwrap()
}

#[wasm_bindgen_test]
async fn arms_on_accept_prompts_then_terminates_exactly_once() {
    let sdk = FakeEyeson::new();
    // Prompt windows are long enough to observe on a loaded machine.
    let rec = quick(700, 500, false);
    let mark = listener_mark();
    let g = guard(&sdk, &rec);
    assert_eq!(state(&g), "waiting");
    assert_eq!(g.remaining_ms(), 700.0);
    pause(750).await;
    assert_eq!(sdk.terminations(), 0, "nothing happens before accept");

    sdk.emit(&event("accept"));
    assert_eq!(state(&g), "active");
    assert!(eventually(1_000, || state(&g) == "prompted").await);
    let prompt = log_entries(&rec).get(0).as_string().unwrap();
    let ms: f64 = prompt.trim_start_matches("prompt:").parse().unwrap();
    assert!(ms > 0.0 && ms <= 500.0, "onPrompt({ms})");
    assert!(eventually(1_000, || state(&g) == "terminated").await);

    assert_eq!(sdk.terminations(), 1);
    let sent = sdk.sent().get(0);
    assert_eq!(
        Reflect::get(&sent, &"type".into()).unwrap(),
        "session_termination"
    );
    assert_eq!(log_of(&rec), "prompt,terminate");
    assert_eq!(log_entries(&rec).get(1), "terminate:idle");
    assert_eq!(g.remaining_ms(), 0.0);
    assert_eq!(sdk.listener_count(), 0, "SDK listener removed");
    assert_eq!(
        sdk.off_event_all_calls(),
        0,
        "never offEvent() without a listener"
    );
    assert_eq!(live_listeners_since(mark), 0, "every DOM listener removed");
    // Later activity, wake-ups and pings change nothing.
    mousemove(5);
    visibilitychange();
    g.ping();
    pause(50).await;
    assert_eq!(sdk.terminations(), 1);
    assert_eq!(escaped_errors(), 0);
    assert!(g.start().is_err(), "an ended guard cannot be restarted");
}

#[wasm_bindgen_test]
async fn activity_keeps_the_session_alive() {
    let sdk = FakeEyeson::new();
    let rec = quick(1_000, 200, false);
    let g = guard(&sdk, &rec);
    g.start().unwrap();
    // 2.5 timeouts of continuous movement, every 50 ms.
    for _ in 0..50 {
        mousemove(3);
        pause(50).await;
    }
    assert_eq!(state(&g), "active");
    assert_eq!(sdk.terminations(), 0);
    let left = g.remaining_ms();
    assert!(
        left > 500.0 && left <= 1_000.0,
        "remaining {left} computed from the deadline"
    );
    g.stop();
}

#[wasm_bindgen_test]
async fn phantom_mousemoves_do_not_count() {
    let sdk = FakeEyeson::new();
    let rec = quick(250, 0, false);
    let g = guard(&sdk, &rec);
    g.start().unwrap();
    let ended = eventually(1_500, || {
        mousemove(0);
        state(&g) == "terminated"
    })
    .await;
    assert!(
        ended,
        "zero-movement mousemoves must not keep the session alive"
    );
    assert_eq!(sdk.terminations(), 1);
}

#[wasm_bindgen_test]
async fn activity_during_the_prompt_resumes() {
    let sdk = FakeEyeson::new();
    let rec = quick(1_000, 800, false);
    let g = guard(&sdk, &rec);
    g.start().unwrap();
    assert!(eventually(1_000, || state(&g) == "prompted").await);
    keydown("a", &JsValue::UNDEFINED);
    assert_eq!(state(&g), "active");
    assert_eq!(log_of(&rec), "prompt,active");
    assert!(g.remaining_ms() > 800.0);
    // ping() answers a prompt too.
    assert!(eventually(1_000, || state(&g) == "prompted").await);
    g.ping();
    assert_eq!(state(&g), "active");
    assert_eq!(log_of(&rec), "prompt,active,prompt,active");
    g.stop();
    assert_eq!(sdk.terminations(), 0);
}

#[wasm_bindgen_test]
async fn the_dialog_is_accessible_answers_and_is_removed() {
    let sdk = FakeEyeson::new();
    let rec = quick(2_400, 2_300, true);
    let g = guard(&sdk, &rec);
    g.start().unwrap();
    assert!(eventually(1_000, || state(&g) == "prompted").await);
    assert_eq!(dialog_count(), 1);
    let info = dialog_info();
    let get = |k: &str| Reflect::get(&info, &k.into()).unwrap();
    assert_eq!(get("role"), "alertdialog");
    assert_eq!(get("live"), "polite");
    assert_eq!(get("focused"), true, "focus moves to the button");
    let shown: u32 = get("countdown")
        .as_string()
        .unwrap()
        .trim_end_matches(" s")
        .parse()
        .unwrap();
    assert!((1..=3).contains(&shown), "countdown shows {shown}");
    assert_eq!(
        get("leaked"),
        "0px",
        "the dialog's CSS stays in its shadow root"
    );
    // The countdown is live: it drops as the deadline approaches.
    assert!(
        eventually(2_000, || {
            let c = Reflect::get(&dialog_info(), &"countdown".into()).unwrap();
            c.as_string()
                .and_then(|s| s.trim_end_matches(" s").parse::<u32>().ok())
                .is_some_and(|n| n < shown)
        })
        .await
    );

    click_dialog_button();
    assert_eq!(state(&g), "active");
    assert_eq!(dialog_count(), 0);

    assert!(eventually(1_000, || state(&g) == "prompted").await);
    dialog_key("Escape");
    assert_eq!(state(&g), "active", "Escape answers");
    assert!(eventually(1_000, || state(&g) == "prompted").await);
    dialog_key("Enter");
    assert_eq!(state(&g), "active", "Enter answers");

    assert!(eventually(1_000, || state(&g) == "prompted").await);
    g.stop();
    assert_eq!(dialog_count(), 0, "stop removes the dialog");
    assert_eq!(
        log_of(&rec),
        "prompt,active,prompt,active,prompt,active,prompt,stop"
    );
}

#[wasm_bindgen_test]
async fn the_dialog_is_removed_on_termination() {
    let sdk = FakeEyeson::new();
    let rec = quick(800, 600, true);
    let g = guard(&sdk, &rec);
    g.start().unwrap();
    assert!(eventually(1_000, || dialog_count() == 1).await);
    assert!(eventually(1_000, || state(&g) == "terminated").await);
    assert_eq!(dialog_count(), 0);
}

#[wasm_bindgen_test]
async fn input_after_sleeping_past_the_deadline_terminates() {
    let sdk = FakeEyeson::new();
    let rec = quick(60_000, 10_000, false);
    let g = guard(&sdk, &rec);
    g.start().unwrap();
    mousemove(2); // recorded on the JS fast path
    jump_clock(3.0 * 60_000.0);
    mousemove(2);
    restore_clock();
    assert_eq!(
        state(&g),
        "terminated",
        "the event must not revive the session"
    );
    assert_eq!(sdk.terminations(), 1);
    assert_eq!(log_of(&rec), "terminate", "both limits passed: no prompt");
}

#[wasm_bindgen_test]
async fn waking_past_the_deadline_terminates_without_input() {
    for kind in ["visibilitychange", "focus", "pageshow", "resume"] {
        let sdk = FakeEyeson::new();
        let rec = quick(60_000, 10_000, false);
        let g = guard(&sdk, &rec);
        g.start().unwrap();
        wake(kind);
        assert_eq!(state(&g), "active", "{kind} before the deadline");
        jump_clock(2.0 * 60_000.0);
        wake(kind);
        restore_clock();
        assert_eq!(
            state(&g),
            "terminated",
            "{kind} after sleeping past the deadline"
        );
        assert_eq!(sdk.terminations(), 1);
    }
}

#[wasm_bindgen_test]
async fn the_page_becoming_visible_counts_as_activity_unless_disabled() {
    for visibility in [true, false] {
        let sdk = FakeEyeson::new();
        let rec = recorder(&obj(&[
            ("timeoutMs", 1_000.into()),
            ("promptMs", 800.into()),
            ("dialog", false.into()),
            ("visibility", visibility.into()),
        ]));
        let g = guard(&sdk, &rec);
        g.start().unwrap();
        assert!(eventually(1_000, || state(&g) == "prompted").await);
        visibilitychange(); // headless pages are visible
        let expected = if visibility { "active" } else { "prompted" };
        assert_eq!(state(&g), expected, "visibility: {visibility}");
        g.stop();
    }
}

#[wasm_bindgen_test]
async fn only_the_configured_events_count() {
    let sdk = FakeEyeson::new();
    let events = Array::of1(&"click".into());
    let rec = recorder(&obj(&[
        ("timeoutMs", 1_000.into()),
        ("promptMs", 800.into()),
        ("dialog", false.into()),
        ("events", events.clone().into()),
    ]));
    let g = guard(&sdk, &rec);
    events.push(&"mousemove".into()); // the guard keeps its own copy
    g.start().unwrap();
    assert!(eventually(1_000, || state(&g) == "prompted").await);
    mousemove(5);
    keydown("a", &JsValue::UNDEFINED);
    assert_eq!(
        state(&g),
        "prompted",
        "mousemove and keydown are not configured"
    );
    click();
    assert_eq!(state(&g), "active");
    g.stop();
}

#[wasm_bindgen_test]
async fn the_sdk_ending_the_session_stops_without_sending() {
    let cases: [(JsValue, &str); 5] = [
        (event("exit"), "exit"),
        (
            obj(&[("type", "error".into()), ("name", "session_failed".into())]),
            "error",
        ),
        (
            obj(&[
                ("type", "connection".into()),
                ("connectionStatus", "access_denied".into()),
            ]),
            "access_denied",
        ),
        (
            obj(&[
                ("type", "connection".into()),
                ("connectionStatus", "transport_error".into()),
            ]),
            "transport_error",
        ),
        (
            obj(&[
                ("type", "room_update".into()),
                ("content", obj(&[("shutdown", true.into())])),
            ]),
            "shutdown",
        ),
    ];
    for (ev, reason) in cases {
        let sdk = FakeEyeson::new();
        let rec = quick(200, 100, true);
        let mark = listener_mark();
        let g = guard(&sdk, &rec);
        sdk.emit(&event("accept"));
        sdk.emit(&ev);
        assert_eq!(state(&g), "stopped", "{reason}");
        assert_eq!(
            log_entries(&rec).get(0).as_string().unwrap(),
            format!("stop:{reason}")
        );
        assert_eq!(sdk.listener_count(), 0);
        assert_eq!(
            sdk.off_event_all_calls(),
            0,
            "{reason}: never offEvent() without a listener"
        );
        assert_eq!(live_listeners_since(mark), 0);
        pause(300).await;
        assert_eq!(sdk.terminations(), 0, "{reason}: stopped guards never send");
    }
}

#[wasm_bindgen_test]
async fn transient_sdk_events_are_ignored() {
    let sdk = FakeEyeson::new();
    let rec = quick(60_000, 1_000, false);
    let g = guard(&sdk, &rec);
    sdk.emit(&event("accept"));
    for kind in [
        "disconnect",
        "reconnect",
        "warning",
        "clear_warning",
        "offline",
        "podium",
    ] {
        sdk.emit(&event(kind));
    }
    sdk.emit(&obj(&[
        ("type", "connection".into()),
        ("connectionStatus", "ready".into()),
    ]));
    sdk.emit(&obj(&[
        ("type", "room_update".into()),
        ("content", obj(&[("shutdown", false.into())])),
    ]));
    sdk.emit(&JsValue::NULL);
    sdk.emit(&"accept".into());
    assert_eq!(state(&g), "active");
    g.stop();
}

#[wasm_bindgen_test]
async fn a_throwing_send_never_escapes_into_the_sdk_or_the_event_loop() {
    // An SDK whose start() never ran: it throws a TypeError on send.
    let sdk = FakeEyeson::with(&obj(&[("started", false.into())]));
    let rec = quick(200, 0, false);
    let before = escaped_errors();
    let g = guard(&sdk, &rec);
    sdk.emit(&event("accept"));
    assert!(eventually(1_000, || state(&g) == "terminated").await);
    assert_eq!(log_of(&rec), "terminate");
    // Termination from an SDK-event path and a DOM-event path, too.
    // An SDK whose session already ended (destroy()): it throws as well.
    let sdk2 = FakeEyeson::new();
    sdk2.destroy();
    let g2 = guard(&sdk2, &quick(60_000, 0, false));
    g2.start().unwrap();
    jump_clock(120_000.0);
    mousemove(1);
    restore_clock();
    assert_eq!(state(&g2), "terminated");
    pause(20).await;
    assert_eq!(escaped_errors(), before);
}

#[wasm_bindgen_test]
async fn callbacks_may_throw_or_call_back_into_the_guard() {
    // onPrompt throws: the guard carries on and still terminates.
    let sdk = FakeEyeson::new();
    let throwing = thrower();
    let rec = recorder(&obj(&[
        ("timeoutMs", 200.into()),
        ("promptMs", 100.into()),
        ("dialog", false.into()),
        ("onPrompt", throwing),
    ]));
    let g = guard(&sdk, &rec);
    g.start().unwrap();
    assert!(eventually(1_000, || state(&g) == "terminated").await);
    assert_eq!(sdk.terminations(), 1);

    // onPrompt stops the guard re-entrantly: stopped, nothing sent.
    let sdk = FakeEyeson::new();
    let holder = js_sys::Object::new();
    let stop_it = stopper(&holder);
    let rec = recorder(&obj(&[
        ("timeoutMs", 1_000.into()),
        ("promptMs", 800.into()),
        ("dialog", true.into()),
        ("onPrompt", stop_it),
    ]));
    let g = guard(&sdk, &rec);
    let g_js: JsValue = g.into();
    Reflect::set(&holder, &"guard".into(), &g_js).unwrap();
    let start = Reflect::get(&g_js, &"start".into()).unwrap();
    start
        .unchecked_ref::<js_sys::Function>()
        .call0(&g_js)
        .unwrap();
    let st = || {
        Reflect::get(&g_js, &"state".into())
            .unwrap()
            .as_string()
            .unwrap()
    };
    assert!(eventually(1_000, || st() == "stopped").await);
    assert_eq!(dialog_count(), 0);
    pause(1_000).await;
    assert_eq!(sdk.terminations(), 0);
}

#[wasm_bindgen_test]
async fn several_guards_coexist_and_each_stop_leaves_nothing_behind() {
    let mark = listener_mark();
    let a_sdk = FakeEyeson::new();
    let b_sdk = FakeEyeson::new();
    let a = guard(&a_sdk, &quick(250, 0, false));
    let b = guard(&b_sdk, &quick(60_000, 0, false));
    a.start().unwrap();
    b.start().unwrap();
    assert!(live_listeners_since(mark) > 0);
    b.stop();
    assert_eq!(state(&b), "stopped");
    assert!(eventually(1_000, || state(&a) == "terminated").await);
    assert_eq!(a_sdk.terminations(), 1);
    assert_eq!(b_sdk.terminations(), 0);
    assert_eq!(live_listeners_since(mark), 0);
    assert_eq!(b_sdk.listener_count(), 0);
    assert_eq!(b_sdk.off_event_all_calls(), 0);
    b.stop(); // idempotent
    assert_eq!(state(&b), "stopped");
}

fn construct_error(sdk: &JsValue, options: &JsValue) -> String {
    let sdk: &EyesonSdkArg = sdk.unchecked_ref();
    let options = options.clone().unchecked_into::<OptionsArg>();
    let err: JsValue = InactivityGuard::new(sdk, Some(options))
        .expect_err("must be rejected")
        .into();
    assert!(err.is_instance_of::<js_sys::Error>(), "a real Error");
    Reflect::get(&err, &"message".into())
        .unwrap()
        .as_string()
        .unwrap()
}

#[wasm_bindgen_test]
fn bad_options_get_errors_naming_the_option() {
    let sdk: JsValue = FakeEyeson::new().into();
    let cases: [(JsValue, &str); 13] = [
        (obj(&[("timeoutMs", (-1).into())]), "timeoutMs"),
        (obj(&[("timeoutMs", 0.5.into())]), "timeoutMs must be"),
        (obj(&[("timeoutMs", f64::NAN.into())]), "timeoutMs"),
        (obj(&[("timeoutMs", f64::INFINITY.into())]), "timeoutMs"),
        (obj(&[("timeoutMs", 2_147_483_648.0.into())]), "timeoutMs"),
        (obj(&[("timeoutMs", "600000".into())]), "timeoutMs"),
        (
            obj(&[("timeoutMs", 1000.into()), ("promptMs", 1000.into())]),
            "promptMs must be less than timeoutMs",
        ),
        (obj(&[("events", Array::new().into())]), "events"),
        (obj(&[("events", "mousemove".into())]), "events"),
        (obj(&[("events", Array::of1(&1.into()).into())]), "events"),
        (
            obj(&[("timoutMs", 1000.into())]),
            "unknown option \"timoutMs\"",
        ),
        (obj(&[("dialog", "no".into())]), "dialog"),
        (obj(&[("onPrompt", "alert".into())]), "onPrompt"),
    ];
    for (options, needle) in cases {
        let message = construct_error(&sdk, &options);
        assert!(
            message.contains(needle),
            "{message:?} should mention {needle:?}"
        );
    }
    assert!(construct_error(&sdk, &"fast".into()).contains("options must be an object"));
}

#[wasm_bindgen_test]
fn the_first_argument_must_be_the_sdk() {
    let opts = obj(&[]);
    for bad in [JsValue::UNDEFINED, JsValue::NULL, obj(&[("send", noop())])] {
        let message = construct_error(&bad, &opts);
        assert!(message.contains("eyeson SDK instance"), "{message}");
    }
    // The UMD global is the module namespace; the SDK is its `default`.
    let namespace = obj(&[("default", FakeEyeson::new().into())]);
    assert!(construct_error(&namespace, &opts).contains("window.eyeson.default"));
}

#[wasm_bindgen_test]
fn defaults_apply_when_options_are_omitted() {
    let sdk = FakeEyeson::new();
    let sdk_ref: &EyesonSdkArg = sdk.unchecked_ref();
    let g = InactivityGuard::new(sdk_ref, None).unwrap();
    assert_eq!(g.remaining_ms(), 3_600_000.0);
    g.stop();
    let g = guard(&sdk, &recorder(&obj(&[("timeoutMs", 30_000.into())])));
    assert_eq!(g.remaining_ms(), 30_000.0, "a short timeout alone is valid");
    g.stop();
}
