//! The HTTP server loop: the axum router on hyper's HTTP/1, with the limits
//! `axum::serve` lacks, so stalled clients cannot exhaust the service: at
//! most `max_connections` at once (the rest wait in the backlog), a header
//! read timeout however slowly bytes trickle, and an idle keep-alive
//! timeout (the body read timeout is [`crate::webhook`]'s). Stopping is
//! graceful: stop accepting, let requests in flight finish, return.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::time::{Instant, Sleep};
use tower::ServiceExt;

use crate::stop::{self, StopSignal};

/// The connection limits: `--header-read-timeout`, `--keep-alive-timeout`, `--max-connections`.
#[derive(Clone, Copy, Debug)]
pub struct ConnLimits {
    /// Headers must arrive within this.
    pub header_read_timeout: Duration,
    /// An idle connection is closed after this.
    pub keep_alive_timeout: Duration,
    /// Connections served at once.
    pub max_connections: usize,
}

/// Serves `router` on `listener` until `stop`, then lets requests in flight finish.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ConnLimits,
    mut stop: StopSignal,
) -> io::Result<()> {
    // Every connection task holds a slot: when all are back, done.
    let max = limits.max_connections.clamp(1, u32::MAX as usize);
    let slots = Arc::new(Semaphore::new(max));
    let (close_all, closing) = stop::signal();
    loop {
        let permit = tokio::select! {
            Ok(p) = slots.clone().acquire_owned() => p,
            () = stop.stopped() => break,
        };
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Never end the loop; back off on fd exhaustion.
                    tracing::warn!(error = %e, "accept failed");
                    use io::ErrorKind::*;
                    if !matches!(e.kind(), ConnectionRefused | ConnectionAborted | ConnectionReset) {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                    continue;
                }
            },
            () = stop.stopped() => break,
        };
        let _ = stream.set_nodelay(true);
        let (router, mut shutdown) = (router.clone(), closing.clone());
        tokio::spawn(async move {
            let _permit = permit;
            serve_connection(stream, peer, router, limits, &mut shutdown).await;
        });
    }
    drop(listener);
    close_all.stop();
    let _ = slots.acquire_many(max as u32).await;
    Ok(())
}

/// Serves each router on its listener until `stop` turns true. If one
/// ends by itself, the others are stopped too and its error returned.
pub async fn serve_all(
    servers: Vec<(TcpListener, Router)>,
    limits: ConnLimits,
    mut stop: StopSignal,
) -> io::Result<()> {
    let (inner_tx, inner_rx) = stop::signal();
    let mut set = tokio::task::JoinSet::new();
    for (listener, router) in servers {
        set.spawn(serve(listener, router, limits, inner_rx.clone()));
    }
    let first = tokio::select! {
        r = set.join_next() => r,
        () = stop.stopped() => None,
    };
    inner_tx.stop();
    let mut result = match first {
        None => Ok(()),
        Some(Ok(Ok(()))) => Err(io::Error::other("a listener stopped serving")),
        Some(Ok(Err(e))) => Err(e),
        Some(Err(e)) => Err(io::Error::other(format!("a listener's task failed: {e}"))),
    };
    while let Some(r) = set.join_next().await {
        if let (Ok(()), Ok(Err(e))) = (&result, r) {
            result = Err(e);
        }
    }
    result
}

async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    router: Router,
    limits: ConnLimits,
    shutdown: &mut StopSignal,
) {
    let in_flight = Arc::new(AtomicUsize::new(0));
    let io = IdleIo {
        inner: stream,
        idle: limits.keep_alive_timeout,
        deadline: Box::pin(tokio::time::sleep(limits.keep_alive_timeout)),
        in_flight: in_flight.clone(),
    };
    let service = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
        let guard = InFlight::enter(&in_flight);
        let router = router.clone();
        let mut req = req.map(Body::new);
        req.extensions_mut().insert(ConnectInfo(peer));
        async move {
            let answer = router.oneshot(req).await;
            drop(guard);
            answer
        }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .keep_alive(true);
    let conn = builder.serve_connection(TokioIo::new(io), service);
    tokio::pin!(conn);
    tokio::select! {
        r = conn.as_mut() => {
            if let Err(e) = r {
                tracing::debug!(error = %e, "connection ended with an error");
            }
        }
        () = shutdown.stopped() => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
}

/// A request in flight on its connection, counted while it lives.
struct InFlight(Arc<AtomicUsize>);

impl InFlight {
    fn enter(n: &Arc<AtomicUsize>) -> Self {
        n.fetch_add(1, Ordering::SeqCst);
        InFlight(n.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A TCP stream whose reads time out after `idle` without a byte or a request.
struct IdleIo {
    inner: TcpStream,
    idle: Duration,
    deadline: Pin<Box<Sleep>>,
    in_flight: Arc<AtomicUsize>,
}

impl IdleIo {
    fn moved(&mut self) {
        let next = Instant::now() + self.idle;
        self.deadline.as_mut().reset(next);
    }
}

impl AsyncRead for IdleIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if r.is_ready() {
            if buf.filled().len() > before {
                self.moved();
            }
        } else if self.in_flight.load(Ordering::SeqCst) == 0
            && self.deadline.as_mut().poll(cx).is_ready()
        {
            let idle = io::Error::new(io::ErrorKind::TimedOut, "idle connection closed");
            return Poll::Ready(Err(idle));
        }
        r
    }
}

impl AsyncWrite for IdleIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.moved();
        }
        r
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
