//! Publishing many events in one call: every item checked before any is sent, then the
//! items published together, in order within each target.

use std::collections::HashMap;
use std::future::Future;

use futures_util::future::join_all;

use crate::{Error, Event, Published, Result, Target};

/// The most events one batch holds by default; see
/// [`Builder::max_batch_events`](crate::Builder::max_batch_events).
pub const MAX_BATCH_EVENTS: usize = 1000;

/// What a batch publish answers once every item was valid: one result per item, in the
/// order of the items. An item fails alone (its broker could not take it, Redis being
/// down for a moment): the others may have been published, and are not undone.
pub type BatchResults = Vec<Result<Published>>;

/// Checks a batch of `items` before anything is sent: its size, then each event as a
/// single publish checks it.
///
/// # Errors
/// [`Error::InvalidBatch`] when it is empty, [`Error::BatchTooLarge`] when it holds more
/// than `max` items, [`Error::InvalidBatchItem`] naming the first item that is refused.
pub(crate) fn validate(items: &[(Target, Event)], max: usize) -> Result<()> {
    if items.is_empty() {
        return Err(Error::InvalidBatch(
            "a batch needs at least one event".into(),
        ));
    }
    if items.len() > max {
        return Err(Error::BatchTooLarge {
            items: items.len(),
            max,
        });
    }
    for (index, (_, event)) in items.iter().enumerate() {
        event
            .validate()
            .map_err(|error| Error::in_batch(index, error))?;
    }
    Ok(())
}

/// Publishes every item with `publish` and answers in the order of the items.
///
/// The items of one target go one after another, in their order, so that its streams
/// receive them in that order; different targets go at once, and on Redis their
/// publishes share the calls that carry publishes made together.
pub(crate) async fn publish_in_order<F, Fut>(
    items: Vec<(Target, Event)>,
    publish: F,
) -> BatchResults
where
    F: Fn(Target, Event) -> Fut,
    Fut: Future<Output = Result<Published>>,
{
    let count = items.len();
    let mut by_target: HashMap<Target, Vec<(usize, Event)>> = HashMap::new();
    for (index, (target, event)) in items.into_iter().enumerate() {
        by_target.entry(target).or_default().push((index, event));
    }
    let publish = &publish;
    let chains = by_target.into_iter().map(|(target, events)| async move {
        let mut answers = Vec::with_capacity(events.len());
        for (index, event) in events {
            answers.push((index, publish(target.clone(), event).await));
        }
        answers
    });
    let mut results: Vec<Option<Result<Published>>> = (0..count).map(|_| None).collect();
    for (index, answer) in join_all(chains).await.into_iter().flatten() {
        results[index] = Some(answer);
    }
    results
        .into_iter()
        .map(|answer| {
            answer.unwrap_or_else(|| Err(Error::Broker("the item was left unanswered".into())))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_empty_oversized_and_invalid_batches_naming_the_item() {
        let item = |kind: &str| (Target::All, Event::new(kind));
        assert!(matches!(validate(&[], 10), Err(Error::InvalidBatch(_))));
        let three = vec![item("a"), item("b"), item("c")];
        assert!(matches!(
            validate(&three, 2),
            Err(Error::BatchTooLarge { items: 3, max: 2 })
        ));
        let refused = validate(&[item("a"), item(""), item("")], 10).unwrap_err();
        assert!(matches!(refused, Error::InvalidBatchItem { index: 1, .. }));
        assert!(refused.to_string().starts_with("item 1: "), "{refused}");
        assert!(validate(&three, 3).is_ok());
    }
}
