//! HTTP/2 connections keep no read buffer while they wait, and take one again when bytes
//! come: a request whose frames arrive in pieces, with the connection waiting between them,
//! is read whole.

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::{Value, json};
use sseor_testkit::library::Server;
use sseor_testkit::sse::Client;
use sseor_testkit::{guard, http};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::common::varied_text;

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const DATA: u8 = 0;
const HEADERS: u8 = 1;
const SETTINGS: u8 = 4;
const END_STREAM: u8 = 1;
const END_HEADERS: u8 = 4;

/// One HTTP/2 frame: its 9-byte header, then `payload`.
fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = u32::try_from(payload.len()).unwrap();
    let mut frame = len.to_be_bytes()[1..].to_vec();
    frame.extend([kind, flags]);
    frame.extend(stream.to_be_bytes());
    frame.extend(payload);
    frame
}

/// A header whose name is entry `index` of HPACK's static table and whose value is a
/// literal, not indexed.
fn literal(index: u8, value: &str, block: &mut Vec<u8>) {
    if index < 15 {
        block.push(index);
    } else {
        block.extend([15, index - 15]);
    }
    block.push(u8::try_from(value.len()).unwrap());
    block.extend(value.as_bytes());
}

/// The header block of `POST /api/v1/publish` with a JSON body of `len` bytes.
fn publish_headers(server: SocketAddr, len: usize) -> Vec<u8> {
    // `:method: POST` and `:scheme: http`, both whole entries of the static table.
    let mut block = vec![0x83, 0x86];
    literal(4, "/api/v1/publish", &mut block);
    literal(1, &server.to_string(), &mut block);
    literal(31, "application/json", &mut block);
    literal(28, &len.to_string(), &mut block);
    block
}

#[tokio::test]
async fn a_request_whose_frames_arrive_in_pieces_is_read_whole() {
    let server = Server::start().await;
    let response = guard(http().get(server.url("/api/v1/sse?user_id=pieces")).send())
        .await
        .unwrap();
    let mut events = Client::from_response(response);
    server.wait_for_total(1).await;

    let text = varied_text(30_000, 0);
    let body =
        json!({"user_id": "pieces", "event": {"type": "blob", "data": {"text": text}}}).to_string();
    // Two DATA frames: one frame may carry at most 16 KiB.
    let (first, rest) = body.as_bytes().split_at(16_000);
    let mut wire = PREFACE.to_vec();
    wire.extend(frame(SETTINGS, 0, 0, &[]));
    wire.extend(frame(
        HEADERS,
        END_HEADERS,
        1,
        &publish_headers(server.addr, body.len()),
    ));
    let request_start = wire.len();
    wire.extend(frame(DATA, 0, 1, first));
    wire.extend(frame(DATA, END_STREAM, 1, rest));

    let mut socket = guard(TcpStream::connect(server.addr)).await.unwrap();
    // Cut inside the first frame's header, inside each frame's payload, and between them;
    // the connection waits on its socket at every cut.
    let cuts = [
        request_start + 5,
        request_start + 9_000,
        request_start + 20_000,
    ];
    let mut from = 0;
    for cut in cuts.into_iter().chain([wire.len()]) {
        guard(socket.write_all(&wire[from..cut])).await.unwrap();
        from = cut;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let event = events.next_event().await;
    assert_eq!(event.event, "blob");
    let data: Value = serde_json::from_str(&event.data).unwrap();
    let received = data["text"].as_str().unwrap();
    assert_eq!(received.len(), text.len());
    assert!(received == text, "the request's body changed on the way");
}
