//! The meeting's hard deadline, read from an eyeson-hard-limit service, and
//! the notice counting down to it.
//!
//! The service answers `GET {base}/meetings/{room_id}` with CORS:
//! `{"room_id", "started_at", "deadline", "state", "alone_deadline"}` (404:
//! no open meeting). `alone_deadline` is there (not `null`) while an alone
//! period runs: the service ends a meeting whose counted participants have
//! been at most one for its `--alone-after`. The meeting ends at whichever
//! of the two comes first; that is the end the notice shows, with its own
//! text, and `onHardLimit` reports.
//! It shows a meeting only to whoever sends the room's guest token (the
//! SDK's `room.guest_token`) in the `X-Eyeson-Guest-Token` header: a header,
//! so that it stays out of URLs and logs.
//! It is read after `room_setup`, after each `room_update` and every 5
//! minutes. A failure changes nothing and is logged once. A read that finds
//! no meeting (or fails) is retried sooner, 2 s later and then twice as
//! late each time: the SDK's `room_setup` can come before the service has
//! had the meeting's start webhook.
//! Participants joining or leaving (the SDK's `add_user` / `remove_user`,
//! or its `podium` turning `solo` on or off) start or end alone periods, but
//! the service only sees that at its next presence check (`--presence-every`,
//! 60 s by default). So a change is read 1 s later (debounced), and read
//! every 15 s for the next 2 minutes, and every 15 s while an alone deadline
//! is pending: the notice goes within one presence check + 15 s of someone
//! joining, and an alone period that starts after someone left is seen
//! within the same bound (beyond that window, by the 5-minute read).

use alloc::rc::Rc;

use alloc::boxed::Box;
use gloo_timers::callback::{Interval, Timeout};
use js_sys::{Promise, Reflect};
use wasm_bindgen::prelude::*;
use web_sys::Response;

use crate::machine::Millis;
use crate::notice::Notice;
use crate::options::Text;
use crate::promise::{settle, Settled};

/// How often the deadline is read again while nothing announces a change.
const POLL_MS: u32 = 5 * 60 * 1000;
/// How often it is read while an alone deadline is pending, or soon after
/// the participants changed (see [`sooner`]).
pub const FAST_MS: u32 = 15_000;
/// How long after a participant change it is read every [`FAST_MS`]: two
/// of the service's default presence checks (60 s).
pub const WATCH_MS: Millis = 120_000;
/// The wait after a participant change before reading (changes come in
/// bursts, e.g. one `add_user` per participant on joining).
const DEBOUNCE_MS: u32 = 1_000;
/// The first retry after a read without a deadline.
const RETRY_MS: u32 = 2_000;
/// The request header that carries the room's guest token.
const GUEST_TOKEN_HEADER: &str = "X-Eyeson-Guest-Token";
/// The longest a browser timer can wait.
const MAX_DELAY: Millis = i32::MAX as Millis;

/// Which end of the meeting comes first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// The hard deadline (its maximum duration).
    Deadline,
    /// The alone deadline: the meeting has had at most one participant.
    Alone,
}

impl Kind {
    /// `onHardLimit`'s second argument.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Deadline => "deadline",
            Kind::Alone => "alone",
        }
    }
}

/// The meeting's two ends, ms since the epoch, as the service answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ends {
    /// `deadline`.
    pub deadline: Millis,
    /// `alone_deadline`, while an alone period runs.
    pub alone: Option<Millis>,
}

impl Ends {
    /// The end that comes first. On a tie, the deadline: the meeting ends
    /// then whether or not someone joins.
    pub fn first(self) -> (Millis, Kind) {
        match self.alone {
            Some(alone) if alone < self.deadline => (alone, Kind::Alone),
            _ => (self.deadline, Kind::Deadline),
        }
    }
}

/// After a successful read at `now`: the sooner next read, if one is due
/// before the regular poll, which is while an alone deadline is pending
/// (someone joining ends it: the notice must go soon after) or until
/// `watch_until` (participants changed lately: an alone period may start or
/// end at the service's next check).
pub fn sooner(ends: Ends, now: Millis, watch_until: Millis) -> Option<u32> {
    (ends.alone.is_some() || now < watch_until).then_some(FAST_MS)
}

/// What one read of the service gave.
#[derive(Clone, Debug, PartialEq)]
pub enum Fetched {
    /// The meeting's ends.
    Ends(Ends),
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

/// Reads a time field of a service answer (ISO-8601) as ms since the epoch.
fn time_of(json: &JsValue, field: &str) -> Option<Millis> {
    let text = Reflect::get(json, &field.into()).ok()?.as_string()?;
    let ms = js_sys::Date::parse(&text);
    (ms.is_finite() && ms > 0.0).then_some(ms as Millis)
}

/// Reads a service answer's ends: `deadline` must be a time; an
/// `alone_deadline` that is absent, `null` or not a time is none.
fn ends_of(json: &JsValue) -> Option<Ends> {
    Some(Ends {
        deadline: time_of(json, "deadline")?,
        alone: time_of(json, "alone_deadline"),
    })
}

/// The guard's link to the service.
pub struct HardLimit {
    base: String,
    room: Option<String>,
    /// The room's guest token, sent with every read.
    token: Option<String>,
    ends: Option<Ends>,
    lead: Millis,
    show: bool,
    /// The strings: the notice's are `text.notice` and `text.aloneNotice`.
    text: Rc<Text>,
    notice: Option<Notice>,
    timer: Option<Timeout>,
    poll: Option<Interval>,
    /// The sooner read: a retry after a read without a deadline (and its
    /// delay), or the fast read (see [`sooner`]).
    retry: Option<Timeout>,
    retry_ms: u32,
    /// The read a participant change asks for, debounced.
    soon: Option<Timeout>,
    /// Read every [`FAST_MS`] until then (participants changed lately).
    watch_until: Millis,
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
        text: Rc<Text>,
        deliver: Rc<dyn Fn(u32, Fetched)>,
        wake: Rc<dyn Fn(bool)>,
    ) -> HardLimit {
        HardLimit {
            base,
            room: None,
            token: None,
            ends: None,
            lead,
            show,
            text,
            notice: None,
            timer: None,
            poll: None,
            retry: None,
            retry_ms: RETRY_MS,
            soon: None,
            watch_until: 0,
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
        self.ends = None;
        self.retry = None;
        self.retry_ms = RETRY_MS;
        let wake = self.wake.clone();
        self.poll = Some(Interval::new(POLL_MS, move || wake(true)));
        self.refresh();
    }

    /// The participants changed (someone joined or left): read again in a
    /// moment, and every [`FAST_MS`] for [`WATCH_MS`].
    pub fn participants_changed(&mut self, now: Millis) {
        if self.room.is_none() {
            return;
        }
        self.watch(now);
        self.soon = Some(self.wake_in(DEBOUNCE_MS, true));
    }

    /// Reads every [`FAST_MS`] for [`WATCH_MS`] from `now` (after the
    /// read that is under way).
    pub fn watch(&mut self, now: Millis) {
        self.watch_until = now.saturating_add(WATCH_MS);
    }

    /// A timer calling `wake(read)` in `ms` (one closure type for all of
    /// them: each costs wasm).
    fn wake_in(&self, ms: u32, read: bool) -> Timeout {
        let wake = self.wake.clone();
        Timeout::new(ms, move || wake(read))
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
                            match json.ok().as_ref().and_then(ends_of) {
                                Some(ends) => Fetched::Ends(ends),
                                None => Fetched::Failed("the answer has no deadline".into()),
                            },
                        )
                    }),
                ),
            }),
        );
    }

    /// Takes a read's result. Returns the end that comes first if it is new
    /// (for `onHardLimit`), and the reason to log if this is the first
    /// failure.
    pub fn result(
        &mut self,
        seq: u32,
        fetched: Fetched,
        now: Millis,
    ) -> (Option<(Millis, Kind)>, Option<String>) {
        if seq != self.seq {
            return (None, None);
        }
        let wait = match fetched {
            Fetched::Ends(ends) => {
                self.retry_ms = RETRY_MS;
                sooner(ends, now, self.watch_until)
            }
            _ => {
                let wait = self.retry_ms;
                self.retry_ms = backoff(wait);
                Some(wait)
            }
        };
        self.retry = wait.map(|ms| self.wake_in(ms, true));
        match fetched {
            Fetched::Ends(ends) => {
                let first = ends.first();
                let was = self.ends.replace(ends).map(Ends::first);
                if was == Some(first) {
                    return (None, None);
                }
                if was.map(|(_, kind)| kind) != Some(first.1) {
                    // The other end: the notice's text changes.
                    self.notice = None;
                }
                self.update(now);
                (Some(first), None)
            }
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
        let Some((end, kind)) = self.ends.filter(|_| self.show).map(Ends::first) else {
            return;
        };
        let wake = match plan(now, end, self.lead) {
            Plan::Never => None,
            Plan::Hidden { show_at } => {
                self.notice = None;
                Some(show_at)
            }
            Plan::Shown { remaining, next } => {
                match &self.notice {
                    Some(notice) => notice.show(remaining),
                    None => {
                        let template = match kind {
                            Kind::Deadline => &self.text.notice,
                            Kind::Alone => &self.text.alone_notice,
                        };
                        self.notice = Notice::open(template, remaining)
                    }
                }
                next
            }
        };
        self.timer =
            wake.map(|at| self.wake_in(at.saturating_sub(now).min(MAX_DELAY) as u32, false));
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
    fn the_end_that_comes_first_is_shown_a_tie_is_the_deadline() {
        let ends = |alone| Ends { deadline: D, alone };
        assert_eq!(ends(None).first(), (D, Kind::Deadline));
        assert_eq!(ends(Some(D - 1)).first(), (D - 1, Kind::Alone));
        assert_eq!(ends(Some(D)).first(), (D, Kind::Deadline), "a tie");
        assert_eq!(ends(Some(D + 1)).first(), (D, Kind::Deadline));
        assert_eq!(Kind::Deadline.as_str(), "deadline");
        assert_eq!(Kind::Alone.as_str(), "alone");
        // The notice counts down to the first end: an alone deadline sooner
        // than the deadline shows early, and its going hides it again.
        let lead = 300_000;
        let now = D - 3_600_000;
        let (end, _) = ends(Some(now + 60_000)).first();
        assert_eq!(
            plan(now, end, lead),
            Plan::Shown {
                remaining: 60_000,
                next: Some(now + 1_000)
            }
        );
        let (end, _) = ends(None).first();
        assert_eq!(
            plan(now, end, lead),
            Plan::Hidden {
                show_at: D - 300_000
            }
        );
    }

    #[test]
    fn reads_are_fast_while_alone_or_just_after_a_change() {
        let now = D - 3_600_000;
        let alone = Ends {
            deadline: D,
            alone: Some(now + 600_000),
        };
        let company = Ends {
            deadline: D,
            alone: None,
        };
        assert_eq!(sooner(alone, now, 0), Some(FAST_MS));
        assert_eq!(
            sooner(alone, now, now + WATCH_MS),
            Some(FAST_MS),
            "also an alone deadline later than the deadline"
        );
        assert_eq!(sooner(company, now, 0), None, "the regular poll");
        assert_eq!(sooner(company, now, now + 1), Some(FAST_MS));
        assert_eq!(sooner(company, now + 1, now + 1), None, "window over");
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
