//! The driver loop over an async byte stream ([`embedded_io_async`]), for
//! any executor; the fleet simulator runs it on tokio.

use core::future::{Future, poll_fn};
use core::pin::pin;
use core::task::Poll;

use embedded_io_async::{BufRead, Write};
use wasmbed_protocol::{GoodbyeReason, Millis};

use super::{End, Host, Point, Timers, feed, report, timers};

/// Waiting with a deadline, or until the host wants to stop.
pub trait Wait {
    /// Completes when `deadline` (on the agent's clock) passes, never for
    /// `None`; or with [`Wake::Stop`] when the host wants to stop and
    /// `stoppable` is true. Dropped when input arrives first.
    fn wait(&mut self, deadline: Option<Millis>, stoppable: bool) -> impl Future<Output = Wake>;
}

/// Why [`Wait::wait`] completed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wake {
    Deadline,
    /// An established session says goodbye; otherwise the connection ends
    /// at once.
    Stop,
}

/// Runs one established connection until it ends (see the [module
/// docs](super)). `conn.fill_buf` must be cancel-safe: it is dropped when
/// the wait completes first.
pub async fn serve<H, C>(host: &mut H, conn: &mut C) -> End<C::Error>
where
    H: Host + Wait,
    C: BufRead + Write,
{
    let mut stopping = false;
    loop {
        report(host);
        if !host.proceed(Point::BeforeWrite) {
            return End::Dropped;
        }
        if let Err(e) = flush(host, conn).await {
            return End::Write(e);
        }
        if host.agent().is_closed() {
            return if stopping { End::Stopped } else { End::Closed };
        }
        if !host.proceed(Point::AfterWrite) {
            return End::Dropped;
        }
        let Timers::Wait(deadline) = timers(host) else {
            continue;
        };
        let woke = first(conn.fill_buf(), host.wait(deadline, !stopping)).await;
        match woke {
            Either::Input(Ok([])) => return End::Eof,
            Either::Input(Ok(input)) => {
                let taken = feed(host, input);
                conn.consume(taken);
            }
            Either::Input(Err(e)) => return End::Read(e),
            Either::Woke(Wake::Deadline) => {}
            Either::Woke(Wake::Stop) => {
                if !host.agent().is_established() {
                    // Mid-handshake or enrolling: just go.
                    return End::Stopped;
                }
                host.agent().close(GoodbyeReason::Shutdown);
                stopping = true;
            }
        }
    }
}

/// Writes everything the agent has to send.
async fn flush<H: Host, C: Write>(host: &mut H, conn: &mut C) -> Result<(), C::Error> {
    loop {
        let out = host.agent().poll_transmit();
        if out.is_empty() {
            return conn.flush().await;
        }
        let n = conn.write(out).await?;
        host.agent().advance_transmit(n);
    }
}

enum Either<I, W> {
    Input(I),
    Woke(W),
}

/// Whichever of `input` and `wait` completes first (`input` if both);
/// the other is dropped.
async fn first<I: Future, W: Future>(input: I, wait: W) -> Either<I::Output, W::Output> {
    let mut input = pin!(input);
    let mut wait = pin!(wait);
    poll_fn(|cx| {
        if let Poll::Ready(out) = input.as_mut().poll(cx) {
            return Poll::Ready(Either::Input(out));
        }
        wait.as_mut().poll(cx).map(Either::Woke)
    })
    .await
}
