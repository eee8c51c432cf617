//! The `--limits` file, read once at start: its rules seed the store's
//! (see [`crate::limits`]).
//!
//! ```toml
//! [rooms]            # exact room ids
//! "board-room" = "2h"
//! [prefixes]         # longest matching prefix wins
//! "webinar-" = "3h"
//! ```

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

use super::ConfigError;

/// The rules of a limits file (none without one).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LimitRules {
    /// Exact room ids and their limits.
    pub rooms: Vec<(String, Duration)>,
    /// Room id prefixes and their limits.
    pub prefixes: Vec<(String, Duration)>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LimitsFile {
    #[serde(default)]
    rooms: BTreeMap<String, String>,
    #[serde(default)]
    prefixes: BTreeMap<String, String>,
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

/// Parses the text of a limits file; the error names the entry and the range.
pub fn parse(text: &str) -> Result<LimitRules, String> {
    let file: LimitsFile = toml::from_str(text).map_err(|e| e.to_string())?;
    let convert = |table: &str, map: BTreeMap<String, String>| {
        map.into_iter()
            .map(|(k, v)| {
                if k.is_empty() {
                    return Err(format!("[{table}] has an empty key"));
                }
                let d = humantime::parse_duration(&v)
                    .map_err(|e| format!("[{table}] {k:?} = {v:?}: {e}"))?;
                crate::domain::limit_in_range(d)
                    .map_err(|range| format!("[{table}] {k:?} = {v:?}: a limit {range}"))?;
                Ok((k, d))
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
    use crate::domain::{Limits, RoomId};

    #[test]
    fn limits_file_parses_and_names_bad_entries() {
        let rules = parse("[rooms]\n\"board\" = \"2h\"\n[prefixes]\n\"web\" = \"10m\"\n").unwrap();
        let l = Limits::new(Duration::from_secs(60)).with_rules(rules.rooms, rules.prefixes);
        assert_eq!(
            l.for_room(&RoomId::parse("board").unwrap()),
            Duration::from_secs(7200)
        );
        assert_eq!(
            l.for_room(&RoomId::parse("webby").unwrap()),
            Duration::from_secs(600)
        );
        let err = parse("[rooms]\nx = \"soon\"\n").unwrap_err();
        assert!(err.contains("\"x\""), "{err}");
        assert!(parse("[other]\n").is_err());
        let err = parse("[rooms]\n\"\" = \"1h\"\n").unwrap_err();
        assert!(err.contains("empty key"), "{err}");
    }
}
