//! A minimal HTTPS client for the gateway's HTTP/JSON interface: one
//! request per connection (`Connection: close`), JSON in and out, over
//! TLS with a client certificate of the installation's control CA.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, bail};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How long one request may take.
const TIMEOUT: Duration = Duration::from_secs(60);

/// A TLS client of gateways: trusts the gateway CA and presents a control
/// certificate.
#[derive(Clone)]
pub(crate) struct GatewayClient {
    tls: tokio_rustls::TlsConnector,
}

impl std::fmt::Debug for GatewayClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GatewayClient").finish_non_exhaustive()
    }
}

impl GatewayClient {
    pub(crate) fn new(
        gateway_ca: &rustls::pki_types::CertificateDer<'_>,
        credential: &wasmbed_pki::Credential,
    ) -> anyhow::Result<GatewayClient> {
        let config = wasmbed_pki::control_client_config(gateway_ca, credential)?;
        Ok(GatewayClient {
            tls: tokio_rustls::TlsConnector::from(config),
        })
    }

    /// The API server's client of the installation in `pki`.
    pub(crate) fn from_pki(pki: &std::path::Path) -> anyhow::Result<GatewayClient> {
        use wasmbed_pki::control_file_names as names;
        let gateway_ca = wasmbed_pki::load_certificate(&pki.join("gateway-ca.pem"))?;
        let credential = wasmbed_pki::Credential::load(
            &pki.join(names::API_CLIENT),
            &pki.join(names::API_CLIENT_KEY),
        )?;
        GatewayClient::new(&gateway_ca, &credential)
    }

    /// `method path` with an optional JSON body.
    pub(crate) async fn call(
        &self,
        addr: SocketAddr,
        method: &str,
        path: &str,
        body: Option<&[u8]>,
    ) -> anyhow::Result<Response> {
        tokio::time::timeout(TIMEOUT, self.call_inner(addr, method, path, body))
            .await
            .with_context(|| format!("{method} {path} took more than {TIMEOUT:?}"))?
            .with_context(|| format!("{method} https://{addr}{path}"))
    }

    async fn call_inner(
        &self,
        addr: SocketAddr,
        method: &str,
        path: &str,
        body: Option<&[u8]>,
    ) -> anyhow::Result<Response> {
        let tcp = TcpStream::connect(addr).await?;
        let name = rustls::pki_types::ServerName::IpAddress(addr.ip().into());
        let mut tls = self.tls.connect(name, tcp).await?;
        let body = body.unwrap_or_default();
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        tls.write_all(head.as_bytes()).await?;
        tls.write_all(body).await?;
        tls.flush().await?;
        let mut raw = Vec::new();
        // A server may close without close_notify once it has answered.
        if let Err(e) = tls.read_to_end(&mut raw).await {
            if raw.is_empty() {
                return Err(e.into());
            }
        }
        parse(&raw)
    }

    /// `GET path`, expecting 200 and JSON.
    pub(crate) async fn get_json(
        &self,
        addr: SocketAddr,
        path: &str,
    ) -> anyhow::Result<serde_json::Value> {
        let response = self.call(addr, "GET", path, None).await?;
        if response.status != 200 {
            bail!(
                "GET {path}: status {}: {}",
                response.status,
                String::from_utf8_lossy(&response.body)
            );
        }
        response.json()
    }
}

/// A response: status and body.
#[derive(Debug)]
pub(crate) struct Response {
    pub(crate) status: u16,
    pub(crate) body: Vec<u8>,
}

impl Response {
    pub(crate) fn json(&self) -> anyhow::Result<serde_json::Value> {
        serde_json::from_slice(&self.body).context("response is not JSON")
    }
}

/// Parses a whole `Connection: close` response.
fn parse(raw: &[u8]) -> anyhow::Result<Response> {
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .context("no end of headers")?;
    let head = std::str::from_utf8(&raw[..end]).context("headers are not UTF-8")?;
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|line| line.split_whitespace().nth(1))
        .and_then(|code| code.parse().ok())
        .context("no status line")?;
    let mut chunked = false;
    let mut length = None;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("transfer-encoding") && value.eq_ignore_ascii_case("chunked") {
            chunked = true;
        } else if name.eq_ignore_ascii_case("content-length") {
            length = value.parse::<usize>().ok();
        }
    }
    let rest = &raw[end + 4..];
    let body = if chunked {
        dechunk(rest)?
    } else {
        match length {
            Some(n) if n <= rest.len() => rest[..n].to_vec(),
            Some(n) => bail!("body cut short: {} of {n} bytes", rest.len()),
            None => rest.to_vec(),
        }
    };
    Ok(Response { status, body })
}

fn dechunk(mut data: &[u8]) -> anyhow::Result<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let line_end = data
            .windows(2)
            .position(|w| w == b"\r\n")
            .context("chunk size line")?;
        let size = std::str::from_utf8(&data[..line_end])?;
        let size = size.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size, 16).context("chunk size")?;
        data = &data[line_end + 2..];
        if size == 0 {
            return Ok(body);
        }
        if data.len() < size + 2 {
            bail!("chunk cut short");
        }
        body.extend_from_slice(&data[..size]);
        data = &data[size + 2..];
    }
}

/// The gateway's `/metrics`, by series (`name{labels}`).
#[derive(Debug, Default)]
pub(crate) struct Metrics(HashMap<String, f64>);

impl Metrics {
    pub(crate) async fn fetch(client: &GatewayClient, addr: SocketAddr) -> anyhow::Result<Metrics> {
        let response = client.call(addr, "GET", "/metrics", None).await?;
        if response.status != 200 {
            bail!("GET /metrics: status {}", response.status);
        }
        Ok(Metrics::parse(&String::from_utf8_lossy(&response.body)))
    }

    fn parse(text: &str) -> Metrics {
        let series = text
            .lines()
            .filter(|line| !line.starts_with('#'))
            .filter_map(|line| {
                let (name, value) = line.rsplit_once(' ')?;
                Some((name.to_owned(), value.parse().ok()?))
            })
            .collect();
        Metrics(series)
    }

    /// A series' value; 0 when absent (counters appear on first use).
    pub(crate) fn get(&self, series: &str) -> f64 {
        self.0.get(series).copied().unwrap_or(0.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_plain_and_chunked_responses() -> anyhow::Result<()> {
        let plain = parse(b"HTTP/1.1 201 Created\r\ncontent-length: 2\r\n\r\n[]")?;
        assert_eq!((plain.status, plain.body.as_slice()), (201, &b"[]"[..]));
        let chunked = parse(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
        )?;
        assert_eq!(
            (chunked.status, chunked.body.as_slice()),
            (200, &b"abcde"[..])
        );
        Ok(())
    }

    #[test]
    fn parses_metrics() {
        let metrics = Metrics::parse(
            "# HELP x\nwasmbed_gateway_heartbeats_total 42\n\
             wasmbed_gateway_deployments_total{state=\"installed\"} 7\n# EOF\n",
        );
        assert_eq!(metrics.get("wasmbed_gateway_heartbeats_total"), 42.0);
        assert_eq!(
            metrics.get("wasmbed_gateway_deployments_total{state=\"installed\"}"),
            7.0
        );
        assert_eq!(metrics.get("absent"), 0.0);
    }
}
