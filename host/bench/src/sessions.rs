//! Phases 2 and 3: memory per idle authenticated session, then heartbeats
//! per gateway core, on one gateway with 10,000 device sessions.
//!
//! The devices are lightweight clients: the protocol's own
//! `DeviceSession` over tokio-rustls with a device certificate issued by
//! the installation's device CA, registered in the gateway's database
//! before it starts (so that 10,000 enrollments need not be timed out of
//! the run). Each session answers heartbeat deadlines like a device; on
//! command it sends heartbeats as fast as the gateway acknowledges them,
//! with a bounded number in flight.
//!
//! Heartbeats have a baseline too: the bare TLS server of the handshake
//! phase echoing heartbeat-sized records, driven the same way (one record
//! in flight per connection) by as many connections, interleaved round by
//! round. It is what one TLS record each way costs on this machine with
//! no gateway logic at all.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinHandle;
use tokio_rustls::client::TlsStream;
use wasmbed_protocol::session::{DeviceConfig, DeviceEvent, DeviceSession};
use wasmbed_protocol::{Envelope, Heartbeat, Uplink};

use crate::bare::GREETING;
use crate::http::Metrics;
use crate::identity::{self, Identity};
use crate::proc::{Child, CpuTimes};
use crate::report::{Row, list, median, progress, thousands};
use crate::sut::{BareProcess, Env, GatewayProcess};
use crate::{GatewayArgs, Phase, client};

/// Most sessions being established at once.
const CONNECT_CONCURRENCY: usize = 64;
/// Target of the issue, KiB of gateway memory per idle session.
const TARGET_SESSION_KIB: f64 = 16.0;
/// Target of the issue, heartbeats per second per gateway core.
const TARGET_HEARTBEATS: f64 = 100_000.0;
/// Target (issue 12): one heartbeat per record costs the gateway at most
/// 1/0.9 of what the bare TLS echo spends per record.
const TARGET_RECORD_RATIO: f64 = 0.9;
/// Load before a heartbeat window is measured.
const WARMUP: Duration = Duration::from_millis(500);

type Session = DeviceSession<Vec<u8>>;
type Tls = TlsStream<TcpStream>;

/// What the sessions do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Heartbeat only when due (every 60 s).
    Idle,
    /// Sessions `0..active` keep up to `window` heartbeats unacknowledged,
    /// written `batch` at a time.
    Load {
        active: usize,
        batch: u32,
        window: u32,
    },
    /// Close.
    Stop,
}

#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) established: AtomicU64,
    failed: AtomicU64,
    pub(crate) lost: AtomicU64,
    pub(crate) acks: AtomicU64,
    /// Why sessions ended before they were told to, and how often.
    reasons: std::sync::Mutex<std::collections::BTreeMap<String, u64>>,
    /// Microseconds from a due heartbeat to its acknowledgement, each.
    latencies: std::sync::Mutex<Vec<u32>>,
}

impl Counters {
    fn lost(&self, reason: impl Into<String>) {
        self.lost.fetch_add(1, Ordering::Relaxed);
        let mut reasons = self.reasons.lock().unwrap_or_else(|e| e.into_inner());
        *reasons.entry(reason.into()).or_default() += 1;
    }

    fn acked_after(&self, sent: Instant) {
        let micros = u32::try_from(sent.elapsed().as_micros()).unwrap_or(u32::MAX);
        self.latencies
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(micros);
    }

    /// The latencies recorded since the last call, taken.
    pub(crate) fn take_latencies(&self) -> Vec<u32> {
        std::mem::take(&mut *self.latencies.lock().unwrap_or_else(|e| e.into_inner()))
    }

    pub(crate) fn lost_summary(&self) -> String {
        let reasons = self.reasons.lock().unwrap_or_else(|e| e.into_inner());
        reasons
            .iter()
            .map(|(reason, n)| format!("{n} x {reason}"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// The bench's client connections (device sessions, or echo clients of
/// the baseline), one task each, driven together.
pub(crate) struct Clients {
    addr: SocketAddr,
    tasks: Vec<JoinHandle<()>>,
    mode: watch::Sender<Mode>,
    pub(crate) counters: Arc<Counters>,
    permits: Arc<Semaphore>,
}

impl Clients {
    pub(crate) fn new(addr: SocketAddr) -> Clients {
        Clients {
            addr,
            tasks: Vec::new(),
            mode: watch::Sender::new(Mode::Idle),
            counters: Arc::default(),
            permits: Arc::new(Semaphore::new(CONNECT_CONCURRENCY)),
        }
    }

    /// Starts a session for each of `identities`.
    pub(crate) fn connect(&mut self, identities: &[Identity]) {
        for identity in identities {
            let index = self.tasks.len();
            let addr = self.addr;
            let config = identity.config.clone();
            let permits = self.permits.clone();
            let counters = self.counters.clone();
            let mode = self.mode.subscribe();
            self.tasks.push(tokio::spawn(async move {
                let established = {
                    let Ok(_permit) = permits.acquire().await else {
                        return;
                    };
                    establish_with_retries(addr, &config).await
                };
                match established {
                    Ok((tls, session)) => {
                        counters.established.fetch_add(1, Ordering::Relaxed);
                        drive(index, tls, session, mode, &counters).await;
                    }
                    Err(_) => {
                        counters.failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }));
        }
    }

    /// Starts `count` echo clients of the bare TLS baseline.
    fn connect_echo(&mut self, config: &Arc<rustls::ClientConfig>, count: usize) {
        let frame: Arc<[u8]> = heartbeat_frame().into();
        for _ in 0..count {
            let index = self.tasks.len();
            let addr = self.addr;
            let config = config.clone();
            let permits = self.permits.clone();
            let counters = self.counters.clone();
            let mode = self.mode.subscribe();
            let frame = frame.clone();
            self.tasks.push(tokio::spawn(async move {
                let connected = {
                    let Ok(_permit) = permits.acquire().await else {
                        return;
                    };
                    echo_connect(addr, config).await
                };
                match connected {
                    Ok(tls) => {
                        counters.established.fetch_add(1, Ordering::Relaxed);
                        echo(index, tls, &frame, mode, &counters).await;
                    }
                    Err(_) => {
                        counters.failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }));
        }
    }

    /// Waits until `n` sessions are established, printing progress.
    pub(crate) async fn wait_established(&self, n: u64, within: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + within;
        let mut next_report = Instant::now() + Duration::from_secs(3);
        loop {
            let established = self.counters.established.load(Ordering::Relaxed);
            let failed = self.counters.failed.load(Ordering::Relaxed);
            if established >= n {
                return Ok(());
            }
            if established + failed >= n || Instant::now() > deadline {
                bail!("{established} of {n} sessions established ({failed} failed)");
            }
            if Instant::now() >= next_report {
                progress(&format!("{established} connections established"));
                next_report += Duration::from_secs(3);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn set(&self, mode: Mode) {
        self.mode.send_replace(mode);
    }

    pub(crate) async fn stop(self) {
        self.set(Mode::Stop);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        for mut task in self.tasks {
            if tokio::time::timeout_at(deadline, &mut task).await.is_err() {
                task.abort();
            }
        }
    }
}

async fn establish_with_retries(
    addr: SocketAddr,
    config: &Arc<rustls::ClientConfig>,
) -> anyhow::Result<(Tls, Session)> {
    let mut last = None;
    for _ in 0..3 {
        match tokio::time::timeout(Duration::from_secs(30), establish(addr, config.clone())).await {
            Ok(Ok(established)) => return Ok(established),
            Ok(Err(e)) => last = Some(e),
            Err(_) => last = Some(anyhow::anyhow!("timed out")),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(last.unwrap_or_else(|| anyhow::anyhow!("not established")))
}

/// TLS with the device certificate, then the session start.
async fn establish(
    addr: SocketAddr,
    config: Arc<rustls::ClientConfig>,
) -> anyhow::Result<(Tls, Session)> {
    let mut tls = client::tls(addr, config).await?;
    let mut session = Session::resume(DeviceConfig::default(), &client::hello(), client::now());
    let mut buf = [0u8; 1024];
    loop {
        flush(&mut tls, &mut session).await?;
        let n = tls.read(&mut buf).await?;
        if n == 0 {
            bail!("the gateway closed before accepting the session");
        }
        let mut data = &buf[..n];
        let mut established = false;
        while !data.is_empty() {
            let taken = session.handle_input(data, client::now());
            data = &data[taken..];
            let mut events = 0;
            while let Some(event) = session.poll_event() {
                events += 1;
                match event {
                    DeviceEvent::Established(_) => established = true,
                    DeviceEvent::Closed(reason) => bail!("session refused: {reason}"),
                    DeviceEvent::PeerError(error) => bail!("gateway error {:?}", error.code),
                    _ => {}
                }
            }
            if taken == 0 && events == 0 {
                break;
            }
        }
        if established {
            return Ok((tls, session));
        }
    }
}

async fn flush(tls: &mut Tls, session: &mut Session) -> std::io::Result<()> {
    let pending = session.poll_transmit();
    if pending.is_empty() {
        return Ok(());
    }
    let len = pending.len();
    tls.write_all(pending).await?;
    tls.flush().await?;
    session.advance_transmit(len);
    Ok(())
}

/// One established session until told to stop or the connection ends.
async fn drive(
    index: usize,
    mut tls: Tls,
    mut session: Session,
    mut mode: watch::Receiver<Mode>,
    counters: &Counters,
) {
    let beat = client::heartbeat();
    let mut buf = [0u8; 1024];
    let mut outstanding: u32 = 0;
    let mut due_sent: Option<Instant> = None;
    loop {
        let current = *mode.borrow_and_update();
        match current {
            Mode::Stop => return,
            Mode::Load {
                active,
                batch,
                window,
            } if index < active => {
                let batch = batch.max(1);
                if outstanding + batch <= window.max(batch) {
                    // The session dates its acknowledgement deadline from
                    // the last time it was given: give it the time now.
                    session.handle_timeout(client::now());
                    drain(
                        &mut session,
                        &beat,
                        &mut outstanding,
                        &mut due_sent,
                        counters,
                    );
                }
                while outstanding + batch <= window.max(batch) {
                    for _ in 0..batch {
                        if let Err(e) = session.send_heartbeat(&beat) {
                            counters.lost(format!("heartbeat not sent: {e}"));
                            return;
                        }
                    }
                    outstanding += batch;
                }
            }
            Mode::Load { .. } | Mode::Idle => {}
        }
        if let Err(e) = flush(&mut tls, &mut session).await {
            counters.lost(format!("write failed: {e}"));
            return;
        }
        if session.is_closed() {
            // The reason was recorded with the session's Closed event.
            return;
        }
        let deadline = session.poll_timeout().map(client::instant);
        tokio::select! {
            read = tls.read(&mut buf) => match read {
                Ok(0) => {
                    counters.lost("the gateway closed the connection");
                    return;
                }
                Err(e) => {
                    counters.lost(format!("read failed: {e}"));
                    return;
                }
                Ok(n) => {
                    let mut data = &buf[..n];
                    while !data.is_empty() {
                        let taken = session.handle_input(data, client::now());
                        data = &data[taken..];
                        let events = drain(&mut session, &beat, &mut outstanding, &mut due_sent, counters);
                        if taken == 0 && events == 0 {
                            break;
                        }
                    }
                }
            },
            changed = mode.changed() => {
                if changed.is_err() {
                    return;
                }
            }
            () = tokio::time::sleep_until(deadline.unwrap_or_else(client::far_future)), if deadline.is_some() => {
                session.handle_timeout(client::now());
            }
        }
        drain(
            &mut session,
            &beat,
            &mut outstanding,
            &mut due_sent,
            counters,
        );
    }
}

/// Reacts to the session's events; returns how many there were. A
/// heartbeat sent when due is timed (`due_sent`) to its acknowledgement.
fn drain(
    session: &mut Session,
    beat: &Heartbeat,
    outstanding: &mut u32,
    due_sent: &mut Option<Instant>,
    counters: &Counters,
) -> usize {
    let mut events = 0;
    while let Some(event) = session.poll_event() {
        events += 1;
        match event {
            DeviceEvent::HeartbeatAcked(_) => {
                *outstanding = outstanding.saturating_sub(1);
                counters.acks.fetch_add(1, Ordering::Relaxed);
                if let Some(sent) = due_sent.take() {
                    counters.acked_after(sent);
                }
            }
            DeviceEvent::HeartbeatDue => {
                let sent = session.send_heartbeat(beat).is_ok();
                *outstanding += u32::from(sent);
                if sent && due_sent.is_none() {
                    *due_sent = Some(Instant::now());
                }
            }
            DeviceEvent::Closed(reason) => counters.lost(format!("session closed: {reason}")),
            _ => {}
        }
    }
    events
}

/// One heartbeat as a whole frame, as a device sends it.
fn heartbeat_frame() -> Vec<u8> {
    let envelope = Envelope::new(1000, Uplink::Heartbeat(client::heartbeat()));
    let mut out = vec![0u8; 256];
    let len = wasmbed_protocol::frame::encode_frame(&envelope, &mut out, 4096).unwrap_or(0);
    out.truncate(len);
    out
}

/// TLS to the baseline, and its greeting.
async fn echo_connect(addr: SocketAddr, config: Arc<rustls::ClientConfig>) -> anyhow::Result<Tls> {
    let mut tls = client::tls(addr, config).await?;
    let mut greeting = [0u8; GREETING.len()];
    tls.read_exact(&mut greeting).await?;
    Ok(tls)
}

/// An echo client: in load, one heartbeat-sized record in flight.
async fn echo(
    index: usize,
    mut tls: Tls,
    frame: &[u8],
    mut mode: watch::Receiver<Mode>,
    counters: &Counters,
) {
    let mut buf = [0u8; 1024];
    let mut in_flight = false;
    let mut received = 0;
    loop {
        let current = *mode.borrow_and_update();
        let load = match current {
            Mode::Stop => return,
            Mode::Load { active, .. } => index < active,
            Mode::Idle => false,
        };
        if load && !in_flight {
            if tls.write_all(frame).await.is_err() || tls.flush().await.is_err() {
                counters.lost("echo write failed");
                return;
            }
            in_flight = true;
        }
        tokio::select! {
            read = tls.read(&mut buf) => match read {
                Ok(0) | Err(_) => {
                    counters.lost("echo connection lost");
                    return;
                }
                Ok(n) => {
                    received += n;
                    while received >= frame.len() {
                        received -= frame.len();
                        in_flight = false;
                        counters.acks.fetch_add(1, Ordering::Relaxed);
                    }
                }
            },
            changed = mode.changed() => {
                if changed.is_err() {
                    return;
                }
            }
        }
    }
}

pub(crate) async fn run(env: &Env, args: &GatewayArgs) -> anyhow::Result<Vec<Row>> {
    let n = args.idle_devices.max(2);
    progress(&format!(
        "memory: issuing {n} device certificates with the installation's device CA"
    ));
    let identities = identity::make(&env.installation, n)?;
    let db = env.path("sessions.db");
    identity::register(&db, &identities)?;
    progress(&format!(
        "memory: {n} devices registered; starting the gateway"
    ));
    let gateway = GatewayProcess::start(env, "gateway-sessions", &db, false).await?;
    let mut devices = Clients::new(gateway.devices);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let before = gateway.child.rss_kib()?;
    let half = n / 2;
    let started = Instant::now();
    devices.connect(&identities[..half]);
    devices
        .wait_established(half as u64, Duration::from_secs(300))
        .await?;
    let mut connecting = started.elapsed();
    let at_half = settle(&gateway, half).await?;
    let started = Instant::now();
    devices.connect(&identities[half..]);
    devices
        .wait_established(n as u64, Duration::from_secs(300))
        .await?;
    connecting += started.elapsed();
    let after = settle(&gateway, n).await?;
    let per_session = after.saturating_sub(before) as f64 / n as f64;
    let marginal = after.saturating_sub(at_half) as f64 / (n - half) as f64;
    progress(&format!(
        "memory: gateway VmRSS {before} KiB idle, {at_half} KiB with {half} sessions, {after} KiB \
         with {n} ({:.0} sessions/s established)",
        n as f64 / connecting.as_secs_f64()
    ));
    let mut rows = vec![
        Row::new(
            format!(
                "gateway memory per idle session ({} sessions)",
                thousands(n as f64)
            ),
            format!("{per_session:.1} KiB"),
        )
        .target(
            format!("<= {TARGET_SESSION_KIB:.0} KiB"),
            per_session <= TARGET_SESSION_KIB,
        ),
        Row::new(
            format!(
                "  marginal, sessions {}..{}",
                thousands(half as f64),
                thousands(n as f64)
            ),
            format!("{marginal:.1} KiB"),
        ),
    ];
    if args.phases.contains(&Phase::Heartbeats) {
        rows.extend(heartbeats(env, &gateway, &devices, n, args).await?);
    }
    let lost = devices.counters.lost.load(Ordering::Relaxed);
    if lost > 0 {
        progress(&format!(
            "warning: {lost} sessions ended early: {}",
            devices.counters.lost_summary()
        ));
    }
    devices.stop().await;
    gateway.stop().await;
    Ok(rows)
}

/// Waits until the gateway counts `n` connected devices, lets it settle,
/// and returns its VmRSS in KiB.
pub(crate) async fn settle(gateway: &GatewayProcess, n: usize) -> anyhow::Result<u64> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let connected = Metrics::fetch(&gateway.client, gateway.http)
            .await?
            .get("wasmbed_gateway_connected_devices");
        if connected >= n as f64 {
            break;
        }
        if Instant::now() > deadline {
            bail!("the gateway counts {connected} connected devices, not {n}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    gateway
        .child
        .rss_kib()
        .context("reading the gateway's VmRSS")
}

/// One measurement window of heartbeats (or echoed records).
#[derive(Debug, Clone, Copy)]
struct HeartbeatSample {
    per_cpu_second: f64,
    per_second: f64,
    /// Cores the server process kept busy.
    cores: f64,
    /// Share of the server's CPU time spent in the kernel.
    system_share: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Load {
    /// The gateway, one heartbeat per TLS record.
    Record,
    /// The baseline, one heartbeat-sized record echoed.
    Echo,
    /// The gateway, pipelined heartbeats.
    Pipelined,
}

async fn heartbeats(
    env: &Env,
    gateway: &GatewayProcess,
    devices: &Clients,
    n: usize,
    args: &GatewayArgs,
) -> anyhow::Result<Vec<Row>> {
    let active = args.record_sessions.clamp(1, n);
    progress(&format!(
        "heartbeats: starting the bare TLS baseline and {active} echo connections"
    ));
    let bare = BareProcess::start(env).await?;
    let mut echo = Clients::new(bare.addr);
    echo.connect_echo(
        &wasmbed_pki::client_config_claim(&env.installation)?,
        active,
    );
    echo.wait_established(active as u64, Duration::from_secs(120))
        .await?;
    let record = Mode::Load {
        active,
        batch: 1,
        window: 1,
    };
    let (piped_active, batch, piped_window) = (
        args.pipelined_sessions.clamp(1, n),
        args.batch.max(1),
        args.window.max(args.batch.max(1)),
    );
    let pipelined = Mode::Load {
        active: piped_active,
        batch,
        window: piped_window,
    };
    let window = Duration::from_secs_f64(args.heartbeat_secs.max(0.1));
    let mut samples: [Vec<HeartbeatSample>; 3] = Default::default();
    for round in 0..args.heartbeat_rounds.max(1) {
        let order = if round % 2 == 0 {
            [Load::Record, Load::Echo, Load::Pipelined]
        } else {
            [Load::Echo, Load::Record, Load::Pipelined]
        };
        for load in order {
            let (clients, mode, server, label) = match load {
                Load::Record => (devices, record, &gateway.child, "gateway, 1 per record"),
                Load::Echo => (&echo, record, &bare.child, "bare TLS echo"),
                Load::Pipelined => (devices, pipelined, &gateway.child, "gateway, pipelined"),
            };
            clients.set(mode);
            tokio::time::sleep(WARMUP).await;
            let sample = match load {
                Load::Echo => echo_window(server, &echo.counters, window).await?,
                Load::Record | Load::Pipelined => heartbeat_window(gateway, window).await?,
            };
            clients.set(Mode::Idle);
            // Let the records in flight drain.
            tokio::time::sleep(Duration::from_millis(300)).await;
            progress(&format!(
                "heartbeats: round {} {label:<22} {:>9} per server CPU-s  {:>9}/s  server busy {:.2} cores, {:.0} % in the kernel",
                round + 1,
                thousands(sample.per_cpu_second),
                thousands(sample.per_second),
                sample.cores,
                100.0 * sample.system_share
            ));
            samples[load as usize].push(sample);
        }
    }
    progress(&format!(
        "heartbeats: {} acknowledgements received by the devices",
        thousands(devices.counters.acks.load(Ordering::Relaxed) as f64)
    ));
    echo.stop().await;
    drop(bare);

    let medians = |i: Load| {
        let of = |f: fn(&HeartbeatSample) -> f64| {
            median(&samples[i as usize].iter().map(f).collect::<Vec<_>>())
        };
        (
            of(|s| s.per_cpu_second),
            of(|s| s.per_second),
            of(|s| s.cores),
            of(|s| s.system_share),
        )
    };
    for load in [Load::Record, Load::Echo, Load::Pipelined] {
        progress(&format!(
            "heartbeats: {load:?}: per server CPU-s [{}]",
            list(
                &samples[load as usize]
                    .iter()
                    .map(|s| s.per_cpu_second)
                    .collect::<Vec<_>>()
            )
        ));
    }
    let ratios: Vec<f64> = samples[Load::Record as usize]
        .iter()
        .zip(&samples[Load::Echo as usize])
        .map(|(g, b)| g.per_cpu_second / b.per_cpu_second)
        .collect();
    let (record_core, record_wall, record_cores, record_sys) = medians(Load::Record);
    let (echo_core, echo_wall, _, echo_sys) = medians(Load::Echo);
    let (piped_core, piped_wall, piped_cores, piped_sys) = medians(Load::Pipelined);
    let target = format!(">= {}/s", thousands(TARGET_HEARTBEATS));
    Ok(vec![
        Row::new(
            format!(
                "heartbeats/s per gateway core, 1 per TLS record ({} of {} sessions)",
                thousands(active as f64),
                thousands(n as f64)
            ),
            format!("{}/s", thousands(record_core)),
        )
        .baseline(format!("{}/s", thousands(echo_core)), median(&ratios))
        .target(
            format!("{target}, >= {TARGET_RECORD_RATIO:.2} x baseline"),
            record_core >= TARGET_HEARTBEATS && median(&ratios) >= TARGET_RECORD_RATIO,
        ),
        Row::new(
            format!(
                "  wall clock; gateway busy {record_cores:.2} cores, {:.0} % kernel (echo {:.0} %)",
                100.0 * record_sys,
                100.0 * echo_sys
            ),
            format!("{}/s", thousands(record_wall)),
        )
        .baseline(
            format!("{}/s", thousands(echo_wall)),
            record_wall / echo_wall,
        ),
        Row::new(
            format!(
                "heartbeats/s per gateway core, pipelined ({piped_active} sessions, {batch} per record, {piped_window} in flight)"
            ),
            format!("{}/s", thousands(piped_core)),
        )
        .target(target, piped_core >= TARGET_HEARTBEATS),
        Row::new(
            format!(
                "  wall clock; gateway busy {piped_cores:.2} cores, {:.0} % kernel",
                100.0 * piped_sys
            ),
            format!("{}/s", thousands(piped_wall)),
        ),
    ])
}

/// Heartbeats counted by the gateway over `window`.
async fn heartbeat_window(
    gateway: &GatewayProcess,
    window: Duration,
) -> anyhow::Result<HeartbeatSample> {
    const SERIES: &str = "wasmbed_gateway_heartbeats_total";
    let beats0 = Metrics::fetch(&gateway.client, gateway.http)
        .await?
        .get(SERIES);
    let cpu0 = gateway.child.cpu_times()?;
    let t0 = Instant::now();
    tokio::time::sleep(window).await;
    let beats1 = Metrics::fetch(&gateway.client, gateway.http)
        .await?
        .get(SERIES);
    let cpu1 = gateway.child.cpu_times()?;
    sample(beats1 - beats0, cpu0, cpu1, t0.elapsed())
}

/// Records echoed by the baseline over `window`.
async fn echo_window(
    server: &Child,
    counters: &Counters,
    window: Duration,
) -> anyhow::Result<HeartbeatSample> {
    let echoed0 = counters.acks.load(Ordering::Relaxed);
    let cpu0 = server.cpu_times()?;
    let t0 = Instant::now();
    tokio::time::sleep(window).await;
    let echoed1 = counters.acks.load(Ordering::Relaxed);
    let cpu1 = server.cpu_times()?;
    sample((echoed1 - echoed0) as f64, cpu0, cpu1, t0.elapsed())
}

fn sample(
    count: f64,
    cpu0: CpuTimes,
    cpu1: CpuTimes,
    wall: Duration,
) -> anyhow::Result<HeartbeatSample> {
    if count <= 0.0 {
        bail!("nothing was counted");
    }
    let user = (cpu1.user - cpu0.user).as_secs_f64();
    let system = (cpu1.system - cpu0.system).as_secs_f64();
    let cpu = user + system;
    let wall = wall.as_secs_f64();
    Ok(HeartbeatSample {
        per_cpu_second: if cpu > 0.0 { count / cpu } else { f64::NAN },
        per_second: count / wall,
        cores: cpu / wall,
        system_share: if cpu > 0.0 { system / cpu } else { f64::NAN },
    })
}
