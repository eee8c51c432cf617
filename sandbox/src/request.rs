//! Request bodies as the REST handlers read them: pure parsing of untrusted
//! bytes, kept out of the HTTP adapter so the fuzz target can reach it.

use std::collections::HashMap;

/// A form or JSON body as flat string fields (`user[name]` in a form,
/// `{"user":{"name":…}}` in JSON both become `user[name]`; a JSON array of
/// strings becomes one comma-separated value). `content_type` is the
/// request's header; the error names what was wrong with the body.
pub fn fields(
    content_type: Option<&str>,
    body: &[u8],
) -> Result<HashMap<String, String>, &'static str> {
    let json = content_type.is_some_and(|v| v.starts_with("application/json"));
    if !json {
        return serde_urlencoded::from_bytes(body).map_err(|_| "malformed form body");
    }
    let value: serde_json::Value =
        serde_json::from_slice(body).map_err(|_| "malformed JSON body")?;
    let serde_json::Value::Object(map) = value else {
        return Err("the JSON body must be an object");
    };
    let mut out = HashMap::new();
    for (k, v) in map {
        match v {
            serde_json::Value::String(s) => {
                out.insert(k, s);
            }
            serde_json::Value::Object(inner) => {
                for (ik, iv) in inner {
                    if let serde_json::Value::String(s) = iv {
                        out.insert(format!("{k}[{ik}]"), s);
                    }
                }
            }
            serde_json::Value::Array(items) => {
                let joined: Vec<&str> = items.iter().filter_map(|i| i.as_str()).collect();
                out.insert(k, joined.join(","));
            }
            _ => {}
        }
    }
    Ok(out)
}

/// The body of `POST /_sandbox/voice`: `(access_key, on)`. JSON gives `on`
/// as a boolean (or the string a form sends); a form gives `true` or `false`.
/// The error names the field that was wrong.
pub fn voice(content_type: Option<&str>, body: &[u8]) -> Result<(String, bool), &'static str> {
    let json = content_type.is_some_and(|v| v.starts_with("application/json"));
    let (key, on) = if json {
        let value: serde_json::Value =
            serde_json::from_slice(body).map_err(|_| "malformed JSON body")?;
        let serde_json::Value::Object(mut map) = value else {
            return Err("the JSON body must be an object");
        };
        let key = match map.remove("access_key") {
            Some(serde_json::Value::String(k)) => Some(k),
            None => None,
            Some(_) => return Err("access_key must be a string"),
        };
        let on = match map.remove("on") {
            Some(serde_json::Value::Bool(b)) => Some(b),
            Some(serde_json::Value::String(s)) => Some(flag(&s)?),
            None => None,
            Some(_) => return Err(ON_INVALID),
        };
        (key, on)
    } else {
        let form: HashMap<String, String> =
            serde_urlencoded::from_bytes(body).map_err(|_| "malformed form body")?;
        let on = form.get("on").map(|s| flag(s)).transpose()?;
        (form.get("access_key").cloned(), on)
    };
    let key = key
        .filter(|k| !k.is_empty())
        .ok_or("access_key is required")?;
    let on = on.ok_or("on is required (true or false)")?;
    Ok((key, on))
}

const ON_INVALID: &str = "on must be true or false";

fn flag(value: &str) -> Result<bool, &'static str> {
    match value {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(ON_INVALID),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn voice_bodies_in_json_and_form() {
        let json = Some("application/json");
        assert_eq!(
            voice(json, br#"{"access_key":"k1","on":true}"#),
            Ok(("k1".into(), true))
        );
        assert_eq!(
            voice(json, br#"{"access_key":"k1","on":"false"}"#),
            Ok(("k1".into(), false))
        );
        assert_eq!(
            voice(None, b"access_key=k1&on=false"),
            Ok(("k1".into(), false))
        );
        assert_eq!(
            voice(
                Some("application/x-www-form-urlencoded"),
                b"on=true&access_key=k2"
            ),
            Ok(("k2".into(), true))
        );
    }

    #[test]
    fn bad_voice_bodies_name_the_field() {
        let json = Some("application/json");
        assert_eq!(
            voice(json, br#"{"on":true}"#),
            Err("access_key is required")
        );
        assert_eq!(
            voice(json, br#"{"access_key":"","on":true}"#),
            Err("access_key is required")
        );
        assert_eq!(
            voice(json, br#"{"access_key":7,"on":true}"#),
            Err("access_key must be a string")
        );
        assert_eq!(
            voice(json, br#"{"access_key":"k"}"#),
            Err("on is required (true or false)")
        );
        assert_eq!(
            voice(json, br#"{"access_key":"k","on":1}"#),
            Err("on must be true or false")
        );
        assert_eq!(
            voice(json, br#"{"access_key":"k","on":"yes"}"#),
            Err("on must be true or false")
        );
        assert_eq!(
            voice(None, b"access_key=k&on=1"),
            Err("on must be true or false")
        );
        assert_eq!(voice(None, b"on=true"), Err("access_key is required"));
        assert_eq!(
            voice(json, b"[true]"),
            Err("the JSON body must be an object")
        );
        assert_eq!(voice(json, b"{"), Err("malformed JSON body"));
    }

    #[test]
    fn form_and_json_bodies_become_the_same_fields() {
        let form = fields(None, b"user%5Bname%5D=Ann&name=room").unwrap();
        let json = fields(
            Some("application/json"),
            br#"{"user":{"name":"Ann"},"name":"room"}"#,
        )
        .unwrap();
        assert_eq!(form, json);
        assert_eq!(form["user[name]"], "Ann");
        let list = fields(
            Some("application/json; charset=utf-8"),
            br#"{"types":["room_update","x",1]}"#,
        )
        .unwrap();
        assert_eq!(list["types"], "room_update,x");
    }

    #[test]
    fn bad_bodies_say_what_is_wrong() {
        assert_eq!(
            fields(Some("application/json"), b"{").unwrap_err(),
            "malformed JSON body"
        );
        assert_eq!(
            fields(Some("application/json"), b"[]").unwrap_err(),
            "the JSON body must be an object"
        );
        let ignored = fields(Some("application/json"), br#"{"a":1,"b":null}"#).unwrap();
        assert!(ignored.is_empty(), "non-string values are left out");
    }
}
