//! Which `Host` a request may name: exactly one, and on a server that trusts whoever
//! reaches its loopback address, only a loopback name.

use axum::response::Response;
use http::Version;

/// The answer to a request whose `Host` is refused: an HTTP/1.1 request needs exactly one
/// (RFC 9112, section 3.2), and a server that trusts whoever reaches its loopback address
/// answers only loopback names, or any web page could read it through DNS rebinding.
pub(super) fn refuse_host<B>(
    request: &http::Request<B>,
    loopback_hosts_only: bool,
) -> Option<Response> {
    let hosts = request.headers().get_all(http::header::HOST);
    let count = hosts.iter().count();
    if request.version() == Version::HTTP_11 && count != 1 {
        let message = if count == 0 {
            "an HTTP/1.1 request needs a Host header"
        } else {
            "an HTTP/1.1 request needs exactly one Host header, not several"
        };
        return Some(refusal(http::StatusCode::BAD_REQUEST, message));
    }
    if !loopback_hosts_only {
        return None;
    }
    let authority = request.uri().authority().map(http::uri::Authority::as_str);
    let names = hosts
        .iter()
        .map(|value| value.to_str().unwrap_or("\u{fffd}"))
        .chain(authority);
    for name in names {
        if !is_loopback_name(name) {
            let message = format!(
                "the host `{}` is not a loopback name: this server listens on loopback \
                 without authentication and answers only localhost, *.localhost, \
                 127.x.x.x and [::1]",
                name.escape_debug()
            );
            return Some(refusal(http::StatusCode::FORBIDDEN, &message));
        }
    }
    None
}

/// Whether `host` (with or without a port) names this machine's loopback interface:
/// `localhost`, `*.localhost`, `127.x.x.x` or `[::1]`.
fn is_loopback_name(host: &str) -> bool {
    let name = match host.strip_prefix('[') {
        Some(bracketed) => match bracketed.split_once(']') {
            Some((ip, rest)) if rest.is_empty() || is_port(rest) => {
                return ip
                    .parse::<std::net::Ipv6Addr>()
                    .is_ok_and(|ip| ip.is_loopback());
            }
            _ => return false,
        },
        None => match host.rsplit_once(':') {
            Some((name, port)) if is_port(&format!(":{port}")) => name,
            Some(_) => return false,
            None => host,
        },
    };
    let name = name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase();
    name == "localhost"
        || name.ends_with(".localhost")
        || name
            .parse::<std::net::Ipv4Addr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Whether `text` is `:` followed by a port number.
fn is_port(text: &str) -> bool {
    text.strip_prefix(':')
        .is_some_and(|port| port.parse::<u16>().is_ok())
}

/// A JSON error answer, as every other refusal of the API.
fn refusal(status: http::StatusCode, message: &str) -> Response {
    crate::error::json_error(status, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_names_are_localhost_127_and_ipv6_one_with_any_port() {
        for host in [
            "localhost",
            "localhost.",
            "LocalHost:80",
            "a.b.localhost:9090",
            "127.0.0.1",
            "127.255.0.9:1",
            "[::1]",
            "[::1]:443",
        ] {
            assert!(is_loopback_name(host), "{host}");
        }
        for host in [
            "",
            "example.com",
            "localhost.example.com",
            "notlocalhost",
            "127.0.0.1.nip.io",
            "128.0.0.1",
            "0.0.0.0",
            "[::2]",
            "[::1",
            "[::1]x",
            "::1",
            "localhost:99999",
            "localhost:",
        ] {
            assert!(!is_loopback_name(host), "{host}");
        }
    }
}
