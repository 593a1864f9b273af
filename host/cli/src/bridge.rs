//! `wasmbed bridge`: standalone TCP bridges from emulated devices' link
//! UARTs to the gateway.

use std::io::Write;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use wasmbed_emulator::{Bridge, BridgeConfig, BridgeCounters};

#[derive(Debug, Args)]
#[command(after_long_help = "\
An emulated board's link UART reaches the host as a TCP connection. The \
bridge accepts it and, once the device sends its first byte, connects to the \
gateway's TLS port and copies bytes both ways unchanged: the device's TLS \
1.3 session runs end to end through it, and the bridge sees no plaintext. \
An idle device holds no gateway connection. When either side closes, the \
bridge closes both; an unreachable gateway is logged and closes the device \
side. A new device connection replaces the previous one.

`wasmbed emulator run` starts a bridge for each device it runs; this \
command is for emulators started by hand. Example, a QEMU mps2-an385 whose \
UART1 is the link:

  wasmbed bridge --listen 127.0.0.1:7001 --gateway 127.0.0.1:40029 &
  qemu-system-arm -machine mps2-an385 -cpu cortex-m3 -nodefaults \\
      -display none -monitor none \\
      -chardev stdio,id=console,signal=off -serial chardev:console \\
      -chardev socket,id=link,host=127.0.0.1,port=7001,reconnect=1 \\
      -serial chardev:link \\
      -semihosting-config enable=on,target=native -kernel wasmbed-mps2

(QEMU 9.2 and later spell the option reconnect-ms=1000.) With \
`reconnect`, QEMU connects to the bridge and reconnects a second after the \
bridge closes the connection, so start the bridge first.

Ctrl-C stops the bridges and prints their counters.")]
pub(crate) struct BridgeArgs {
    /// Address to listen on for a device's link UART; repeat for more
    /// devices (one bridge each). Port 0 picks a free port.
    #[arg(long = "listen", required = true, value_name = "ADDR")]
    listen: Vec<SocketAddr>,
    /// The gateway's device address (TLS port), HOST:PORT.
    #[arg(long, default_value = "127.0.0.1:40029")]
    gateway: String,
    /// Longest wait for the gateway to accept a connection.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    connect_timeout: Duration,
}

pub(crate) fn run(args: BridgeArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(serve(args))
}

async fn serve(args: BridgeArgs) -> anyhow::Result<()> {
    let mut bridges = Vec::new();
    for listen in &args.listen {
        let mut config = BridgeConfig::listen(&listen.to_string(), *listen, &args.gateway);
        config.connect_timeout = args.connect_timeout;
        let bridge = Bridge::start(config)
            .await
            .with_context(|| format!("listening on {listen}"))?;
        let local = bridge.local_addr().unwrap_or(*listen);
        println!("bridging {local} -> {}", args.gateway);
        bridges.push((local, bridge));
    }
    std::io::stdout().flush()?;
    tokio::signal::ctrl_c()
        .await
        .context("waiting for Ctrl-C")?;
    println!("stopping");
    for (local, bridge) in bridges {
        let counters = bridge.close().await;
        println!("{local}: {}", describe(&counters));
    }
    Ok(())
}

fn describe(c: &BridgeCounters) -> String {
    format!(
        "{} device connections, {} gateway connections ({} failed), {} bytes to the gateway, {} bytes to the device",
        c.device_connections,
        c.gateway_connections,
        c.gateway_connect_failures,
        c.device_to_gateway_bytes,
        c.gateway_to_device_bytes
    )
}
