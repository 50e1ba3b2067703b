//! A stream's place in every target it listens to, written in the `id:` of the events it
//! sends and read back from the `Last-Event-ID` of a client that resumes.
//!
//! The format, version 1: `1.` followed by unpadded base64url of one entry per target of
//! the stream, in the stream's order (its user, the broadcasts, its topics). An
//! entry is 2 bytes of the target's tag (the low 16 bits of the FNV-1a hash of
//! `user:ID`, `topic:NAME` or `all`, big-endian), 4 bytes of its epoch (big-endian), and
//! its sequence number as an unsigned LEB128 varint. Base64url holds no CR, LF or space,
//! so a cursor is always a valid `id:` and header value.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::{BufMut, BytesMut};

use crate::{Position, Target};

/// The version prefix of cursors in this format.
const VERSION: &str = "1.";

/// The most bytes one entry takes: tag, epoch, and a varint of 64 bits.
const MAX_ENTRY: usize = 2 + 4 + 10;

/// The longest cursor read back: 64 targets' entries of the largest size, in base64.
const MAX_LEN: usize = VERSION.len() + (64 * 16_usize).div_ceil(3) * 4;

/// Where a stream stands in each of its targets: the `id:` every event it sends carries,
/// so that a client that reconnects with it as `Last-Event-ID` resumes every target
/// exactly, whichever of them the missed events were published to.
///
/// ```
/// use sseor::{Cursor, Position, Target};
/// let user = Target::user("user123").unwrap();
/// let mut cursor = Cursor::new(vec![user.clone(), Target::All]);
/// cursor.advance(&user, Position::new(0x8f3a_2b1c, 42));
/// let id = cursor.to_string();
/// assert!(id.starts_with("1.") && id.len() < 32);
/// let read = Cursor::parse(&id, &[user.clone(), Target::All]).unwrap();
/// assert_eq!(read, [(user, Some(Position::new(0x8f3a_2b1c, 42))), (Target::All, Some(Position::default()))]);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    marks: Vec<(Target, Position)>,
}

/// Why a last event id cannot place a stream.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InvalidCursor {
    /// Not a cursor of this format: an id of an older version, or of another server.
    #[error("the last event id is not a position of this server")]
    Format,
    /// Two targets of the stream share a tag, and the cursor holds it: which of them it
    /// stands for cannot be told.
    #[error("the last event id cannot tell two of the stream's targets apart")]
    Ambiguous,
}

impl Cursor {
    /// A cursor at the start of every target (epoch 0, before any event), in the order
    /// given.
    pub fn new(targets: impl IntoIterator<Item = Target>) -> Self {
        Self {
            marks: targets
                .into_iter()
                .map(|target| (target, Position::default()))
                .collect(),
        }
    }

    /// The cursor of `targets` at `positions`, in that order.
    pub(crate) fn at(positions: Vec<(Target, Position)>) -> Self {
        Self { marks: positions }
    }

    /// Where the stream stands in `target`, when it listens to it.
    pub fn position(&self, target: &Target) -> Option<Position> {
        self.marks
            .iter()
            .find_map(|(t, position)| (t == target).then_some(*position))
    }

    /// Moves `target` to `position` when it is news to the stream: a later event of the
    /// same epoch, or any event of another epoch. Returns false, changing nothing, for an
    /// event already passed (sent by a replay, then arriving live) or of a target the
    /// stream does not listen to.
    pub fn advance(&mut self, target: &Target, position: Position) -> bool {
        let Some((_, mark)) = self.marks.iter_mut().find(|(t, _)| t == target) else {
            return false;
        };
        if mark.epoch() == position.epoch() && position.seq() <= mark.seq() {
            return false;
        }
        *mark = position;
        true
    }

    /// Moves `target` back to `position` when it is earlier in the same epoch.
    pub(crate) fn lower(&mut self, target: &Target, position: Position) {
        if let Some((_, mark)) = self.marks.iter_mut().find(|(t, _)| t == target)
            && mark.epoch() == position.epoch()
            && position.seq() < mark.seq()
        {
            *mark = position;
        }
    }

    /// Moves `target` to `position` whatever it was: after a reset.
    pub(crate) fn reset(&mut self, target: &Target, position: Position) {
        if let Some((_, mark)) = self.marks.iter_mut().find(|(t, _)| t == target) {
            *mark = position;
        }
    }

    /// Writes the cursor as an `id:` line: encoded straight into `buf`, for every event
    /// every stream sends.
    pub(crate) fn put_id_line(&self, buf: &mut BytesMut) {
        // The entries of a stream of a few targets fit on the stack.
        let mut small = [0u8; 128];
        let mut large = Vec::new();
        let raw = if self.marks.len() * MAX_ENTRY <= small.len() {
            let len = self.write_entries(&mut small[..]);
            &small[..len]
        } else {
            large.resize(self.marks.len() * MAX_ENTRY, 0);
            let len = self.write_entries(&mut large[..]);
            &large[..len]
        };
        buf.put_slice(b"id: ");
        buf.put_slice(VERSION.as_bytes());
        let start = buf.len();
        buf.resize(
            start + base64::encoded_len(raw.len(), false).unwrap_or(0),
            0,
        );
        let written = URL_SAFE_NO_PAD
            .encode_slice(raw, &mut buf[start..])
            .unwrap_or(0);
        buf.truncate(start + written);
        buf.put_u8(b'\n');
    }

    /// Writes the entries into `out` (at least [`MAX_ENTRY`] bytes per target); returns
    /// how many bytes they took.
    fn write_entries(&self, out: &mut [u8]) -> usize {
        let mut at = 0;
        for (target, position) in &self.marks {
            out[at..at + 2].copy_from_slice(&tag(target).to_be_bytes());
            out[at + 2..at + 6].copy_from_slice(&position.epoch().to_be_bytes());
            at += 6;
            let mut seq = position.seq();
            while seq >= 0x80 {
                out[at] = (seq as u8) | 0x80;
                seq >>= 7;
                at += 1;
            }
            out[at] = seq as u8;
            at += 1;
        }
        at
    }

    /// Places the stream of `targets` with the cursor `text` a client sent back: each
    /// target at the position the cursor holds for it, or `None` when it holds none (a
    /// target the stream did not listen to before, which starts live).
    ///
    /// # Errors
    /// [`InvalidCursor`] when `text` is not a cursor, or cannot tell the targets apart.
    pub fn parse(
        text: &str,
        targets: &[Target],
    ) -> Result<Vec<(Target, Option<Position>)>, InvalidCursor> {
        let entries = decode(text)?;
        targets
            .iter()
            .map(|target| {
                let tag = tag(target);
                let mut held = entries.iter().filter(|(t, _)| *t == tag);
                let position = held.next().map(|(_, position)| *position);
                let shared = targets.iter().filter(|t| self::tag(t) == tag).count() > 1;
                if position.is_some() && (shared || held.next().is_some()) {
                    return Err(InvalidCursor::Ambiguous);
                }
                Ok((target.clone(), position))
            })
            .collect()
    }
}

impl fmt::Display for Cursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut bytes = vec![0; self.marks.len() * MAX_ENTRY];
        let len = self.write_entries(&mut bytes);
        f.write_str(VERSION)?;
        f.write_str(&URL_SAFE_NO_PAD.encode(&bytes[..len]))
    }
}

/// The tag of a target in a cursor.
fn tag(target: &Target) -> u16 {
    let mut hash: u32 = 0x811c_9dc5;
    let mut eat = |bytes: &[u8]| {
        for &byte in bytes {
            hash = (hash ^ u32::from(byte)).wrapping_mul(0x0100_0193);
        }
    };
    match target {
        Target::User(user) => {
            eat(b"user:");
            eat(user.as_bytes());
        }
        Target::Topic(topic) => {
            eat(b"topic:");
            eat(topic.as_bytes());
        }
        Target::All => eat(b"all"),
    }
    hash as u16
}

fn take_varint(bytes: &mut &[u8]) -> Option<u64> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let (&byte, rest) = bytes.split_first()?;
        *bytes = rest;
        value |= u64::from(byte & 0x7f).checked_shl(shift)?;
        if byte & 0x80 == 0 {
            return Some(value);
        }
    }
    None
}

/// The entries of a cursor: tags and positions.
fn decode(text: &str) -> Result<Vec<(u16, Position)>, InvalidCursor> {
    let body = text
        .strip_prefix(VERSION)
        .filter(|body| !body.is_empty() && text.len() <= MAX_LEN)
        .ok_or(InvalidCursor::Format)?;
    let bytes = URL_SAFE_NO_PAD
        .decode(body)
        .map_err(|_| InvalidCursor::Format)?;
    let mut rest = &bytes[..];
    let mut entries = Vec::new();
    while !rest.is_empty() {
        let entry = (|| {
            let (head, tail) = rest.split_first_chunk::<6>()?;
            rest = tail;
            let tag = u16::from_be_bytes([head[0], head[1]]);
            let epoch = u32::from_be_bytes([head[2], head[3], head[4], head[5]]);
            let seq = take_varint(&mut rest)?;
            Some((tag, Position::new(epoch, seq)))
        })();
        entries.push(entry.ok_or(InvalidCursor::Format)?);
    }
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topics(n: usize) -> Vec<Target> {
        let mut targets = vec![Target::user("user-4711").unwrap()];
        targets.extend((0..n).map(|i| Target::topic(&format!("topic-{i}")).unwrap()));
        targets.push(Target::All);
        targets
    }

    /// A busy stream: every target far into a long history.
    fn busy(targets: &[Target]) -> Cursor {
        let mut cursor = Cursor::new(targets.to_vec());
        for target in targets {
            cursor.advance(target, Position::new(u32::MAX, 1_000_000));
        }
        cursor
    }

    #[test]
    fn a_cursor_reads_back_as_it_was_written() {
        let targets = topics(3);
        let mut cursor = Cursor::new(targets.clone());
        for (i, target) in targets.iter().enumerate() {
            cursor.advance(target, Position::new(7 + i as u32, (1 << (7 * i)) + 3));
        }
        let placed = Cursor::parse(&cursor.to_string(), &targets).unwrap();
        let expected: Vec<_> = targets
            .iter()
            .map(|t| (t.clone(), cursor.position(t)))
            .collect();
        assert_eq!(placed, expected);
    }

    #[test]
    fn the_id_line_is_the_cursor() {
        for n in [0, 1, 20] {
            let cursor = busy(&topics(n));
            let mut line = BytesMut::new();
            cursor.put_id_line(&mut line);
            assert_eq!(&line[..], format!("id: {cursor}\n").as_bytes());
        }
    }

    #[test]
    fn a_cursor_is_short_and_a_single_line() {
        for (n, most) in [(1, 40), (20, 270)] {
            let id = busy(&topics(n)).to_string();
            assert!(id.len() <= most, "{n} topics: {} bytes", id.len());
            assert!(id.bytes().all(|b| b.is_ascii_graphic()), "{id}");
        }
    }

    #[test]
    fn targets_the_cursor_does_not_hold_start_live() {
        let before = topics(2);
        let id = busy(&before).to_string();
        let mut after = topics(1);
        after.insert(1, Target::topic("new").unwrap());
        let placed = Cursor::parse(&id, &after).unwrap();
        let unplaced: Vec<_> = placed.iter().filter(|(_, p)| p.is_none()).collect();
        assert_eq!(unplaced.len(), 1);
        assert_eq!(unplaced[0].0, Target::topic("new").unwrap());
    }

    #[test]
    fn old_and_foreign_ids_are_not_cursors() {
        let targets = topics(0);
        for id in [
            "",
            "k3f9-1764331200000-42",
            "1.",
            "1.!!",
            "2.AAAA",
            "1.AAAAAAAAgA",
            &format!("1.{}", "A".repeat(MAX_LEN)),
        ] {
            assert_eq!(
                Cursor::parse(id, &targets),
                Err(InvalidCursor::Format),
                "{id}"
            );
        }
    }

    #[test]
    fn a_later_event_advances_and_a_passed_one_does_not() {
        let user = Target::user("u").unwrap();
        let mut cursor = Cursor::new(vec![user.clone()]);
        assert!(cursor.advance(&user, Position::new(5, 3)));
        assert!(!cursor.advance(&user, Position::new(5, 3)));
        assert!(!cursor.advance(&user, Position::new(5, 2)));
        assert!(cursor.advance(&user, Position::new(6, 1)));
        assert!(!cursor.advance(&Target::All, Position::new(6, 9)));
        assert_eq!(cursor.position(&user), Some(Position::new(6, 1)));
    }

    #[test]
    fn targets_sharing_a_tag_are_not_guessed_between() {
        // Find two topics whose tags collide.
        let mut seen = std::collections::HashMap::new();
        let (a, b) = (0..)
            .find_map(|i| {
                let topic = Target::topic(&format!("t{i}")).unwrap();
                seen.insert(tag(&topic), topic.clone())
                    .filter(|other| *other != topic)
                    .map(|other| (other, topic))
            })
            .unwrap();
        let id = busy(std::slice::from_ref(&a)).to_string();
        assert_eq!(Cursor::parse(&id, &[a, b]), Err(InvalidCursor::Ambiguous));
    }
}
