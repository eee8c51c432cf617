//! An SDP answer derived from the browser's offer, so the sandbox needs no
//! WebRTC stack of its own. The browser accepts it (the SDK emits `accept`)
//! and ICE simply stays `new`: no media ever flows, nothing errors.
//!
//! The recipe (see shared/eyeson-sdk.md): keep every m-line as offered
//! (`sendrecv` audio and video with their `msid`, the data channel), drop the
//! candidates, answer `a=setup:active`, use fresh ICE credentials, and shift
//! the SSRC numbers so they do not collide with the browser's own.

/// How far the answer's SSRCs are moved from the offer's.
const SSRC_SHIFT: u32 = 0x1000_0001;

/// The answer for `offer`, with the ICE credentials `ufrag` and `pwd`
/// (ufrag ≥ 4, pwd ≥ 22 characters of `[A-Za-z0-9+/]`).
pub fn answer(offer: &str, ufrag: &str, pwd: &str) -> String {
    let mut out = String::with_capacity(offer.len());
    for line in offer.lines() {
        let line = line.trim_end_matches('\r');
        if line.is_empty() || line.starts_with("a=candidate:") || line == "a=end-of-candidates" {
            continue;
        }
        let rewritten = if line.starts_with("a=setup:") {
            "a=setup:active".to_owned()
        } else if line.starts_with("a=ice-ufrag:") {
            format!("a=ice-ufrag:{ufrag}")
        } else if line.starts_with("a=ice-pwd:") {
            format!("a=ice-pwd:{pwd}")
        } else if let Some(rest) = line.strip_prefix("a=ssrc:") {
            let (ssrc, tail) = rest.split_once(' ').unwrap_or((rest, ""));
            let sep = if tail.is_empty() { "" } else { " " };
            format!("a=ssrc:{}{sep}{tail}", shift(ssrc))
        } else if let Some(rest) = line.strip_prefix("a=ssrc-group:") {
            let mut parts = rest.split(' ');
            let semantics = parts.next().unwrap_or_default();
            let ssrcs: Vec<String> = parts.map(shift).collect();
            format!("a=ssrc-group:{semantics} {}", ssrcs.join(" "))
        } else {
            line.to_owned()
        };
        out.push_str(&rewritten);
        out.push_str("\r\n");
    }
    out
}

fn shift(ssrc: &str) -> String {
    match ssrc.parse::<u32>() {
        Ok(n) => n.wrapping_add(SSRC_SHIFT).max(1).to_string(),
        Err(_) => ssrc.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OFFER: &str = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0 1 2\r\n\
m=audio 9 UDP/TLS/RTP/SAVPF 111\r\nc=IN IP4 0.0.0.0\r\na=candidate:1 1 udp 1 10.0.0.1 5000 typ host\r\n\
a=end-of-candidates\r\na=ice-ufrag:abcd\r\na=ice-pwd:offerofferofferofferoffer\r\na=setup:actpass\r\n\
a=mid:0\r\na=sendrecv\r\na=msid:s1 t1\r\na=ssrc:100 cname:x\r\n\
m=video 9 UDP/TLS/RTP/SAVPF 96 97\r\na=ssrc-group:FID 200 201\r\na=ssrc:200 cname:x\r\n\
m=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\na=sctp-port:5000\r\n";

    #[test]
    fn keeps_the_media_and_replaces_what_belongs_to_the_offerer() {
        let a = answer(OFFER, "wxyz", "answeransweransweranswer");
        assert!(!a.contains("a=candidate") && !a.contains("end-of-candidates"));
        assert!(a.contains("a=setup:active\r\n") && !a.contains("actpass"));
        assert!(a.contains("a=ice-ufrag:wxyz\r\na=ice-pwd:answeransweransweranswer\r\n"));
        assert!(a.contains("a=ssrc:268435557 cname:x\r\n"), "{a}");
        assert!(a.contains("a=ssrc-group:FID 268435657 268435658\r\n"));
        assert!(a.contains("a=sendrecv\r\na=msid:s1 t1\r\n"));
        assert!(
            a.contains("m=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\na=sctp-port:5000\r\n")
        );
        assert!(a.ends_with("\r\n") && !a.contains("\r\n\r\n"));
    }

    #[test]
    fn accepts_bare_newlines() {
        let a = answer(
            &OFFER.replace("\r\n", "\n"),
            "wxyz",
            "answeransweransweranswer",
        );
        assert!(a.starts_with("v=0\r\no=- 1 2"));
    }
}
