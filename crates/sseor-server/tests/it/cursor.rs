//! The cursors streams write as their `id:` (where a stream stands in each of its targets),
//! read back to compare with the positions publishes answer, and made up to resume from.

use sseor::{Cursor, Position, Target};

/// The target of `user_id`'s events.
pub(crate) fn user(user_id: &str) -> Target {
    Target::user(user_id).unwrap()
}

/// The target of `name`'s events.
pub(crate) fn topic(name: &str) -> Target {
    Target::topic(name).unwrap()
}

/// The position (`EPOCH-SEQ`, as a publish answers it) that the cursor `id` holds for
/// `target`; panics when `id` is not a cursor, or holds no position for `target`.
pub(crate) fn position_in(id: &str, target: &Target) -> String {
    let placed = Cursor::parse(id, std::slice::from_ref(target))
        .unwrap_or_else(|e| panic!("`{id}` is not a cursor: {e}"));
    match placed[..] {
        [(_, Some(position))] => position.to_string(),
        _ => panic!("the cursor `{id}` holds no position for {target}"),
    }
}

/// The cursor of a stream that stands at each of `positions` (`EPOCH-SEQ`, as publishes
/// answer them): what a client that saw those events resumes from.
pub(crate) fn cursor_at(positions: &[(Target, &str)]) -> String {
    let mut cursor = Cursor::new(positions.iter().map(|(target, _)| target.clone()));
    for (target, position) in positions {
        let position: Position = position.parse().unwrap();
        cursor.advance(target, position);
    }
    cursor.to_string()
}

/// The number of the event at `position` (`EPOCH-SEQ`) in its target's sequence.
pub(crate) fn seq_of(position: &str) -> u64 {
    position.parse::<Position>().unwrap().seq()
}
