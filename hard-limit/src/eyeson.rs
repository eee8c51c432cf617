//! The eyeson REST client: the webhook registration, the list of running
//! rooms, and ending a room's meeting. One attempt per call; retry policy
//! belongs to the caller (the scheduler), which knows what is worth retrying.
//!
//! The API key travels only in the `Authorization` header (raw, no
//! `Bearer`), never in a URL, so no error message or log line can carry it.

use std::time::Duration;

use eyeson_api::paths::{self, InvalidSegment};
use eyeson_api::wire::{
    GuestJoinForm, JoinedFields, MessageForm, RegisterWebhookForm, Registration, RoomListEntry,
    RoomUserFields,
};
use reqwest::{StatusCode, Url};
use serde_json::Value;

use crate::domain::{GuestToken, RoomId, Timestamp};
use crate::secrets::ApiKey;

/// The only webhook type this service needs.
pub const WEBHOOK_TYPES: &str = "room_update";

/// A failed call.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// eyeson answered with this status.
    #[error("eyeson answered HTTP {0}")]
    Status(u16),
    /// eyeson answered 429, maybe with a `Retry-After` in seconds.
    #[error("eyeson answered HTTP 429 (retry after {0:?})")]
    Throttled(Option<Duration>),
    /// No answer (connect error, timeout, broken body).
    #[error("request to eyeson failed: {0}")]
    Transport(#[source] reqwest::Error),
    /// An answer that does not parse.
    #[error("unexpected answer from eyeson: {0}")]
    Decode(String),
}

impl ApiError {
    /// eyeson's `423 Locked`: the API key is locked (usage limits
    /// exceeded). Retrying at once cannot help, but the key may be unlocked
    /// later: callers defer, never give up.
    pub fn is_locked(&self) -> bool {
        matches!(self, ApiError::Status(423))
    }

    /// Whether trying again later may help: 429, 5xx, and no answer at all.
    pub fn is_retryable(&self) -> bool {
        match self {
            ApiError::Status(s) => *s == 429 || (500..600).contains(s),
            ApiError::Throttled(_) | ApiError::Transport(_) => true,
            ApiError::Decode(_) => false,
        }
    }
}

/// What `DELETE /rooms/{id}` achieved.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EndResult {
    /// 200/204: this call ended the meeting.
    Ended,
    /// 404/410: nothing was running any more.
    NotRunning,
}

/// One online participant of a meeting, as far as counting needs: its
/// `id` and `name` (empty when eyeson's entry had none readable; such an
/// entry still counts, so a list that reads badly never looks emptier than
/// the meeting is).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Participant {
    /// `id`.
    pub id: String,
    /// `name`.
    pub name: String,
}

/// What `GET /rooms/{room_id}/users?online=true` answered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Participants {
    /// The participants connected now.
    Online(Vec<Participant>),
    /// 404/410: the room has no meeting any more.
    Gone,
}

/// The webhook registered for the API key, as read from `GET /webhooks`
/// ([`Registration::read`]: `types` a list or a comma-separated string).
pub type Webhook = Registration;

/// An entry of `GET /rooms`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunningRoom {
    /// The room.
    pub room_id: RoomId,
    /// The running meeting's start, if given.
    pub started_at: Option<Timestamp>,
    /// Whether eyeson says it is shutting down.
    pub shutdown: bool,
    /// The room's guest token, if listed (for the in-meeting warning).
    pub guest_token: Option<GuestToken>,
}

/// An access key: one participant's handle on one running meeting (from
/// `POST /guests/{guest_token}`). It authorises in-meeting calls, so like
/// the API key its `Debug` is redacted and it has no `Display`.
#[derive(Clone, PartialEq, Eq)]
pub struct AccessKey(String);

impl std::fmt::Debug for AccessKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AccessKey(..)")
    }
}

/// What `POST /guests/{guest_token}` achieved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GuestJoin {
    /// 201: joined; the access key for in-meeting calls.
    Joined(AccessKey),
    /// 410: no meeting runs for the token (it ended).
    MeetingEnded,
}

/// What `POST /rooms/{access_key}/messages` achieved.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Posted {
    /// 2xx: the message went out.
    Sent,
    /// 410: the meeting ended meanwhile.
    MeetingEnded,
}

/// The answer to `GET /rooms`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RoomList {
    /// The entries that parsed.
    pub rooms: Vec<RunningRoom>,
    /// How many entries did not parse (no id, a bad id, a `started_at` that
    /// is not ISO-8601 UTC, ...). Each may be a running meeting we track:
    /// while any is unparsed, nothing may be closed as "unlisted".
    pub unparsed: usize,
}

/// The client. Cheap to clone.
#[derive(Clone, Debug)]
pub struct EyesonClient {
    http: reqwest::Client,
    base: Url,
    key: ApiKey,
}

impl EyesonClient {
    /// A client for the API at `base` (10 s timeout per call).
    pub fn new(base: Url, key: ApiKey) -> Result<Self, ApiError> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .connect_timeout(Duration::from_secs(5))
            .user_agent(concat!("eyeson-hard-limit/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(ApiError::Transport)?;
        Ok(EyesonClient { http, base, key })
    }

    /// The URL of an endpoint: `path` (from [`eyeson_api::paths`], already
    /// percent-encoded, so a room id with spaces or slashes stays one
    /// segment; `.` and `..` refused there rather than normalised into a
    /// different endpoint) below the base's path.
    fn url(&self, path: Result<String, InvalidSegment>) -> Result<Url, ApiError> {
        let path = path.map_err(|e| ApiError::Decode(e.to_string()))?;
        let mut url = self.base.clone();
        if url.cannot_be_a_base() {
            return Err(ApiError::Decode("API URL cannot take a path".into()));
        }
        let base = url.path().trim_end_matches('/').to_owned();
        url.set_path(&format!("{base}{path}"));
        Ok(url)
    }

    fn request(&self, method: reqwest::Method, url: Url) -> reqwest::RequestBuilder {
        self.http
            .request(method, url)
            .header(reqwest::header::AUTHORIZATION, self.key.expose())
    }

    async fn send(&self, req: reqwest::RequestBuilder) -> Result<reqwest::Response, ApiError> {
        let resp = req
            .send()
            .await
            .map_err(|e| ApiError::Transport(e.without_url()))?;
        // Every answer says whether the key is locked (423 answers
        // everything while it is): the gauge follows the last one.
        crate::metrics::api_key_locked(resp.status() == StatusCode::LOCKED);
        Ok(resp)
    }

    /// `DELETE /rooms/{room_id}`: ends the room's running meeting.
    pub async fn end_meeting(&self, room: &RoomId) -> Result<EndResult, ApiError> {
        let url = self.url(paths::room(room.as_str()))?;
        let resp = self
            .send(self.request(reqwest::Method::DELETE, url))
            .await?;
        match resp.status() {
            s if s.is_success() => Ok(EndResult::Ended),
            StatusCode::NOT_FOUND | StatusCode::GONE => Ok(EndResult::NotRunning),
            StatusCode::TOO_MANY_REQUESTS => Err(ApiError::Throttled(retry_after(&resp))),
            s => Err(ApiError::Status(s.as_u16())),
        }
    }

    /// `GET /rooms/{room_id}/users?online=true`: who is in the meeting
    /// now. An empty or unparsable answer is an error, never "nobody".
    pub async fn online_participants(&self, room: &RoomId) -> Result<Participants, ApiError> {
        let mut url = self.url(paths::room_users(room.as_str(), None))?;
        url.query_pairs_mut().append_pair(paths::ONLINE, "true");
        let resp = self.send(self.request(reqwest::Method::GET, url)).await?;
        match resp.status() {
            StatusCode::NOT_FOUND | StatusCode::GONE => return Ok(Participants::Gone),
            StatusCode::TOO_MANY_REQUESTS => return Err(ApiError::Throttled(retry_after(&resp))),
            _ => {}
        }
        let Some(body) = success_json(resp).await? else {
            return Err(ApiError::Decode(
                "empty answer to GET /rooms/{id}/users".into(),
            ));
        };
        let entries: Vec<Value> =
            serde_json::from_value(body).map_err(|e| ApiError::Decode(e.to_string()))?;
        let text = |v: Option<Value>| match v {
            Some(Value::String(s)) => s,
            Some(Value::Number(n)) => n.to_string(),
            _ => String::new(),
        };
        Ok(Participants::Online(
            entries
                .into_iter()
                .map(|v| {
                    let f: RoomUserFields = serde_json::from_value(v).unwrap_or_default();
                    Participant {
                        id: text(f.id),
                        name: text(f.name),
                    }
                })
                .collect(),
        ))
    }

    /// `POST /guests/{guest_token}` with form `name`: joins the room's
    /// running meeting as a guest (it cannot start one, unlike `POST
    /// /rooms`). No API key: the token is the credential. Errors never name
    /// the URL (it holds the token).
    pub async fn join_as_guest(
        &self,
        token: &GuestToken,
        name: &str,
    ) -> Result<GuestJoin, ApiError> {
        let url = self.url(paths::guest(token.expose()))?;
        let resp = self
            .send(self.http.post(url).form(&GuestJoinForm { name }))
            .await?;
        match resp.status() {
            StatusCode::GONE => Ok(GuestJoin::MeetingEnded),
            StatusCode::TOO_MANY_REQUESTS => Err(ApiError::Throttled(retry_after(&resp))),
            s if s.is_success() => {
                let body = success_json(resp)
                    .await?
                    .ok_or_else(|| ApiError::Decode("empty answer to the guest join".into()))?;
                let joined: JoinedFields = serde_json::from_value(body).map_err(|_| {
                    ApiError::Decode("the guest join answer is not an object".into())
                })?;
                match joined.access_key {
                    Some(k)
                        if !k.is_empty()
                            && !k.chars().any(char::is_control)
                            && k != "."
                            && k != ".." =>
                    {
                        Ok(GuestJoin::Joined(AccessKey(k)))
                    }
                    _ => Err(ApiError::Decode(
                        "the guest join answer has no usable access_key".into(),
                    )),
                }
            }
            s => Err(ApiError::Status(s.as_u16())),
        }
    }

    /// `POST /rooms/{access_key}/messages` with form `type=chat`,
    /// `content`: a chat message every participant sees.
    pub async fn post_chat(&self, key: &AccessKey, content: &str) -> Result<Posted, ApiError> {
        let url = self.url(paths::messages(&key.0))?;
        let resp = self
            .send(self.http.post(url).form(&MessageForm {
                kind: MessageForm::CHAT,
                content,
            }))
            .await?;
        match resp.status() {
            s if s.is_success() => Ok(Posted::Sent),
            StatusCode::GONE => Ok(Posted::MeetingEnded),
            StatusCode::TOO_MANY_REQUESTS => Err(ApiError::Throttled(retry_after(&resp))),
            s => Err(ApiError::Status(s.as_u16())),
        }
    }

    /// `GET /rooms`: the running meetings. Entries that do not parse are
    /// skipped and counted in [`RoomList::unparsed`], not fatal.
    ///
    /// Pagination is undocumented; if an answer carries a `Link` header
    /// with `rel="next"`, that page is read too (at most [`MAX_ROOM_PAGES`]
    /// pages). A next page on another origin than `--api-url` is an error,
    /// not followed: the API key would go with it. Any failed page fails
    /// the whole list (a partial list must not close anything).
    pub async fn running_rooms(&self) -> Result<RoomList, ApiError> {
        let mut url = self.url(Ok(paths::ROOMS.to_owned()))?;
        let mut list = RoomList::default();
        for _ in 0..MAX_ROOM_PAGES {
            let resp = self
                .send(self.request(reqwest::Method::GET, url.clone()))
                .await?;
            let next = next_link(&resp, &url);
            let page = parse_rooms(resp).await?;
            list.unparsed += page.unparsed;
            list.rooms.extend(page.rooms);
            match next {
                None => return Ok(list),
                Some(next) => {
                    if next.origin() != self.base.origin() {
                        return Err(ApiError::Decode(
                            "GET /rooms: the next page is on another origin; not followed".into(),
                        ));
                    }
                    url = next;
                }
            }
        }
        Err(ApiError::Decode(format!(
            "GET /rooms: more than {MAX_ROOM_PAGES} pages"
        )))
    }

    /// `GET /webhooks`: the registered webhook, if any (404, `null` and
    /// `{}` all mean none; `types` may be a list or a comma-separated string).
    pub async fn current_webhook(&self) -> Result<Option<Webhook>, ApiError> {
        let url = self.url(Ok(paths::WEBHOOKS.to_owned()))?;
        let resp = self.send(self.request(reqwest::Method::GET, url)).await?;
        if resp.status() == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        let Some(v) = success_json(resp).await? else {
            return Ok(None);
        };
        Ok(parse_webhook(&v))
    }

    /// `POST /webhooks` with form `url` and `types` (one comma-separated
    /// string): registers this service, replacing whatever was registered
    /// for the key.
    pub async fn register_webhook(&self, target: &Url, types: &str) -> Result<(), ApiError> {
        let url = self.url(Ok(paths::WEBHOOKS.to_owned()))?;
        let resp = self
            .send(
                self.request(reqwest::Method::POST, url)
                    .form(&RegisterWebhookForm {
                        url: target.as_str(),
                        types,
                    }),
            )
            .await?;
        if resp.status().is_success() {
            Ok(())
        } else {
            Err(ApiError::Status(resp.status().as_u16()))
        }
    }

    /// `DELETE /webhooks/{id}`.
    pub async fn delete_webhook(&self, id: &str) -> Result<(), ApiError> {
        let url = self.url(paths::webhook(id))?;
        let resp = self
            .send(self.request(reqwest::Method::DELETE, url))
            .await?;
        if resp.status().is_success() || resp.status() == StatusCode::NOT_FOUND {
            Ok(())
        } else {
            Err(ApiError::Status(resp.status().as_u16()))
        }
    }
}

/// The JSON body of a 2xx answer; `None` if the body is empty.
/// Most pages of `GET /rooms` read in one reconciliation.
pub const MAX_ROOM_PAGES: usize = 100;

/// One page of `GET /rooms`.
async fn parse_rooms(resp: reqwest::Response) -> Result<RoomList, ApiError> {
    // An empty body is not "nothing runs": that would close every
    // tracked meeting.
    let Some(body) = success_json(resp).await? else {
        return Err(ApiError::Decode("empty answer to GET /rooms".into()));
    };
    let entries: Vec<Value> =
        serde_json::from_value(body).map_err(|e| ApiError::Decode(e.to_string()))?;
    let total = entries.len();
    let rooms: Vec<RunningRoom> = entries
        .into_iter()
        .filter_map(|v| serde_json::from_value::<RoomListEntry>(v).ok())
        .filter_map(|e| {
            let room_id = RoomId::parse(e.id.as_deref()?).ok()?;
            let started_at = match e.started_at {
                Some(s) => Some(Timestamp::parse_rfc3339(&s)?),
                None => None,
            };
            let guest_token = match &e.guest_token {
                Some(Value::String(s)) => GuestToken::parse(s),
                _ => None,
            };
            Some(RunningRoom {
                room_id,
                started_at,
                shutdown: e.shutdown,
                guest_token,
            })
        })
        .collect();
    Ok(RoomList {
        unparsed: total - rooms.len(),
        rooms,
    })
}

/// The `rel="next"` target of a `Link` header (RFC 8288), resolved
/// against the page's URL.
fn next_link(resp: &reqwest::Response, page: &Url) -> Option<Url> {
    resp.headers()
        .get_all(reqwest::header::LINK)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .find_map(|link| {
            let (target, params) = link.trim().split_once(';')?;
            let target = target.trim().strip_prefix('<')?.strip_suffix('>')?;
            let is_next = params.split(';').any(|p| {
                let p = p.trim().to_ascii_lowercase();
                p == "rel=\"next\"" || p == "rel=next"
            });
            is_next.then(|| page.join(target).ok()).flatten()
        })
}

async fn success_json(resp: reqwest::Response) -> Result<Option<Value>, ApiError> {
    if !resp.status().is_success() {
        return Err(ApiError::Status(resp.status().as_u16()));
    }
    let body = resp
        .bytes()
        .await
        .map_err(|e| ApiError::Transport(e.without_url()))?;
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    serde_json::from_slice(&body)
        .map(Some)
        .map_err(|e| ApiError::Decode(e.to_string()))
}

/// `Retry-After` in seconds (the HTTP-date form is not used by APIs like
/// this one and is ignored).
fn retry_after(resp: &reqwest::Response) -> Option<Duration> {
    resp.headers()
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse::<u64>()
        .ok()
        .map(Duration::from_secs)
}

fn parse_webhook(v: &Value) -> Option<Webhook> {
    Registration::read(v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn webhook_answers_in_every_seen_shape() {
        assert_eq!(parse_webhook(&Value::Null), None);
        assert_eq!(parse_webhook(&json!({})), None);
        let w = parse_webhook(
            &json!({"id": "a1", "url": "https://x/h", "types": "room_update, recording_update"}),
        )
        .unwrap();
        assert_eq!(w.types, ["recording_update", "room_update"]);
        let w = parse_webhook(&json!({"id": 7, "url": "https://x/h", "types": ["room_update"]}))
            .unwrap();
        assert_eq!(
            (w.id.as_str(), w.types.as_slice()),
            ("7", &["room_update".to_owned()][..])
        );
    }

    #[test]
    fn room_ids_are_one_percent_encoded_segment() {
        let c = EyesonClient::new(
            Url::parse("http://127.0.0.1:9/api/").unwrap(),
            "k".parse().unwrap(),
        )
        .unwrap();
        let u = c.url(paths::room("a b/c?d")).unwrap();
        assert_eq!(u.as_str(), "http://127.0.0.1:9/api/rooms/a%20b%2Fc%3Fd");
        assert!(c.url(paths::room("..")).is_err());
    }

    #[test]
    fn shared_segment_encoding_is_what_url_would_push() {
        // The shared paths encode a segment themselves; `url`'s own
        // `push` is the reference they must agree with.
        let c = EyesonClient::new(
            Url::parse("https://api.example/").unwrap(),
            "k".parse().unwrap(),
        )
        .unwrap();
        // Tab, CR and LF aside: `url` drops them, the shared paths encode
        // them (no room id or key the service sends can hold one).
        let mut all: String = (1u8..0x80)
            .filter(|b| !matches!(b, b'\t' | b'\n' | b'\r'))
            .map(char::from)
            .collect();
        all.push_str("é€😀");
        for id in [all.as_str(), "a b", "%2e", "...", "x\\y", "'!@$&()*+,;=:"] {
            let mut reference = Url::parse("https://api.example/").unwrap();
            reference
                .path_segments_mut()
                .unwrap()
                .pop_if_empty()
                .push("rooms")
                .push(id);
            assert_eq!(c.url(paths::room(id)).unwrap(), reference, "{id:?}");
        }
    }

    #[test]
    fn retryable_statuses() {
        assert!(ApiError::Status(429).is_retryable());
        assert!(ApiError::Throttled(None).is_retryable());
        assert!(ApiError::Status(503).is_retryable());
        assert!(!ApiError::Status(403).is_retryable());
        assert!(!ApiError::Status(423).is_retryable());
    }
}
