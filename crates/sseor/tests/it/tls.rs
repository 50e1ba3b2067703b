//! HTTPS in the server loop: certificates that cannot serve are refused with a reason, and
//! a manager built with `Builder::tls` serves event streams over HTTP/2 and closes them on
//! `close()`.

use std::path::Path;
use std::time::Duration;

use eventsource_stream::Eventsource;
use futures_util::StreamExt;
use serde_json::json;
use sseor::{Error, Event, Manager, TlsConfig};
use sseor_testkit::certs::CertFiles;
use sseor_testkit::guard;
use sseor_testkit::library::Server;

use crate::common::varied_text;

/// A client that trusts `pki` and reaches `server` as `localhost`; it speaks HTTP/2 when
/// the server offers it, over one connection.
fn https_client(pki: &CertFiles, server: &Server) -> reqwest::Client {
    reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(pki.cert_pem.as_bytes()).unwrap())
        .resolve("localhost", server.addr)
        .build()
        .unwrap()
}

fn https_url(server: &Server, path: &str) -> String {
    format!("https://localhost:{}{path}", server.addr.port())
}

/// The message of the [`Error::Tls`] that loading `cert` and `key` fails with.
fn refusal(cert: &Path, key: &Path) -> String {
    match TlsConfig::from_pem_files(cert, key) {
        Err(Error::Tls(message)) => message,
        Err(other) => panic!("not a TLS error: {other:?}"),
        Ok(config) => panic!(
            "{} and {} were accepted: {config:?}",
            cert.display(),
            key.display()
        ),
    }
}

#[test]
fn a_matching_pair_offers_h2_then_http1() {
    let pki = CertFiles::self_signed();
    let config = TlsConfig::from_pem_files(&pki.cert, &pki.key).unwrap();
    assert_eq!(config.alpn(), ["h2", "http/1.1"]);
}

#[test]
fn pem_files_that_cannot_serve_are_refused_with_the_reason_and_not_the_contents() {
    let pki = CertFiles::self_signed();
    let other = CertFiles::self_signed();
    let secret = "TOPSECRETBYTES";
    let missing = pki.dir().join("missing.pem");
    let text = pki.file("text.pem", &format!("just text {secret}\n"));
    let bad_base64 = pki.file(
        "bad.pem",
        &format!("-----BEGIN CERTIFICATE-----\n{secret}!!\n-----END CERTIFICATE-----\n"),
    );
    let key_line = other.key_pem.lines().nth(1).unwrap();
    let cases: [(&Path, &Path, &str); 6] = [
        (&missing, &pki.key, "cannot read the certificate file"),
        (&pki.cert, &missing, "cannot read the private key file"),
        (&text, &pki.key, "no certificate in"),
        (&bad_base64, &pki.key, "not valid base64"),
        (&pki.cert, &text, "no private key in"),
        (&pki.cert, &other.key, "does not belong to the certificate"),
    ];
    for (cert, key, reason) in cases {
        let message = refusal(cert, key);
        assert!(message.contains(reason), "{message}");
        assert!(
            message.contains(&cert.display().to_string())
                || message.contains(&key.display().to_string()),
            "the message should name the file: {message}"
        );
        for leaked in [secret, key_line, &pki.cert_pem[30..60]] {
            assert!(!message.contains(leaked), "contents leaked: {message}");
        }
        assert!(!message.contains('\n'), "{message}");
    }
}

#[tokio::test]
async fn streams_over_h2_get_events_and_end_on_close() {
    let pki = CertFiles::self_signed();
    let tls = TlsConfig::from_pem_files(&pki.cert, &pki.key).unwrap();
    // A close that waited for the deadline would outlast the hang guard.
    let builder = Manager::builder()
        .tls(tls)
        .shutdown_timeout(Duration::from_secs(60));
    let server = Server::with(builder).await;
    let client = https_client(&pki, &server);
    let url = |user: &str| https_url(&server, &format!("/api/v1/sse?user_id={user}"));

    let mut streams = Vec::new();
    for user in ["a", "b", "c"] {
        let response = guard(client.get(url(user)).send()).await.unwrap();
        assert_eq!(response.version(), reqwest::Version::HTTP_2);
        assert_eq!(response.status(), 200);
        streams.push(response.bytes_stream().eventsource());
    }

    server
        .manager
        .publish_to_all(Event::new("hello"))
        .await
        .unwrap();
    for stream in &mut streams {
        let event = guard(stream.next()).await.unwrap().unwrap();
        assert_eq!(event.event, "hello");
    }

    guard(server.manager.close()).await;
    for stream in &mut streams {
        let end = guard(stream.next()).await;
        assert!(end.is_none(), "the stream should end cleanly: {end:?}");
    }
    let served = guard(server.serving).await.unwrap();
    assert!(served.is_ok(), "{served:?}");
}

/// An idle HTTP/2 connection gives its read and write buffers back and takes them again for
/// the next burst: events and request bodies several times larger than those buffers (16
/// and 8 KiB) cross one connection intact, burst after burst, with idle time between.
#[tokio::test]
async fn one_h2_connection_carries_events_and_bodies_larger_than_its_buffers_burst_after_burst() {
    let pki = CertFiles::self_signed();
    let tls = TlsConfig::from_pem_files(&pki.cert, &pki.key).unwrap();
    let server = Server::with(Manager::builder().tls(tls)).await;
    let client = https_client(&pki, &server);
    let response = guard(
        client
            .get(https_url(&server, "/api/v1/sse?user_id=big"))
            .send(),
    )
    .await
    .unwrap();
    assert_eq!(response.version(), reqwest::Version::HTTP_2);
    let mut stream = response.bytes_stream().eventsource();
    server.wait_for_total(1).await;

    for burst in 0..4 {
        let data = varied_text(40_000 + 5_000 * burst, burst);
        let published = guard(
            client
                .post(https_url(&server, "/api/v1/publish"))
                .json(&json!({"user_id": "big", "event": {"type": "blob", "data": {"text": data}}}))
                .send(),
        )
        .await
        .unwrap();
        assert_eq!(published.version(), reqwest::Version::HTTP_2);
        assert_eq!(published.status(), 202, "burst {burst}");
        let event = guard(stream.next()).await.unwrap().unwrap();
        assert_eq!(event.event, "blob");
        let received: serde_json::Value = serde_json::from_str(&event.data).unwrap();
        let received = received["text"].as_str().unwrap();
        assert_eq!(received.len(), data.len(), "burst {burst}");
        assert!(
            received == data,
            "burst {burst}: the event's data changed on the way"
        );
        // The connection goes idle, and gives its buffers back, before the next burst.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
