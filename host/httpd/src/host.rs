//! The `Host` check of loopback listeners.
//!
//! A web page a local browser loads from `evil.example` can make that name
//! resolve to 127.0.0.1 (DNS rebinding) and then call a server on loopback
//! as if from the same origin; its requests still carry `Host:
//! evil.example`. A server bound to loopback answers only to loopback
//! names, which such a page cannot use.

use std::net::{Ipv4Addr, Ipv6Addr};

/// The `Host` values a loopback listener answers to.
#[derive(Debug, Clone)]
pub(crate) struct HostCheck {
    /// Lowercase; with a port when the entry named one.
    extra: Vec<String>,
}

/// A `Host` value split into its name and port.
struct Authority<'a> {
    /// Lowercase, without a trailing dot; IPv6 literals keep their brackets.
    name: String,
    port: Option<&'a str>,
}

fn parse(host: &str) -> Option<Authority<'_>> {
    let host = host.trim();
    let (name, port) = if host.starts_with('[') {
        let end = host.find(']')?;
        let (name, rest) = host.split_at(end + 1);
        match rest {
            "" => (name, None),
            _ => (name, Some(rest.strip_prefix(':')?)),
        }
    } else {
        match host.rsplit_once(':') {
            Some((name, port)) => (name, Some(port)),
            None => (host, None),
        }
    };
    if port.is_some_and(|p| p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit())) {
        return None;
    }
    if name.is_empty() || (name.contains(':') && !name.starts_with('[')) {
        return None;
    }
    let name = name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase();
    Some(Authority { name, port })
}

fn is_loopback_name(name: &str) -> bool {
    if name == "localhost" || name.ends_with(".localhost") {
        return true;
    }
    if let Ok(ip) = name.parse::<Ipv4Addr>() {
        return ip.is_loopback();
    }
    name.strip_prefix('[')
        .and_then(|rest| rest.strip_suffix(']'))
        .and_then(|inner| inner.parse::<Ipv6Addr>().ok())
        .is_some_and(|ip| ip.to_canonical().is_loopback())
}

impl HostCheck {
    pub(crate) fn new(extra_allowed_hosts: &[String]) -> HostCheck {
        HostCheck {
            extra: extra_allowed_hosts
                .iter()
                .filter_map(|entry| parse(entry))
                .map(|a| match a.port {
                    Some(port) => format!("{}:{port}", a.name),
                    None => a.name,
                })
                .collect(),
        }
    }

    /// Whether a request naming `host` (a `Host` header or the authority of
    /// an absolute URI) is answered.
    pub(crate) fn allows(&self, host: &str) -> bool {
        let Some(authority) = parse(host) else {
            return false;
        };
        if is_loopback_name(&authority.name) {
            return true;
        }
        self.extra.iter().any(|entry| {
            *entry == authority.name
                || authority
                    .port
                    .is_some_and(|port| *entry == format!("{}:{port}", authority.name))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_names_with_or_without_a_port_are_allowed() {
        let check = HostCheck::new(&[]);
        for host in [
            "localhost",
            "localhost:8080",
            "LocalHost.:8080",
            "app.localhost",
            "app.localhost:1",
            "127.0.0.1",
            "127.0.0.1:8080",
            "127.1.2.3:80",
            "[::1]",
            "[::1]:8080",
            "[::ffff:127.0.0.1]:8080",
        ] {
            assert!(check.allows(host), "{host}");
        }
    }

    #[test]
    fn other_names_and_malformed_values_are_refused() {
        let check = HostCheck::new(&[]);
        for host in [
            "",
            "evil.example",
            "evil.example:8080",
            "localhost.evil.example",
            "evillocalhost",
            "10.0.0.1:8080",
            "0.0.0.0:8080",
            "[::2]:8080",
            "::1",
            "localhost:",
            "localhost:http",
            "[::1]x",
            "[::1",
        ] {
            assert!(!check.allows(host), "{host:?}");
        }
    }

    #[test]
    fn extra_names_allow_any_port_or_the_one_they_name() {
        let check = HostCheck::new(&["Gateway.Internal".to_owned(), "proxy.lan:9000".to_owned()]);
        assert!(check.allows("gateway.internal"));
        assert!(check.allows("gateway.internal:8081"));
        assert!(check.allows("proxy.lan:9000"));
        assert!(!check.allows("proxy.lan:9001"));
        assert!(!check.allows("proxy.lan"));
        assert!(!check.allows("evil.example"));
    }
}
