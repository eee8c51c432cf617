//! The alone rule's pure core: which online participants count, and since
//! when a meeting has had at most one. The participants check feeds each
//! `GET /rooms/{id}/users?online=true` answer through here.

use std::str::FromStr;
use std::time::Duration;

use crate::domain::Timestamp;

/// An `--alone-ignore` glob (`*` any run, `?` one character), matched
/// case-insensitively against a participant's whole id or name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IgnorePattern(Vec<char>);

/// Longest pattern accepted (matching is O(pattern × text)).
pub const MAX_PATTERN: usize = 200;

impl FromStr for IgnorePattern {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        // Trimmed: `ALONE_IGNORE="recorder*, *bot*"` means `*bot*`.
        let s = s.trim();
        Err(if s.is_empty() {
            "an --alone-ignore pattern must not be empty".into()
        } else if s.chars().count() > MAX_PATTERN {
            format!("an --alone-ignore pattern must be at most {MAX_PATTERN} characters")
        } else {
            return Ok(IgnorePattern(lowercase(s)));
        })
    }
}

fn lowercase(s: &str) -> Vec<char> {
    s.chars().flat_map(char::to_lowercase).collect()
}

impl IgnorePattern {
    /// Whether the whole of `text` matches.
    pub fn matches(&self, text: &str) -> bool {
        let (pat, text) = (&self.0, lowercase(text));
        // Greedy with one backtrack point (the last `*`): never exponential.
        let (mut p, mut t) = (0, 0);
        let mut star: Option<(usize, usize)> = None;
        while t < text.len() {
            match pat.get(p) {
                Some('*') => {
                    star = Some((p, t));
                    p += 1;
                }
                Some(&c) if c == '?' || c == text[t] => {
                    p += 1;
                    t += 1;
                }
                _ => match star {
                    Some((sp, st)) => {
                        p = sp + 1;
                        t = st + 1;
                        star = Some((sp, st + 1));
                    }
                    None => return false,
                },
            }
        }
        pat[p..].iter().all(|&c| c == '*')
    }
}

/// How many of the `online` participants (id, name) count: not our own
/// guest (`own_guest`), nor one whose id or name matches `ignore`. An
/// unreadable entry counts: a bad list must not look emptier than it is.
pub fn counted<'a>(
    online: impl IntoIterator<Item = (&'a str, &'a str)>,
    own_guest: &str,
    ignore: &[IgnorePattern],
) -> usize {
    let ignored = |s: &str| !s.is_empty() && ignore.iter().any(|p| p.matches(s));
    online
        .into_iter()
        .filter(|(id, name)| !(*name == own_guest || ignored(id) || ignored(name)))
        .count()
}

/// A meeting's alone clock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AloneClock {
    /// The last check counted two or more participants (or none was made).
    Company,
    /// Every check since this one counted at most one.
    AloneSince(Timestamp),
}

impl AloneClock {
    /// The clock after a check at `now` counted `n`: at most one keeps the
    /// earliest start (or starts it now); two or more reset it.
    pub fn after_check(self, n: usize, now: Timestamp) -> AloneClock {
        match (self, n) {
            (_, 2..) => AloneClock::Company,
            (AloneClock::AloneSince(since), _) => AloneClock::AloneSince(since),
            (AloneClock::Company, _) => AloneClock::AloneSince(now),
        }
    }

    /// When the meeting ends for being alone `after` long; `None` in company.
    pub fn deadline(self, after: Duration) -> Option<Timestamp> {
        match self {
            AloneClock::Company => None,
            AloneClock::AloneSince(since) => Some(since.plus(after)),
        }
    }
}

impl From<Option<Timestamp>> for AloneClock {
    fn from(since: Option<Timestamp>) -> Self {
        since.map_or(AloneClock::Company, AloneClock::AloneSince)
    }
}

/// A check's clock change, for the history: `alone` (a period starts) or
/// `company` (one ends).
pub fn change(before: AloneClock, after: AloneClock) -> Option<&'static str> {
    match (before, after) {
        (AloneClock::Company, AloneClock::AloneSince(_)) => Some("alone"),
        (AloneClock::AloneSince(_), AloneClock::Company) => Some("company"),
        _ => None,
    }
}

/// The last look before an alone end's `DELETE`: whether `n` counted
/// participants still make it alone (else the end is cancelled).
pub fn still_alone(n: usize) -> bool {
    n <= 1
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn pat(s: &str) -> IgnorePattern {
        s.parse().unwrap()
    }

    #[test]
    fn globs_match_whole_ids_and_names_ignoring_case() {
        assert!(pat("recorder*").matches("Recorder 1"));
        assert!(pat("*bot*").matches("Streaming BOT eu-1"));
        assert!(pat("cam-?").matches("cam-7"));
        assert!(!pat("cam-?").matches("cam-17"));
        assert!(!pat("recorder").matches("Recorder 1"), "whole name only");
        assert!(!pat("bot").matches("abbot"));
        assert!(pat("*").matches(""));
        assert!(pat("a*b*c").matches("a-x-b-y-b-c"));
        assert!(!pat("a*b*c").matches("a-x-b-y-b-d"));
        assert!(pat("Ärzte*").matches("ärztekammer"));
        assert!(
            pat(" *bot* ").matches("bot-1"),
            "a list's spaces are not part of it"
        );
    }

    #[test]
    fn bad_patterns_are_refused_with_the_flag_named() {
        let error = |s: &str| s.parse::<IgnorePattern>().unwrap_err();
        for bad in ["", "   "] {
            assert!(error(bad).contains("--alone-ignore"), "{}", error(bad));
        }
        assert!(error(&"x".repeat(MAX_PATTERN + 1)).contains("at most"));
    }

    #[test]
    fn the_own_guest_and_ignored_bots_do_not_count() {
        let ignore = [pat("recorder*"), pat("bot-*")];
        let online = [
            ("u1", "Ada"),
            ("g1", "Hard limit"),
            ("u2", "Recorder"),
            ("bot-7", "Stream"),
            ("", ""),
        ];
        // Ada and the unreadable entry.
        assert_eq!(counted(online, "Hard limit", &ignore), 2);
        assert_eq!(counted(online, "Hard limit", &[]), 4);
        assert_eq!(counted([], "Hard limit", &ignore), 0);
    }

    #[test]
    fn the_clock_starts_alone_keeps_its_start_and_resets_with_company() {
        let at = |s: i64| Timestamp(s * 1000);
        let hour = Duration::from_secs(3600);
        let c = AloneClock::Company.after_check(1, at(10));
        assert_eq!(c, AloneClock::AloneSince(at(10)));
        let c = c.after_check(0, at(70)).after_check(1, at(130));
        assert_eq!(c.deadline(hour), Some(at(3610)));
        let c = c.after_check(2, at(190));
        assert_eq!((c, c.deadline(hour)), (AloneClock::Company, None));
        assert_eq!(c.after_check(1, at(250)), AloneClock::AloneSince(at(250)));
    }

    /// A straightforward (exponential) matcher to check the fast one by.
    fn reference(p: &[char], t: &[char]) -> bool {
        match p.split_first() {
            None => t.is_empty(),
            Some(('*', rest)) => (0..=t.len()).any(|i| reference(rest, &t[i..])),
            Some((&c, rest)) => {
                !t.is_empty() && (c == '?' || c == t[0]) && reference(rest, &t[1..])
            }
        }
    }

    /// One meeting under the rule as the service runs it: checks move the
    /// clock; the warner sends once per alone deadline (it records the end
    /// it warned for, like `warn_for`); at the alone deadline the scheduler
    /// looks once more and ends or cancels (resetting the clock).
    #[derive(Debug, Default)]
    struct Meeting {
        clock: Option<Timestamp>,
        warned_for: Option<Timestamp>,
        ended_at: Option<Timestamp>,
        latest: usize,
        first_lone: Option<Timestamp>,
        warnings: Vec<(Timestamp, Option<Timestamp>)>,
    }

    impl Meeting {
        fn check(&mut self, n: usize, now: Timestamp) {
            self.latest = n;
            let before = AloneClock::from(self.clock);
            let after = before.after_check(n, now);
            if change(before, after) == Some("alone") {
                self.first_lone = Some(now);
            }
            self.clock = after.deadline(Duration::ZERO);
        }

        fn time_passes(&mut self, now: Timestamp, after: Duration, warn: Duration) {
            let Some(end) = AloneClock::from(self.clock).deadline(after) else {
                return;
            };
            if now >= end.minus(warn) && now < end && self.warned_for != Some(end) {
                self.warned_for = Some(end);
                self.warnings.push((now, self.first_lone));
            }
            if now >= end && self.ended_at.is_none() {
                // The last look reads the participants now.
                if still_alone(self.latest) {
                    self.ended_at = Some(now);
                } else {
                    self.clock = None;
                }
            }
        }
    }

    proptest! {
        /// Never ends a meeting whose latest check saw two or more; never
        /// before `alone_after` after the period's first lone check; at
        /// most one end, and at most one warning per alone period.
        #[test]
        fn the_rule_ends_only_lone_meetings_once_and_on_time(
            steps in prop::collection::vec((1i64..40, 0usize..4, any::<bool>()), 1..60),
            after_s in 5u64..60,
            warn_s in 1u64..5,
        ) {
            let after = Duration::from_secs(after_s);
            let warn = Duration::from_secs(warn_s);
            let mut m = Meeting::default();
            let mut now = Timestamp(0);
            let mut periods = 0;
            let mut ends = 0;
            for (dt, n, look_only) in steps {
                now = now.plus(Duration::from_secs(dt as u64));
                if !look_only {
                    let was = m.clock;
                    m.check(n, now);
                    if was.is_none() && m.clock.is_some() {
                        periods += 1;
                    }
                } else {
                    // Someone joins or leaves between checks: only the
                    // last look sees it.
                    m.latest = n;
                }
                let ended = m.ended_at;
                m.time_passes(now, after, warn);
                if let (None, Some(end)) = (ended, m.ended_at) {
                    ends += 1;
                    prop_assert!(m.latest <= 1, "ended with {} counted", m.latest);
                    let first = m.first_lone.expect("a period ran");
                    prop_assert!(end >= first.plus(after), "ended at {end:?}, alone since {first:?}");
                }
                if m.ended_at.is_some() {
                    break;
                }
            }
            prop_assert!(ends <= 1);
            prop_assert!(m.warnings.len() <= periods, "{:?} in {periods} periods", m.warnings);
            let mut per_period = m.warnings.iter().map(|(_, p)| *p).collect::<Vec<_>>();
            per_period.dedup();
            prop_assert_eq!(per_period.len(), m.warnings.len(), "two warnings in one period");
        }

        #[test]
        fn the_matcher_agrees_with_the_definition(
            p in prop::collection::vec(prop::sample::select(vec!['a', 'b', '*', '?']), 1..8),
            t in prop::collection::vec(prop::sample::select(vec!['a', 'b']), 0..10),
        ) {
            let fast = pat(&p.iter().collect::<String>()).matches(&t.iter().collect::<String>());
            prop_assert_eq!(fast, reference(&p, &t));
        }
    }
}
