//! The pure core: rooms, meetings, participants, the webhook registration and
//! the event log. No sockets, no HTTP, no clock of its own: every operation
//! takes `now`, and what must happen outside (a `call_terminated` to push, a
//! webhook to POST) comes back as [`Effect`]s for the adapters to carry out.
//!
//! Lifecycle, as the sandbox emulates it:
//! - `POST /rooms` creates a *pending* meeting for the room (or joins the
//!   pending or running one) and hands out an access key per user.
//! - The first SEPP `call_start` starts it: `started_at`, `meeting_started`,
//!   a `room_update` webhook.
//! - It ends when its last user in the call leaves (`call_terminate` or a
//!   dropped socket) or on `DELETE /rooms/…`: users still in the call get
//!   `user_left` (`meeting_ended`) and a `call_terminated`, then
//!   `meeting_ended` and a `room_update` with `shutdown: true`.
//! - After that every access key of the meeting is gone (410), and the next
//!   `POST /rooms` for the room creates a new meeting.
//!
//! `GET /rooms/{room_id}/users` lists a room's participants, online while
//! in the call. A bot (`POST /_sandbox/bots`) is a participant in the call
//! without sockets: it starts, keeps open and leaves meetings like a user,
//! and gets no pushes.
//!
//! While it runs, everyone in the call gets the podium (the client ids in the
//! call) whenever somebody joins or leaves, and voice activity when a test
//! says somebody speaks, as SEPP pushes ([`Signal`]). A user's SEPP client id
//! is their user id: the SDK looks the `cid` of voice activity (and of chat
//! and member lists) up as a user id, so eyeson's ids must coincide.

use std::collections::{BTreeMap, HashMap};
use std::time::{SystemTime, UNIX_EPOCH};

use eyeson_api::wire::{self, Room, RoomUser, WebhookAnswer, WebhookTypes};
use serde::Serialize;
use serde_json::json;

use crate::events::{rfc3339, Event, Kind, Reason};

/// Why an access key is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyError {
    /// Never handed out (404).
    Unknown,
    /// Its meeting was shut down (410).
    Gone,
    /// The API key it belongs to is locked (423). The sandbox has one API
    /// key, so every meeting is that key's.
    Locked,
}

impl KeyError {
    /// The HTTP status eyeson answers (also SEPP's `reject_code`).
    pub fn status(self) -> u16 {
        match self {
            KeyError::Unknown => 404,
            KeyError::Gone => 410,
            KeyError::Locked => 423,
        }
    }
}

/// Something the adapters must do after a state change, in this order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// Push SEPP `call_terminated` (code 200) to this user's signalling socket.
    Terminate(Terminate),
    /// POST this signed `room_update` to the registered webhook.
    Deliver(Delivery),
    /// Push this `RoomChannel` message to the ActionCable sockets of these
    /// access keys (every participant of the meeting; those connected get it).
    Cable(CablePush),
    /// Push this SEPP message to a user's signalling socket.
    Signal(Signal),
}

/// A `RoomChannel` message for the SDKs of one meeting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CablePush {
    /// Every participant of the meeting (those connected get it).
    pub access_keys: Vec<String>,
    /// The message, sent under the socket's `RoomChannel` identifier.
    pub message: serde_json::Value,
}

/// Why `POST /rooms/{access_key}/messages` was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageError {
    /// The access key (404/410).
    Key(KeyError),
    /// The body (400), naming the field.
    Invalid(&'static str),
}

/// A SEPP push from the conference to one participant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signal {
    /// Whose signalling socket gets it.
    pub access_key: String,
    /// That user's SEPP client id (the push's `to`).
    pub client_id: String,
    /// The conference (the push's `from`).
    pub conf_id: String,
    /// What it says.
    pub push: Push,
}

/// What a [`Signal`] carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Push {
    /// eyeson's `source_update` (the SDK's `podium`): the client ids in the
    /// call, in the order they joined.
    Podium {
        /// The client ids in the call.
        sources: Vec<String>,
    },
    /// eyeson's `voice_activity`: `user_id` started (`on`) or stopped speaking.
    VoiceActivity {
        /// Who.
        user_id: String,
        /// Started (true) or stopped (false) speaking.
        on: bool,
    },
}

/// Why a room-id call (`GET /rooms/{room_id}/users`, `POST /_sandbox/bots`)
/// found no meeting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RoomError {
    /// No meeting was ever created in the room (404).
    Unknown,
    /// The room's last meeting ended and no new one was created (410).
    Gone,
}

/// Why `POST /_sandbox/bots` was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BotError {
    /// No meeting in the room (404/410).
    Room(RoomError),
    /// The API key is locked (423): its users cannot join a call.
    Locked,
    /// `on`, but a bot of that name is in the call already (409).
    AlreadyInCall,
    /// Not `on`, but no bot of that name is in the call (409).
    NotInCall,
}

/// Why voice activity cannot be sent for an access key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VoiceError {
    /// The access key (404/410/423).
    Key(KeyError),
    /// The user is not in the call (never joined it, or left).
    NotInCall,
}

/// The addressing of a `call_terminated` push.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Terminate {
    /// Whose signalling socket gets it.
    pub access_key: String,
    /// The call that ends.
    pub call_id: String,
    /// That user's SEPP client id.
    pub client_id: String,
    /// The conference.
    pub conf_id: String,
}

/// A webhook delivery: the exact body to sign and POST.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// The registered webhook URL.
    pub url: String,
    /// The room it is about (for the log).
    pub room_id: String,
    /// The JSON body ([`eyeson_api::wire::Delivery`]), signed as is.
    pub body: String,
}

/// A user as eyeson shows it (`user{…}`, `GET /rooms/{key}/users/{id}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UserView {
    /// The user id (also the SEPP client id).
    pub id: String,
    /// The display name.
    pub name: String,
    /// Never set by the sandbox.
    pub avatar: Option<String>,
    /// Joined with the guest token.
    pub guest: bool,
}

/// Everything the access-key answers need about one participant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// The participant's access key.
    pub access_key: String,
    /// The room, as eyeson shows it.
    pub room: Room,
    /// The participant.
    pub user: UserView,
    /// The participant's SEPP client id.
    pub client_id: String,
    /// The meeting's SEPP conference id.
    pub conf_id: String,
}

#[derive(Debug)]
struct Meeting {
    room_id: String,
    name: String,
    guest_token: String,
    conf_id: String,
    started_at: Option<SystemTime>,
    ended: bool,
}

#[derive(Debug)]
struct Participant {
    meeting: usize,
    user_id: String,
    name: String,
    client_id: String,
    /// `Some(call id)` while the user is in the call.
    call: Option<String>,
    /// Joined with the room's guest token (`POST /guests/…`).
    guest: bool,
    /// When the user joined the call, in joins of the whole sandbox: orders
    /// the podium.
    joined: u64,
    /// When the user was handed its access key, in users of the whole
    /// sandbox: orders `GET /rooms/{room_id}/users`.
    created: u64,
    /// Added by `POST /_sandbox/bots`: in the call without sockets, so it
    /// gets no pushes, and its access key is never handed out.
    bot: bool,
}

/// Random-looking identifiers from a seed: deterministic in tests, seeded
/// from the OS in the binary. Only `[A-Za-z0-9]`, because the SDK strips every
/// non-word character from an access key before using it.
#[derive(Debug)]
struct Ids {
    state: u64,
}

impl Ids {
    fn next_u64(&mut self) -> u64 {
        // splitmix64: plenty for identifiers of a local tool.
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn token(&mut self, len: usize) -> String {
        const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
        (0..len)
            .map(|_| ALPHABET[(self.next_u64() % ALPHABET.len() as u64) as usize] as char)
            .collect()
    }
}

/// The whole sandbox state. One instance behind one mutex: every operation is
/// short and never awaits, so a lock is simpler than an actor here.
#[derive(Debug)]
pub struct Sandbox {
    api_key: String,
    meetings: Vec<Meeting>,
    /// room id → index of its pending or running meeting.
    current: BTreeMap<String, usize>,
    participants: HashMap<String, Participant>,
    webhook: Option<WebhookAnswer>,
    events: Vec<Event>,
    ids: Ids,
    /// Calls joined so far (see `Participant::joined`).
    joins: u64,
    /// Users created so far (see `Participant::created`).
    users: u64,
    /// `POST /_sandbox/lock`: the API key answers 423 to everything, as
    /// eyeson's does once its usage limits are exceeded.
    locked: bool,
}

/// Why `POST /_sandbox/lock` was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnknownApiKey;

impl Sandbox {
    /// A sandbox accepting `api_key`; `seed` makes the identifiers.
    pub fn new(api_key: impl Into<String>, seed: u64) -> Self {
        Sandbox {
            api_key: api_key.into(),
            meetings: Vec::new(),
            current: BTreeMap::new(),
            participants: HashMap::new(),
            webhook: None,
            events: Vec::new(),
            ids: Ids { state: seed },
            joins: 0,
            users: 0,
            locked: false,
        }
    }

    /// The API key, which also keys the webhook signatures.
    pub fn api_key(&self) -> &str {
        &self.api_key
    }

    /// Whether the API key is locked (every call of its account answers 423).
    pub fn locked(&self) -> bool {
        self.locked
    }

    /// The testing control `POST /_sandbox/lock`: locks (`on`) or unlocks
    /// `api_key`, logged as `api_key_locked`. Refused for any other key (the
    /// sandbox knows one).
    pub fn set_locked(
        &mut self,
        api_key: &str,
        on: bool,
        now: SystemTime,
    ) -> Result<(), UnknownApiKey> {
        if api_key.as_bytes() != self.api_key.as_bytes() {
            return Err(UnknownApiKey);
        }
        self.locked = on;
        let mut e = Event::new(Kind::ApiKeyLocked, "", now);
        e.on = Some(on);
        self.events.push(e);
        Ok(())
    }

    /// A fresh random token of `len` characters of `[A-Za-z0-9]`.
    pub fn token(&mut self, len: usize) -> String {
        self.ids.token(len)
    }

    /// The log, oldest first.
    pub fn events(&self) -> &[Event] {
        &self.events
    }

    /// `POST /rooms`: joins the pending or running meeting of `room_id` (a
    /// fresh id when `None`), creating one if there is none, and hands out a
    /// new access key for `user_name`.
    pub fn create_or_join(
        &mut self,
        room_id: Option<&str>,
        room_name: Option<&str>,
        user_name: &str,
    ) -> Session {
        let room_id = match room_id {
            Some(id) => id.to_owned(),
            None => self.ids.token(24),
        };
        let index = match self.current.get(&room_id) {
            Some(&i) => i,
            None => {
                let meeting = Meeting {
                    name: room_name.unwrap_or(&room_id).to_owned(),
                    guest_token: self.ids.token(24),
                    conf_id: format!("conf-{}", self.ids.token(16)),
                    room_id: room_id.clone(),
                    started_at: None,
                    ended: false,
                };
                self.meetings.push(meeting);
                self.current.insert(room_id, self.meetings.len() - 1);
                self.meetings.len() - 1
            }
        };
        let access_key = self.add_user(index, user_name, false, false);
        self.view(&access_key).expect("just inserted")
    }

    /// A new participant of meeting `index`, not in the call; its access key.
    fn add_user(&mut self, index: usize, name: &str, guest: bool, bot: bool) -> String {
        let access_key = self.ids.token(24);
        let user_id = self.ids.token(24);
        self.users += 1;
        let participant = Participant {
            meeting: index,
            client_id: user_id.clone(),
            user_id,
            name: name.to_owned(),
            call: None,
            guest,
            joined: 0,
            created: self.users,
            bot,
        };
        self.participants.insert(access_key.clone(), participant);
        access_key
    }

    /// `POST /guests/{guest_token}`: joins the *running* meeting the token
    /// belongs to as a guest and hands out an access key; `Gone` (410) when
    /// no meeting runs for it (never started, ended, or an unknown token).
    /// Unlike `POST /rooms` it never creates a meeting, and the guest counts
    /// for nothing until its own `call_start`: a guest that never connects
    /// keeps no meeting alive.
    pub fn guest_join(
        &mut self,
        guest_token: &str,
        name: &str,
        now: SystemTime,
    ) -> Result<Session, KeyError> {
        if self.locked {
            return Err(KeyError::Locked);
        }
        let index = self
            .current
            .values()
            .copied()
            .find(|&i| {
                let m = &self.meetings[i];
                m.guest_token == guest_token && m.started_at.is_some() && !m.ended
            })
            .ok_or(KeyError::Gone)?;
        let access_key = self.add_user(index, name, true, false);
        let participant = &self.participants[&access_key];
        let mut e = Event::new(Kind::GuestJoined, &self.meetings[index].room_id, now);
        e.user_id = Some(participant.user_id.clone());
        e.user_name = Some(participant.name.clone());
        self.events.push(e);
        self.view(&access_key)
    }

    /// `POST /rooms/{access_key}/messages`: a `chat` message from the key's
    /// user to everyone in its meeting, as the `RoomChannel` message the
    /// SDK turns into a `chat` event (`{type, cid, content, created_at}`;
    /// the SDK looks the sender up by `cid` through `GET
    /// /rooms/{key}/users/{cid}`). Returns the push and the index of its
    /// `chat` event (for [`Sandbox::chat_reached`]).
    pub fn message(
        &mut self,
        access_key: &str,
        kind: Option<&str>,
        content: Option<&str>,
        now: SystemTime,
    ) -> Result<(CablePush, usize), MessageError> {
        self.session(access_key).map_err(MessageError::Key)?;
        match kind {
            Some(wire::MessageForm::CHAT) => {}
            Some(_) => return Err(MessageError::Invalid("type must be chat")),
            None => return Err(MessageError::Invalid("type is required")),
        }
        let content = content
            .filter(|c| !c.trim().is_empty())
            .ok_or(MessageError::Invalid("content is required"))?;
        let sender = &self.participants[access_key];
        let index = sender.meeting;
        let mut access_keys: Vec<String> = self
            .participants
            .iter()
            .filter(|(_, p)| p.meeting == index)
            .map(|(k, _)| k.clone())
            .collect();
        access_keys.sort();
        let message = json!({
            "type": "chat",
            "cid": sender.user_id,
            "content": content,
            "created_at": rfc3339(now),
        });
        let mut e = Event::new(Kind::Chat, &self.meetings[index].room_id, now);
        e.user_id = Some(sender.user_id.clone());
        e.user_name = Some(sender.name.clone());
        e.content = Some(content.to_owned());
        e.started_at = self.meetings[index].started_at.map(rfc3339);
        self.events.push(e);
        Ok((
            CablePush {
                access_keys,
                message,
            },
            self.events.len() - 1,
        ))
    }

    /// Records on `chat` event `index` how many SDKs it was pushed to (only
    /// the adapter knows which are connected).
    pub fn chat_reached(&mut self, index: usize, sockets: u16) {
        if let Some(e) = self.events.get_mut(index).filter(|e| e.kind == Kind::Chat) {
            e.reached = Some(sockets);
        }
    }

    /// `GET /rooms/{access_key}`: the participant behind a key, as every
    /// access-key call checks it: unknown (404), the API key locked (423),
    /// the meeting ended (410).
    pub fn session(&self, access_key: &str) -> Result<Session, KeyError> {
        if self.locked && self.participants.contains_key(access_key) {
            return Err(KeyError::Locked);
        }
        self.view(access_key)
    }

    /// The participant behind a key, lock or not.
    fn view(&self, access_key: &str) -> Result<Session, KeyError> {
        let p = self.participants.get(access_key).ok_or(KeyError::Unknown)?;
        let m = &self.meetings[p.meeting];
        if m.ended {
            return Err(KeyError::Gone);
        }
        Ok(Session {
            access_key: access_key.to_owned(),
            room: room_view(m),
            user: user_view(p),
            client_id: p.client_id.clone(),
            conf_id: m.conf_id.clone(),
        })
    }

    /// `GET /rooms/{access_key}/users/{user_id}`: a user of the same meeting.
    pub fn user(&self, access_key: &str, user_id: &str) -> Result<Option<UserView>, KeyError> {
        self.session(access_key)?;
        let meeting = self.participants[access_key].meeting;
        Ok(self
            .participants
            .values()
            .find(|p| p.meeting == meeting && p.user_id == user_id)
            .map(user_view))
    }

    /// The pending or running meeting of `room_id`: `Unknown` (404) when
    /// the room never had one, `Gone` (410) when its last one ended.
    fn room_meeting(&self, room_id: &str) -> Result<usize, RoomError> {
        match self.current.get(room_id) {
            Some(&index) => Ok(index),
            None if self.meetings.iter().any(|m| m.room_id == room_id) => Err(RoomError::Gone),
            None => Err(RoomError::Unknown),
        }
    }

    /// `GET /rooms/{room_id}/users` (API key): every participant of the
    /// room's pending or running meeting, in the order they were handed
    /// their access keys (`POST /rooms`, `POST /guests/{token}`, bots), or
    /// with `online_only` those in the call now. A user is online from its
    /// SEPP `call_start` until its `call_terminate` or its SEPP socket
    /// closing; a bot while it is on.
    pub fn room_users(&self, room_id: &str, online_only: bool) -> Result<Vec<RoomUser>, RoomError> {
        let index = self.room_meeting(room_id)?;
        let mut users: Vec<&Participant> = self
            .participants
            .values()
            .filter(|p| p.meeting == index && (p.call.is_some() || !online_only))
            .collect();
        users.sort_by_key(|p| p.created);
        Ok(users
            .into_iter()
            .map(|p| RoomUser {
                id: p.user_id.clone(),
                room_id: room_id.to_owned(),
                name: p.name.clone(),
                guest: p.guest,
                online: p.call.is_some(),
                avatar: None,
            })
            .collect())
    }

    /// The testing control `POST /_sandbox/bots`: a participant named
    /// `name` that is in the call of the room's meeting without a browser
    /// (`on`), or leaves it (`!on`, logged `user_left` `disconnect`). A bot
    /// is found again by its name: turned on again, the same user rejoins.
    /// It is a participant like any other: it starts a pending meeting,
    /// keeps a meeting open while it is on (the last one out ends it),
    /// shows in the podium, and gets `user_left` `meeting_ended` when the
    /// meeting is shut down; it only gets no pushes. Logged as `bot`,
    /// before the consequences.
    pub fn bot(
        &mut self,
        room_id: &str,
        name: &str,
        on: bool,
        now: SystemTime,
    ) -> Result<Vec<Effect>, BotError> {
        // As for access keys: 404, then 423 (joining only: a user's socket
        // may close while the key is locked), then 410.
        let index = match self.room_meeting(room_id) {
            Err(RoomError::Unknown) => return Err(BotError::Room(RoomError::Unknown)),
            _ if on && self.locked => return Err(BotError::Locked),
            found => found.map_err(BotError::Room)?,
        };
        let found = self
            .participants
            .iter()
            .filter(|(_, p)| p.meeting == index && p.bot && p.name == name)
            .map(|(k, p)| (k.clone(), p.call.is_some()))
            .next();
        let access_key = match (found, on) {
            (Some((_, true)), true) => return Err(BotError::AlreadyInCall),
            (Some((_, false)) | None, false) => return Err(BotError::NotInCall),
            (Some((key, _)), _) => key,
            (None, true) => self.add_user(index, name, false, true),
        };
        let mut e = Event::new(Kind::Bot, room_id, now);
        e.user_id = Some(self.participants[&access_key].user_id.clone());
        e.user_name = Some(name.to_owned());
        e.on = Some(on);
        self.events.push(e);
        if on {
            Ok(self.join_call(&access_key, now).1)
        } else {
            Ok(self.leave(&access_key, Reason::Disconnect, now))
        }
    }

    /// `GET /rooms` (API key): the running meetings.
    pub fn running(&self) -> Vec<Room> {
        self.current
            .values()
            .map(|&i| &self.meetings[i])
            .filter(|m| m.started_at.is_some())
            .map(room_view)
            .collect()
    }

    /// SEPP `call_start` (and `call_resume`): the user is in the call. Starts
    /// the meeting if it is the first; everyone in the call gets the new
    /// podium (a resuming user, on a new socket, gets it alone). Returns the
    /// call id.
    pub fn call_start(
        &mut self,
        access_key: &str,
        now: SystemTime,
    ) -> Result<(String, Vec<Effect>), KeyError> {
        self.session(access_key)?;
        Ok(self.join_call(access_key, now))
    }

    /// The user of `access_key` (a known key of a meeting not ended) is in
    /// the call: see [`Sandbox::call_start`].
    fn join_call(&mut self, access_key: &str, now: SystemTime) -> (String, Vec<Effect>) {
        let call_id = format!("call-{}", self.ids.token(16));
        let p = self
            .participants
            .get_mut(access_key)
            .expect("a known access key");
        if let Some(existing) = p.call.clone() {
            // A second call_start on the same key (a resume): same call.
            let (index, client_id) = (p.meeting, p.client_id.clone());
            let podium = Effect::Signal(Signal {
                access_key: access_key.to_owned(),
                client_id,
                conf_id: self.meetings[index].conf_id.clone(),
                push: self.podium(index),
            });
            return (existing, vec![podium]);
        }
        p.call = Some(call_id.clone());
        self.joins += 1;
        p.joined = self.joins;
        let (index, user_id, name) = (p.meeting, p.user_id.clone(), p.name.clone());
        let mut effects = Vec::new();
        if self.meetings[index].started_at.is_none() {
            self.meetings[index].started_at = Some(now);
            let m = &self.meetings[index];
            let mut e = Event::new(Kind::MeetingStarted, &m.room_id, now);
            e.started_at = Some(rfc3339(now));
            self.events.push(e);
            let room = room_view(m);
            effects.extend(self.delivery(room, now));
        }
        let mut e = Event::new(Kind::UserJoined, &self.meetings[index].room_id, now);
        e.user_id = Some(user_id);
        e.user_name = Some(name);
        self.events.push(e);
        effects.extend(self.broadcast(index, &self.podium(index)));
        (call_id, effects)
    }

    /// Who is in the call of meeting `index`, in the order they joined.
    fn in_call(&self, index: usize) -> Vec<(&String, &Participant)> {
        let mut in_call: Vec<(&String, &Participant)> = self
            .participants
            .iter()
            .filter(|(_, p)| p.meeting == index && p.call.is_some())
            .collect();
        in_call.sort_by_key(|(_, p)| p.joined);
        in_call
    }

    /// The podium of meeting `index`.
    fn podium(&self, index: usize) -> Push {
        Push::Podium {
            sources: self
                .in_call(index)
                .iter()
                .map(|(_, p)| p.client_id.clone())
                .collect(),
        }
    }

    /// `push` for everyone in the call of meeting `index` (but bots, which
    /// have no socket to push to).
    fn broadcast(&self, index: usize, push: &Push) -> Vec<Effect> {
        let conf_id = &self.meetings[index].conf_id;
        self.in_call(index)
            .into_iter()
            .filter(|(_, p)| !p.bot)
            .map(|(key, p)| {
                Effect::Signal(Signal {
                    access_key: key.clone(),
                    client_id: p.client_id.clone(),
                    conf_id: conf_id.clone(),
                    push: push.clone(),
                })
            })
            .collect()
    }

    /// The testing control `POST /_sandbox/voice`: the user behind
    /// `access_key` starts (`on`) or stops speaking. Everyone in the call,
    /// the speaker included, gets the voice activity, as with eyeson.
    pub fn voice(
        &mut self,
        access_key: &str,
        on: bool,
        now: SystemTime,
    ) -> Result<Vec<Effect>, VoiceError> {
        self.session(access_key).map_err(VoiceError::Key)?;
        let p = &self.participants[access_key];
        if p.call.is_none() {
            return Err(VoiceError::NotInCall);
        }
        let (index, user_id) = (p.meeting, p.user_id.clone());
        let mut e = Event::new(Kind::VoiceActivity, &self.meetings[index].room_id, now);
        e.user_id = Some(user_id.clone());
        e.user_name = Some(p.name.clone());
        e.on = Some(on);
        self.events.push(e);
        Ok(self.broadcast(index, &Push::VoiceActivity { user_id, on }))
    }

    /// SEPP `call_terminate` from the client.
    pub fn call_terminate(&mut self, access_key: &str, now: SystemTime) -> Vec<Effect> {
        self.leave(access_key, Reason::Terminate, now)
    }

    /// The SEPP socket closed (without `call_terminate` before it).
    pub fn disconnect(&mut self, access_key: &str, now: SystemTime) -> Vec<Effect> {
        self.leave(access_key, Reason::Disconnect, now)
    }

    fn leave(&mut self, access_key: &str, reason: Reason, now: SystemTime) -> Vec<Effect> {
        let Some(p) = self.participants.get_mut(access_key) else {
            return Vec::new();
        };
        if p.call.take().is_none() {
            return Vec::new();
        }
        let index = p.meeting;
        let mut e = Event::new(Kind::UserLeft, &self.meetings[index].room_id, now);
        e.reason = Some(reason);
        e.user_id = Some(p.user_id.clone());
        e.user_name = Some(p.name.clone());
        self.events.push(e);
        let anyone_left = self
            .participants
            .values()
            .any(|p| p.meeting == index && p.call.is_some());
        if self.meetings[index].ended {
            Vec::new()
        } else if anyone_left {
            self.broadcast(index, &self.podium(index))
        } else {
            self.end(index, Reason::LastUserLeft, now)
        }
    }

    /// API-key `DELETE /rooms/{room_id}`: ends the running meeting of the
    /// room. Returns the status to answer (204; 404 when none was running;
    /// 423, ending nothing, while the API key is locked)
    /// and logs it as `api_delete`.
    pub fn api_delete(&mut self, room_id: &str, now: SystemTime) -> (u16, Vec<Effect>) {
        let running = self
            .current
            .get(room_id)
            .copied()
            .filter(|&i| self.meetings[i].started_at.is_some() && !self.locked);
        let status = match running {
            _ if self.locked => 423,
            Some(_) => 204,
            None => 404,
        };
        let mut e = Event::new(Kind::ApiDelete, room_id, now);
        e.status = Some(status);
        self.events.push(e);
        let effects = match running {
            Some(i) => self.end(i, Reason::ApiDelete, now),
            None => Vec::new(),
        };
        (status, effects)
    }

    /// The SDK's own `DELETE /rooms/{access_key}` (`terminate_meeting`): ends
    /// the meeting for everyone, started or not.
    pub fn key_delete(
        &mut self,
        access_key: &str,
        now: SystemTime,
    ) -> Result<Vec<Effect>, KeyError> {
        self.session(access_key)?;
        let index = self.participants[access_key].meeting;
        Ok(self.end(index, Reason::ApiDelete, now))
    }

    fn end(&mut self, index: usize, reason: Reason, now: SystemTime) -> Vec<Effect> {
        let mut effects = Vec::new();
        let mut keys: Vec<String> = self
            .participants
            .iter()
            .filter(|(_, p)| p.meeting == index && p.call.is_some())
            .map(|(k, _)| k.clone())
            .collect();
        keys.sort(); // a stable order for the log
        let m = &self.meetings[index];
        for key in keys {
            let p = self.participants.get_mut(&key).expect("listed above");
            let call_id = p.call.take().expect("filtered on call");
            let mut e = Event::new(Kind::UserLeft, &m.room_id, now);
            e.reason = Some(Reason::MeetingEnded);
            e.user_id = Some(p.user_id.clone());
            e.user_name = Some(p.name.clone());
            self.events.push(e);
            if p.bot {
                continue; // no socket to tell
            }
            effects.push(Effect::Terminate(Terminate {
                access_key: key,
                call_id,
                client_id: p.client_id.clone(),
                conf_id: m.conf_id.clone(),
            }));
        }
        let m = &mut self.meetings[index];
        m.ended = true;
        if self.current.get(&m.room_id) == Some(&index) {
            self.current.remove(&m.room_id);
        }
        let m = &self.meetings[index];
        let mut e = Event::new(Kind::MeetingEnded, &m.room_id, now);
        e.reason = Some(reason);
        e.started_at = m.started_at.map(rfc3339);
        // A meeting that never started was never announced: nothing to take
        // back. Otherwise, like eyeson's documented shutdown delivery:
        // `ready: false, started_at: null`.
        if m.started_at.is_some() {
            let room = Room {
                id: m.room_id.clone(),
                name: m.name.clone(),
                ready: false,
                started_at: None,
                shutdown: true,
                guest_token: None,
            };
            effects.extend(self.delivery(room, now));
        }
        self.events.push(e);
        effects
    }

    fn delivery(&self, room: Room, now: SystemTime) -> Option<Effect> {
        let hook = self.webhook.as_ref()?;
        if !hook.types.contains(wire::ROOM_UPDATE) {
            return None;
        }
        let room_id = room.id.clone();
        let body = wire::Delivery {
            timestamp: now.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs(),
            kind: wire::ROOM_UPDATE.to_owned(),
            room,
        };
        Some(Effect::Deliver(Delivery {
            url: hook.url.clone(),
            room_id,
            body: serde_json::to_string(&body).expect("a delivery serializes"),
        }))
    }

    /// The testing control for a meeting its users run elsewhere (a
    /// service's tests, which see no browser): a meeting of `room_id` has
    /// been running since `started_at`, with `guest_token` (a fresh one when
    /// `None`). Logged and announced like a first `call_start`; a meeting
    /// already current in the room ends first, as its last user left.
    pub fn start_elsewhere(
        &mut self,
        room_id: &str,
        guest_token: Option<&str>,
        started_at: SystemTime,
        now: SystemTime,
    ) -> Vec<Effect> {
        let mut effects = self.end_elsewhere(room_id, now);
        let meeting = Meeting {
            room_id: room_id.to_owned(),
            name: room_id.to_owned(),
            guest_token: match guest_token {
                Some(t) => t.to_owned(),
                None => self.ids.token(24),
            },
            conf_id: format!("conf-{}", self.ids.token(16)),
            started_at: Some(started_at),
            ended: false,
        };
        let mut e = Event::new(Kind::MeetingStarted, room_id, now);
        e.started_at = Some(rfc3339(started_at));
        self.events.push(e);
        let room = room_view(&meeting);
        self.meetings.push(meeting);
        self.current
            .insert(room_id.to_owned(), self.meetings.len() - 1);
        effects.extend(self.delivery(room, now));
        effects
    }

    /// The testing control for a meeting whose last user left elsewhere:
    /// ends the current meeting of `room_id`, if any.
    pub fn end_elsewhere(&mut self, room_id: &str, now: SystemTime) -> Vec<Effect> {
        match self.current.get(room_id).copied() {
            Some(index) => self.end(index, Reason::LastUserLeft, now),
            None => Vec::new(),
        }
    }

    /// Every access key handed out for meetings of `room_id`, ended ones
    /// included, sorted: lets a test name the key a client was given.
    /// Bots' keys are never handed out.
    pub fn access_keys(&self, room_id: &str) -> Vec<String> {
        let mut keys: Vec<String> = self
            .participants
            .iter()
            .filter(|(_, p)| self.meetings[p.meeting].room_id == room_id && !p.bot)
            .map(|(k, _)| k.clone())
            .collect();
        keys.sort();
        keys
    }

    /// The testing control for a registration made elsewhere (another
    /// application on the same API key): `GET /webhooks` answers `hook`
    /// until it is replaced or deleted.
    pub fn set_webhook_answer(&mut self, hook: Option<WebhookAnswer>) {
        self.webhook = hook;
    }

    /// `POST /webhooks`: registers (replacing any previous registration, as
    /// eyeson does: one webhook per API key). `types` is eyeson's one
    /// comma-separated string.
    pub fn set_webhook(&mut self, url: &str, types: &str) -> WebhookAnswer {
        let hook = WebhookAnswer {
            id: self.ids.token(24),
            url: url.to_owned(),
            types: WebhookTypes::List(
                types
                    .split(',')
                    .map(str::trim)
                    .filter(|t| !t.is_empty())
                    .map(str::to_owned)
                    .collect(),
            ),
            last_request_sent_at: None,
            last_response_code: None,
        };
        self.webhook = Some(hook.clone());
        hook
    }

    /// `GET /webhooks`.
    pub fn webhook(&self) -> Option<&WebhookAnswer> {
        self.webhook.as_ref()
    }

    /// `DELETE /webhooks/{id}`: whether it was the registered one.
    pub fn delete_webhook(&mut self, id: &str) -> bool {
        if self.webhook.as_ref().is_some_and(|w| w.id == id) {
            self.webhook = None;
            true
        } else {
            false
        }
    }

    /// A delivery finished: `status` is the receiver's answer, 0 when it
    /// could not be reached.
    pub fn delivered(&mut self, delivery: &Delivery, status: u16, now: SystemTime) {
        let mut e = Event::new(Kind::WebhookDelivered, &delivery.room_id, now);
        e.status = Some(status);
        e.url = Some(delivery.url.clone());
        self.events.push(e);
        if let Some(hook) = self.webhook.as_mut().filter(|w| w.url == delivery.url) {
            hook.last_request_sent_at = Some(rfc3339(now));
            hook.last_response_code = Some(status.to_string());
        }
    }
}

fn room_view(m: &Meeting) -> Room {
    Room {
        id: m.room_id.clone(),
        name: m.name.clone(),
        ready: !m.ended,
        started_at: m.started_at.map(rfc3339),
        shutdown: m.ended,
        guest_token: Some(m.guest_token.clone()),
    }
}

fn user_view(p: &Participant) -> UserView {
    UserView {
        id: p.user_id.clone(),
        name: p.name.clone(),
        avatar: None,
        guest: p.guest,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn at(ms: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(1_700_000_000_000 + ms)
    }

    fn kinds(s: &Sandbox) -> Vec<(Kind, Option<Reason>, Option<String>)> {
        s.events()
            .iter()
            .map(|e| (e.kind, e.reason, e.user_name.clone()))
            .collect()
    }

    fn deliveries(effects: &[Effect]) -> Vec<serde_json::Value> {
        effects
            .iter()
            .filter_map(|e| match e {
                Effect::Deliver(d) => Some(serde_json::from_str(&d.body).unwrap()),
                _ => None,
            })
            .collect()
    }

    fn signals(effects: &[Effect]) -> Vec<(String, Push)> {
        effects
            .iter()
            .filter_map(|e| match e {
                Effect::Signal(s) => Some((s.access_key.clone(), s.push.clone())),
                _ => None,
            })
            .collect()
    }

    fn podium(ids: &[&str]) -> Push {
        Push::Podium {
            sources: ids.iter().map(|s| (*s).to_owned()).collect(),
        }
    }

    #[test]
    fn everyone_in_the_call_gets_the_podium_when_somebody_joins_or_leaves() {
        let mut s = Sandbox::new("k", 1);
        let a = s.create_or_join(Some("r"), None, "alice");
        let b = s.create_or_join(Some("r"), None, "bob");
        let c = s.create_or_join(Some("r"), None, "carol");
        let elsewhere = s.create_or_join(Some("other"), None, "dave");
        let (ka, kb, kc) = (&a.access_key, &b.access_key, &c.access_key);
        let (ua, ub, uc) = (a.user.id.as_str(), b.user.id.as_str(), c.user.id.as_str());
        assert_eq!(
            a.client_id, a.user.id,
            "the SDK looks client ids up as user ids"
        );

        let (_, fx) = s.call_start(ka, at(0)).unwrap();
        assert_eq!(signals(&fx), vec![(ka.clone(), podium(&[ua]))]);
        let (_, fx) = s.call_start(kb, at(1)).unwrap();
        assert_eq!(
            signals(&fx),
            vec![
                (ka.clone(), podium(&[ua, ub])),
                (kb.clone(), podium(&[ua, ub]))
            ]
        );
        let (_, fx) = s.call_start(&elsewhere.access_key, at(2)).unwrap();
        assert_eq!(signals(&fx).len(), 1, "another meeting's podium is its own");
        let (_, fx) = s.call_start(kc, at(3)).unwrap();
        assert_eq!(signals(&fx).len(), 3);
        assert!(signals(&fx)
            .iter()
            .all(|(_, p)| *p == podium(&[ua, ub, uc])));

        // A resume (a second call_start on a new socket) tells that user alone.
        let (_, fx) = s.call_start(kb, at(4)).unwrap();
        assert_eq!(signals(&fx), vec![(kb.clone(), podium(&[ua, ub, uc]))]);

        let fx = s.call_terminate(ka, at(5));
        assert_eq!(
            signals(&fx),
            vec![
                (kb.clone(), podium(&[ub, uc])),
                (kc.clone(), podium(&[ub, uc]))
            ]
        );
        let fx = s.disconnect(kc, at(6));
        assert_eq!(signals(&fx), vec![(kb.clone(), podium(&[ub]))]);
        // The last one out ends the meeting: nobody is left to tell.
        assert!(signals(&s.call_terminate(kb, at(7))).is_empty());

        // Rejoining the room starts a new meeting with a podium of one.
        let d = s.create_or_join(Some("r"), None, "alice again");
        let (_, fx) = s.call_start(&d.access_key, at(8)).unwrap();
        assert_eq!(
            signals(&fx),
            vec![(d.access_key.clone(), podium(&[&d.user.id]))]
        );
    }

    #[test]
    fn a_meeting_shut_down_gets_no_podium() {
        let mut s = Sandbox::new("k", 1);
        let a = s.create_or_join(Some("r"), None, "alice").access_key;
        let b = s.create_or_join(Some("r"), None, "bob").access_key;
        s.call_start(&a, at(0)).unwrap();
        s.call_start(&b, at(1)).unwrap();
        let (_, fx) = s.api_delete("r", at(2));
        assert!(signals(&fx).is_empty());
        assert_eq!(fx.len(), 2, "two call_terminated: {fx:?}");
    }

    #[test]
    fn voice_activity_goes_to_everyone_in_the_call_the_speaker_included() {
        let mut s = Sandbox::new("k", 1);
        let a = s.create_or_join(Some("r"), None, "alice");
        let b = s.create_or_join(Some("r"), None, "bob");
        let pending = s.create_or_join(Some("r"), None, "carol").access_key;
        let (ka, kb) = (&a.access_key, &b.access_key);
        assert_eq!(s.voice(ka, true, at(0)), Err(VoiceError::NotInCall));
        s.call_start(ka, at(1)).unwrap();
        s.call_start(kb, at(2)).unwrap();

        let speaking = |on| Push::VoiceActivity {
            user_id: b.user.id.clone(),
            on,
        };
        let fx = s.voice(kb, true, at(3)).unwrap();
        assert_eq!(
            signals(&fx),
            vec![(ka.clone(), speaking(true)), (kb.clone(), speaking(true))]
        );
        let fx = s.voice(kb, false, at(4)).unwrap();
        assert_eq!(
            signals(&fx),
            vec![(ka.clone(), speaking(false)), (kb.clone(), speaking(false))]
        );
        let logged = s.events().last().unwrap();
        assert_eq!(logged.kind, Kind::VoiceActivity);
        assert_eq!(logged.user_id.as_deref(), Some(b.user.id.as_str()));
        assert_eq!(logged.on, Some(false));

        assert_eq!(s.voice(&pending, true, at(5)), Err(VoiceError::NotInCall));
        assert_eq!(
            s.voice("nope", true, at(5)),
            Err(VoiceError::Key(KeyError::Unknown))
        );
        s.call_terminate(ka, at(6));
        assert_eq!(s.voice(ka, true, at(7)), Err(VoiceError::NotInCall), "left");
        let fx = s.voice(kb, true, at(8)).unwrap();
        assert_eq!(signals(&fx), vec![(kb.clone(), speaking(true))], "alone");
        s.call_terminate(kb, at(9));
        assert_eq!(
            s.voice(kb, true, at(10)),
            Err(VoiceError::Key(KeyError::Gone))
        );
    }

    #[test]
    fn access_keys_are_word_characters_only() {
        let mut s = Sandbox::new("k", 1);
        for i in 0..50 {
            let key = s
                .create_or_join(Some("r"), None, &format!("u{i}"))
                .access_key;
            assert!(
                key.len() >= 16 && key.chars().all(|c| c.is_ascii_alphanumeric()),
                "{key}"
            );
        }
    }

    #[test]
    fn a_meeting_starts_at_the_first_call_and_ends_with_its_last_user() {
        let mut s = Sandbox::new("k", 1);
        s.set_webhook("http://hook", "room_update");
        let alice = s.create_or_join(Some("r"), None, "alice");
        let a = alice.access_key;
        let b = s.create_or_join(Some("r"), None, "bob").access_key;
        assert!(s.running().is_empty(), "pending until somebody calls");

        let (_, fx) = s.call_start(&a, at(0)).unwrap();
        let started = deliveries(&fx);
        assert_eq!(started.len(), 1);
        assert_eq!(started[0]["room"]["started_at"], "2023-11-14T22:13:20.000Z");
        assert_eq!(started[0]["room"]["shutdown"], false);
        // The token the participants' SDKs have: the hard-limit service
        // shows the deadline to it.
        assert_eq!(
            started[0]["room"]["guest_token"],
            alice.room.guest_token.as_deref().unwrap()
        );
        let (_, fx) = s.call_start(&b, at(5)).unwrap();
        assert!(
            deliveries(&fx).is_empty(),
            "only the first call starts the meeting"
        );
        assert_eq!(s.running().len(), 1);

        assert!(deliveries(&s.call_terminate(&a, at(10))).is_empty());
        assert!(
            s.disconnect(&a, at(11)).is_empty(),
            "a socket closing after call_terminate is no second leave"
        );
        let fx = s.disconnect(&b, at(20));
        let ended = deliveries(&fx);
        assert_eq!(ended[0]["room"]["shutdown"], true);
        assert_eq!(ended[0]["room"]["started_at"], serde_json::Value::Null);
        assert_eq!(ended[0]["timestamp"], 1_700_000_000);

        assert_eq!(
            kinds(&s),
            vec![
                (Kind::MeetingStarted, None, None),
                (Kind::UserJoined, None, Some("alice".into())),
                (Kind::UserJoined, None, Some("bob".into())),
                (
                    Kind::UserLeft,
                    Some(Reason::Terminate),
                    Some("alice".into())
                ),
                (Kind::UserLeft, Some(Reason::Disconnect), Some("bob".into())),
                (Kind::MeetingEnded, Some(Reason::LastUserLeft), None),
            ]
        );
        assert_eq!(s.session(&a), Err(KeyError::Gone));
        assert_eq!(s.session("nope"), Err(KeyError::Unknown));
        assert!(s.running().is_empty());

        // The room hosts a new meeting afterwards.
        let c = s.create_or_join(Some("r"), None, "carol");
        assert!(c.room.started_at.is_none() && !c.room.shutdown);
    }

    #[test]
    fn api_delete_ends_the_running_meeting_and_terminates_its_users() {
        let mut s = Sandbox::new("k", 1);
        let a = s.create_or_join(Some("r"), None, "alice").access_key;
        let b = s.create_or_join(Some("r"), None, "bob").access_key;
        assert_eq!(
            s.api_delete("r", at(0)).0,
            404,
            "a pending meeting is not running"
        );
        let (call_a, _) = s.call_start(&a, at(1)).unwrap();
        s.call_start(&b, at(2)).unwrap();

        let (status, fx) = s.api_delete("r", at(3));
        assert_eq!(status, 204);
        let terminated: Vec<&String> = fx
            .iter()
            .filter_map(|e| match e {
                Effect::Terminate(t) => Some(&t.call_id),
                _ => None,
            })
            .collect();
        assert_eq!(terminated.len(), 2);
        assert!(terminated.contains(&&call_a));
        assert!(deliveries(&fx).is_empty(), "no webhook registered");

        let log = kinds(&s);
        assert_eq!(log[log.len() - 4].0, Kind::ApiDelete);
        assert_eq!(
            log[log.len() - 3..]
                .iter()
                .map(|k| (k.0, k.1))
                .collect::<Vec<_>>(),
            vec![
                (Kind::UserLeft, Some(Reason::MeetingEnded)),
                (Kind::UserLeft, Some(Reason::MeetingEnded)),
                (Kind::MeetingEnded, Some(Reason::ApiDelete)),
            ]
        );
        assert_eq!(s.api_delete("r", at(4)).0, 404);
        assert_eq!(s.events().last().unwrap().status, Some(404));
        assert!(s.call_terminate(&a, at(5)).is_empty(), "already out");
    }

    #[test]
    fn webhooks_are_replaced_filtered_by_type_and_record_their_status() {
        let mut s = Sandbox::new("k", 1);
        let first = s.set_webhook("http://one", "room_update");
        s.set_webhook("http://two", "recording_update, room_update");
        assert!(!s.delete_webhook(&first.id));
        assert_eq!(
            s.webhook().unwrap().types,
            WebhookTypes::List(vec!["recording_update".into(), "room_update".into()])
        );

        let a = s.create_or_join(None, Some("Room"), "alice").access_key;
        let (_, fx) = s.call_start(&a, at(0)).unwrap();
        let Effect::Deliver(d) = &fx[0] else {
            panic!("{fx:?}")
        };
        assert_eq!(d.url, "http://two");
        s.delivered(d, 204, at(1));
        assert_eq!(
            s.webhook().unwrap().last_response_code.as_deref(),
            Some("204")
        );
        assert_eq!(s.events().last().unwrap().status, Some(204));

        s.set_webhook("http://three", "recording_update");
        assert!(deliveries(&s.call_terminate(&a, at(2))).is_empty());
        assert!(s.delete_webhook(&s.webhook().unwrap().id.clone()));
        assert!(s.webhook().is_none());
    }

    #[test]
    fn users_are_visible_to_their_meeting_only() {
        let mut s = Sandbox::new("k", 1);
        let a = s.create_or_join(Some("r"), None, "alice");
        let b = s.create_or_join(Some("r"), None, "bob");
        let c = s.create_or_join(Some("other"), None, "carol");
        assert_eq!(
            s.user(&a.access_key, &b.user.id).unwrap().unwrap().name,
            "bob"
        );
        assert_eq!(s.user(&a.access_key, &c.user.id).unwrap(), None);
        assert_eq!(s.user("nope", &b.user.id), Err(KeyError::Unknown));
    }

    /// `GET /rooms/{room_id}/users` as (name, online, guest).
    fn listed(s: &Sandbox, room_id: &str, online_only: bool) -> Vec<(String, bool, bool)> {
        s.room_users(room_id, online_only)
            .unwrap()
            .into_iter()
            .map(|u| {
                assert_eq!(u.room_id, room_id);
                assert_eq!(u.avatar, None);
                (u.name, u.online, u.guest)
            })
            .collect()
    }

    fn user(name: &str, online: bool, guest: bool) -> (String, bool, bool) {
        (name.to_owned(), online, guest)
    }

    #[test]
    fn room_users_are_every_participant_or_those_in_the_call() {
        let mut s = Sandbox::new("k", 1);
        assert_eq!(s.room_users("r", false), Err(RoomError::Unknown));
        let a = s.create_or_join(Some("r"), None, "alice");
        let b = s.create_or_join(Some("r"), None, "bob");
        s.create_or_join(Some("other"), None, "carol");
        assert_eq!(
            listed(&s, "r", false),
            [user("alice", false, false), user("bob", false, false)],
            "a pending meeting's users, nobody connected"
        );
        assert!(listed(&s, "r", true).is_empty());

        s.call_start(&a.access_key, at(0)).unwrap();
        s.call_start(&b.access_key, at(1)).unwrap();
        let token = a.room.guest_token.clone().unwrap();
        let guest = s.guest_join(&token, "Meeting limit", at(2)).unwrap();
        assert_eq!(
            listed(&s, "r", true),
            [user("alice", true, false), user("bob", true, false)]
        );
        s.disconnect(&b.access_key, at(3));
        assert_eq!(listed(&s, "r", true), [user("alice", true, false)]);
        assert_eq!(
            listed(&s, "r", false),
            [
                user("alice", true, false),
                user("bob", false, false),
                user("Meeting limit", false, true)
            ],
            "in the order the keys were handed out"
        );
        s.call_start(&guest.access_key, at(4)).unwrap();
        let ids: Vec<String> = s
            .room_users("r", true)
            .unwrap()
            .into_iter()
            .map(|u| u.id)
            .collect();
        assert_eq!(ids, [a.user.id.clone(), guest.user.id.clone()]);

        s.api_delete("r", at(5));
        assert_eq!(s.room_users("r", false), Err(RoomError::Gone));
        assert_eq!(s.room_users("r", true), Err(RoomError::Gone));
        s.create_or_join(Some("r"), None, "dave");
        assert_eq!(
            listed(&s, "r", false),
            [user("dave", false, false)],
            "the room's new meeting has its own users"
        );
    }

    #[test]
    fn a_bot_is_a_participant_in_the_call_without_sockets() {
        let mut s = Sandbox::new("k", 1);
        s.set_webhook("http://hook", "room_update");
        assert_eq!(
            s.bot("r", "Recorder", true, at(0)),
            Err(BotError::Room(RoomError::Unknown))
        );
        let a = s.create_or_join(Some("r"), None, "alice");
        // It starts the pending meeting, as a first call_start does.
        let fx = s.bot("r", "Recorder", true, at(1)).unwrap();
        assert_eq!(deliveries(&fx).len(), 1, "announced: {fx:?}");
        assert!(signals(&fx).is_empty(), "a bot gets no pushes");
        assert_eq!(s.running().len(), 1);
        assert_eq!(
            listed(&s, "r", true),
            [user("Recorder", true, false)],
            "online without a browser"
        );
        let bot_id = s.room_users("r", true).unwrap()[0].id.clone();
        assert_eq!(
            s.bot("r", "Recorder", true, at(2)),
            Err(BotError::AlreadyInCall)
        );
        assert_eq!(s.bot("r", "Other", false, at(2)), Err(BotError::NotInCall));
        assert_eq!(
            s.bot("r", "alice", false, at(2)),
            Err(BotError::NotInCall),
            "only bots are bots"
        );

        // Alice sees it in the podium and can look it up.
        let (_, fx) = s.call_start(&a.access_key, at(3)).unwrap();
        assert_eq!(
            signals(&fx),
            vec![(a.access_key.clone(), podium(&[&bot_id, &a.user.id]))]
        );
        assert_eq!(
            s.user(&a.access_key, &bot_id).unwrap().unwrap().name,
            "Recorder"
        );
        assert_eq!(
            s.access_keys("r"),
            std::slice::from_ref(&a.access_key),
            "no bot keys"
        );

        // Alice leaves; the bot keeps the meeting open until it goes.
        s.call_terminate(&a.access_key, at(4));
        assert_eq!(s.running().len(), 1);
        let fx = s.bot("r", "Recorder", false, at(5)).unwrap();
        assert_eq!(deliveries(&fx)[0]["room"]["shutdown"], true);
        let log: Vec<_> = s.events().iter().rev().take(3).rev().collect();
        assert_eq!(
            (log[0].kind, log[0].on, log[0].user_id.as_deref()),
            (Kind::Bot, Some(false), Some(bot_id.as_str()))
        );
        assert_eq!(
            (log[1].kind, log[1].reason, log[1].user_name.as_deref()),
            (Kind::UserLeft, Some(Reason::Disconnect), Some("Recorder"))
        );
        assert_eq!(
            (log[2].kind, log[2].reason),
            (Kind::MeetingEnded, Some(Reason::LastUserLeft))
        );
        assert_eq!(
            s.bot("r", "Recorder", true, at(6)),
            Err(BotError::Room(RoomError::Gone))
        );
    }

    #[test]
    fn a_bot_rejoins_as_itself_and_is_shut_down_with_the_meeting() {
        let mut s = Sandbox::new("k", 1);
        let a = s.create_or_join(Some("r"), None, "alice").access_key;
        s.call_start(&a, at(0)).unwrap();
        s.bot("r", "Recorder", true, at(1)).unwrap();
        let first = s.room_users("r", true).unwrap()[1].id.clone();
        let fx = s.bot("r", "Recorder", false, at(2)).unwrap();
        assert_eq!(signals(&fx).len(), 1, "alice gets the podium");
        assert_eq!(
            listed(&s, "r", false),
            [user("alice", true, false), user("Recorder", false, false)]
        );
        s.bot("r", "Recorder", true, at(3)).unwrap();
        assert_eq!(s.room_users("r", true).unwrap()[1].id, first, "same user");

        s.set_locked("k", true, at(4)).unwrap();
        assert_eq!(s.bot("r", "Other", true, at(5)), Err(BotError::Locked));
        assert_eq!(
            s.bot("nope", "Other", true, at(5)),
            Err(BotError::Room(RoomError::Unknown)),
            "unknown stays 404"
        );
        s.set_locked("k", false, at(6)).unwrap();

        let (status, fx) = s.api_delete("r", at(7));
        assert_eq!(status, 204);
        let terminated: Vec<&str> = fx
            .iter()
            .filter_map(|e| match e {
                Effect::Terminate(t) => Some(t.access_key.as_str()),
                _ => None,
            })
            .collect();
        assert_eq!(terminated, [a.as_str()], "only sockets are told");
        let left: Vec<&str> = s
            .events()
            .iter()
            .filter(|e| e.kind == Kind::UserLeft && e.reason == Some(Reason::MeetingEnded))
            .filter_map(|e| e.user_name.as_deref())
            .collect();
        assert_eq!(left.len(), 2, "{left:?}");
        assert!(left.contains(&"Recorder"));
    }

    #[test]
    fn a_locked_key_refuses_every_access_key_and_ends_nothing() {
        let mut s = Sandbox::new("k", 1);
        let a = s.create_or_join(Some("r"), None, "alice");
        s.call_start(&a.access_key, at(0)).unwrap();
        assert_eq!(s.set_locked("other", true, at(1)), Err(UnknownApiKey));
        s.set_locked("k", true, at(1)).unwrap();
        assert_eq!(s.session(&a.access_key), Err(KeyError::Locked));
        assert_eq!(
            s.session("nope"),
            Err(KeyError::Unknown),
            "unknown stays 404"
        );
        assert_eq!(
            s.guest_join(a.room.guest_token.as_deref().unwrap(), "g", at(2)),
            Err(KeyError::Locked)
        );
        assert_eq!(s.key_delete(&a.access_key, at(2)), Err(KeyError::Locked));
        let (status, effects) = s.api_delete("r", at(3));
        assert_eq!((status, effects.len()), (423, 0));
        assert_eq!(s.running().len(), 1, "still running");
        s.set_locked("k", false, at(4)).unwrap();
        assert_eq!(s.api_delete("r", at(5)).0, 204);
        let locks: Vec<Option<bool>> = s
            .events()
            .iter()
            .filter(|e| e.kind == Kind::ApiKeyLocked)
            .map(|e| e.on)
            .collect();
        assert_eq!(locks, [Some(true), Some(false)]);
    }

    #[test]
    fn the_sdk_terminate_meeting_ends_it_for_everyone() {
        let mut s = Sandbox::new("k", 1);
        let a = s.create_or_join(Some("r"), None, "alice").access_key;
        s.call_start(&a, at(0)).unwrap();
        let fx = s.key_delete(&a, at(1)).unwrap();
        assert!(matches!(fx[0], Effect::Terminate(_)));
        assert_eq!(s.key_delete(&a, at(2)), Err(KeyError::Gone));
        assert_eq!(s.call_start(&a, at(3)).unwrap_err(), KeyError::Gone);
    }

    #[test]
    fn a_meeting_run_elsewhere_is_listed_announced_joinable_and_ended_like_any() {
        let mut s = Sandbox::new("k", 1);
        s.set_webhook("http://hook", "room_update");
        let effects = s.start_elsewhere("r", Some("gt-r"), at(0), at(5));
        let started = deliveries(&effects);
        assert_eq!(started.len(), 1);
        assert_eq!(started[0]["room"]["started_at"], rfc3339(at(0)));
        let listed = s.running();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].guest_token.as_deref(), Some("gt-r"));
        assert_eq!(listed[0].started_at, Some(rfc3339(at(0))));

        let guest = s.guest_join("gt-r", "Bot", at(6)).unwrap().access_key;
        let (_, chat) = s.message(&guest, Some("chat"), Some("hi"), at(7)).unwrap();
        assert_eq!(s.events()[chat].started_at, Some(rfc3339(at(0))));
        assert_eq!(s.access_keys("r"), std::slice::from_ref(&guest));

        // A new start replaces the meeting: the old one ends, its keys go.
        let effects = s.start_elsewhere("r", Some("gt-r"), at(10), at(10));
        let announced = deliveries(&effects);
        assert_eq!(announced[0]["room"]["shutdown"], true);
        assert_eq!(announced[1]["room"]["started_at"], rfc3339(at(10)));
        assert_eq!(s.session(&guest), Err(KeyError::Gone));
        assert_eq!(s.access_keys("r"), [guest], "ended meetings' keys too");

        let ended = deliveries(&s.end_elsewhere("r", at(20)));
        assert_eq!(ended[0]["room"]["shutdown"], true);
        assert!(s.running().is_empty());
        assert!(s.end_elsewhere("r", at(21)).is_empty(), "nothing runs");
        assert_eq!(s.api_delete("r", at(22)).0, 404);
    }

    #[test]
    fn a_registration_made_elsewhere_is_answered_as_given() {
        let mut s = Sandbox::new("k", 1);
        let theirs = WebhookAnswer {
            id: "theirs".into(),
            url: "https://other/hook".into(),
            types: WebhookTypes::Joined("room_update".into()),
            last_request_sent_at: None,
            last_response_code: None,
        };
        s.set_webhook_answer(Some(theirs.clone()));
        assert_eq!(s.webhook(), Some(&theirs));
        assert!(s.delete_webhook("theirs"));
        assert_eq!(s.webhook(), None);
    }
}
