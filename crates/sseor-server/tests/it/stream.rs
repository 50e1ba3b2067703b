//! An event stream read frame by frame, the `id:` it opens with included (an `id:` alone,
//! which a browser keeps without dispatching an event).
//!
//! A stream settles where it starts before it sends its first bytes, and its first `id:`
//! says where that is: once it has come, every event published from then on reaches the
//! stream. A client that got only the response head may still miss one.

use std::collections::VecDeque;
use std::pin::Pin;

use bytes::Bytes;
use futures_util::StreamExt;
use sseor_testkit::raw::{Frame, Parser};
use sseor_testkit::{guard, http};

type Body = Pin<Box<dyn futures_util::Stream<Item = reqwest::Result<Bytes>> + Send>>;

/// An open event stream, read up to the `id:` it opened with.
pub(crate) struct Stream {
    body: Body,
    parser: Parser,
    /// Frames received and not read yet.
    frames: VecDeque<Frame>,
}

impl Stream {
    /// Opens `url`, with `Last-Event-ID` when given, and waits until the stream has
    /// settled where it starts (its first `id:` came).
    pub(crate) async fn open(url: &str, last_event_id: Option<&str>) -> Self {
        let mut request = http().get(url);
        if let Some(last) = last_event_id {
            request = request.header("last-event-id", last);
        }
        let response = guard(request.send()).await.unwrap();
        assert_eq!(response.status(), 200, "subscribing to {url}");
        let mut stream = Self {
            body: Box::pin(response.bytes_stream()),
            parser: Parser::default(),
            frames: VecDeque::new(),
        };
        guard(async {
            while !stream.frames.iter().any(|frame| !frame.id.is_empty()) {
                stream.receive().await;
            }
        })
        .await;
        stream
    }

    /// The next event with data; panics if the stream ends or nothing comes.
    pub(crate) async fn next_event(&mut self) -> Frame {
        guard(async {
            loop {
                while let Some(frame) = self.frames.pop_front() {
                    if !frame.data.is_empty() {
                        return frame;
                    }
                }
                self.receive().await;
            }
        })
        .await
    }

    /// Parses the next bytes the server sends.
    async fn receive(&mut self) {
        let bytes = self
            .body
            .next()
            .await
            .expect("the stream ended")
            .expect("the stream failed");
        self.parser.push(&bytes, &mut self.frames);
    }
}
