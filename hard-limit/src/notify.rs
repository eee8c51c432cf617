//! systemd's service notifications (`sd_notify(3)`): `READY=1` once the
//! service can serve, `WATCHDOG=1` while its background tasks live,
//! `STOPPING=1` when asked to stop. The protocol is one datagram of
//! `KEY=VALUE` lines to the Unix socket named by `NOTIFY_SOCKET`: a few
//! lines here rather than libsystemd or a crate.
//!
//! Without `NOTIFY_SOCKET` (not under systemd's `Type=notify`) every call
//! is a no-op. A failed send is logged at debug and otherwise ignored: a
//! supervisor that stopped listening must not stop the service.

use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Where notifications go; `None` inside when not run by systemd.
#[derive(Debug)]
pub struct Notifier {
    target: Option<(UnixDatagram, SocketAddr)>,
}

impl Notifier {
    /// The socket named by `NOTIFY_SOCKET` (a path, or `@name` for an
    /// abstract socket), if set.
    pub fn from_env() -> Notifier {
        let target = std::env::var_os("NOTIFY_SOCKET").and_then(|name| {
            let addr = socket_addr(name.as_encoded_bytes())?;
            let socket = UnixDatagram::unbound().ok()?;
            // Never block a runtime thread: a supervisor that does not
            // read (its queue holds about 10 datagrams) loses pings, it
            // does not stall the service.
            socket.set_nonblocking(true).ok()?;
            Some((socket, addr))
        });
        Notifier { target }
    }

    /// Sends `state` (newline-separated `KEY=VALUE` lines).
    pub fn notify(&self, state: &str) {
        if let Some((socket, addr)) = &self.target {
            if let Err(e) = socket.send_to_addr(state.as_bytes(), addr) {
                tracing::debug!(error = %e, "could not notify the service manager");
            }
        }
    }

    /// Whether notifications go anywhere.
    pub fn is_active(&self) -> bool {
        self.target.is_some()
    }
}

fn socket_addr(name: &[u8]) -> Option<SocketAddr> {
    match name.split_first()? {
        #[cfg(target_os = "linux")]
        (b'@', abstract_name) => {
            use std::os::linux::net::SocketAddrExt;
            SocketAddr::from_abstract_name(abstract_name).ok()
        }
        _ => SocketAddr::from_pathname(std::ffi::OsStr::from_bytes(name)).ok(),
    }
}

/// How often to ping the watchdog: half of `WATCHDOG_USEC` (as
/// `sd_watchdog_enabled(3)` advises), if it is set for this process
/// (`WATCHDOG_PID`, when present, names it).
pub fn watchdog_interval() -> Option<Duration> {
    if let Ok(pid) = std::env::var("WATCHDOG_PID") {
        if pid.trim().parse::<u32>().ok() != Some(std::process::id()) {
            return None;
        }
    }
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.trim().parse().ok()?;
    (usec > 0).then(|| Duration::from_micros(usec / 2))
}

/// Pings the watchdog every `every` while `tasks_ok` holds; stops for good
/// once it does not (a dead background task: systemd's watchdog then
/// restarts a service that hangs instead of exiting).
pub async fn feed_watchdog(notifier: Arc<Notifier>, every: Duration, tasks_ok: Arc<AtomicBool>) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if !tasks_ok.load(Ordering::SeqCst) {
            tracing::warn!("a background task ended: no more watchdog pings");
            return;
        }
        notifier.notify("WATCHDOG=1");
    }
}
