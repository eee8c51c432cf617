//! eyeson's endpoints. Clients build percent-encoded paths with the
//! functions (relative to the API base: `/rooms/a%20b`); servers route with
//! the `*_ROUTE` templates (axum's `{name}` syntax). The tests check that
//! each function's path matches its template.
//!
//! A path segment is percent-encoded exactly as the `url` crate's
//! `path_segments_mut().push` does for http(s) URLs, so a room id with
//! spaces or slashes stays one segment. `""`, `"."` and `".."` are refused:
//! URL normalisation would turn them into a different endpoint.

use std::fmt;

/// `GET /webhooks` (the registration), `POST /webhooks` (register).
pub const WEBHOOKS: &str = "/webhooks";
/// `GET /rooms` (running meetings), `POST /rooms` (create or join).
pub const ROOMS: &str = "/rooms";
/// Route of [`webhook`]: `DELETE /webhooks/{id}`.
pub const WEBHOOK_ROUTE: &str = "/webhooks/{id}";
/// Route of [`room`]: `DELETE /rooms/{room_id}` (API key) and the
/// access-key calls `GET`/`DELETE /rooms/{access_key}`; the
/// `Authorization` header tells them apart.
pub const ROOM_ROUTE: &str = "/rooms/{key}";
/// Route of [`guest`]: `POST /guests/{guest_token}`.
pub const GUEST_ROUTE: &str = "/guests/{guest_token}";
/// Route of [`messages`]: `POST /rooms/{access_key}/messages`.
pub const MESSAGES_ROUTE: &str = "/rooms/{key}/messages";
/// Route of [`room_users`]: `GET /rooms/{room_id}/users` (API key), the
/// participants of the room's meeting. (`{key}` like [`ROOM_ROUTE`]: a
/// router needs one name per position; here it is a room id.)
pub const ROOM_USERS_ROUTE: &str = "/rooms/{key}/users";
/// The query parameter of [`room_users`]: `true` lists only the users
/// connected now; `false`, like leaving it out, every participant.
pub const ONLINE: &str = "online";

/// A path segment that cannot be sent: empty, `.` or `..`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InvalidSegment(pub String);

impl fmt::Display for InvalidSegment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid path segment {:?}", self.0)
    }
}

impl std::error::Error for InvalidSegment {}

/// `/webhooks/{id}`.
pub fn webhook(id: &str) -> Result<String, InvalidSegment> {
    Ok(format!("{WEBHOOKS}/{}", segment(id)?))
}

/// `/rooms/{room_id}` (or `/rooms/{access_key}`).
pub fn room(id: &str) -> Result<String, InvalidSegment> {
    Ok(format!("{ROOMS}/{}", segment(id)?))
}

/// `/guests/{guest_token}`.
pub fn guest(token: &str) -> Result<String, InvalidSegment> {
    Ok(format!("/guests/{}", segment(token)?))
}

/// `/rooms/{access_key}/messages`.
pub fn messages(access_key: &str) -> Result<String, InvalidSegment> {
    Ok(format!("{ROOMS}/{}/messages", segment(access_key)?))
}

/// `/rooms/{room_id}/users`, with `?online=true` or `?online=false` when
/// `online` is given (eyeson-go sends it only when asked; left out, eyeson
/// lists every participant, as with `false`).
pub fn room_users(room_id: &str, online: Option<bool>) -> Result<String, InvalidSegment> {
    let path = format!("{ROOMS}/{}/users", segment(room_id)?);
    Ok(match online {
        Some(online) => format!("{path}?{ONLINE}={online}"),
        None => path,
    })
}

/// One percent-encoded path segment: the bytes `url` (2.5.8) encodes in a
/// segment of an http(s) URL (controls, space, `"#%/<>?\`{}` and every
/// non-ASCII byte of the UTF-8), as `%XX` in uppercase hex. Unlike `url`,
/// tab, CR and LF are encoded too rather than dropped.
pub fn segment(s: &str) -> Result<String, InvalidSegment> {
    if s.is_empty() || s == "." || s == ".." {
        return Err(InvalidSegment(s.to_owned()));
    }
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    // The printable ASCII `url`'s path-segment set holds for http(s).
    const ENCODED: &[u8] = b" \"#%/<>?\\`{}";
    let mut out = String::with_capacity(s.len());
    for &b in s.as_bytes() {
        let encode = !b.is_ascii() || b.is_ascii_control() || ENCODED.contains(&b);
        if encode {
            out.push('%');
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 15)]));
        } else {
            out.push(char::from(b));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Fills a route template's one `{…}` with `value`.
    fn fill(route: &str, value: &str) -> String {
        let (head, rest) = route.split_once('{').unwrap();
        let (_, tail) = rest.split_once('}').unwrap();
        format!("{head}{value}{tail}")
    }

    #[test]
    fn paths_match_their_routes() {
        assert_eq!(webhook("w1").unwrap(), fill(WEBHOOK_ROUTE, "w1"));
        assert_eq!(room("r").unwrap(), fill(ROOM_ROUTE, "r"));
        assert_eq!(guest("g").unwrap(), fill(GUEST_ROUTE, "g"));
        assert_eq!(messages("k").unwrap(), fill(MESSAGES_ROUTE, "k"));
        assert_eq!(room_users("r", None).unwrap(), fill(ROOM_USERS_ROUTE, "r"));
    }

    #[test]
    fn room_users_carry_the_online_filter_in_the_query() {
        assert_eq!(
            room_users("a b", Some(true)).unwrap(),
            "/rooms/a%20b/users?online=true"
        );
        assert_eq!(
            room_users("r", Some(false)).unwrap(),
            "/rooms/r/users?online=false"
        );
        assert_eq!(room_users("..", None), Err(InvalidSegment("..".into())));
    }

    #[test]
    fn a_room_id_stays_one_segment() {
        assert_eq!(room("a b/c?d").unwrap(), "/rooms/a%20b%2Fc%3Fd");
        assert_eq!(segment("100%").unwrap(), "100%25");
        assert_eq!(segment("é\\{}`").unwrap(), "%C3%A9%5C%7B%7D%60");
        assert_eq!(
            segment("a-b_c.d~e!$&'()*+,;=:@").unwrap(),
            "a-b_c.d~e!$&'()*+,;=:@"
        );
        assert_eq!(segment("\u{7f}\n").unwrap(), "%7F%0A");
        for bad in ["", ".", ".."] {
            assert_eq!(room(bad), Err(InvalidSegment(bad.to_owned())));
        }
        assert_eq!(segment("...").unwrap(), "...");
    }
}
