//! Bytes on the wire: events encoded once, in the WHATWG `text/event-stream` format.
//!
//! Every frame is a [`Bytes`], so the same encoded event is shared by all its recipients
//! without copying.

use bytes::{BufMut, Bytes, BytesMut};

use crate::{Error, Event, Result};

/// A comment line that keeps idle connections (and the proxies between) alive.
pub const HEARTBEAT: Bytes = Bytes::from_static(b":\n\n");

/// Encodes an event as one Server-Sent Event: `id:`, `event:`, `retry:` and one `data:` line
/// holding the JSON of its data.
///
/// # Errors
/// [`Error::InvalidEvent`] when [`Event::validate`] rejects the event.
///
/// ```
/// use serde_json::json;
/// use sseor::{encode, Event};
///
/// let event = Event::new("greeting").with_id("42").with_data(json!({"hello": "world"}));
/// assert_eq!(
///     &encode::event(&event).unwrap()[..],
///     b"id: 42\nevent: greeting\ndata: {\"hello\":\"world\"}\n\n"
/// );
/// ```
pub fn event(event: &Event) -> Result<Bytes> {
    encode_event(event, event.id.as_deref())
}

/// Encodes an event without its `id:` line: the bytes every stream shares, each writing its
/// own `id:` before them.
pub(crate) fn event_without_id(event: &Event) -> Result<Bytes> {
    encode_event(event, None)
}

fn encode_event(event: &Event, id: Option<&str>) -> Result<Bytes> {
    event.validate()?;
    let mut buf = BytesMut::with_capacity(64 + event.event_type.len());
    put_header(&mut buf, id, Some(&event.event_type), event.retry);
    buf.put_slice(b"data: ");
    // Compact JSON escapes every control character, so this is always a single line.
    serde_json::to_writer((&mut buf).writer(), &event.data)
        .map_err(|e| Error::InvalidEvent(format!("data cannot be serialized: {e}")))?;
    buf.put_slice(b"\n\n");
    Ok(buf.freeze())
}

/// Encodes free text as one Server-Sent Event, splitting it into one `data:` line per line
/// (CR, LF and CRLF all end a line, as a browser reads them).
///
/// # Errors
/// [`Error::InvalidEvent`] when `id` or `event_type` holds a CR, LF or NUL.
///
/// ```
/// use sseor::encode;
/// assert_eq!(
///     &encode::text(None, Some("note"), "one\r\ntwo", None).unwrap()[..],
///     b"event: note\ndata: one\ndata: two\n\n"
/// );
/// ```
pub fn text(
    id: Option<&str>,
    event_type: Option<&str>,
    data: &str,
    retry: Option<u64>,
) -> Result<Bytes> {
    for (name, value) in [("id", id), ("type", event_type)] {
        if value.is_some_and(|v| v.contains(['\r', '\n', '\0'])) {
            return Err(Error::InvalidEvent(format!(
                "`{name}` must not contain CR, LF or NUL"
            )));
        }
    }
    let mut buf = BytesMut::with_capacity(32 + data.len());
    put_header(&mut buf, id, event_type, retry);
    for line in lines(data) {
        buf.put_slice(b"data: ");
        buf.put_slice(line.as_bytes());
        buf.put_u8(b'\n');
    }
    buf.put_u8(b'\n');
    Ok(buf.freeze())
}

/// Encodes a comment, which clients ignore: one `:` line per line of `text`.
///
/// ```
/// assert_eq!(&sseor::encode::comment("hi")[..], b": hi\n\n");
/// ```
pub fn comment(text: &str) -> Bytes {
    let mut buf = BytesMut::with_capacity(8 + text.len());
    for line in lines(text) {
        buf.put_slice(b": ");
        buf.put_slice(line.as_bytes());
        buf.put_u8(b'\n');
    }
    buf.put_u8(b'\n');
    buf.freeze()
}

/// Encodes a bare `retry:` field, the reconnection delay a stream announces when it opens.
///
/// ```
/// assert_eq!(&sseor::encode::retry(3000)[..], b"retry: 3000\n\n");
/// ```
pub fn retry(retry_ms: u64) -> Bytes {
    Bytes::from(format!("retry: {retry_ms}\n\n"))
}

fn put_header(buf: &mut BytesMut, id: Option<&str>, event_type: Option<&str>, retry: Option<u64>) {
    if let Some(id) = id {
        buf.put_slice(b"id: ");
        buf.put_slice(id.as_bytes());
        buf.put_u8(b'\n');
    }
    if let Some(event_type) = event_type {
        buf.put_slice(b"event: ");
        buf.put_slice(event_type.as_bytes());
        buf.put_u8(b'\n');
    }
    if let Some(retry) = retry {
        buf.put_slice(format!("retry: {retry}\n").as_bytes());
    }
}

/// Splits on CRLF, CR and LF, the three line ends of the event-stream grammar.
fn lines(text: &str) -> impl Iterator<Item = &str> {
    let mut rest = Some(text);
    std::iter::from_fn(move || {
        let current = rest?;
        match current.find(['\r', '\n']) {
            None => {
                rest = None;
                Some(current)
            }
            Some(end) => {
                let skip = if current[end..].starts_with("\r\n") {
                    2
                } else {
                    1
                };
                rest = Some(&current[end + skip..]);
                Some(&current[..end])
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_every_line_end() {
        let got: Vec<_> = lines("a\r\nb\rc\nd").collect();
        assert_eq!(got, ["a", "b", "c", "d"]);
        let got: Vec<_> = lines("x\n").collect();
        assert_eq!(got, ["x", ""]);
        assert_eq!(lines("").collect::<Vec<_>>(), [""]);
    }

    #[test]
    fn rejects_injection_in_text_fields() {
        assert!(text(Some("1\n"), None, "d", None).is_err());
        assert!(text(None, Some("a\rb"), "d", None).is_err());
        assert!(text(Some("1\0"), None, "d", None).is_err());
    }

    #[test]
    fn encodes_retry_in_events() {
        let retrying = Event::new("t").with_retry(1500);
        assert_eq!(
            &event(&retrying).unwrap()[..],
            b"event: t\nretry: 1500\ndata: {}\n\n"
        );
    }
}
