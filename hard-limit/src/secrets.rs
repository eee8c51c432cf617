//! The service's two secrets, the eyeson API key and the admin token: a
//! redacted `Debug`, no `Display` and one greppable reader (`expose`), so
//! neither lands in a log line, an error or a URL by accident. Their checks
//! name the flag, never the value.

use std::fmt;
use std::str::FromStr;

/// The eyeson API key: the raw `Authorization` header and the webhook HMAC key.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey(String);

impl ApiKey {
    /// Checks and wraps a key. The error never contains the key.
    pub fn new(key: &str) -> Result<Self, &'static str> {
        let key = key.trim();
        if key.is_empty() {
            return Err("the API key is empty");
        }
        if !header_safe(key) {
            return Err(
                "the API key must be printable ASCII without spaces (it is sent as a header)",
            );
        }
        Ok(ApiKey(key.to_owned()))
    }

    /// Wraps a key unchecked, for clap's parser (its error would quote the
    /// key to stderr); [`ApiKey::checked`] checks it later.
    pub(crate) fn unchecked(key: &str) -> Self {
        ApiKey(key.to_owned())
    }

    /// The key checked as [`ApiKey::new`] does.
    pub fn checked(self) -> Result<Self, &'static str> {
        ApiKey::new(&self.0)
    }

    /// The key itself, for the `Authorization` header and the HMAC.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKey(<redacted>)")
    }
}

impl FromStr for ApiKey {
    type Err = &'static str;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ApiKey::new(s)
    }
}

/// The shortest `--admin-token`: guessing 16 characters over HTTP (a few
/// tries a second per address) is hopeless.
pub const MIN_ADMIN_TOKEN: usize = 16;

/// The operator token for the admin listener.
#[derive(Clone, PartialEq, Eq)]
pub struct AdminToken(String);

impl AdminToken {
    /// The token itself, for the constant-time comparison only.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The token if it can be one: printable ASCII without spaces (a
    /// header), at least [`MIN_ADMIN_TOKEN`] characters.
    pub fn checked(self) -> Result<Self, &'static str> {
        if !header_safe(&self.0) {
            return Err(
                "--admin-token must be printable ASCII without spaces (it is sent as a header)",
            );
        }
        if self.0.len() < MIN_ADMIN_TOKEN {
            return Err("--admin-token must be at least 16 characters (try: openssl rand -hex 32)");
        }
        Ok(self)
    }
}

impl fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AdminToken(<redacted>)")
    }
}

impl FromStr for AdminToken {
    type Err = std::convert::Infallible;
    /// Never fails: clap would quote a refused token in its error;
    /// [`AdminToken::checked`] checks it without repeating it.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(AdminToken(s.to_owned()))
    }
}

/// Whether `s` can be sent as a header value: non-empty printable ASCII
/// without spaces.
fn header_safe(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_graphic())
}

/// A URL as it may be logged: scheme, host, port and path; never a query,
/// fragment or user info (any may carry a token).
pub fn loggable_url(url: &str) -> String {
    let Ok(u) = reqwest::Url::parse(url) else {
        return "(not a URL)".into();
    };
    let port = u.port().map(|p| format!(":{p}")).unwrap_or_default();
    let query = if u.query().is_some() { "?…" } else { "" };
    let host = u.host_str().unwrap_or("");
    format!("{}://{host}{port}{}{query}", u.scheme(), u.path())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_redacted_and_checked_without_repeating_them() {
        let k: ApiKey = "s3cr3t-key".parse().unwrap();
        assert_eq!(format!("{k:?}"), "ApiKey(<redacted>)");
        assert!(ApiKey::unchecked(" ").checked().is_err());
        let t: AdminToken = "t0ken-s3cret-long-enough".parse().unwrap();
        assert_eq!(format!("{t:?}"), "AdminToken(<redacted>)");
        assert!(t.checked().is_ok());
        for bad in ["has space", "fifteen-chars-Z", ""] {
            let e = AdminToken(bad.into()).checked().unwrap_err();
            assert!(e.contains("--admin-token") && (bad.is_empty() || !e.contains(bad)));
        }
    }

    #[test]
    fn logged_urls_keep_no_query_or_credentials() {
        assert_eq!(
            loggable_url("https://user:pw@app.example.com:8443/hook?token=s3cret#x"),
            "https://app.example.com:8443/hook?…"
        );
        assert_eq!(
            loggable_url("https://app.example.com/eyeson-hook"),
            "https://app.example.com/eyeson-hook"
        );
        assert_eq!(loggable_url("::"), "(not a URL)");
    }
}
