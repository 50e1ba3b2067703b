//! Incremental decoding of an HTTP/1.1 response body (chunked or not) into Server-Sent
//! Events, per the WHATWG rules: lines end with LF, CRLF or CR; a blank line dispatches; a
//! line starting with `:` is a comment; `field: value` with one optional space; `id` sets
//! the last event ID, which later events keep until another `id` (`retry` is ignored).

/// One event of a stream.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Event<'a> {
    /// Its type (`message` when it has no `event:` line).
    pub(crate) kind: &'a [u8],
    /// Its `data:` lines, joined by LF.
    pub(crate) data: &'a [u8],
    /// The last event ID when it was dispatched: what a client resumes after.
    pub(crate) id: &'a [u8],
}

/// Feeds the body bytes of one response and yields each event.
#[derive(Default)]
pub(crate) struct Decoder {
    chunked: Option<Chunks>,
    line: Vec<u8>,
    after_cr: bool,
    event: Vec<u8>,
    data: Vec<u8>,
    has_data: bool,
    last_id: Vec<u8>,
}

/// Where a chunked body is.
enum Chunks {
    /// Reading the size line (hex digits, then anything up to LF).
    Size { size: usize, digits_done: bool },
    /// `left` bytes of chunk data to go.
    Data { left: usize },
    /// The CRLF after a chunk's data.
    DataEnd,
    /// The last chunk was read.
    Done,
}

impl Decoder {
    /// A decoder for a body that is chunked or not (ends when the connection closes).
    pub(crate) fn new(chunked: bool) -> Self {
        Self {
            chunked: chunked.then_some(Chunks::Size {
                size: 0,
                digits_done: false,
            }),
            ..Self::default()
        }
    }

    /// Decodes `bytes`, calling `on_event` for each complete event.
    pub(crate) fn feed(&mut self, mut bytes: &[u8], on_event: &mut impl FnMut(Event<'_>)) {
        if self.chunked.is_none() {
            self.feed_body(bytes, on_event);
            return;
        }
        while !bytes.is_empty() {
            let Some(state) = self.chunked.as_mut() else {
                return;
            };
            match state {
                Chunks::Size { size, digits_done } => {
                    let byte = bytes[0];
                    bytes = &bytes[1..];
                    if byte == b'\n' {
                        *state = if *size == 0 {
                            Chunks::Done
                        } else {
                            Chunks::Data { left: *size }
                        };
                    } else if !*digits_done {
                        match (byte as char).to_digit(16) {
                            Some(d) => *size = *size * 16 + d as usize,
                            None => *digits_done = true,
                        }
                    }
                }
                Chunks::Data { left } => {
                    let take = (*left).min(bytes.len());
                    let remaining = *left - take;
                    *state = if remaining == 0 {
                        Chunks::DataEnd
                    } else {
                        Chunks::Data { left: remaining }
                    };
                    let (body, rest) = bytes.split_at(take);
                    bytes = rest;
                    self.feed_body(body, on_event);
                }
                Chunks::DataEnd => {
                    let byte = bytes[0];
                    bytes = &bytes[1..];
                    if byte == b'\n' {
                        *state = Chunks::Size {
                            size: 0,
                            digits_done: false,
                        };
                    }
                }
                Chunks::Done => return,
            }
        }
    }

    /// Decodes body bytes into lines and lines into events.
    fn feed_body(&mut self, bytes: &[u8], on_event: &mut impl FnMut(Event<'_>)) {
        let mut start = 0;
        for (i, &byte) in bytes.iter().enumerate() {
            if byte != b'\n' && byte != b'\r' {
                continue;
            }
            let after_cr = std::mem::replace(&mut self.after_cr, byte == b'\r');
            if byte == b'\n' && after_cr && start == i && self.line.is_empty() {
                // The LF of a CRLF whose CR ended the line already.
                start = i + 1;
                continue;
            }
            if self.line.is_empty() {
                self.take_line(&bytes[start..i], on_event);
            } else {
                let mut line = std::mem::take(&mut self.line);
                line.extend_from_slice(&bytes[start..i]);
                self.take_line(&line, on_event);
                line.clear();
                self.line = line;
            }
            start = i + 1;
        }
        if start < bytes.len() {
            self.after_cr = false;
            self.line.extend_from_slice(&bytes[start..]);
        }
    }

    fn take_line(&mut self, line: &[u8], on_event: &mut impl FnMut(Event<'_>)) {
        if line.is_empty() {
            if self.has_data {
                let kind: &[u8] = if self.event.is_empty() {
                    b"message"
                } else {
                    &self.event
                };
                on_event(Event {
                    kind,
                    data: &self.data,
                    id: &self.last_id,
                });
            }
            self.event.clear();
            self.data.clear();
            self.has_data = false;
            return;
        }
        if line[0] == b':' {
            return;
        }
        let (field, value) = match line.iter().position(|&b| b == b':') {
            Some(colon) => {
                let value = &line[colon + 1..];
                (&line[..colon], value.strip_prefix(b" ").unwrap_or(value))
            }
            None => (line, &b""[..]),
        };
        match field {
            b"data" => {
                if self.has_data {
                    self.data.push(b'\n');
                }
                self.data.extend_from_slice(value);
                self.has_data = true;
            }
            b"event" => {
                self.event.clear();
                self.event.extend_from_slice(value);
            }
            // An id with a NUL in it is ignored, as a browser does.
            b"id" if !value.contains(&0) => {
                self.last_id.clear();
                self.last_id.extend_from_slice(value);
            }
            _ => {}
        }
    }
}

/// The unsigned integer after `"key":` in a JSON object's text.
pub(crate) fn json_number(text: &[u8], key: &[u8]) -> Option<u64> {
    let at = text
        .windows(key.len() + 3)
        .position(|w| w[0] == b'"' && &w[1..=key.len()] == key && &w[key.len() + 1..] == b"\":")?;
    let digits = text[at + key.len() + 3..]
        .iter()
        .skip_while(|b| **b == b' ')
        .take_while(|b| b.is_ascii_digit());
    let mut value: u64 = 0;
    let mut any = false;
    for d in digits {
        value = value.checked_mul(10)?.checked_add(u64::from(d - b'0'))?;
        any = true;
    }
    any.then_some(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(bytes: &[u8]) -> String {
        String::from_utf8_lossy(bytes).into_owned()
    }

    fn events_with_ids(chunked: bool, pieces: &[&[u8]]) -> Vec<(String, String, String)> {
        let mut decoder = Decoder::new(chunked);
        let mut found = Vec::new();
        for piece in pieces {
            decoder.feed(piece, &mut |event| {
                found.push((text(event.kind), text(event.data), text(event.id)));
            });
        }
        found
    }

    fn events(chunked: bool, pieces: &[&[u8]]) -> Vec<(String, String)> {
        events_with_ids(chunked, pieces)
            .into_iter()
            .map(|(kind, data, _)| (kind, data))
            .collect()
    }

    #[test]
    fn plain_stream_with_comments_ids_and_any_line_end() {
        let body: &[u8] = b": hi\n\nevent: bench\nid: 1:0\ndata: {\"n\":1}\n\nevent:bench\r\ndata:a\r\ndata: b\r\n\r\ndata: x\r\rretry: 5\n";
        // Every split point gives the same events.
        for split in 0..body.len() {
            let (a, b) = body.split_at(split);
            assert_eq!(
                events(false, &[a, b]),
                vec![
                    ("bench".into(), "{\"n\":1}".into()),
                    ("bench".into(), "a\nb".into()),
                    ("message".into(), "x".into()),
                ],
                "split at {split}"
            );
        }
    }

    #[test]
    fn ids_last_until_the_next() {
        let body: &[u8] = b"id: 1:0\ndata: a\n\ndata: b\n\nid: 2\0\ndata: c\n\nid\ndata: d\n\n";
        let ids: Vec<String> = events_with_ids(false, &[body])
            .into_iter()
            .map(|(_, _, id)| id)
            .collect();
        assert_eq!(ids, ["1:0", "1:0", "1:0", ""]);
    }

    #[test]
    fn chunked_stream() {
        let body: &[u8] =
            b"7\r\nretry: \r\n1b;ext=1\r\n3000\n\nevent: bench\ndata: 12\r\n2\r\n\n\n\r\n0\r\n\r\n";
        for split in 0..body.len() {
            let (a, b) = body.split_at(split);
            assert_eq!(
                events(true, &[a, b]),
                vec![("bench".into(), "12".into())],
                "split at {split}"
            );
        }
    }

    #[test]
    fn numbers_in_data() {
        let data = br#"{"n":42,"t":1795880972000000000}"#;
        assert_eq!(json_number(data, b"n"), Some(42));
        assert_eq!(json_number(data, b"t"), Some(1_795_880_972_000_000_000));
        assert_eq!(json_number(data, b"x"), None);
    }
}
