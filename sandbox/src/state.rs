//! What every adapter shares: the core behind its lock, the open sockets
//! of each user, the delivery queue and the script. Its own module so that
//! the adapters (`http`, `cable`, `sepp`, `pages`) and the application that
//! wires them import it without importing each other.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::mpsc;

use crate::meetings::{CablePush, Delivery, Effect, Sandbox};
use crate::script::{self, Script};
use crate::signal;

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
    pub(crate) sandbox: Arc<Mutex<Sandbox>>,
    /// access key → the current SEPP socket of that user (connection number,
    /// outbox). A resumed call replaces the entry.
    pub(crate) signalling: Arc<Mutex<Signalling>>,
    /// access key → its ActionCable sockets, for pushes such as `chat`.
    pub(crate) cables: Arc<Mutex<Cables>>,
    pub(crate) connections: Arc<AtomicU64>,
    pub(crate) deliveries: mpsc::UnboundedSender<Delivery>,
    /// Where the meeting page's SDK may be, in order (`pages::sdk_candidates`).
    pub(crate) sdk: Arc<[std::path::PathBuf]>,
    /// The faults, list shapes and request log a test scripted.
    pub(crate) script: script::Shared,
}

impl AppState {
    pub(crate) fn sdk_candidates(&self) -> &[std::path::PathBuf] {
        &self.sdk
    }

    /// Runs `f` on the core under the lock.
    pub(crate) fn with<R>(&self, f: impl FnOnce(&mut Sandbox) -> R) -> R {
        f(&mut self.sandbox.lock().expect("sandbox lock"))
    }

    /// Runs `f` on the script under its lock.
    pub(crate) fn script<R>(&self, f: impl FnOnce(&mut Script) -> R) -> R {
        f(&mut script::lock(&self.script))
    }

    /// Carries out what the core decided, in order.
    pub(crate) fn apply(&self, effects: Vec<Effect>) {
        for effect in effects {
            match effect {
                Effect::Terminate(t) => self.push(&t.access_key, signal::terminated(&t)),
                Effect::Signal(s) => self.push(&s.access_key, signal::push(&s)),
                Effect::Deliver(d) => {
                    if !self.script(|s| s.webhooks_muted()) {
                        let _ = self.deliveries.send(d);
                    }
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
