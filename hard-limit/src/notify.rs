//! systemd's notifications (`sd_notify(3)`: `READY=1`, `WATCHDOG=1`,
//! `STOPPING=1`): one datagram to the socket named by `NOTIFY_SOCKET`.
//! Without it every call is a no-op; a failed send is only logged.

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
    /// The socket named by `NOTIFY_SOCKET` (a path or `@abstract`), if set.
    pub fn from_env() -> Notifier {
        let target = std::env::var_os("NOTIFY_SOCKET").and_then(|name| {
            let addr = socket_addr(name.as_encoded_bytes())?;
            let socket = UnixDatagram::unbound().ok()?;
            // A supervisor that does not read loses pings, never stalls us.
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

/// Half of `WATCHDOG_USEC` if set for this process (`sd_watchdog_enabled(3)`).
pub fn watchdog_interval() -> Option<Duration> {
    if let Ok(pid) = std::env::var("WATCHDOG_PID") {
        if pid.trim().parse::<u32>().ok() != Some(std::process::id()) {
            return None;
        }
    }
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.trim().parse().ok()?;
    (usec > 0).then(|| Duration::from_micros(usec / 2))
}

/// Pings the watchdog every `every` while `tasks_ok` holds, then stops (so
/// systemd restarts a service that hangs instead of exiting).
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
