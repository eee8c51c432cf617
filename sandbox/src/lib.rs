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
//! - [`script`]: the fault layer a test scripts on top (forced statuses,
//!   hangs, delays, cut answers, partial or paged room lists, muted
//!   webhooks, a request log), so a client is tested against this sandbox
//!   rather than a fake of its own.
//! - [`webhook`]: the delivery task, signing with the shared contract
//!   crate `eyeson-api` (signature, wire types and paths, which the
//!   hard-limit service reads with).
//! - [`pages`]: the meeting page at `links.gui` and `links.guest_join`.
//! - `http`, `cable`, `sepp`: thin adapters for REST, the ActionCable
//!   websocket and the SEPP signalling websocket; `room`: the room answer
//!   the first two both send; `signal`: the SEPP pushes; `state`: what
//!   they all share.
//! - [`Application`]: binds, wires the adapters together, serves;
//!   [`Control`]: an embedder's handle on the core and the script.

#![deny(missing_docs)]

pub mod config;
pub mod events;
pub mod meetings;
pub mod request;
pub mod script;
pub mod sdp;
pub mod webhook;

mod cable;
mod http;
pub mod pages;
mod room;
mod sepp;
mod signal;
mod state;

use std::collections::hash_map::RandomState;
use std::future::Future;
use std::hash::BuildHasher;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use tokio::net::TcpListener;

use crate::config::Config;
use crate::meetings::{Effect, Sandbox};
use crate::script::Script;
use crate::state::AppState;

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
            script: Arc::default(),
        };
        Ok(Application { listener, state })
    }

    /// A handle on the core and the script, valid while the sandbox serves.
    pub fn control(&self) -> Control {
        Control {
            state: self.state.clone(),
        }
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

/// An embedder's handle on a sandbox (a service's tests run it in-process):
/// the core's state and testing controls, and the [`Script`].
#[derive(Clone)]
pub struct Control {
    state: AppState,
}

impl Control {
    /// Runs `f` on the core under its lock: reads, and controls that have
    /// nothing to carry out.
    pub fn with<R>(&self, f: impl FnOnce(&mut Sandbox) -> R) -> R {
        self.state.with(f)
    }

    /// Runs a control at the current time and carries out its effects
    /// (webhook deliveries, SEPP pushes), as a request would.
    pub fn act(&self, f: impl FnOnce(&mut Sandbox, SystemTime) -> Vec<Effect>) {
        let effects = self.state.with(|s| f(s, SystemTime::now()));
        self.state.apply(effects);
    }

    /// Runs `f` on the script under its lock.
    pub fn script<R>(&self, f: impl FnOnce(&mut Script) -> R) -> R {
        self.state.script(f)
    }
}
