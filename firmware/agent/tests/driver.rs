//! The driver loop, blocking and async, over a scripted byte stream and a
//! clock that jumps to every deadline the loop waits for.

use std::cell::Cell;
use std::collections::VecDeque;
use std::convert::Infallible;
use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use rand_core::OsRng;
use wasmbed_agent::driver::blocking::{self, WaitInput};
use wasmbed_agent::driver::nonblocking::{self, Wait, Wake};
use wasmbed_agent::driver::{End, Host, Point};
use wasmbed_agent::flash::{FlashKeyStore, FlashModuleStore, MemFlash};
use wasmbed_agent::identity::{Identity, KeyStore, StoredKey};
use wasmbed_agent::runtime::{WasmiConfig, WasmiRuntime};
use wasmbed_agent::{Agent, AgentConfig, AgentEvent};
use wasmbed_protocol::session::CloseReason;
use wasmbed_protocol::{DeviceId, DeviceInfo, Millis};

type TestAgent =
    Agent<FlashKeyStore<MemFlash>, FlashModuleStore<MemFlash>, WasmiRuntime<fn() -> u64>>;

/// An enrolled device whose agent has just connected: it sends its
/// session start and waits for the gateway's answer.
struct Device {
    agent: TestAgent,
    now: Cell<u64>,
    events: Vec<AgentEvent>,
    /// Deadlines the loop waited for.
    waits: Vec<Option<Millis>>,
    /// Drop the connection at this point.
    drop_at: Option<Point>,
    /// What the async wait reports.
    wake: Wake,
}

impl Device {
    fn connected() -> Self {
        let config = AgentConfig::new(DeviceInfo {
            board: "mps2-an385".try_into().expect("short"),
            firmware_version: "0.1.0".try_into().expect("short"),
        });
        let mut keys = FlashKeyStore::new(MemFlash::new(2)).expect("fits");
        keys.save(&StoredKey::Enrolled(Identity {
            device_id: DeviceId([4; 16]),
            private_key: [7; 32],
            certificate: vec![1; 100],
        }))
        .expect("saved");
        let modules = FlashModuleStore::new(MemFlash::new(6), 2, 4096).expect("fits");
        let clock: fn() -> u64 = || 0;
        let runtime = WasmiRuntime::new(WasmiConfig::default(), clock);
        let mut agent = Agent::new(config, keys, modules, runtime).expect("opens");
        agent.connect(Millis(0), &mut OsRng).expect("connects");
        Device {
            agent,
            now: Cell::new(0),
            events: Vec::new(),
            waits: Vec::new(),
            drop_at: None,
            wake: Wake::Deadline,
        }
    }

    fn closed_by(&self) -> Option<&CloseReason> {
        self.events.iter().find_map(|event| match event {
            AgentEvent::Closed(reason) => Some(reason),
            _ => None,
        })
    }

    /// The loop waits: time jumps to the deadline.
    fn jump(&mut self, deadline: Option<Millis>) {
        self.waits.push(deadline);
        let deadline = deadline.expect("the session always has a deadline");
        self.now.set(self.now.get().max(deadline.0));
    }
}

impl Host for Device {
    type Keys = FlashKeyStore<MemFlash>;
    type Modules = FlashModuleStore<MemFlash>;
    type Runtime = WasmiRuntime<fn() -> u64>;

    fn agent(&mut self) -> &mut TestAgent {
        &mut self.agent
    }

    fn now(&self) -> Millis {
        Millis(self.now.get())
    }

    fn event(&mut self, event: AgentEvent) {
        self.events.push(event);
    }

    fn proceed(&mut self, point: Point) -> bool {
        self.drop_at != Some(point)
    }
}

impl WaitInput for Device {
    fn readable(&mut self) -> bool {
        false
    }

    fn wait(&mut self, deadline: Option<Millis>) {
        self.jump(deadline);
    }
}

impl Wait for Device {
    async fn wait(&mut self, deadline: Option<Millis>, _stoppable: bool) -> Wake {
        self.jump(deadline);
        self.wake
    }
}

/// A stream that yields scripted reads (an empty one is the end) and
/// keeps what is written; when the script is out, reads never complete.
#[derive(Default)]
struct Script {
    reads: VecDeque<Vec<u8>>,
    written: Vec<u8>,
}

impl embedded_io::ErrorType for Script {
    type Error = Infallible;
}

impl embedded_io::Read for Script {
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, Infallible> {
        let available = embedded_io::BufRead::fill_buf(self)?;
        let n = available.len().min(buf.len());
        buf[..n].copy_from_slice(&available[..n]);
        embedded_io::BufRead::consume(self, n);
        Ok(n)
    }
}

impl embedded_io::BufRead for Script {
    fn fill_buf(&mut self) -> Result<&[u8], Infallible> {
        Ok(self.reads.front().map_or(&[], Vec::as_slice))
    }

    fn consume(&mut self, amt: usize) {
        if let Some(front) = self.reads.front_mut() {
            front.drain(..amt);
            if front.is_empty() {
                self.reads.pop_front();
            }
        }
    }
}

impl embedded_io::Write for Script {
    fn write(&mut self, buf: &[u8]) -> Result<usize, Infallible> {
        self.written.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> Result<(), Infallible> {
        Ok(())
    }
}

impl embedded_io_async::Read for Script {
    async fn read(&mut self, buf: &mut [u8]) -> Result<usize, Infallible> {
        embedded_io::Read::read(self, buf)
    }
}

impl embedded_io_async::BufRead for Script {
    async fn fill_buf(&mut self) -> Result<&[u8], Infallible> {
        if self.reads.is_empty() {
            std::future::pending::<()>().await;
        }
        embedded_io::BufRead::fill_buf(self)
    }

    fn consume(&mut self, amt: usize) {
        embedded_io::BufRead::consume(self, amt);
    }
}

impl embedded_io_async::Write for Script {
    async fn write(&mut self, buf: &[u8]) -> Result<usize, Infallible> {
        embedded_io::Write::write(self, buf)
    }

    async fn flush(&mut self) -> Result<(), Infallible> {
        Ok(())
    }
}

/// Runs a future whose every wait completes at once.
fn run<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    let mut cx = Context::from_waker(Waker::noop());
    for _ in 0..1000 {
        if let Poll::Ready(out) = future.as_mut().poll(&mut cx) {
            return out;
        }
    }
    panic!("the loop never ended");
}

#[test]
fn the_session_start_is_written_and_a_silent_gateway_times_the_session_out() {
    let mut device = Device::connected();
    let mut stream = Script::default();
    assert_eq!(blocking::serve(&mut device, &mut stream), End::Closed);
    assert_eq!(device.closed_by(), Some(&CloseReason::Timeout));
    assert!(!stream.written.is_empty(), "the session start");
    assert!(!device.waits.is_empty() && device.waits.iter().all(Option::is_some));
    assert!(
        device.agent.poll_transmit().is_empty(),
        "everything written"
    );

    let mut device = Device::connected();
    let mut stream = Script::default();
    assert_eq!(
        run(nonblocking::serve(&mut device, &mut stream)),
        End::Closed
    );
    assert_eq!(device.closed_by(), Some(&CloseReason::Timeout));
    assert!(!stream.written.is_empty());
}

#[test]
fn what_arrives_is_fed_to_the_agent() {
    // Not a frame of the protocol: the session closes as violated.
    let garbage = vec![0xFF; 64];
    let mut device = Device::connected();
    let mut stream = Script {
        reads: VecDeque::from([garbage.clone()]),
        ..Script::default()
    };
    // A blocking host that always has input.
    struct Eager<'a>(&'a mut Device);
    let end = blocking::serve(&mut Eager(&mut device), &mut stream);
    assert_eq!(end, End::Closed);
    assert!(matches!(
        device.closed_by(),
        Some(CloseReason::ProtocolViolation(_))
    ));
    assert!(device.waits.is_empty(), "input came first");

    let mut device = Device::connected();
    let mut stream = Script {
        reads: VecDeque::from([garbage]),
        ..Script::default()
    };
    assert_eq!(
        run(nonblocking::serve(&mut device, &mut stream)),
        End::Closed
    );
    assert!(matches!(
        device.closed_by(),
        Some(CloseReason::ProtocolViolation(_))
    ));

    impl Host for Eager<'_> {
        type Keys = FlashKeyStore<MemFlash>;
        type Modules = FlashModuleStore<MemFlash>;
        type Runtime = WasmiRuntime<fn() -> u64>;
        fn agent(&mut self) -> &mut TestAgent {
            &mut self.0.agent
        }
        fn now(&self) -> Millis {
            self.0.now()
        }
        fn event(&mut self, event: AgentEvent) {
            self.0.event(event);
        }
    }
    impl WaitInput for Eager<'_> {
        fn readable(&mut self) -> bool {
            true
        }
        fn wait(&mut self, deadline: Option<Millis>) {
            self.0.jump(deadline);
        }
    }
}

#[test]
fn the_end_of_the_stream_ends_the_connection() {
    let mut device = Device::connected();
    let mut stream = Script {
        reads: VecDeque::from([Vec::new()]),
        ..Script::default()
    };
    assert_eq!(run(nonblocking::serve(&mut device, &mut stream)), End::Eof);
    assert!(!stream.written.is_empty(), "written before reading");
}

#[test]
fn the_host_may_drop_the_connection_before_or_after_writing() {
    let mut device = Device::connected();
    device.drop_at = Some(Point::BeforeWrite);
    let mut stream = Script::default();
    assert_eq!(blocking::serve(&mut device, &mut stream), End::Dropped);
    assert!(stream.written.is_empty());

    let mut device = Device::connected();
    device.drop_at = Some(Point::AfterWrite);
    let mut stream = Script::default();
    assert_eq!(
        run(nonblocking::serve(&mut device, &mut stream)),
        End::Dropped
    );
    assert!(!stream.written.is_empty());
}

#[test]
fn a_stop_before_the_session_is_established_ends_it_at_once() {
    let mut device = Device::connected();
    device.wake = Wake::Stop;
    let mut stream = Script::default();
    assert_eq!(
        run(nonblocking::serve(&mut device, &mut stream)),
        End::Stopped
    );
    assert_eq!(
        device.closed_by(),
        None,
        "no goodbye: it was not established"
    );
}
