//! The first request head of a connection, read by the server loop itself: a plain `GET`
//! is routed here (and may become an event stream written straight to the socket), and
//! anything else goes to hyper with the bytes already read.

use axum::body::Body;
use axum::extract::Request;
use bytes::{Bytes, BytesMut};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Version};
use tokio::io::AsyncReadExt;
use tokio::time::Duration;
use tokio_util::sync::CancellationToken;

use super::MAX_HEAD_BYTES;
use super::socket::Connection;

/// The longest request head read here (hyper's own limit beyond: a longer one gets 431).
const MAX_HEAD: usize = MAX_HEAD_BYTES;

/// The most request headers parsed here (hyper's default limit).
const MAX_HEADERS: usize = 100;

pub(super) enum Head {
    /// The client left, or sent nothing in time, or the server is stopping.
    Gone,
    /// A `GET` without a body, and the bytes received so far (the head and maybe more).
    Get(Box<Request>, Bytes),
    /// Anything else (another method, HTTP/2, a malformed or oversized head), for hyper.
    Other(Bytes),
}

pub(super) async fn read_head<I: Connection>(
    socket: &mut I,
    stopping: &CancellationToken,
    timeout: Duration,
) -> Head {
    let deadline = tokio::time::Instant::now() + timeout;
    // No buffer until the first bytes arrive: an idle connection holds nothing here.
    tokio::select! {
        ready = std::future::poll_fn(|cx| socket.poll_first_bytes(cx)) => {
            if ready.is_err() { return Head::Gone }
        }
        () = stopping.cancelled() => return Head::Gone,
        () = tokio::time::sleep_until(deadline) => return Head::Gone,
    }
    let mut received = BytesMut::with_capacity(1024);
    loop {
        let read = tokio::select! {
            read = socket.read_buf(&mut received) => read,
            () = stopping.cancelled() => return Head::Gone,
            () = tokio::time::sleep_until(deadline) => return Head::Gone,
        };
        match read {
            Ok(0) if received.is_empty() => return Head::Gone,
            Ok(0) => return Head::Other(received.freeze()),
            Ok(_) => {}
            Err(_) => return Head::Gone,
        }
        match parse_get(&received) {
            Parsed::Get(request) => return Head::Get(request, received.freeze()),
            Parsed::Partial if received.len() < MAX_HEAD => {
                if received.capacity() == received.len() {
                    received.reserve(received.len().min(MAX_HEAD - received.len()));
                }
            }
            Parsed::Partial | Parsed::Other => return Head::Other(received.freeze()),
        }
    }
}

enum Parsed {
    Get(Box<Request>),
    Partial,
    Other,
}

/// Parses a request head that is a `GET` without a body and without an upgrade.
fn parse_get(received: &[u8]) -> Parsed {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut head = httparse::Request::new(&mut headers);
    match head.parse(received) {
        Ok(httparse::Status::Complete(_)) => {}
        Ok(httparse::Status::Partial) => return Parsed::Partial,
        Err(_) => return Parsed::Other,
    }
    let version = match head.version {
        Some(1) => Version::HTTP_11,
        Some(0) => Version::HTTP_10,
        _ => return Parsed::Other,
    };
    if head.method != Some("GET") {
        return Parsed::Other;
    }
    let Some(uri) = head.path.and_then(|path| http::Uri::try_from(path).ok()) else {
        return Parsed::Other;
    };
    let mut map = HeaderMap::with_capacity(head.headers.len());
    for header in head.headers.iter() {
        let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(header.name.as_bytes()),
            HeaderValue::from_bytes(header.value),
        ) else {
            return Parsed::Other;
        };
        map.append(name, value);
    }
    // Two `Content-Length` headers are hyper's to judge (400 when they differ), so that
    // both ways of reading a request answer alike.
    if map
        .get_all(http::header::CONTENT_LENGTH)
        .iter()
        .nth(1)
        .is_some()
    {
        return Parsed::Other;
    }
    let has_body = map.contains_key(http::header::TRANSFER_ENCODING)
        || map
            .get(http::header::CONTENT_LENGTH)
            .is_some_and(|length| length != "0");
    if has_body || map.contains_key(http::header::UPGRADE) {
        return Parsed::Other;
    }
    let mut request = Request::new(Body::empty());
    *request.method_mut() = Method::GET;
    *request.uri_mut() = uri;
    *request.version_mut() = version;
    *request.headers_mut() = map;
    Parsed::Get(Box::new(request))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn takes_only_plain_gets() {
        assert!(matches!(
            parse_get(b"GET /sse?user_id=a HTTP/1.1\r\nHost: x\r\n\r\n"),
            Parsed::Get(_)
        ));
        assert!(matches!(
            parse_get(b"GET /sse HTTP/1.1\r\nHost: x\r\n"),
            Parsed::Partial
        ));
        for other in [
            &b"POST /publish HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}"[..],
            b"GET / HTTP/1.1\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n",
            b"GET / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
            b"GET / HTTP/1.1\r\nBad Header\r\n\r\n",
            b"GET / HTTP/1.1\r\nContent-Length: 0\r\nContent-Length: 5\r\n\r\n",
        ] {
            assert!(matches!(parse_get(other), Parsed::Other), "{other:?}");
        }
    }
}
