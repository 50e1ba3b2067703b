//! Clients that read an event stream over HTTP as a browser's `EventSource` does.

use std::pin::Pin;
use std::time::Duration;

use eventsource_stream::{Event as SseEvent, EventStreamError, Eventsource};
use futures_util::{Stream, StreamExt};
use serde_json::Value;

use crate::hang::guard;
use crate::net::http;

type Events =
    Pin<Box<dyn Stream<Item = Result<SseEvent, EventStreamError<reqwest::Error>>> + Send>>;

/// One SSE client, reading the stream as a browser would.
pub struct Client {
    /// The headers of the response that opened the stream.
    pub headers: reqwest::header::HeaderMap,
    events: Events,
    /// The last event id the stream gave, as a browser's `lastEventId` holds it.
    last_id: String,
}

impl Client {
    /// Connects to `url` as [`resume`](Self::resume) does, without a last id.
    pub async fn connect(url: &str) -> Self {
        Self::resume(url, None).await
    }

    /// Connects as a browser that reconnects does, with `Last-Event-ID`. Like `sseor.js`,
    /// it tries again when refused because the broker is unavailable (a Redis outage that
    /// the instance has not recovered from yet); any other refusal fails the test.
    pub async fn resume(url: &str, last_event_id: Option<&str>) -> Self {
        let response = guard(async {
            loop {
                let response = request(url, last_event_id).send().await.unwrap();
                if response.status() != 503 || response.headers().get("retry-after").is_none() {
                    return response;
                }
                let refused = response.text().await.unwrap();
                assert!(refused.contains("broker unavailable"), "{refused}");
                // Sooner than `Retry-After` says: the test only needs to get through.
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
        .await;
        Self::from_response(response)
    }

    /// Connects with `Last-Event-ID` once: a refusal of any kind, a 503 included, fails
    /// the test.
    pub async fn open(url: &str, last_event_id: Option<&str>) -> Self {
        let response = guard(request(url, last_event_id).send()).await.unwrap();
        Self::from_response(response)
    }

    /// Reads the event stream of a response already received (from any client), which
    /// must be a 200.
    pub fn from_response(response: reqwest::Response) -> Self {
        assert_eq!(response.status(), 200, "subscribing to {}", response.url());
        let headers = response.headers().clone();
        let mut blocks = IdOnlyBlocks::default();
        let bytes = response
            .bytes_stream()
            .map(move |chunk| chunk.map(|bytes| blocks.feed(&bytes)));
        Self {
            headers,
            events: Box::pin(bytes.eventsource()),
            last_id: String::new(),
        }
    }

    /// The last event id the stream gave, as a browser's `lastEventId` holds it: the `id:`
    /// of the last event read, or of a block that carried only an id (which a browser does
    /// not dispatch, but remembers) read before or after it; empty before any.
    pub fn last_id(&self) -> &str {
        &self.last_id
    }

    /// Reads up to the next block that carries only an id, which sseor sends as a stream
    /// starts (after any events it replays), and returns that id: where the stream stands
    /// as it goes live. Panics if an event with data, or the end of the stream, comes
    /// first.
    pub async fn opening_id(&mut self) -> String {
        guard(async {
            match self.events.next().await {
                Some(Ok(event)) if is_id_only(&event) => {
                    self.last_id.clone_from(&event.id);
                    event.id
                }
                other => panic!("a block with only an id was expected: {other:?}"),
            }
        })
        .await
    }

    /// The next event that carries data; panics if the stream ends, fails or nothing
    /// comes.
    pub async fn next_event(&mut self) -> SseEvent {
        self.try_next_event()
            .await
            .expect("the stream ended while an event was expected")
    }

    /// The next event that carries data, or `None` when the server ended the stream
    /// cleanly; panics if the stream fails (cut off, reset) or nothing comes.
    pub async fn try_next_event(&mut self) -> Option<SseEvent> {
        match self.next_or_ending().await {
            Next::Event(event) => Some(event),
            Next::End => None,
            Next::CutOff(error) => panic!("the stream failed instead of ending cleanly: {error}"),
        }
    }

    /// The next event that carries data, or how the stream ended; panics if nothing comes.
    pub async fn next_or_ending(&mut self) -> Next {
        guard(async {
            loop {
                match self.events.next().await {
                    Some(Ok(event)) if is_id_only(&event) => self.last_id.clone_from(&event.id),
                    Some(Ok(event)) => {
                        self.last_id.clone_from(&event.id);
                        return Next::Event(event);
                    }
                    Some(Err(error)) => return Next::CutOff(error.to_string()),
                    None => return Next::End,
                }
            }
        })
        .await
    }

    /// Waits for the server to end the stream cleanly (an HTTP/1.1 chunked stream with its
    /// terminator), skipping any events; panics if the stream fails instead.
    pub async fn wait_for_end(&mut self) {
        guard(async { while self.try_next_event().await.is_some() {} }).await;
    }

    /// Waits for the stream to be cut off (closed or reset without its terminator),
    /// skipping any events; panics if it ends cleanly instead. The error, for messages.
    pub async fn wait_for_cut_off(&mut self) -> String {
        guard(async {
            loop {
                match self.next_or_ending().await {
                    Next::Event(_) => {}
                    Next::End => panic!("the stream ended cleanly where a cut-off was expected"),
                    Next::CutOff(error) => return error,
                }
            }
        })
        .await
    }

    /// Reads events until the stream ends; how many there were, or why it failed.
    pub async fn read_to_end(&mut self) -> Result<usize, String> {
        guard(async {
            let mut events = 0;
            while let Some(event) = self.events.next().await {
                let event = event.map_err(|e| e.to_string())?;
                if !is_id_only(&event) {
                    events += 1;
                }
            }
            Ok(events)
        })
        .await
    }
}

/// Whether `event` is what a block without data becomes: nothing a browser dispatches.
fn is_id_only(event: &SseEvent) -> bool {
    event.data.is_empty() && event.event == "message"
}

/// Makes each block that carries an `id:` but no `data:` reach the client as an untyped
/// event with empty data, by adding an empty `event` and an empty `data` line to it. The
/// parser, like a browser, does not dispatch such a block; but a browser remembers its id
/// as `lastEventId`, and so must [`Client`]. Reads lines ended by LF or CRLF, which is how
/// sseor writes them.
#[derive(Default)]
struct IdOnlyBlocks {
    /// The bytes of a line not yet ended.
    partial: Vec<u8>,
    has_id: bool,
    has_data: bool,
}

impl IdOnlyBlocks {
    /// The complete lines received so far, with the empty `data` lines added.
    fn feed(&mut self, chunk: &[u8]) -> Vec<u8> {
        self.partial.extend_from_slice(chunk);
        let Some(end) = self.partial.iter().rposition(|&b| b == b'\n') else {
            return Vec::new();
        };
        let rest = self.partial.split_off(end + 1);
        let lines = std::mem::replace(&mut self.partial, rest);
        let mut out = Vec::with_capacity(lines.len() + 8);
        for line in lines.split_inclusive(|&b| b == b'\n') {
            let field = line.strip_suffix(b"\n").unwrap_or(line);
            let field = field.strip_suffix(b"\r").unwrap_or(field);
            if field.is_empty() {
                if self.has_id && !self.has_data {
                    out.extend_from_slice(b"event\ndata\n");
                }
                (self.has_id, self.has_data) = (false, false);
            } else {
                let name = field.split(|&b| b == b':').next().unwrap_or_default();
                self.has_id |= name == b"id";
                self.has_data |= name == b"data";
            }
            out.extend_from_slice(line);
        }
        out
    }
}

/// A GET of `url` with `Last-Event-ID` when there is one.
fn request(url: &str, last_event_id: Option<&str>) -> reqwest::RequestBuilder {
    let request = http().get(url);
    match last_event_id {
        Some(last) => request.header("last-event-id", last),
        None => request,
    }
}

/// What came next on a stream.
#[derive(Debug)]
pub enum Next {
    /// An event that carries data.
    Event(SseEvent),
    /// The server ended the stream cleanly.
    End,
    /// The stream failed: the connection closed or was reset before the stream's end.
    CutOff(String),
}

/// The events with data of a stream, as [`events_of`] reads them.
pub type EventsWithData = Pin<Box<dyn Stream<Item = SseEvent> + Send>>;

/// The events with data of an open stream; panics if the stream fails (a stream cut off
/// is not a stream that ended).
pub fn events_of(response: reqwest::Response) -> EventsWithData {
    assert_eq!(response.status(), 200);
    Box::pin(
        response
            .bytes_stream()
            .eventsource()
            .filter_map(|event| async move {
                let event = event.unwrap_or_else(|error| panic!("the stream failed: {error}"));
                (!event.data.is_empty()).then_some(event)
            }),
    )
}

/// The JSON of an event's `data:`.
pub fn data_of(event: &SseEvent) -> Value {
    serde_json::from_str(&event.data)
        .unwrap_or_else(|e| panic!("`data:` is not JSON ({e}): {:?}", event.data))
}
