//! The driver loop of one connection, written once (see the loop in
//! [`crate::agent`]): feed what arrives to the agent, report its events,
//! write what it answers, fire its timers, and stop a session that would
//! spin. [`blocking::serve`] runs it over [`embedded_io`] (bare metal);
//! [`nonblocking::serve`] over [`embedded_io_async`] (tokio, through an
//! adapter of the platform's).
//!
//! The platform opens the connection (TCP, TLS) with
//! [`Agent::credentials`], calls [`Agent::connect`], runs `serve`, and
//! after it returns closes the connection and waits for
//! [`Agent::disconnected`].

pub mod blocking;
pub mod nonblocking;

use wasmbed_protocol::{GoodbyeReason, Millis};

use crate::identity::KeyStore;
use crate::runtime::Runtime;
use crate::storage::ModuleStore;
use crate::{Agent, AgentEvent};

/// What the driver needs from the platform besides the byte stream.
pub trait Host {
    type Keys: KeyStore;
    type Modules: ModuleStore;
    type Runtime: Runtime;

    /// The agent this host drives.
    fn agent(&mut self) -> &mut Agent<Self::Keys, Self::Modules, Self::Runtime>;

    /// Now, on the agent's clock.
    fn now(&self) -> Millis;

    /// Something the agent did (to log or count).
    fn event(&mut self, event: AgentEvent);

    /// Whether the connection goes on at `point`; `false` drops it without
    /// a goodbye (fault injection).
    fn proceed(&mut self, point: Point) -> bool {
        let _ = point;
        true
    }
}

/// Where [`Host::proceed`] is asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Point {
    /// The events are reported; the agent's bytes are not written yet.
    BeforeWrite,
    /// The agent's bytes are written.
    AfterWrite,
}

/// How a connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End<E> {
    /// The session closed (a goodbye, a timeout or a violation) and
    /// everything was written.
    Closed,
    /// The host asked to stop ([`nonblocking::Wake::Stop`]): the session
    /// said goodbye, or had not started.
    Stopped,
    /// [`Host::proceed`] said no.
    Dropped,
    /// The peer ended the stream.
    Eof,
    /// Reading failed.
    Read(E),
    /// Writing failed.
    Write(E),
}

/// Reports every event the agent has; returns how many there were.
fn report<H: Host>(host: &mut H) -> usize {
    let mut count = 0;
    loop {
        let now = host.now();
        let Some(event) = host.agent().poll(now) else {
            return count;
        };
        count += 1;
        host.event(event);
    }
}

/// Feeds `input` (not empty) to the agent, reports what it did, and
/// returns how many bytes it took. A session that takes none and has
/// nothing to say cannot go on (it would spin): it is closed.
fn feed<H: Host>(host: &mut H, input: &[u8]) -> usize {
    let now = host.now();
    let taken = host.agent().handle_input(input, now);
    let events = report(host);
    if taken == 0 && events == 0 {
        host.agent().close(GoodbyeReason::ProtocolError);
    }
    taken
}

/// What the agent's timers ask for.
enum Timers {
    /// One was due and fired: go round again.
    Fired,
    /// Wait until this deadline (`None`: for input only).
    Wait(Option<Millis>),
}

/// Fires the agent's timer if it is due, else says how long to wait.
fn timers<H: Host>(host: &mut H) -> Timers {
    let now = host.now();
    match host.agent().poll_timeout() {
        Some(at) if now >= at => {
            host.agent().handle_timeout(now);
            Timers::Fired
        }
        deadline => Timers::Wait(deadline),
    }
}
