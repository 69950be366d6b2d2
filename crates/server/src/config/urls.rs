//! The URLs raftkv accepts (`http://host:port`, or bare `host:port`): checked, normalised so
//! the same address is always the same string, and resolved to a socket address.

use std::net::{IpAddr, SocketAddr, ToSocketAddrs};

use super::{ConfigError, err};

/// Checks a URL's syntax and returns its host (IPv6 still bracketed) and port.
pub(super) fn split_url(url: &str) -> Result<(&str, u16), ConfigError> {
    let rest = match url.split_once("://") {
        None => url,
        Some((scheme, rest)) => match scheme.to_ascii_lowercase().as_str() {
            "http" => rest,
            "https" => {
                return err(format!(
                    "'{url}' uses https, but raftkv has no TLS yet; use http://"
                ));
            }
            other => {
                return err(format!(
                    "'{url}' has unsupported scheme '{other}'; use http://host:port"
                ));
            }
        },
    };
    if let Some(i) = rest.find(['/', '?', '#', '@']) {
        return err(format!(
            "'{url}' must be just http://host:port (found '{}')",
            &rest[i..]
        ));
    }
    let (host, port) = if let Some(inner) = rest.strip_prefix('[') {
        let Some((ip6, after)) = inner.split_once(']') else {
            return err(format!("'{url}' has an unclosed '[' in its host"));
        };
        if ip6.parse::<std::net::Ipv6Addr>().is_err() {
            return err(format!("'{url}': '{ip6}' is not an IPv6 address"));
        }
        let Some(port) = after.strip_prefix(':') else {
            return err(format!("'{url}' has no port (e.g. http://127.0.0.1:2379)"));
        };
        (&rest[..ip6.len() + 2], port)
    } else {
        let Some((host, port)) = rest.rsplit_once(':') else {
            return err(format!("'{url}' has no port (e.g. http://127.0.0.1:2379)"));
        };
        if host.contains(':') {
            return err(format!(
                "'{url}': an IPv6 host needs brackets, e.g. http://[::1]:2379"
            ));
        }
        (host, port)
    };
    if host.is_empty() {
        return err(format!("'{url}' has no host"));
    }
    let port = match port.parse::<u16>() {
        Ok(p) => p,
        Err(_) => return err(format!("'{url}': '{port}' is not a port number")),
    };
    Ok((host, port))
}

/// Checks a URL and writes it as `http://host:port`, so the same address always yields the
/// same string (member ids hash the strings).
pub(super) fn normalise_url(url: &str) -> Result<String, ConfigError> {
    let (host, port) = split_url(url)?;
    Ok(format!("http://{host}:{port}"))
}

/// Parses a listen or peer URL (`http://host:port`, or bare `host:port`) into a socket address.
///
/// Port 0 is accepted (listening on it picks a free port, which tests and the playground use);
/// [`ServeArgs::resolve`](super::ServeArgs::resolve) refuses it where other members would have to dial it.
///
/// `https` is refused with a clear message because there is no TLS yet (silently serving
/// plaintext on an https URL would be worse). The host may be an IP address (IPv6 in brackets) or
/// a name, which is resolved with the system resolver and its first address used. The port is
/// required: guessing one would hide mistakes. A path, query or user part is refused, as in etcd.
pub fn parse_url(url: &str) -> Result<SocketAddr, ConfigError> {
    let (host, port) = split_url(url)?;
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = bare.parse::<IpAddr>() {
        return Ok(SocketAddr::new(ip, port));
    }
    match (host, port).to_socket_addrs() {
        Ok(mut addrs) => match addrs.next() {
            Some(addr) => Ok(addr),
            None => err(format!("'{url}': host '{host}' resolves to no address")),
        },
        Err(e) => err(format!("'{url}': cannot resolve host '{host}': {e}")),
    }
}
