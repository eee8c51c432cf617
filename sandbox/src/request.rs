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

#[cfg(test)]
mod tests {
    use super::*;

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
