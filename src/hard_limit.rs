//! The meeting's hard deadline, read from an eyeson-hard-limit service, and
//! the notice counting down to it.
//!
//! The service answers `GET {base}/meetings/{room_id}` with CORS:
//! `{"room_id", "started_at", "deadline", "state"}` (404: no open meeting).
//! It shows a meeting only to whoever sends the room's guest token (the
//! SDK's `room.guest_token`) in the `X-Eyeson-Guest-Token` header: a header,
//! so that it stays out of URLs and logs.
//! It is read after `room_setup`, after each `room_update` and every 5
//! minutes. A failure changes nothing and is logged once. A read that finds
//! no meeting (or fails) is retried sooner, 2 s later and then twice as
//! late each time: the SDK's `room_setup` can come before the service has
//! had the meeting's start webhook.

use alloc::rc::Rc;

use alloc::boxed::Box;
use gloo_timers::callback::{Interval, Timeout};
use js_sys::{Promise, Reflect};
use wasm_bindgen::prelude::*;
use web_sys::Response;

use crate::machine::Millis;
use crate::notice::Notice;
use crate::promise::{settle, Settled};

/// How often the deadline is read again while nothing announces a change.
const POLL_MS: u32 = 5 * 60 * 1000;
/// The first retry after a read without a deadline.
const RETRY_MS: u32 = 2_000;
/// The request header that carries the room's guest token.
const GUEST_TOKEN_HEADER: &str = "X-Eyeson-Guest-Token";
/// The longest a browser timer can wait.
const MAX_DELAY: Millis = i32::MAX as Millis;

/// What one read of the service gave.
#[derive(Clone, Debug, PartialEq)]
pub enum Fetched {
    /// The deadline, ms since the epoch.
    Deadline(Millis),
    /// 404: the service tracks no open meeting for the room (yet).
    NotFound,
    /// Anything else: the reason, for the one log line.
    Failed(String),
}

/// What the notice should do at a given time (pure; see [`plan`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Plan {
    /// No notice (`hardLimitNoticeMs` is 0).
    Never,
    /// Not yet: show it at this time.
    Hidden {
        /// `deadline − lead`.
        show_at: Millis,
    },
    /// Shown with `remaining` ms; update it at `next` (none once at 0).
    Shown {
        /// Until the deadline.
        remaining: Millis,
        /// The next instant the displayed whole seconds change.
        next: Option<Millis>,
    },
}

/// The notice's plan at `now` for `deadline` shown `lead` ms ahead.
pub fn plan(now: Millis, deadline: Millis, lead: Millis) -> Plan {
    if lead == 0 {
        return Plan::Never;
    }
    let show_at = deadline.saturating_sub(lead);
    if now < show_at {
        return Plan::Hidden { show_at };
    }
    let remaining = deadline.saturating_sub(now);
    let shown = remaining.div_ceil(1000);
    let next = (remaining > 0).then(|| deadline - shown.saturating_sub(1) * 1000);
    Plan::Shown { remaining, next }
}

/// The wait before the next retry, after waiting `previous` ms: twice as
/// long, up to the regular poll.
pub fn backoff(previous: u32) -> u32 {
    previous.saturating_mul(2).min(POLL_MS)
}

/// Reads a service answer's `deadline` (ISO-8601) as ms since the epoch.
fn deadline_of(json: &JsValue) -> Option<Millis> {
    let text = Reflect::get(json, &"deadline".into()).ok()?.as_string()?;
    let ms = js_sys::Date::parse(&text);
    (ms.is_finite() && ms > 0.0).then_some(ms as Millis)
}

/// The guard's link to the service.
pub struct HardLimit {
    base: String,
    room: Option<String>,
    /// The room's guest token, sent with every read.
    token: Option<String>,
    deadline: Option<Millis>,
    lead: Millis,
    show: bool,
    template: String,
    notice: Option<Notice>,
    timer: Option<Timeout>,
    poll: Option<Interval>,
    /// The sooner read after one without a deadline, and its delay.
    retry: Option<Timeout>,
    retry_ms: u32,
    /// Numbers the reads, so that a slow old answer never wins.
    seq: u32,
    complained: bool,
    deliver: Rc<dyn Fn(u32, Fetched)>,
    /// `wake(true)`: time to read again; `wake(false)`: update the notice.
    wake: Rc<dyn Fn(bool)>,
}

impl core::fmt::Debug for HardLimit {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("HardLimit")
    }
}

impl HardLimit {
    /// `deliver` gets each read's result; `wake(true)` asks for a new read,
    /// `wake(false)` for a notice update (both through the guard).
    pub fn new(
        base: String,
        lead: Millis,
        show: bool,
        template: String,
        deliver: Rc<dyn Fn(u32, Fetched)>,
        wake: Rc<dyn Fn(bool)>,
    ) -> HardLimit {
        HardLimit {
            base,
            room: None,
            token: None,
            deadline: None,
            lead,
            show,
            template,
            notice: None,
            timer: None,
            poll: None,
            retry: None,
            retry_ms: RETRY_MS,
            seq: 0,
            complained: false,
            deliver,
            wake,
        }
    }

    /// The room (and its guest token) became known or changed: read its
    /// deadline now and every 5 minutes.
    pub fn set_room(&mut self, room: Option<String>, token: Option<String>) {
        if room.is_none() || (room == self.room && token == self.token) {
            return;
        }
        self.room = room;
        self.token = token;
        self.deadline = None;
        self.retry = None;
        self.retry_ms = RETRY_MS;
        let wake = self.wake.clone();
        self.poll = Some(Interval::new(POLL_MS, move || wake(true)));
        self.refresh();
    }

    /// Reads the deadline again.
    pub fn refresh(&mut self) {
        let Some(room) = &self.room else { return };
        let Some(window) = web_sys::window() else {
            return;
        };
        self.seq = self.seq.wrapping_add(1);
        let (seq, deliver) = (self.seq, self.deliver.clone());
        let mut url = self.base.clone();
        url.push_str("/meetings/");
        url.push_str(&String::from(js_sys::encode_uri_component(room)));
        let read = move |result: Settled| -> Result<Fetched, Option<Promise>> {
            // fetch's promise only ever resolves to a Response.
            let Ok(response) = result.map(JsCast::unchecked_into::<Response>) else {
                return Ok(Fetched::Failed(
                    "the request failed (network or CORS)".into(),
                ));
            };
            match response.status() {
                404 => Ok(Fetched::NotFound),
                _ if response.ok() => Err(response.json().ok()),
                status => {
                    let mut why = String::from("HTTP ");
                    why.push_str(&status.to_string());
                    Ok(Fetched::Failed(why))
                }
            }
        };
        let init = js_sys::Object::new();
        if let Some(token) = &self.token {
            let headers = js_sys::Object::new();
            let _ = Reflect::set(&headers, &GUEST_TOKEN_HEADER.into(), &token.into());
            let _ = Reflect::set(&init, &"headers".into(), &headers);
        }
        settle(
            &window.fetch_with_str_and_init(&url, init.unchecked_ref()),
            Box::new(move |result| match read(result) {
                Ok(fetched) => deliver(seq, fetched),
                Err(None) => deliver(seq, Fetched::Failed("the answer is not JSON".into())),
                Err(Some(json)) => settle(
                    &json,
                    Box::new(move |json| {
                        deliver(
                            seq,
                            match json.ok().as_ref().and_then(deadline_of) {
                                Some(d) => Fetched::Deadline(d),
                                None => Fetched::Failed("the answer has no deadline".into()),
                            },
                        )
                    }),
                ),
            }),
        );
    }

    /// Takes a read's result. Returns the deadline if it is new (for
    /// `onHardLimit`), and the reason to log if this is the first failure.
    pub fn result(
        &mut self,
        seq: u32,
        fetched: Fetched,
        now: Millis,
    ) -> (Option<Millis>, Option<String>) {
        if seq != self.seq {
            return (None, None);
        }
        if let Fetched::Deadline(_) = fetched {
            self.retry = None;
            self.retry_ms = RETRY_MS;
        } else {
            let wake = self.wake.clone();
            self.retry = Some(Timeout::new(self.retry_ms, move || wake(true)));
            self.retry_ms = backoff(self.retry_ms);
        }
        match fetched {
            Fetched::Deadline(d) if Some(d) != self.deadline => {
                self.deadline = Some(d);
                self.update(now);
                (Some(d), None)
            }
            Fetched::Deadline(_) => (None, None),
            Fetched::NotFound | Fetched::Failed(_) if self.complained => (None, None),
            Fetched::NotFound => {
                self.complained = true;
                (
                    None,
                    Some("the service tracks no open meeting for this room".into()),
                )
            }
            Fetched::Failed(why) => {
                self.complained = true;
                (None, Some(why))
            }
        }
    }

    /// Brings the notice up to date at `now` and arms its timer.
    pub fn update(&mut self, now: Millis) {
        let Some(deadline) = self.deadline.filter(|_| self.show) else {
            return;
        };
        let wake = match plan(now, deadline, self.lead) {
            Plan::Never => None,
            Plan::Hidden { show_at } => {
                self.notice = None;
                Some(show_at)
            }
            Plan::Shown { remaining, next } => {
                match &self.notice {
                    Some(notice) => notice.show(remaining),
                    None => self.notice = Notice::open(&self.template, remaining),
                }
                next
            }
        };
        self.timer = wake.map(|at| {
            let wake = self.wake.clone();
            Timeout::new(at.saturating_sub(now).min(MAX_DELAY) as u32, move || {
                wake(false)
            })
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: Millis = 1_700_000_000_000;

    #[test]
    fn the_notice_shows_from_deadline_minus_lead_and_ticks_each_second() {
        assert_eq!(
            plan(D - 300_001, D, 300_000),
            Plan::Hidden {
                show_at: D - 300_000
            }
        );
        assert_eq!(
            plan(D - 300_000, D, 300_000),
            Plan::Shown {
                remaining: 300_000,
                next: Some(D - 299_000)
            }
        );
        assert_eq!(
            plan(D - 299_500, D, 300_000),
            Plan::Shown {
                remaining: 299_500,
                next: Some(D - 299_000)
            }
        );
        assert_eq!(
            plan(D - 1, D, 300_000),
            Plan::Shown {
                remaining: 1,
                next: Some(D)
            }
        );
        assert_eq!(
            plan(D, D, 300_000),
            Plan::Shown {
                remaining: 0,
                next: None
            }
        );
        assert_eq!(
            plan(D + 5_000, D, 300_000),
            Plan::Shown {
                remaining: 0,
                next: None
            }
        );
        assert_eq!(plan(D - 10, D, 0), Plan::Never);
    }

    #[test]
    fn retries_back_off_to_the_regular_poll() {
        let mut waits = vec![RETRY_MS];
        while waits.len() < 12 {
            waits.push(backoff(*waits.last().unwrap()));
        }
        assert_eq!(&waits[..4], &[2_000, 4_000, 8_000, 16_000]);
        assert_eq!(waits[7], 256_000);
        assert!(waits[8..].iter().all(|&w| w == POLL_MS));
    }
}
