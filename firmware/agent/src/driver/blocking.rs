//! The driver loop over a blocking byte stream ([`embedded_io`]).

use embedded_io::{BufRead, Write};
use wasmbed_protocol::Millis;

use super::{End, Host, Point, Timers, feed, report, timers};

/// Waiting for input, which a blocking stream cannot do with a deadline.
pub trait WaitInput {
    /// Whether bytes have arrived (a read would not wait long).
    fn readable(&mut self) -> bool;

    /// Sleeps until bytes arrive or `deadline` (on the agent's clock)
    /// passes; `None` waits for bytes only.
    fn wait(&mut self, deadline: Option<Millis>);
}

/// Runs one established connection until it ends (see the [module
/// docs](super)).
pub fn serve<H, C>(host: &mut H, conn: &mut C) -> End<C::Error>
where
    H: Host + WaitInput,
    C: BufRead + Write,
{
    // Bytes the agent has not taken yet stay in the stream's buffer.
    let mut unread = false;
    loop {
        report(host);
        if !host.proceed(Point::BeforeWrite) {
            return End::Dropped;
        }
        if let Err(e) = flush(host, conn) {
            return End::Write(e);
        }
        if host.agent().is_closed() {
            return End::Closed;
        }
        if !host.proceed(Point::AfterWrite) {
            return End::Dropped;
        }
        if unread || host.readable() {
            let input = match conn.fill_buf() {
                Ok([]) => return End::Eof,
                Ok(input) => input,
                Err(e) => return End::Read(e),
            };
            let taken = feed(host, input);
            unread = taken < input.len();
            conn.consume(taken);
            continue;
        }
        if let Timers::Wait(deadline) = timers(host) {
            host.wait(deadline);
        }
    }
}

/// Writes everything the agent has to send.
fn flush<H: Host, C: Write>(host: &mut H, conn: &mut C) -> Result<(), C::Error> {
    loop {
        let out = host.agent().poll_transmit();
        if out.is_empty() {
            return conn.flush();
        }
        let n = conn.write(out)?;
        host.agent().advance_transmit(n);
    }
}
