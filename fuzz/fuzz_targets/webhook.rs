//! Fuzzes what `POST /webhook` runs on untrusted bytes before anything
//! touches state: the signature check and the delivery parser, then the
//! pure decision. None of it may panic; a body signed with the key must
//! verify, and a flipped signature must not.
#![no_main]

use std::time::Duration;

use eyeson_hard_limit::domain::{plan, Limits, Policy};
use eyeson_hard_limit::webhook::{parse_delivery, sign, verify_signature, Event};
use libfuzzer_sys::fuzz_target;

const KEY: &[u8] = b"fuzz-api-key";

fuzz_target!(|data: &[u8]| {
    // The first 64 bytes play the signature header, the rest the body.
    let (header, body) = data.split_at(data.len().min(64));
    let _ = verify_signature(KEY, body, Some(header));

    let good = sign(KEY, body);
    assert!(verify_signature(KEY, body, Some(good.as_bytes())).is_ok());
    let mut bad = good.into_bytes();
    bad[0] = if bad[0] == b'0' { b'1' } else { b'0' };
    assert!(verify_signature(KEY, body, Some(&bad)).is_err());

    if let Ok(delivery) = parse_delivery(body) {
        if let Event::RoomUpdate(update) = delivery.event {
            let policy = Policy {
                limits: Limits::new(Duration::from_secs(1800)),
                grace: Duration::from_secs(0),
            };
            let _ = plan(&update, &policy);
        }
    }
});
