//! Request parameters as the REST handlers read them: pure parsing of
//! untrusted bytes, kept out of the HTTP adapter so the fuzz target can
//! reach it.
//!
//! eyeson (a Rails app) merges the query string with a form or JSON body,
//! and some of its clients send every parameter in the query string; so
//! [`params`] reads all three, the body winning where both name a field.

use std::collections::HashMap;
use std::time::Duration;

use axum::http::Method;

use crate::script::Fault;

/// Flat string fields, as every handler reads its parameters.
pub type Params = HashMap<String, String>;

/// The parameters of a request: the query string's fields, overridden by
/// the body's ([`fields`]). An empty body adds nothing whatever its content
/// type (a client that sends everything in the query may still say JSON).
pub fn params(
    query: Option<&str>,
    content_type: Option<&str>,
    body: &[u8],
) -> Result<Params, &'static str> {
    let mut out: Params = match query {
        Some(q) if !q.is_empty() => {
            serde_urlencoded::from_str(q).map_err(|_| "malformed query string")?
        }
        _ => Params::new(),
    };
    if !body.iter().all(u8::is_ascii_whitespace) {
        out.extend(fields(content_type, body)?);
    }
    Ok(out)
}

/// A form or JSON body as flat string fields (`user[name]` in a form,
/// `{"user":{"name":…}}` in JSON both become `user[name]`; a JSON array of
/// strings becomes one comma-separated value; booleans and numbers become
/// their text, as in a form). `content_type` is the request's header; the
/// error names what was wrong with the body.
pub fn fields(content_type: Option<&str>, body: &[u8]) -> Result<Params, &'static str> {
    let json = content_type.is_some_and(|v| v.starts_with("application/json"));
    if !json {
        return serde_urlencoded::from_bytes(body).map_err(|_| "malformed form body");
    }
    let value: serde_json::Value =
        serde_json::from_slice(body).map_err(|_| "malformed JSON body")?;
    let serde_json::Value::Object(map) = value else {
        return Err("the JSON body must be an object");
    };
    let mut out = Params::new();
    for (k, v) in map {
        match v {
            serde_json::Value::Object(inner) => {
                for (ik, iv) in inner {
                    if let Some(s) = scalar(iv) {
                        out.insert(format!("{k}[{ik}]"), s);
                    }
                }
            }
            serde_json::Value::Array(items) => {
                let joined: Vec<&str> = items.iter().filter_map(|i| i.as_str()).collect();
                out.insert(k, joined.join(","));
            }
            v => {
                if let Some(s) = scalar(v) {
                    out.insert(k, s);
                }
            }
        }
    }
    Ok(out)
}

/// A JSON string, boolean or number as the text a form would carry.
fn scalar(value: serde_json::Value) -> Option<String> {
    match value {
        serde_json::Value::String(s) => Some(s),
        serde_json::Value::Bool(b) => Some(b.to_string()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// The parameters of `POST /_sandbox/voice`: `(access_key, on)`; `on` is
/// `true` or `false`. The error names the field that was wrong.
pub fn voice(params: &Params) -> Result<(String, bool), &'static str> {
    let key = params
        .get("access_key")
        .filter(|k| !k.is_empty())
        .ok_or("access_key is required")?;
    let on = flag(params.get("on"))?;
    Ok((key.clone(), on))
}

/// The parameters of `POST /_sandbox/lock`: `(api_key, on)`.
pub fn lock(params: &Params) -> Result<(String, bool), &'static str> {
    let key = params
        .get("api_key")
        .filter(|k| !k.is_empty())
        .ok_or("api_key is required")?;
    let on = flag(params.get("on"))?;
    Ok((key.clone(), on))
}

/// A `POST /_sandbox/bots` request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BotRequest {
    /// The room whose meeting the bot joins or leaves.
    pub room_id: String,
    /// The bot's display name, which also identifies it in the meeting.
    pub name: String,
    /// Joins (true) or leaves (false) the call.
    pub on: bool,
}

/// The parameters of `POST /_sandbox/bots`: `room_id`, `name` (not blank)
/// and `on`.
pub fn bot(params: &Params) -> Result<BotRequest, &'static str> {
    let room_id = params
        .get("room_id")
        .filter(|r| !r.is_empty())
        .ok_or("room_id is required")?;
    let name = params
        .get("name")
        .filter(|n| !n.trim().is_empty())
        .ok_or("name is required")?;
    let on = flag(params.get("on"))?;
    Ok(BotRequest {
        room_id: room_id.clone(),
        name: name.clone(),
        on,
    })
}

/// The `online` parameter of `GET /rooms/{room_id}/users`: whether to list
/// only the users connected now. Absent means false (every participant).
pub fn online(params: &Params) -> Result<bool, &'static str> {
    match params.get(eyeson_api::paths::ONLINE).map(String::as_str) {
        None | Some("false") => Ok(false),
        Some("true") => Ok(true),
        Some(_) => Err("online must be true or false"),
    }
}

/// A scripted fault request: where, which faults, and whether they stand.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FaultRequest {
    /// The method of the route.
    pub method: Method,
    /// The route's path (`{…}` segments match any segment).
    pub path: String,
    /// The faults, in order.
    pub faults: Vec<Fault>,
    /// A standing fault (its first, or none to clear) rather than a queue.
    pub standing: bool,
}

/// The parameters of `POST /_sandbox/faults`: `method`, `path` (starting
/// with `/`), `faults` (comma-separated: a status, `pass`, `hang`, `cut`,
/// `delay:MS`) and `standing` (`true`/`false`, default false).
pub fn faults(params: &Params) -> Result<FaultRequest, &'static str> {
    let method = params
        .get("method")
        .filter(|m| !m.is_empty())
        .ok_or("method is required")?;
    let method = Method::from_bytes(method.to_ascii_uppercase().as_bytes())
        .map_err(|_| "method is not an HTTP method")?;
    let path = params
        .get("path")
        .filter(|p| p.starts_with('/'))
        .ok_or("path is required (starting with /)")?;
    let faults = params
        .get("faults")
        .map(String::as_str)
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|f| !f.is_empty())
        .map(fault)
        .collect::<Result<Vec<_>, _>>()?;
    let standing = match params.get("standing") {
        None => false,
        given => flag(given).map_err(|_| "standing must be true or false")?,
    };
    if faults.is_empty() && !standing {
        return Err("faults is required (comma-separated)");
    }
    Ok(FaultRequest {
        method,
        path: path.clone(),
        faults,
        standing,
    })
}

fn fault(word: &str) -> Result<Fault, &'static str> {
    const BAD: &str = "a fault is a status (100-599), pass, hang, cut or delay:MS";
    match word {
        "pass" => Ok(Fault::Pass),
        "hang" => Ok(Fault::Hang),
        "cut" => Ok(Fault::Cut),
        _ => match word.strip_prefix("delay:") {
            Some(ms) => ms
                .parse()
                .map(|ms| Fault::Delay(Duration::from_millis(ms)))
                .map_err(|_| BAD),
            None => match word.parse::<u16>() {
                Ok(status @ 100..=599) => Ok(Fault::Status(status)),
                _ => Err(BAD),
            },
        },
    }
}

fn flag(value: Option<&String>) -> Result<bool, &'static str> {
    match value.map(String::as_str) {
        Some("true") => Ok(true),
        Some("false") => Ok(false),
        Some(_) => Err("on must be true or false"),
        None => Err("on is required (true or false)"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const JSON: Option<&str> = Some("application/json");

    fn voice_of(content_type: Option<&str>, body: &[u8]) -> Result<(String, bool), &'static str> {
        voice(&params(None, content_type, body)?)
    }

    #[test]
    fn voice_bodies_in_json_form_and_query() {
        assert_eq!(
            voice_of(JSON, br#"{"access_key":"k1","on":true}"#),
            Ok(("k1".into(), true))
        );
        assert_eq!(
            voice_of(JSON, br#"{"access_key":"k1","on":"false"}"#),
            Ok(("k1".into(), false))
        );
        assert_eq!(
            voice_of(None, b"access_key=k1&on=false"),
            Ok(("k1".into(), false))
        );
        assert_eq!(
            voice(&params(Some("on=true&access_key=k2"), None, b"").unwrap()),
            Ok(("k2".into(), true))
        );
    }

    #[test]
    fn bad_voice_bodies_name_the_field() {
        assert_eq!(
            voice_of(JSON, br#"{"on":true}"#),
            Err("access_key is required")
        );
        assert_eq!(
            voice_of(JSON, br#"{"access_key":"","on":true}"#),
            Err("access_key is required")
        );
        assert_eq!(
            voice_of(JSON, br#"{"access_key":"k"}"#),
            Err("on is required (true or false)")
        );
        assert_eq!(
            voice_of(JSON, br#"{"access_key":"k","on":1}"#),
            Err("on must be true or false")
        );
        assert_eq!(
            voice_of(JSON, br#"{"access_key":"k","on":"yes"}"#),
            Err("on must be true or false")
        );
        assert_eq!(
            voice_of(None, b"access_key=k&on=1"),
            Err("on must be true or false")
        );
        assert_eq!(voice_of(None, b"on=true"), Err("access_key is required"));
        assert_eq!(
            voice_of(JSON, b"[true]"),
            Err("the JSON body must be an object")
        );
        assert_eq!(voice_of(JSON, b"{"), Err("malformed JSON body"));
        assert_eq!(
            lock(&params(Some("api_key=k"), None, b"").unwrap()),
            Err("on is required (true or false)")
        );
    }

    #[test]
    fn form_json_and_query_become_the_same_fields() {
        let form = fields(None, b"user%5Bname%5D=Ann&name=room").unwrap();
        let json = fields(JSON, br#"{"user":{"name":"Ann"},"name":"room"}"#).unwrap();
        let query = params(Some("user[name]=Ann&name=room"), JSON, b"").unwrap();
        assert_eq!(form, json);
        assert_eq!(form, query);
        assert_eq!(form["user[name]"], "Ann");
        let list = fields(
            Some("application/json; charset=utf-8"),
            br#"{"types":["room_update","x",1]}"#,
        )
        .unwrap();
        assert_eq!(list["types"], "room_update,x");
    }

    #[test]
    fn the_body_wins_over_the_query() {
        let merged = params(Some("id=q&name=from-query"), None, b"id=b").unwrap();
        assert_eq!(merged["id"], "b");
        assert_eq!(merged["name"], "from-query");
        let merged = params(Some("on=false&access_key=q"), JSON, br#"{"on":true}"#).unwrap();
        assert_eq!(voice(&merged), Ok(("q".into(), true)));
    }

    #[test]
    fn bad_input_says_what_is_wrong() {
        assert_eq!(fields(JSON, b"{").unwrap_err(), "malformed JSON body");
        assert_eq!(
            fields(JSON, b"[]").unwrap_err(),
            "the JSON body must be an object"
        );
        let scalars = fields(JSON, br#"{"a":1,"b":null,"c":false}"#).unwrap();
        assert_eq!(scalars.get("a").map(String::as_str), Some("1"));
        assert_eq!(scalars.get("b"), None, "null is left out");
        assert_eq!(scalars.get("c").map(String::as_str), Some("false"));
    }

    #[test]
    fn bot_requests_name_the_bad_field() {
        let form = |body: &str| bot(&params(None, None, body.as_bytes()).unwrap());
        assert_eq!(
            form("room_id=r%201&name=Recorder&on=true"),
            Ok(BotRequest {
                room_id: "r 1".into(),
                name: "Recorder".into(),
                on: true
            })
        );
        let json = bot(&params(
            None,
            JSON,
            br#"{"room_id":"r","name":"Recorder","on":false}"#,
        )
        .unwrap());
        assert_eq!(json.map(|b| b.on), Ok(false));
        assert_eq!(form("name=x&on=true"), Err("room_id is required"));
        assert_eq!(form("room_id=&name=x&on=true"), Err("room_id is required"));
        assert_eq!(form("room_id=r&on=true"), Err("name is required"));
        assert_eq!(form("room_id=r&name=%20&on=true"), Err("name is required"));
        assert_eq!(
            form("room_id=r&name=x"),
            Err("on is required (true or false)")
        );
        assert_eq!(
            form("room_id=r&name=x&on=1"),
            Err("on must be true or false")
        );
    }

    #[test]
    fn online_is_true_false_or_absent() {
        let query = |q: &str| online(&params(Some(q), None, b"").unwrap());
        assert_eq!(query(""), Ok(false));
        assert_eq!(query("online=false"), Ok(false));
        assert_eq!(query("online=true"), Ok(true));
        assert_eq!(query("online=1"), Err("online must be true or false"));
        assert_eq!(query("online="), Err("online must be true or false"));
    }

    #[test]
    fn fault_requests_read_every_kind_and_refuse_the_rest() {
        let form = |body: &str| faults(&params(None, None, body.as_bytes()).unwrap());
        let r = form("method=delete&path=/rooms/r1&faults=503,hang,cut,delay:250,pass").unwrap();
        assert_eq!(r.method, Method::DELETE);
        assert_eq!(r.path, "/rooms/r1");
        assert_eq!(
            r.faults,
            [
                Fault::Status(503),
                Fault::Hang,
                Fault::Cut,
                Fault::Delay(Duration::from_millis(250)),
                Fault::Pass
            ]
        );
        assert!(!r.standing);
        let clear = form("method=GET&path=/rooms&standing=true").unwrap();
        assert!(clear.standing && clear.faults.is_empty());
        assert!(form("method=GET&path=/rooms").is_err(), "nothing to do");
        assert!(form("method=GET&path=rooms&faults=503").is_err());
        assert!(form("path=/rooms&faults=503").is_err());
        assert!(form("method=GET&path=/rooms&faults=99").is_err());
        assert!(form("method=GET&path=/rooms&faults=delay:x").is_err());
        assert!(form("method=GET&path=/rooms&faults=503&standing=yes").is_err());
    }
}
