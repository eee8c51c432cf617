//! The webhook signature: header [`SIGNATURE_HEADER`] = lowercase hex of
//! HMAC-SHA256 over the raw body bytes, keyed with the API key itself. No
//! prefix, no timestamp header: the body's `timestamp` is covered by the
//! HMAC and is the only freshness signal (checked by the receiver).

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The header that carries the signature (HTTP header names are case
/// insensitive; this is eyeson's spelling).
pub const SIGNATURE_HEADER: &str = "X-Eyeson-Signature";

fn mac(key: &[u8], body: &[u8]) -> Hmac<Sha256> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(body);
    mac
}

/// Lowercase hex HMAC-SHA256 of `body` under `key`: what eyeson sends.
pub fn sign(key: impl AsRef<[u8]>, body: impl AsRef<[u8]>) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let tag = mac(key.as_ref(), body.as_ref()).finalize().into_bytes();
    let mut out = String::with_capacity(64);
    for b in tag {
        out.push(char::from(HEX[usize::from(b >> 4)]));
        out.push(char::from(HEX[usize::from(b & 15)]));
    }
    out
}

/// Whether `header` is the signature of `body` under `key`. The tag
/// comparison is constant time (`Mac::verify_slice`); uppercase hex is
/// accepted too and surrounding whitespace ignored. Anything that is not
/// 64 hex digits is simply wrong.
pub fn verify(key: impl AsRef<[u8]>, body: impl AsRef<[u8]>, header: impl AsRef<[u8]>) -> bool {
    let header = header.as_ref().trim_ascii();
    if header.len() != 64 {
        return false;
    }
    let mut tag = [0u8; 32];
    for (i, pair) in header.chunks_exact(2).enumerate() {
        match (hex_digit(pair[0]), hex_digit(pair[1])) {
            (Some(hi), Some(lo)) => tag[i] = hi << 4 | lo,
            _ => return false,
        }
    }
    mac(key.as_ref(), body.as_ref()).verify_slice(&tag).is_ok()
}

fn hex_digit(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_is_lowercase_hex_hmac_sha256_of_the_body() {
        // RFC 4231 test case 2.
        assert_eq!(
            sign("Jefe", b"what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn verify_accepts_its_own_signature_only() {
        let body = br#"{"timestamp":1,"type":"x"}"#;
        let sig = sign(b"key", body);
        assert!(verify(b"key", body, &sig));
        assert!(verify(b"key", body, sig.to_uppercase()));
        assert!(verify(b"key", body, format!(" {sig}\t")));
        assert!(!verify(b"other", body, &sig));
        assert!(!verify(b"key", body, "zz"));
        assert!(!verify(b"key", body, ""));
        assert!(!verify(b"key", body, format!("{}zz", &sig[..62])));
        let mut tampered = body.to_vec();
        tampered[14] = b'2';
        assert!(!verify(b"key", &tampered, &sig));
    }
}
