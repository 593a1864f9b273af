//! A device's TLS connection as the agent's driver reads and writes it
//! ([`embedded_io_async`]): reads are buffered, every write is bounded by a
//! timeout.

use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::time::Duration;

use embedded_io_async::{BufRead, ErrorType, Read, Write};
use tokio::io::{AsyncBufRead, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::time::timeout;
use tokio_rustls::client::TlsStream;

/// Bytes read from the connection at a time; kept for the connection only.
const READ_BUF: usize = 2048;

pub(crate) struct Link {
    stream: BufReader<TlsStream<TcpStream>>,
    write_timeout: Duration,
}

impl Link {
    pub(crate) fn new(tls: TlsStream<TcpStream>, write_timeout: Duration) -> Self {
        Link {
            stream: BufReader::with_capacity(READ_BUF, tls),
            write_timeout,
        }
    }

    /// Closes TLS and TCP, waiting at most `wait`.
    pub(crate) async fn shutdown(&mut self, wait: Duration) {
        let _ = timeout(wait, self.stream.shutdown()).await;
    }
}

/// `op`, failing with `TimedOut` if it takes longer than `limit`.
async fn within<T>(limit: Duration, op: impl Future<Output = io::Result<T>>) -> io::Result<T> {
    match timeout(limit, op).await {
        Ok(result) => result,
        Err(_) => Err(io::ErrorKind::TimedOut.into()),
    }
}

impl ErrorType for Link {
    type Error = io::Error;
}

impl Read for Link {
    async fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let available = self.fill_buf().await?;
        let n = available.len().min(buf.len());
        buf[..n].copy_from_slice(&available[..n]);
        self.consume(n);
        Ok(n)
    }
}

impl BufRead for Link {
    /// Cancel-safe: bytes read before it is dropped stay in the buffer.
    async fn fill_buf(&mut self) -> io::Result<&[u8]> {
        poll_fn(|cx| Pin::new(&mut self.stream).poll_fill_buf(cx).map_ok(|_| ())).await?;
        Ok(self.stream.buffer())
    }

    fn consume(&mut self, amt: usize) {
        Pin::new(&mut self.stream).consume(amt);
    }
}

impl Write for Link {
    async fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        within(self.write_timeout, self.stream.write(buf)).await
    }

    async fn flush(&mut self) -> io::Result<()> {
        within(self.write_timeout, self.stream.flush()).await
    }
}
