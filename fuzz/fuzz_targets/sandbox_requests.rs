//! Fuzzes what the eyeson sandbox parses from clients: REST parameters (query
//! string, form and JSON, including the voice, bots and faults controls and
//! the users filter) and the SDP offer it answers. Nothing may panic; a body either
//! yields fields or an error that says what was wrong; an answer never
//! carries the offer's candidates or ICE credentials.
#![no_main]

use eyeson_sandbox::{request, sdp};
use libfuzzer_sys::fuzz_target;

const UFRAG: &str = "fUzZ";
const PWD: &str = "fuzzfuzzfuzzfuzzfuzzfuzz";

fuzz_target!(|data: &[u8]| {
    let (kind, body) = data.split_first().unwrap_or((&0, &[]));
    let content_type = match kind % 3 {
        0 => None,
        1 => Some("application/json"),
        _ => Some("application/x-www-form-urlencoded"),
    };
    if let Err(e) = request::fields(content_type, body) {
        assert!(
            e.starts_with("malformed") || e.starts_with("the JSON body"),
            "{e}"
        );
    }
    // The same bytes as a query string too: the body wins where both are given.
    let query = std::str::from_utf8(body).ok();
    match request::params(query, content_type, body).and_then(|p| request::voice(&p)) {
        Ok((key, _)) => assert!(!key.is_empty()),
        Err(e) => assert!(
            ["malformed", "the JSON body", "access_key ", "on "]
                .iter()
                .any(|p| e.starts_with(p)),
            "{e}"
        ),
    }

    // The testing controls and the users filter read the same parameters.
    if let Ok(p) = request::params(query, content_type, body) {
        if let Ok(bot) = request::bot(&p) {
            assert!(!bot.room_id.is_empty() && !bot.name.trim().is_empty());
        }
        let _ = request::online(&p);
        if let Ok(f) = request::faults(&p) {
            assert!(f.path.starts_with('/'));
            assert!(f.standing || !f.faults.is_empty());
        }
    }

    let offer = String::from_utf8_lossy(body);
    let answer = sdp::answer(&offer, UFRAG, PWD);
    for line in answer.lines() {
        assert!(!line.starts_with("a=candidate:"), "{line}");
        if let Some(ufrag) = line.strip_prefix("a=ice-ufrag:") {
            assert_eq!(ufrag, UFRAG);
        }
        if let Some(pwd) = line.strip_prefix("a=ice-pwd:") {
            assert_eq!(pwd, PWD);
        }
    }
});
