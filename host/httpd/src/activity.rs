//! What a connection is doing, and when it has waited too long.
//!
//! hyper's own header-read timer also runs between requests, so it would
//! close an idle keep-alive connection after the header-read time; this
//! tracks the two apart:
//!
//! - no request in flight, part of a head received (or a new connection):
//!   the head must be complete within `header_read_timeout` of its first
//!   byte (of the connection opening);
//! - no request in flight, nothing received: closed after `idle_timeout`;
//! - a request in flight (an event stream included): never idle;
//! - a write the client has not taken for `idle_timeout`: closed, whatever
//!   is in flight (a client that stops reading holds no connection).

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::stats::Refusal;

/// Why a connection was closed by its watchdog.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Expiry {
    /// Nothing in flight and nothing received for `idle_timeout`.
    Idle,
    /// A request head took too long.
    HeaderRead,
    /// A write waited for the client for `idle_timeout`.
    WriteStalled,
}

impl Expiry {
    /// The refusal it counts as; `None` for an ordinary idle close.
    pub(crate) fn refusal(self) -> Option<Refusal> {
        match self {
            Expiry::Idle => None,
            Expiry::HeaderRead => Some(Refusal::HeaderReadTimeout),
            Expiry::WriteStalled => Some(Refusal::WriteStalled),
        }
    }
}

/// The timeouts the watchdog applies.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Timeouts {
    pub(crate) header_read: Duration,
    pub(crate) idle: Duration,
}

#[derive(Debug)]
struct State {
    /// Requests whose response is not finished.
    in_flight: usize,
    /// When the last request finished (or the connection opened).
    idle_since: Instant,
    /// When the head now being read started; the connection's opening for
    /// its first request.
    head_since: Option<Instant>,
    /// Since when a write has been waiting for the client.
    write_blocked_since: Option<Instant>,
}

/// One connection's activity, shared by its socket, its requests and its
/// watchdog.
#[derive(Debug)]
pub(crate) struct Activity {
    state: Mutex<State>,
    changed: Notify,
}

impl Activity {
    pub(crate) fn new(now: Instant) -> Arc<Activity> {
        Arc::new(Activity {
            state: Mutex::new(State {
                in_flight: 0,
                idle_since: now,
                head_since: Some(now),
                write_blocked_since: None,
            }),
            changed: Notify::new(),
        })
    }

    fn update(&self, change: impl FnOnce(&mut State) -> bool) {
        let changed = change(&mut self.state.lock().unwrap_or_else(|e| e.into_inner()));
        if changed {
            // Stores a permit when the watchdog is not waiting yet.
            self.changed.notify_one();
        }
    }

    fn bytes_received(&self) {
        self.update(|state| {
            let starts_head = state.in_flight == 0 && state.head_since.is_none();
            if starts_head {
                state.head_since = Some(Instant::now());
            }
            starts_head
        });
    }

    fn write_blocked(&self) {
        self.update(|state| {
            let starts = state.write_blocked_since.is_none();
            if starts {
                state.write_blocked_since = Some(Instant::now());
            }
            starts
        });
    }

    fn write_progressed(&self) {
        // The deadline only moves later: no need to wake the watchdog.
        self.update(|state| {
            state.write_blocked_since = None;
            false
        });
    }

    /// A request head arrived; the returned guard ends the request when
    /// dropped (when its response has been sent or abandoned).
    pub(crate) fn request_started(self: &Arc<Self>) -> InFlight {
        self.update(|state| {
            state.in_flight += 1;
            state.head_since = None;
            true
        });
        InFlight(self.clone())
    }

    /// The earliest deadline in force and what it enforces.
    fn deadline(&self, timeouts: Timeouts) -> Option<(Instant, Expiry)> {
        let state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let stalled = state
            .write_blocked_since
            .map(|since| (since + timeouts.idle, Expiry::WriteStalled));
        let waiting = match (state.in_flight, state.head_since) {
            (0, Some(since)) => Some((since + timeouts.header_read, Expiry::HeaderRead)),
            (0, None) => Some((state.idle_since + timeouts.idle, Expiry::Idle)),
            _ => None,
        };
        match (stalled, waiting) {
            (Some(a), Some(b)) => Some(if a.0 <= b.0 { a } else { b }),
            (a, b) => a.or(b),
        }
    }

    /// Completes when the connection has waited too long, with why.
    pub(crate) async fn expired(&self, timeouts: Timeouts) -> Expiry {
        loop {
            let changed = self.changed.notified();
            match self.deadline(timeouts) {
                None => changed.await,
                Some((at, why)) => {
                    if Instant::now() >= at {
                        return why;
                    }
                    tokio::select! {
                        () = tokio::time::sleep_until(at) => {}
                        () = changed => {}
                    }
                }
            }
        }
    }
}

/// A request in flight; see [`Activity::request_started`].
#[derive(Debug)]
pub(crate) struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.update(|state| {
            state.in_flight -= 1;
            if state.in_flight == 0 {
                state.idle_since = Instant::now();
            }
            true
        });
    }
}

/// A socket that reports its reads and writes to an [`Activity`].
#[derive(Debug)]
pub(crate) struct Watched<IO> {
    pub(crate) io: IO,
    pub(crate) activity: Arc<Activity>,
}

impl<IO: AsyncRead + Unpin> AsyncRead for Watched<IO> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let poll = Pin::new(&mut this.io).poll_read(cx, buf);
        if matches!(poll, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            this.activity.bytes_received();
        }
        poll
    }
}

impl<IO: AsyncWrite + Unpin> Watched<IO> {
    fn watch<T>(&self, poll: Poll<io::Result<T>>) -> Poll<io::Result<T>> {
        match poll {
            Poll::Pending => self.activity.write_blocked(),
            Poll::Ready(_) => self.activity.write_progressed(),
        }
        poll
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Watched<IO> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.io).poll_write(cx, buf);
        this.watch(poll)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.io).poll_write_vectored(cx, bufs);
        this.watch(poll)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.io).poll_flush(cx);
        this.watch(poll)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TIMEOUTS: Timeouts = Timeouts {
        header_read: Duration::from_secs(10),
        idle: Duration::from_secs(60),
    };

    #[tokio::test(start_paused = true)]
    async fn a_new_connection_must_send_its_head_in_the_header_time() {
        let start = Instant::now();
        let activity = Activity::new(start);
        assert_eq!(activity.expired(TIMEOUTS).await, Expiry::HeaderRead);
        assert_eq!(start.elapsed(), TIMEOUTS.header_read);
    }

    #[tokio::test(start_paused = true)]
    async fn between_requests_the_idle_time_applies_until_a_byte_arrives() {
        let activity = Activity::new(Instant::now());
        drop(activity.request_started());
        let idle_from = Instant::now();
        assert_eq!(activity.expired(TIMEOUTS).await, Expiry::Idle);
        assert_eq!(idle_from.elapsed(), TIMEOUTS.idle);

        let activity = Activity::new(Instant::now());
        drop(activity.request_started());
        tokio::time::advance(Duration::from_secs(30)).await;
        activity.bytes_received();
        let head_from = Instant::now();
        assert_eq!(activity.expired(TIMEOUTS).await, Expiry::HeaderRead);
        assert_eq!(head_from.elapsed(), TIMEOUTS.header_read);
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_in_flight_is_never_idle_but_a_stalled_write_is_closed() {
        let activity = Activity::new(Instant::now());
        let request = activity.request_started();
        let watchdog = {
            let activity = activity.clone();
            tokio::spawn(async move { activity.expired(TIMEOUTS).await })
        };
        tokio::time::advance(Duration::from_secs(3600)).await;
        assert!(!watchdog.is_finished());
        activity.write_blocked();
        let stalled_from = Instant::now();
        assert_eq!(watchdog.await.ok(), Some(Expiry::WriteStalled));
        assert_eq!(stalled_from.elapsed(), TIMEOUTS.idle);
        drop(request);
    }
}
