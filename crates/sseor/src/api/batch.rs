//! `POST /api/v1/publish/batch`: many events in one request, each item read as the body
//! of a single publish, all checked before any is sent.

use axum::Json;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Value, json};

use super::handlers::PublishRequest;
use super::input::{parse_json_text, publisher_body};
use crate::error::indexed_error;
use crate::{BatchResults, Error, Event, Manager, Target};

/// When a client whose batch reached no one should try again: the broker reconnects with a
/// backoff of at most 2 s.
const RETRY_AFTER_SECONDS: u32 = 2;

/// `{"events": [...]}`, each item kept as its text until the batch's size is known.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BatchRequest {
    events: Vec<Box<RawValue>>,
}

/// `POST /api/v1/publish/batch`: the events of the body, each to its target.
pub(super) async fn publish_batch(State(manager): State<Manager>, request: Request) -> Response {
    // The credential is checked as for a single publish: the batch counts as one publish.
    let max = manager.input_limits().max_batch_body_bytes;
    let request: BatchRequest = match publisher_body(&manager, request, max).await {
        Ok(request) => request,
        Err(refused) => return refused,
    };
    let items = match read_items(&manager, &request.events) {
        Ok(items) => items,
        Err(refused) => return refused,
    };
    match manager.publish_batch(items).await {
        Ok(results) => answer(results),
        Err(refused) => refused.into_response(),
    }
}

/// Every item of the batch, read as the body of a single publish.
///
/// # Errors
/// 413 beyond the most events a batch holds; otherwise the refusal of the first item that
/// is not valid, with its index: 413 when it is larger than a single publish's body, 400
/// for what a single publish refuses with 400.
#[allow(clippy::result_large_err)]
fn read_items(manager: &Manager, raw: &[Box<RawValue>]) -> Result<Vec<(Target, Event)>, Response> {
    let most = manager.input_limits().max_batch_events;
    if raw.len() > most {
        let too_many = Error::BatchTooLarge {
            items: raw.len(),
            max: most,
        };
        return Err(too_many.into_response());
    }
    let max_item = manager.max_body_bytes();
    raw.iter()
        .enumerate()
        .map(|(index, item)| {
            let text = item.get();
            if text.len() > max_item {
                let message = format!(
                    "item {index}: it is {} bytes; an item may be at most {max_item} bytes, as \
                     the body of a single publish",
                    text.len()
                );
                return Err(indexed_error(StatusCode::PAYLOAD_TOO_LARGE, index, message));
            }
            parse_json_text::<PublishRequest>(text.as_bytes())
                .map_err(|message| (StatusCode::BAD_REQUEST, message))
                .and_then(PublishRequest::into_item)
                .map_err(|(status, message)| {
                    indexed_error(status, index, format!("item {index}: {message}"))
                })
        })
        .collect()
}

/// 202 with `{"results": [...]}`, one per item in order: the answer of a single publish, or
/// `{"error"}` for an item that failed. When none was published, 503 with `Retry-After`
/// and the same results: the whole batch may be sent again.
fn answer(results: BatchResults) -> Response {
    let published = results.iter().filter(|result| result.is_ok()).count();
    let first_failure = results
        .iter()
        .find_map(|result| result.as_ref().err().map(ToString::to_string));
    let results: Vec<Value> = results
        .into_iter()
        .map(|result| match result {
            Ok(published) => json!(published),
            Err(failed) => json!({ "error": failed.to_string() }),
        })
        .collect();
    match first_failure {
        Some(failure) if published == 0 => {
            let body = json!({
                "error": format!("no event of the batch was published: {failure}"),
                "results": results,
            });
            let mut response = (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response();
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECONDS));
            response
        }
        _ => (StatusCode::ACCEPTED, Json(json!({ "results": results }))).into_response(),
    }
}
