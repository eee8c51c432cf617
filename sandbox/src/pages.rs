//! The sandbox's own meeting page, at the links eyeson hands out:
//! `links.gui` (`/meeting/{access_key}`, joins with the access key) and
//! `links.guest_join` (`/join?guest={guest_token}`, asks for a name, joins as
//! a guest through `POST /guests/{token}`). Both load the real eyeson JS SDK
//! from the repository's `node_modules` (`--sdk`), never from a CDN, and a
//! small script of the sandbox's; the page itself carries no script, only
//! escaped `data-` attributes, under a `Content-Security-Policy` that allows
//! nothing but this origin.

use std::path::{Path as FsPath, PathBuf};

use axum::extract::{Path, Query, State};
use axum::http::header::{self, HeaderMap, HeaderValue};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use crate::meetings::KeyError;
use crate::state::AppState;

/// The SDK's single-file build, relative to a directory holding `node_modules`.
pub const SDK_FILE: &str = "node_modules/eyeson/dist/eyeson.js";

/// Nothing but this origin: no inline script, no eval, no other host. The
/// SDK's REST calls and websockets go to this origin (`'self'` covers `ws:`
/// on the same host).
const CSP: &str = "default-src 'none'; script-src 'self'; connect-src 'self'; \
    media-src 'self' blob: mediastream:; img-src 'self' data:; style-src 'self'; \
    base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

const SCRIPT: &str = include_str!("../assets/meeting.js");

/// Where the SDK may be: `explicit` (`--sdk`) alone when given; otherwise
/// [`SDK_FILE`] under the current directory, the binary's directory, and
/// each of their ancestors (a `target/debug` binary finds the repository's).
pub fn sdk_candidates(
    explicit: Option<&FsPath>,
    cwd: Option<&FsPath>,
    exe: Option<&FsPath>,
) -> Vec<PathBuf> {
    if let Some(path) = explicit {
        return vec![path.to_owned()];
    }
    let mut out: Vec<PathBuf> = Vec::new();
    for start in [cwd, exe.and_then(FsPath::parent)].into_iter().flatten() {
        for dir in start.ancestors() {
            let candidate = dir.join(SDK_FILE);
            if !out.contains(&candidate) {
                out.push(candidate);
            }
        }
    }
    out
}

/// The first candidate that is a file.
async fn find_sdk(state: &AppState) -> Option<PathBuf> {
    for path in state.sdk_candidates() {
        if tokio::fs::metadata(&path).await.is_ok_and(|m| m.is_file()) {
            return Some(path.clone());
        }
    }
    None
}

/// `&`, `<`, `>`, `"` and `'` as entities: safe in text and quoted attributes.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The meeting page's scripts: the SDK first, then the page's own.
const SCRIPTS: &str = "<script src=\"/_sandbox/eyeson.js\" defer></script>\n\
    <script src=\"/_sandbox/meeting.js\" defer></script>\n";

/// A whole page: `title`, `scripts` (markup) and `body` (already escaped
/// markup).
fn page(status: StatusCode, title: &str, scripts: &str, body: &str) -> Response {
    let html = format!(
        "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>{title} · eyeson sandbox</title>\n\
         <link rel=\"icon\" href=\"data:,\">\n\
         {scripts}</head>\n<body>\n{body}\n</body>\n</html>\n",
        title = escape(title),
    );
    let mut response = (status, html).into_response();
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    secure(h);
    response
}

fn secure(h: &mut HeaderMap) {
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    // The URL carries an access key or a guest token.
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
}

/// A page that only says something (no script).
fn notice(status: StatusCode, title: &str, text: &str) -> Response {
    page(
        status,
        title,
        "",
        &format!(
            "<main>\n<h1>{}</h1>\n<p role=\"alert\">{}</p>\n</main>",
            escape(title),
            escape(text)
        ),
    )
}

/// The page's status line and remote video, shared by both pages.
const STAGE: &str = "<p id=\"status\" role=\"status\" aria-live=\"polite\"></p>\n\
    <video id=\"remote\" autoplay playsinline muted aria-label=\"The meeting's video\"></video>";

async fn sdk_missing(state: &AppState) -> Option<Response> {
    if find_sdk(state).await.is_some() {
        return None;
    }
    Some(notice(
        StatusCode::SERVICE_UNAVAILABLE,
        "The eyeson JS SDK is missing",
        &format!(
            "This page runs the real eyeson JS SDK, which the sandbox serves from {}. \
             Run `npm install` in the repository, or start the sandbox with `--sdk PATH` \
             (or SANDBOX_SDK) naming the SDK's dist/eyeson.js.",
            match state.sdk_candidates() {
                [one] => one.display().to_string(),
                _ => format!(
                    "{SDK_FILE} (looked in the current directory, the binary's, and their parents)"
                ),
            }
        ),
    ))
}

/// `GET /meeting/{access_key}` (`links.gui`): joins with the access key.
pub(crate) async fn meeting(State(state): State<AppState>, Path(key): Path<String>) -> Response {
    let room = match state.with(|s| s.session(&key)) {
        Ok(session) => session.room.name,
        Err(e) => {
            let (status, text) = match e {
                KeyError::Unknown => (StatusCode::NOT_FOUND, "This meeting link is unknown."),
                KeyError::Gone => (StatusCode::GONE, "This meeting has ended."),
                KeyError::Locked => (
                    StatusCode::LOCKED,
                    "The meeting's API key is locked (usage limits exceeded).",
                ),
            };
            return notice(status, "No meeting", text);
        }
    };
    if let Some(missing) = sdk_missing(&state).await {
        return missing;
    }
    page(
        StatusCode::OK,
        &room,
        SCRIPTS,
        &format!(
            "<main id=\"meeting\" data-access-key=\"{}\">\n<h1>{}</h1>\n{STAGE}\n</main>",
            escape(&key),
            escape(&room)
        ),
    )
}

#[derive(Deserialize)]
pub(crate) struct JoinQuery {
    guest: Option<String>,
}

/// `GET /join?guest={guest_token}` (`links.guest_join`): asks for a name,
/// then joins as a guest. Whether a meeting runs for the token shows when
/// the guest joins (`POST /guests/{token}` answers 410 otherwise).
pub(crate) async fn join(State(state): State<AppState>, Query(q): Query<JoinQuery>) -> Response {
    let Some(token) = q.guest.filter(|t| !t.is_empty()) else {
        return notice(
            StatusCode::BAD_REQUEST,
            "No meeting",
            "This guest link has no guest token (?guest=…).",
        );
    };
    if let Some(missing) = sdk_missing(&state).await {
        return missing;
    }
    page(
        StatusCode::OK,
        "Join the meeting",
        SCRIPTS,
        &format!(
            "<main id=\"meeting\" data-guest-token=\"{}\">\n<h1>Join the meeting</h1>\n\
             <form id=\"guest\">\n<label for=\"name\">Your name</label>\n\
             <input id=\"name\" name=\"name\" required maxlength=\"100\" autocomplete=\"name\">\n\
             <button type=\"submit\">Join</button>\n</form>\n{STAGE}\n</main>",
            escape(&token)
        ),
    )
}

fn javascript(body: impl IntoResponse) -> Response {
    let mut response = body.into_response();
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/javascript; charset=utf-8"),
    );
    secure(h);
    response
}

/// `GET /_sandbox/meeting.js`: the page's script.
pub(crate) async fn script() -> Response {
    javascript(SCRIPT)
}

/// `GET /_sandbox/eyeson.js`: the SDK, read from disk on each request.
pub(crate) async fn sdk(State(state): State<AppState>) -> Response {
    let Some(path) = find_sdk(&state).await else {
        return (
            StatusCode::NOT_FOUND,
            "the eyeson JS SDK was not found (see --sdk)\n",
        )
            .into_response();
    };
    match tokio::fs::read(&path).await {
        Ok(bytes) => javascript(bytes),
        Err(e) => {
            tracing::warn!(error = %e, "could not read the eyeson JS SDK");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                "the eyeson JS SDK could not be read\n",
            )
                .into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup_and_quotes() {
        assert_eq!(
            escape(r#"<a href="x">'&'</a>"#),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
    }

    #[test]
    fn the_sdk_is_looked_for_above_the_directory_and_the_binary() {
        let found = sdk_candidates(
            None,
            Some(FsPath::new("/repo/sandbox")),
            Some(FsPath::new("/repo/target/debug/eyeson-sandbox")),
        );
        assert_eq!(found[0], FsPath::new("/repo/sandbox").join(SDK_FILE));
        assert_eq!(found[1], FsPath::new("/repo").join(SDK_FILE));
        assert!(found.contains(&FsPath::new("/repo/target/debug").join(SDK_FILE)));
        assert_eq!(
            found
                .iter()
                .filter(|p| **p == FsPath::new("/").join(SDK_FILE))
                .count(),
            1,
            "each directory once"
        );
        let explicit = sdk_candidates(Some(FsPath::new("/x/eyeson.js")), None, None);
        assert_eq!(explicit, vec![PathBuf::from("/x/eyeson.js")]);
    }
}
