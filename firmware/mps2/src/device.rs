//! The firmware's main loop: connect over the link UART with TLS, drive the
//! agent with `wasmbed_agent::driver::blocking`, reconnect with back-off.

use alloc::boxed::Box;
use alloc::vec::Vec;

use embedded_tls::blocking::TlsConnection;
use embedded_tls::{Aes128GcmSha256, TlsConfig, TlsContext, TlsError};
use rand_chacha::ChaCha20Rng;
use wasmbed_agent::console::EventLine;
use wasmbed_agent::driver::blocking::{self, WaitInput};
use wasmbed_agent::driver::{self, Host};
use wasmbed_agent::flash::{FlashKeyStore, FlashModuleStore};
use wasmbed_agent::provisioning::Provisioning;
use wasmbed_agent::runtime::WasmiRuntime;
use wasmbed_agent::x509::GatewayAnchor;
use wasmbed_agent::{Agent, AgentEvent, Credentials};
use wasmbed_protocol::Millis;

use crate::clock::{self, SysTickClock};
use crate::semihosting::FileFlash;
use crate::tls::{DeviceCrypto, GatewayVerifier};
use crate::uart::Link;
use crate::{heap, println, stack};

/// The receive buffer must hold one whole TLS record: the gateway caps its
/// records at 1,041 bytes on the wire.
const TLS_READ_BUF: usize = 2048;
/// Records the device sends carry at most this much, less TLS overhead.
const TLS_WRITE_BUF: usize = 1024;

/// The shortest wait before reconnecting (see `run`).
const LINK_SETTLE_MS: u64 = 1_500;

pub type FirmwareAgent =
    Agent<FlashKeyStore<FileFlash>, FlashModuleStore<FileFlash>, WasmiRuntime<SysTickClock>>;

type Tls<'a> = TlsConnection<'a, Link, Aes128GcmSha256>;

pub struct Device {
    pub agent: Box<FirmwareAgent>,
    pub provisioning: Provisioning<'static>,
    pub anchor: GatewayAnchor<'static>,
    pub rng: ChaCha20Rng,
    pub link: Link,
}

/// How a connection ended.
enum End {
    /// The session closed (goodbye sent or received).
    Closed,
    /// TLS or the link failed.
    Failed,
}

fn now() -> Millis {
    Millis(clock::now_ms())
}

impl Device {
    pub fn run(mut self) -> ! {
        let mut reconnect_at = clock::now_ms();
        loop {
            clock::sleep_until(reconnect_at, || false);
            let end = self.connection();
            let at = self.agent.disconnected(now(), &mut self.rng);
            // When a connection ends the bridge closes QEMU's socket and QEMU
            // reconnects a second later; bytes sent before that are lost.
            let at = at.0.max(clock::now_ms() + LINK_SETTLE_MS);
            let how = match end {
                End::Closed => "closed",
                End::Failed => "failed",
            };
            println!(
                "link: connection {how}; reconnecting in {} ms",
                at.saturating_sub(clock::now_ms())
            );
            reconnect_at = at;
        }
    }

    // Not inlined: its frame (TLS state and buffers) exists only while
    // connected, not while waiting to reconnect.
    #[inline(never)]
    fn connection(&mut self) -> End {
        // The credentials are copied out: the agent is borrowed mutably
        // while the connection lives.
        let (certificate, private_key, label): (Vec<u8>, [u8; 32], _) =
            match self.agent.credentials() {
                Credentials::Claim => (
                    self.provisioning.claim_certificate.to_vec(),
                    self.provisioning.claim_private_key,
                    "claim",
                ),
                Credentials::Device {
                    certificate,
                    private_key,
                } => (certificate.to_vec(), *private_key, "device"),
            };
        println!("link: connecting with the {label} certificate");
        self.link.discard_input();
        let mut read_buf = [0u8; TLS_READ_BUF];
        let mut write_buf = [0u8; TLS_WRITE_BUF];
        let config = TlsConfig::new().with_server_name(self.provisioning.server_name);
        let mut tls: Tls<'_> = TlsConnection::new(self.link, &mut read_buf, &mut write_buf);
        let mut verifier = GatewayVerifier::new(&self.anchor, self.provisioning.server_name);
        let crypto = DeviceCrypto {
            rng: &mut self.rng,
            verifier: &mut verifier,
            certificate: &certificate,
            private_key: &private_key,
        };
        let started = clock::now_us();
        let busy_before = clock::busy_us();
        if let Err(e) = handshake(&mut tls, &config, crypto) {
            println!("tls: handshake failed: {} ({e:?})", describe(&e));
            return End::Failed;
        }
        if !verifier.authenticated() {
            println!("tls: handshake failed: the gateway did not prove its identity");
            return End::Failed;
        }
        println!(
            "tls: handshake done in {} us, {} us busy (stack peak {} B, heap {} B)",
            clock::now_us() - started,
            clock::busy_us() - busy_before,
            stack::peak(),
            heap::used()
        );
        if let Err(e) = self.agent.connect(now(), &mut self.rng) {
            println!("agent: cannot start a session: {e}");
            return End::Failed;
        }
        let end = self.serve(&mut tls);
        // The gateway may be gone already; nothing to do if this fails.
        let _ = tls.close();
        end
    }

    fn serve(&mut self, tls: &mut Tls<'_>) -> End {
        // Decrypted bytes the agent has not taken yet stay in embedded-tls's
        // buffer: there is no copy and no second buffer.
        match blocking::serve(self, tls) {
            driver::End::Closed => End::Closed,
            driver::End::Write(e) => {
                println!("link: sending failed: {} ({e:?})", describe(&e));
                End::Failed
            }
            driver::End::Read(e) => {
                println!("link: receiving failed: {} ({e:?})", describe(&e));
                End::Failed
            }
            driver::End::Eof => {
                println!("link: receiving failed: the gateway closed the connection");
                End::Failed
            }
            // Neither is asked for here.
            driver::End::Stopped | driver::End::Dropped => End::Failed,
        }
    }
}

impl Host for Device {
    type Keys = FlashKeyStore<FileFlash>;
    type Modules = FlashModuleStore<FileFlash>;
    type Runtime = WasmiRuntime<SysTickClock>;

    fn agent(&mut self) -> &mut FirmwareAgent {
        &mut self.agent
    }

    fn now(&self) -> Millis {
        now()
    }

    fn event(&mut self, event: AgentEvent) {
        report(&event);
    }
}

impl WaitInput for Device {
    fn readable(&mut self) -> bool {
        self.link.has_input()
    }

    fn wait(&mut self, deadline: Option<Millis>) {
        let link = self.link;
        clock::sleep_until(deadline.map_or(u64::MAX, |at| at.0), || link.has_input());
    }
}

/// The TLS handshake, in a frame of its own that is gone once it is done.
#[inline(never)]
fn handshake(
    tls: &mut Tls<'_>,
    config: &TlsConfig<'_>,
    crypto: DeviceCrypto<'_, '_, ChaCha20Rng>,
) -> Result<(), TlsError> {
    tls.open(TlsContext::new(config, crypto))
}

/// Prints the event's console line (the grammar every firmware shares, see
/// `wasmbed_agent::console`) with this firmware's memory figures.
fn report(event: &AgentEvent) {
    let line = EventLine(event);
    match event {
        AgentEvent::HeartbeatSent => println!("{line} (heap free {} B)", heap::free()),
        AgentEvent::Executed { .. } => println!(
            "{line} (heap peak {} B, stack peak {} B)",
            heap::peak(),
            stack::peak()
        ),
        _ => println!("{line}"),
    }
}

fn describe(e: &TlsError) -> &'static str {
    match e {
        TlsError::Io(embedded_io::ErrorKind::TimedOut) => "timed out",
        TlsError::Io(_) => "link error",
        TlsError::InvalidCertificate => "the gateway's certificate is not trusted",
        TlsError::InvalidSignature => "the gateway's signature is invalid",
        TlsError::HandshakeAborted(..) => "the gateway aborted the handshake",
        TlsError::ConnectionClosed => "the gateway closed the connection",
        TlsError::DecodeError | TlsError::ParseError(_) => "malformed TLS from the gateway",
        TlsError::InsufficientSpace => "a record does not fit the receive buffer",
        _ => "TLS error",
    }
}
