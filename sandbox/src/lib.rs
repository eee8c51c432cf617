//! `eyeson-sandbox`: a local stand-in for eyeson, enough for the real eyeson
//! JS SDK (npm `eyeson` 1.9.6) to join a meeting and see its podium and voice
//! activity, and for a webhook-driven service to see meetings start and end.
//!
//! The layout follows the usual core/adapters split:
//! - [`meetings`]: the pure core. Rooms, meetings, participants, the webhook
//!   registration and the event log; every operation takes `now` and returns
//!   the [`meetings::Effect`]s the adapters must carry out.
//! - [`events`]: the observation log's entries (`GET /_sandbox/events`).
//! - [`sdp`]: the SDP answer derived from the browser's offer.
//! - [`webhook`]: the delivery task, signing with the shared contract
//!   crate `eyeson-api` (signature, wire types and paths, which the
//!   hard-limit service reads with).
//! - [`pages`]: the meeting page at `links.gui` and `links.guest_join`.
//! - `http`, `cable`, `sepp`: thin adapters for REST, the ActionCable
//!   websocket and the SEPP signalling websocket; `room`: the room answer
//!   the first two both send.
//! - [`Application`]: binds, wires the adapters together, serves.

#![deny(missing_docs)]

pub mod config;
pub mod events;
pub mod meetings;
pub mod request;
pub mod sdp;
pub mod webhook;

mod cable;
mod http;
pub mod pages;
mod room;
mod sepp;

use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::future::Future;
use std::hash::BuildHasher;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::net::TcpListener;
use tokio::sync::mpsc;

use crate::config::Config;
use crate::meetings::{CablePush, Delivery, Effect, Sandbox};

/// The SEPP socket of each user: access key → (connection number, outbox).
type Signalling = HashMap<String, (u64, mpsc::UnboundedSender<String>)>;

/// The ActionCable sockets of each user: access key → (connection number,
/// outbox of `RoomChannel` messages). A user may have several (tabs,
/// reconnects).
type Cables = HashMap<String, Vec<(u64, mpsc::UnboundedSender<serde_json::Value>)>>;

/// What every handler shares. The core sits behind one std mutex: its
/// operations are short and never await, so no async lock is needed.
#[derive(Clone)]
pub(crate) struct AppState {
    sandbox: Arc<Mutex<Sandbox>>,
    /// access key → the current SEPP socket of that user (connection number,
    /// outbox). A resumed call replaces the entry.
    signalling: Arc<Mutex<Signalling>>,
    /// access key → its ActionCable sockets, for pushes such as `chat`.
    cables: Arc<Mutex<Cables>>,
    connections: Arc<AtomicU64>,
    deliveries: mpsc::UnboundedSender<Delivery>,
    /// Where the meeting page's SDK may be, in order ([`pages::sdk_candidates`]).
    sdk: Arc<[std::path::PathBuf]>,
}

impl AppState {
    pub(crate) fn sdk_candidates(&self) -> &[std::path::PathBuf] {
        &self.sdk
    }

    /// Runs `f` on the core under the lock.
    pub(crate) fn with<R>(&self, f: impl FnOnce(&mut Sandbox) -> R) -> R {
        f(&mut self.sandbox.lock().expect("sandbox lock"))
    }

    /// Carries out what the core decided, in order.
    pub(crate) fn apply(&self, effects: Vec<Effect>) {
        for effect in effects {
            match effect {
                Effect::Terminate(t) => self.push(&t.access_key, sepp::terminated(&t)),
                Effect::Signal(s) => self.push(&s.access_key, sepp::push(&s)),
                Effect::Deliver(d) => {
                    let _ = self.deliveries.send(d);
                }
                Effect::Cable(p) => {
                    self.push_cable(&p);
                }
            }
        }
    }

    /// Pushes a `RoomChannel` message to every ActionCable socket of the
    /// push's access keys; returns how many sockets took it.
    pub(crate) fn push_cable(&self, push: &CablePush) -> u16 {
        let cables = self.cables.lock().expect("cables lock");
        let mut reached = 0u16;
        for key in &push.access_keys {
            for (_, tx) in cables.get(key).into_iter().flatten() {
                if tx.send(push.message.clone()).is_ok() {
                    reached = reached.saturating_add(1);
                }
            }
        }
        reached
    }

    /// Adds an ActionCable socket of `access_key`; returns its number.
    pub(crate) fn register_cable(
        &self,
        access_key: &str,
        outbox: mpsc::UnboundedSender<serde_json::Value>,
    ) -> u64 {
        let id = self.connections.fetch_add(1, Ordering::Relaxed);
        self.cables
            .lock()
            .expect("cables lock")
            .entry(access_key.to_owned())
            .or_default()
            .push((id, outbox));
        id
    }

    /// Forgets ActionCable socket `id` of `access_key`.
    pub(crate) fn unregister_cable(&self, access_key: &str, id: u64) {
        let mut cables = self.cables.lock().expect("cables lock");
        if let Some(list) = cables.get_mut(access_key) {
            list.retain(|(n, _)| *n != id);
            if list.is_empty() {
                cables.remove(access_key);
            }
        }
    }

    /// Queues `message` on the SEPP socket of `access_key`, if it has one.
    fn push(&self, access_key: &str, message: String) {
        let outbox = self
            .signalling
            .lock()
            .expect("signalling lock")
            .get(access_key)
            .map(|(_, tx)| tx.clone());
        match outbox {
            Some(tx) => {
                let _ = tx.send(message);
            }
            None => tracing::warn!("no signalling socket for a SEPP push"),
        }
    }

    /// Makes `outbox` the SEPP socket of `access_key`; returns its number.
    pub(crate) fn register_signalling(
        &self,
        access_key: &str,
        outbox: mpsc::UnboundedSender<String>,
    ) -> u64 {
        let id = self.connections.fetch_add(1, Ordering::Relaxed);
        self.signalling
            .lock()
            .expect("signalling lock")
            .insert(access_key.to_owned(), (id, outbox));
        id
    }

    /// Forgets SEPP socket `id` of `access_key`; false when a newer socket
    /// has replaced it (then its closing is no disconnect).
    pub(crate) fn unregister_signalling(&self, access_key: &str, id: u64) -> bool {
        let mut map = self.signalling.lock().expect("signalling lock");
        if map
            .get(access_key)
            .is_some_and(|(current, _)| *current == id)
        {
            map.remove(access_key);
            true
        } else {
            false
        }
    }
}

/// A bound, not yet serving sandbox.
pub struct Application {
    listener: TcpListener,
    state: AppState,
}

impl Application {
    /// Binds `config.listen` (port 0 picks a free port) and starts the
    /// webhook delivery task. Must be called inside a tokio runtime.
    pub async fn build(config: &Config) -> std::io::Result<Self> {
        let listener = TcpListener::bind(config.listen).await?;
        let seed = RandomState::new().hash_one(std::process::id());
        let sandbox = Arc::new(Mutex::new(Sandbox::new(config.api_key.clone(), seed)));
        let state = AppState {
            deliveries: webhook::spawn(Arc::clone(&sandbox)),
            sandbox,
            signalling: Arc::default(),
            cables: Arc::default(),
            connections: Arc::default(),
            sdk: pages::sdk_candidates(
                config.sdk.as_deref(),
                std::env::current_dir().ok().as_deref(),
                std::env::current_exe().ok().as_deref(),
            )
            .into(),
        };
        Ok(Application { listener, state })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    /// Serves until `shutdown` completes. Open websockets are dropped with
    /// the runtime rather than waited for: a sandbox stops at once.
    pub async fn run_until(self, shutdown: impl Future<Output = ()>) -> std::io::Result<()> {
        let router = http::router(self.state);
        tokio::select! {
            served = axum::serve(self.listener, router) => served,
            () = shutdown => Ok(()),
        }
    }
}
