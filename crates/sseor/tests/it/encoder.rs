//! Any valid event, encoded and read back by an independent spec-conforming parser, is the
//! event that was published.

use bytes::Bytes;
use eventsource_stream::{Event as Parsed, Eventsource};
use futures_util::StreamExt;
use proptest::prelude::*;
use serde_json::{Map, Value};
use sseor::{Event, encode};

/// Parses a byte stream, delivered in chunks of `chunk` bytes, as a browser would.
fn parse(wire: &[u8], chunk: usize) -> Vec<Parsed> {
    let chunks: Vec<Result<Bytes, std::convert::Infallible>> = wire
        .chunks(chunk.max(1))
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    futures_executor(
        futures_util::stream::iter(chunks)
            .eventsource()
            .collect::<Vec<_>>(),
    )
    .into_iter()
    .map(Result::unwrap)
    .filter(|e| !(e.data.is_empty() && e.event == "message"))
    .collect()
}

fn futures_executor<F: std::future::Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
        .block_on(future)
}

/// A field value with no CR, LF or NUL: what `validate` accepts.
fn field() -> impl Strategy<Value = String> {
    "[^\r\n\0]{1,40}"
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        any::<String>().prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(any::<String>(), inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn event() -> impl Strategy<Value = Event> {
    (
        field(),
        proptest::option::of(field()),
        prop::collection::btree_map(any::<String>(), json_value(), 0..5),
        proptest::option::of(1u64..=sseor::MAX_RETRY_MS),
        any::<bool>(),
    )
        .prop_map(|(event_type, id, data, retry, transient)| Event {
            id,
            event_type,
            data: data.into_iter().collect::<Map<_, _>>(),
            retry,
            transient,
        })
}

proptest! {
    #[test]
    fn events_round_trip(events in prop::collection::vec(event(), 1..5), chunk in 1usize..64) {
        let mut wire = Vec::new();
        for event in &events {
            wire.extend_from_slice(&encode::event(event).unwrap());
        }
        let parsed = parse(&wire, chunk);
        prop_assert_eq!(parsed.len(), events.len());
        // An event without an id keeps the last id seen, as a browser's lastEventId does.
        let mut last_id = "";
        for (event, parsed) in events.iter().zip(&parsed) {
            last_id = event.id.as_deref().unwrap_or(last_id);
            prop_assert_eq!(&parsed.event, &event.event_type);
            prop_assert_eq!(parsed.id.as_str(), last_id);
            prop_assert_eq!(parsed.retry.map(|r| r.as_millis() as u64), event.retry);
            let data: Map<String, Value> = serde_json::from_str(&parsed.data).unwrap();
            prop_assert_eq!(&data, &event.data);
        }
    }

    #[test]
    fn text_keeps_every_line(data in any::<String>(), event_type in field()) {
        let wire = encode::text(None, Some(&event_type), &data, None).unwrap();
        let parsed = parse(&wire, 7);
        // A browser reads CRLF, CR and LF alike as a line end and joins lines with LF.
        let expected = data.replace("\r\n", "\n").replace('\r', "\n");
        if expected.is_empty() {
            // An event with an empty data field is dispatched with empty data.
            prop_assert!(parsed.len() <= 1);
        } else {
            prop_assert_eq!(parsed.len(), 1);
            prop_assert_eq!(&parsed[0].data, &expected);
            prop_assert_eq!(&parsed[0].event, &event_type);
        }
    }

    #[test]
    fn injected_fields_are_refused(prefix in "[a-z]{0,5}", breaker in "[\r\n\0]", suffix in "[a-z]{0,5}") {
        let bad = format!("{prefix}{breaker}{suffix}");
        prop_assert!(encode::event(&Event::new(bad.clone())).is_err());
        prop_assert!(encode::event(&Event::new("ok").with_id(bad.clone())).is_err());
        prop_assert!(encode::text(Some(&bad), None, "x", None).is_err());
    }
}

#[test]
fn comments_are_invisible_to_clients() {
    let mut wire = encode::comment("one\ntwo").to_vec();
    wire.extend_from_slice(&encode::HEARTBEAT);
    wire.extend_from_slice(&encode::event(&Event::new("seen")).unwrap());
    let parsed = parse(&wire, 3);
    assert_eq!(parsed.len(), 1);
    assert_eq!(parsed[0].event, "seen");
}
