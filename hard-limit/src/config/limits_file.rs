//! The `--limits` file, read once at start to seed the store's rules
//! ([`crate::limits`]):
//!
//! ```toml
//! [rooms]            # exact room ids
//! "board-room" = "2h"                                 # a limit
//! "kiosk" = { alone_after = "5m" }                    # only the alone rule
//! "town-hall" = { limit = "3h", alone_after = "off" } # both; "off" turns the alone rule off
//! [prefixes]         # longest matching prefix wins
//! "webinar-" = "3h"
//! ```
//!
//! A part an entry leaves out is inherited (a shorter prefix's, else the
//! command line's).

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

use super::ConfigError;
use crate::domain::{parse_alone_after, Rule};

/// The rules of a limits file (none without one).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LimitRules {
    /// Exact room ids and their rules.
    pub rooms: Vec<(String, Rule)>,
    /// Room id prefixes and their rules.
    pub prefixes: Vec<(String, Rule)>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LimitsFile {
    #[serde(default)]
    rooms: BTreeMap<String, toml::Value>,
    #[serde(default)]
    prefixes: BTreeMap<String, toml::Value>,
}

/// Reads and checks the file; errors name the file and the entry.
pub fn load(path: &Path) -> Result<LimitRules, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::ReadLimits {
        path: path.to_owned(),
        source,
    })?;
    parse(&text).map_err(|message| ConfigError::BadLimits {
        path: path.to_owned(),
        message,
    })
}

/// A limit: a duration from 1 s to 30 days.
fn limit(v: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(v.trim()).map_err(|e| e.to_string())?;
    crate::domain::limit_in_range(d).map_err(|range| format!("a limit {range}"))
}

/// A value as an error message shows it (TOML-like, short).
fn show(v: &toml::Value) -> String {
    match v {
        toml::Value::String(s) => format!("{s:?}"),
        toml::Value::Integer(i) => i.to_string(),
        toml::Value::Float(f) => f.to_string(),
        toml::Value::Boolean(b) => b.to_string(),
        toml::Value::Datetime(d) => d.to_string(),
        toml::Value::Array(_) => "[…]".into(),
        toml::Value::Table(_) => "{…}".into(),
    }
}

/// One entry's value: a limit as a string, or an inline table.
fn rule(v: &toml::Value) -> Result<Rule, String> {
    match v {
        toml::Value::String(s) => Ok(Rule::limit(limit(s)?)),
        toml::Value::Table(t) => {
            if let Some(other) = t.keys().find(|k| *k != "limit" && *k != "alone_after") {
                return Err(format!(
                    "unknown key {other:?} (expected limit and/or alone_after)"
                ));
            }
            // The string under `key`, if set.
            let part = |key: &str| match t.get(key) {
                None => Ok(None),
                Some(v) => (v.as_str().map(Some)).ok_or_else(|| {
                    format!("{key} must be a string like \"30m\", not {}", show(v))
                }),
            };
            let alone = |s| parse_alone_after(s).map_err(|e| format!("alone_after {e}"));
            let rule = Rule {
                limit: part("limit")?.map(limit).transpose()?,
                alone_after: part("alone_after")?.map(alone).transpose()?,
            };
            if rule.is_empty() {
                return Err("sets neither limit nor alone_after".into());
            }
            Ok(rule)
        }
        other => Err(format!(
            "must be a limit like \"2h\" or a table like {{ limit = \"2h\", alone_after = \"30m\" }}, not {}",
            show(other)
        )),
    }
}

/// Parses the text of a limits file; the error names the entry and the range.
pub fn parse(text: &str) -> Result<LimitRules, String> {
    let file: LimitsFile = toml::from_str(text).map_err(|e| e.to_string())?;
    let convert = |table: &str, map: BTreeMap<String, toml::Value>| {
        map.into_iter()
            .map(|(k, v)| {
                if k.is_empty() {
                    return Err(format!("[{table}] has an empty key"));
                }
                let r = rule(&v).map_err(|e| format!("[{table}] {k:?} = {}: {e}", show(&v)))?;
                Ok((k, r))
            })
            .collect::<Result<Vec<_>, String>>()
    };
    Ok(LimitRules {
        rooms: convert("rooms", file.rooms)?,
        prefixes: convert("prefixes", file.prefixes)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{AloneAfter, Limits, RoomId};

    #[test]
    fn limits_file_sets_limits_and_the_alone_rule_per_room_and_prefix() {
        let m = |n: u64| Duration::from_secs(60 * n);
        let rules = parse(
            r#"
            [rooms]
            "board" = "2h"
            "kiosk" = { alone_after = "5m" }
            "town-hall" = { limit = "3h", alone_after = "off" }
            [prefixes]
            "webinar-" = { limit = "3h" }
            "bot-" = { alone_after = "off" }
            "web" = "10m"
            "#,
        )
        .unwrap();
        let town_hall = Rule {
            limit: Some(m(180)),
            alone_after: Some(AloneAfter::Off),
        };
        let expected = [
            ("board", Rule::limit(m(120))),
            ("kiosk", Rule::alone(AloneAfter::After(m(5)))),
            ("town-hall", town_hall),
        ];
        assert_eq!(rules.rooms, expected.map(|(k, r)| (k.to_owned(), r)));
        let l = Limits::new(m(30))
            .with_alone_default(Some(m(20)))
            .with_full_rules(rules.rooms, rules.prefixes);
        let room = |r| RoomId::parse(r).unwrap();
        assert_eq!(l.alone_after(&room("kiosk")), Some(m(5)));
        assert_eq!(l.for_room(&room("kiosk")), m(30));
        assert_eq!(l.alone_after(&room("town-hall")), None);
        assert_eq!(l.alone_after(&room("bot-7")), None);
        assert_eq!(l.alone_after(&room("webinar-1")), Some(m(20)));
        assert_eq!(l.for_room(&room("webinar-1")), m(180));
        assert_eq!(l.for_room(&room("board")), m(120));
        assert_eq!(l.for_room(&room("webby")), m(10));
    }

    #[test]
    fn limits_file_names_bad_entries() {
        for (text, needles) in [
            ("[rooms]\nx = \"soon\"\n", &["\"x\""][..]),
            ("[other]\n", &[]),
            ("[rooms]\n\"\" = \"1h\"\n", &["empty key"]),
            (
                "[rooms]\nk = { alone_after = \"soon\" }\n",
                &["\"k\"", "alone_after is not \"off\""],
            ),
            (
                "[rooms]\nk = { alone_after = \"0s\" }\n",
                &["\"k\"", "alone_after must be from 1s"],
            ),
            (
                "[rooms]\nk = { alone_after = \"31days\" }\n",
                &["alone_after must be from 1s to 30days"],
            ),
            ("[rooms]\nk = { limit = \"off\" }\n", &["\"k\""]),
            (
                "[prefixes]\np = { alone = \"5m\" }\n",
                &["[prefixes]", "\"p\"", "unknown key \"alone\""],
            ),
            ("[rooms]\nk = {}\n", &["neither limit nor alone_after"]),
            ("[rooms]\nk = 5\n", &["\"k\"", "must be a limit"]),
            (
                "[rooms]\nk = { alone_after = 300 }\n",
                &["alone_after must be a string"],
            ),
        ] {
            let err = parse(text).unwrap_err();
            for n in needles {
                assert!(err.contains(n), "{text}: {err} lacks {n}");
            }
        }
    }
}
