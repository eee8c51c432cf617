//! The eyeson REST client, one attempt per call (the caller knows what is
//! worth retrying). The API key travels only in the `Authorization` header
//! (raw, no `Bearer`), never in a URL, so no error or log line carries it.

use std::time::Duration;

use eyeson_api::paths::{self, InvalidSegment};
use eyeson_api::wire::{
    GuestJoinForm, JoinedFields, MessageForm, RegisterWebhookForm, Registration, RoomListEntry,
    RoomUserFields,
};
use reqwest::{StatusCode, Url};
use serde_json::Value;

use crate::domain::{GuestToken, RoomId, RoomUpdate, Timestamp};
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
    /// eyeson's `423 Locked`: the API key is locked (usage limits exceeded);
    /// callers defer, never give up.
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

/// One online participant, as far as counting needs (`id` and `name` are
/// empty when unreadable: such an entry still counts).
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

/// An access key: a guest's handle on one running meeting. It authorises
/// in-meeting calls, so its `Debug` is redacted and it has no `Display`.
#[derive(Clone, PartialEq, Eq)]
pub struct AccessKey(String);

impl std::fmt::Debug for AccessKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AccessKey(..)")
    }
}

/// The answer to `GET /rooms`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RoomList {
    /// The entries that parsed (`event_time` 0: the reader's to set).
    pub rooms: Vec<RoomUpdate>,
    /// Entries that did not parse: each may be a meeting we track, so
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
    /// percent-encoded, `.` and `..` refused) below the base's path.
    fn url(&self, path: Result<String, InvalidSegment>) -> Result<Url, ApiError> {
        let path = path.map_err(decode)?;
        let mut url = self.base.clone();
        if url.cannot_be_a_base() {
            return Err(decode("API URL cannot take a path"));
        }
        let base = url.path().trim_end_matches('/').to_owned();
        url.set_path(&format!("{base}{path}"));
        Ok(url)
    }

    /// A request with the API key.
    fn request(&self, method: reqwest::Method, url: Url) -> reqwest::RequestBuilder {
        self.http
            .request(method, url)
            .header(reqwest::header::AUTHORIZATION, self.key.expose())
    }

    /// `method` on `url` with the API key, sent.
    async fn call(&self, method: reqwest::Method, url: Url) -> Result<reqwest::Response, ApiError> {
        self.send(self.request(method, url)).await
    }

    async fn send(&self, req: reqwest::RequestBuilder) -> Result<reqwest::Response, ApiError> {
        let resp = req
            .send()
            .await
            .map_err(|e| ApiError::Transport(e.without_url()))?;
        // 423 answers everything while the key is locked.
        let locked = resp.status() == StatusCode::LOCKED;
        ::metrics::gauge!(crate::metrics::API_KEY_LOCKED).set(if locked { 1.0 } else { 0.0 });
        Ok(resp)
    }

    /// `DELETE /rooms/{room_id}`: ends the room's running meeting; false
    /// (404/410) if nothing was running any more.
    pub async fn end_meeting(&self, room: &RoomId) -> Result<bool, ApiError> {
        let url = self.url(paths::room(room.as_str()))?;
        let resp = self.call(reqwest::Method::DELETE, url).await?;
        match resp.status() {
            s if s.is_success() => Ok(true),
            StatusCode::NOT_FOUND | StatusCode::GONE => Ok(false),
            _ => Err(failed(&resp)),
        }
    }

    /// `GET /rooms/{room_id}/users?online=true`: who is in the meeting
    /// now. An empty or unparsable answer is an error, never "nobody".
    pub async fn online_participants(&self, room: &RoomId) -> Result<Participants, ApiError> {
        let mut url = self.url(paths::room_users(room.as_str(), None))?;
        url.query_pairs_mut().append_pair(paths::ONLINE, "true");
        let resp = self.call(reqwest::Method::GET, url).await?;
        match resp.status() {
            StatusCode::NOT_FOUND | StatusCode::GONE => return Ok(Participants::Gone),
            StatusCode::TOO_MANY_REQUESTS => return Err(failed(&resp)),
            _ => {}
        }
        let entries = json_list(resp, "GET /rooms/{id}/users").await?;
        let text = |v: Option<Value>| match v {
            Some(Value::String(s)) => s,
            Some(Value::Number(n)) => n.to_string(),
            _ => String::new(),
        };
        let participant = |v| {
            let f: RoomUserFields = serde_json::from_value(v).unwrap_or_default();
            let (id, name) = (text(f.id), text(f.name));
            Participant { id, name }
        };
        Ok(Participants::Online(
            entries.into_iter().map(participant).collect(),
        ))
    }

    /// `POST /guests/{guest_token}` with form `name`: joins the room's
    /// running meeting as a guest (it cannot start one, unlike `POST
    /// /rooms`); `None` (410): the meeting ended. No API key: the token is
    /// the credential, so errors never name the URL.
    pub async fn join_as_guest(
        &self,
        token: &GuestToken,
        name: &str,
    ) -> Result<Option<AccessKey>, ApiError> {
        let url = self.url(paths::guest(token.expose()))?;
        let resp = self
            .send(self.http.post(url).form(&GuestJoinForm { name }))
            .await?;
        match resp.status() {
            StatusCode::GONE => Ok(None),
            s if s.is_success() => {
                let body = success_json(resp)
                    .await?
                    .ok_or_else(|| decode("empty answer to the guest join"))?;
                let joined: JoinedFields = serde_json::from_value(body)
                    .map_err(|_| decode("the guest join answer is not an object"))?;
                let usable = |k: &String| {
                    !k.is_empty() && !k.chars().any(char::is_control) && k != "." && k != ".."
                };
                let key = joined.access_key.filter(usable).map(AccessKey);
                let key =
                    key.ok_or_else(|| decode("the guest join answer has no usable access_key"));
                key.map(Some)
            }
            _ => Err(failed(&resp)),
        }
    }

    /// `POST /rooms/{access_key}/messages` with form `type=chat`,
    /// `content`: a chat message every participant sees; false (410): the
    /// meeting ended meanwhile.
    pub async fn post_chat(&self, key: &AccessKey, content: &str) -> Result<bool, ApiError> {
        let url = self.url(paths::messages(&key.0))?;
        let resp = self
            .send(self.http.post(url).form(&MessageForm {
                kind: MessageForm::CHAT,
                content,
            }))
            .await?;
        match resp.status() {
            s if s.is_success() => Ok(true),
            StatusCode::GONE => Ok(false),
            _ => Err(failed(&resp)),
        }
    }

    /// `GET /rooms`: the running meetings (entries that do not parse are
    /// counted in [`RoomList::unparsed`]). A `Link` header's `rel="next"`
    /// page is read too, up to `MAX_ROOM_PAGES`, but never on another
    /// origin (the API key would go with it); any failed page fails all.
    pub async fn running_rooms(&self) -> Result<RoomList, ApiError> {
        let mut url = self.url(Ok(paths::ROOMS.to_owned()))?;
        let mut list = RoomList::default();
        for _ in 0..MAX_ROOM_PAGES {
            let resp = self.call(reqwest::Method::GET, url.clone()).await?;
            let next = next_link(&resp, &url);
            let page = parse_rooms(resp).await?;
            list.unparsed += page.unparsed;
            list.rooms.extend(page.rooms);
            let Some(next) = next else {
                return Ok(list);
            };
            if next.origin() != self.base.origin() {
                let e = "GET /rooms: the next page is on another origin; not followed";
                return Err(decode(e));
            }
            url = next;
        }
        Err(decode(format!(
            "GET /rooms: more than {MAX_ROOM_PAGES} pages"
        )))
    }

    /// `GET /webhooks`: the registered webhook, if any (404, `null` and
    /// `{}` all mean none; `types` may be a list or a comma-separated string).
    pub async fn current_webhook(&self) -> Result<Option<Webhook>, ApiError> {
        let url = self.url(Ok(paths::WEBHOOKS.to_owned()))?;
        let resp = self.call(reqwest::Method::GET, url).await?;
        if resp.status() == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        Ok(success_json(resp)
            .await?
            .and_then(|v| Registration::read(&v)))
    }

    /// `POST /webhooks` with form `url` and `types` (comma-separated):
    /// registers this service in place of whatever was registered.
    pub async fn register_webhook(&self, target: &Url, types: &str) -> Result<(), ApiError> {
        let url = self.url(Ok(paths::WEBHOOKS.to_owned()))?;
        let form = RegisterWebhookForm {
            url: target.as_str(),
            types,
        };
        let resp = self.send(self.request(reqwest::Method::POST, url).form(&form));
        match resp.await?.status() {
            s if s.is_success() => Ok(()),
            s => Err(ApiError::Status(s.as_u16())),
        }
    }

    /// `DELETE /webhooks/{id}`.
    pub async fn delete_webhook(&self, id: &str) -> Result<(), ApiError> {
        let url = self.url(paths::webhook(id))?;
        match self.call(reqwest::Method::DELETE, url).await?.status() {
            s if s.is_success() || s == StatusCode::NOT_FOUND => Ok(()),
            s => Err(ApiError::Status(s.as_u16())),
        }
    }
}

/// Most pages of `GET /rooms` read in one reconciliation.
const MAX_ROOM_PAGES: usize = 100;

/// The JSON list a 2xx answer to `what` holds. An empty answer is an error,
/// never "nothing": no running room would close every tracked meeting.
async fn json_list(resp: reqwest::Response, what: &str) -> Result<Vec<Value>, ApiError> {
    let body = success_json(resp)
        .await?
        .ok_or_else(|| decode(format!("empty answer to {what}")))?;
    serde_json::from_value(body).map_err(decode)
}

/// An answer that does not parse.
fn decode(e: impl ToString) -> ApiError {
    ApiError::Decode(e.to_string())
}

/// One page of `GET /rooms`.
async fn parse_rooms(resp: reqwest::Response) -> Result<RoomList, ApiError> {
    let entries = json_list(resp, "GET /rooms").await?;
    let total = entries.len();
    let rooms: Vec<RoomUpdate> = entries
        .into_iter()
        .filter_map(|v| serde_json::from_value::<RoomListEntry>(v).ok())
        .filter_map(|e| {
            let room_id = RoomId::parse(e.id.as_deref()?).ok()?;
            let started_at = e.started_at.map(|s| Timestamp::parse_rfc3339(&s));
            let started_at = started_at.map(|t| t.ok_or(())).transpose().ok()?;
            let guest_token = e.guest_token.as_ref().and_then(Value::as_str);
            let guest_token = guest_token.and_then(GuestToken::parse);
            Some(RoomUpdate {
                room_id,
                started_at,
                shutdown: e.shutdown,
                event_time: Timestamp(0),
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

/// The JSON body of a 2xx answer; `None` if the body is empty.
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
    serde_json::from_slice(&body).map(Some).map_err(decode)
}

/// The error of an answer that is no success: the status, or 429 with its
/// `Retry-After` in seconds (APIs like this one do not send HTTP-dates).
fn failed(resp: &reqwest::Response) -> ApiError {
    if resp.status() != StatusCode::TOO_MANY_REQUESTS {
        return ApiError::Status(resp.status().as_u16());
    }
    let after = resp.headers().get(reqwest::header::RETRY_AFTER);
    let secs = after.and_then(|v| v.to_str().ok()?.trim().parse::<u64>().ok());
    ApiError::Throttled(secs.map(Duration::from_secs))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn client(base: &str) -> EyesonClient {
        EyesonClient::new(Url::parse(base).unwrap(), "k".parse().unwrap()).unwrap()
    }

    #[test]
    fn webhook_answers_in_every_seen_shape() {
        let read = |v| Registration::read(&v);
        assert_eq!(read(Value::Null), None);
        assert_eq!(read(json!({})), None);
        let types = "room_update, recording_update";
        let w = read(json!({"id": "a1", "url": "https://x/h", "types": types})).unwrap();
        assert_eq!(w.types, ["recording_update", "room_update"]);
        let w = read(json!({"id": 7, "url": "https://x/h", "types": ["room_update"]})).unwrap();
        assert_eq!(
            (w.id.as_str(), w.types.as_slice()),
            ("7", &["room_update".to_owned()][..])
        );
    }

    #[test]
    fn room_ids_are_one_percent_encoded_segment() {
        let c = client("http://127.0.0.1:9/api/");
        let u = c.url(paths::room("a b/c?d")).unwrap();
        assert_eq!(u.as_str(), "http://127.0.0.1:9/api/rooms/a%20b%2Fc%3Fd");
        assert!(c.url(paths::room("..")).is_err());
    }

    #[test]
    fn shared_segment_encoding_is_what_url_would_push() {
        // `Url`'s own `push` is the reference the shared paths must match.
        let c = client("https://api.example/");
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
        for (e, retryable) in [
            (ApiError::Status(429), true),
            (ApiError::Throttled(None), true),
            (ApiError::Status(503), true),
            (ApiError::Status(403), false),
            (ApiError::Status(423), false),
        ] {
            assert_eq!(e.is_retryable(), retryable, "{e}");
        }
    }
}
