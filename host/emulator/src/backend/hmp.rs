//! Just enough of QEMU's human monitor protocol to start a paused QEMU
//! once its link UART is connected.
//!
//! QEMU 7.2 connects a `reconnect` socket chardev in the background and
//! drops what the guest writes to it until the connection is up, so a
//! firmware that talks on its link UART at boot would lose its first
//! bytes. QEMU therefore starts with `-S`, its monitor connected to the
//! manager, which asks `info chardev` until the link reads as connected
//! and then sends `cont`.

use std::io;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// What the monitor prints when it waits for a command.
const PROMPT: &[u8] = b"(qemu) ";

/// A connection to QEMU's human monitor.
#[derive(Debug)]
pub(crate) struct Monitor {
    stream: TcpStream,
    buffer: Vec<u8>,
}

impl Monitor {
    /// Takes over an accepted monitor connection and reads its banner.
    pub(crate) async fn new(stream: TcpStream) -> io::Result<Monitor> {
        let mut monitor = Monitor {
            stream,
            buffer: Vec::new(),
        };
        monitor.read_to_prompt().await?;
        Ok(monitor)
    }

    async fn read_to_prompt(&mut self) -> io::Result<String> {
        let mut chunk = [0u8; 1024];
        while !self.buffer.ends_with(PROMPT) {
            let n = self.stream.read(&mut chunk).await?;
            if n == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            self.buffer.extend_from_slice(&chunk[..n]);
            if self.buffer.len() > 1 << 20 {
                return Err(io::Error::other("the monitor's answer is too long"));
            }
        }
        let text = String::from_utf8_lossy(&self.buffer).into_owned();
        self.buffer.clear();
        Ok(text)
    }

    /// Runs a command; its output (with the monitor's echo of it).
    pub(crate) async fn command(&mut self, command: &str) -> io::Result<String> {
        self.stream
            .write_all(format!("{command}\n").as_bytes())
            .await?;
        self.read_to_prompt().await
    }

    /// Polls `info chardev` until chardev `id` is connected or `timeout`
    /// passes; whether it connected.
    pub(crate) async fn wait_connected(&mut self, id: &str, timeout: Duration) -> io::Result<bool> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let output = self.command("info chardev").await?;
            if chardev_connected(&output, id) == Some(true) {
                return Ok(true);
            }
            if tokio::time::Instant::now() >= deadline {
                return Ok(false);
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

/// From `info chardev` output, whether socket chardev `id` is connected:
/// `link: filename=tcp:127.0.0.1:42172 <-> 127.0.0.1:51623` is,
/// `link: filename=disconnected:tcp:127.0.0.1:51623` is not. `None` if
/// the chardev is not listed.
pub(crate) fn chardev_connected(output: &str, id: &str) -> Option<bool> {
    let key = format!("{id}: filename=");
    output
        .split(['\r', '\n'])
        .find_map(|line| line.strip_prefix(key.as_str()))
        .map(|filename| !filename.starts_with("disconnected:"))
}

#[cfg(test)]
mod tests {
    use super::*;

    // As QEMU 7.2 prints it, echo and line-editing escapes included.
    const WAITING: &str = "i\x1b[K\x1b[Dinfo chardev\x1b[K\r\nconsole: filename=stdio\r\nlink: filename=disconnected:tcp:127.0.0.1:51623\r\ncompat_monitor0: filename=tcp:127.0.0.1:59924 <-> 127.0.0.1:46141\r\n(qemu) ";
    const CONNECTED: &str = "info chardev\x1b[K\r\nconsole: filename=stdio\r\nlink: filename=tcp:127.0.0.1:42172 <-> 127.0.0.1:51623\r\n(qemu) ";

    #[test]
    fn info_chardev_tells_whether_the_link_is_up() {
        assert_eq!(chardev_connected(WAITING, "link"), Some(false));
        assert_eq!(chardev_connected(CONNECTED, "link"), Some(true));
        assert_eq!(chardev_connected(CONNECTED, "console"), Some(true));
        assert_eq!(chardev_connected(CONNECTED, "uart9"), None);
    }
}
