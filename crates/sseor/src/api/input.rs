//! What the API reads from a request: query parameters, JSON bodies within their size,
//! time and in-flight budgets.

use axum::body::{Body, Bytes};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use http::request::Parts;
use http::{HeaderMap, StatusCode, Uri};
use serde::de::DeserializeOwned;

use super::error;
use crate::Manager;

/// The query's parameters, percent-decoded (`+` is a space).
///
/// # Errors
/// 400 when a name or value is not UTF-8 once decoded: decoding it lossily would make
/// different byte strings the same user.
#[allow(clippy::result_large_err)]
pub(super) fn query_pairs(uri: &Uri) -> Result<Vec<(String, String)>, Response> {
    let Some(query) = uri.query() else {
        return Ok(Vec::new());
    };
    let decode = |text: &str| {
        let spaced = text.replace('+', " ");
        percent_encoding::percent_decode_str(&spaced)
            .decode_utf8()
            .map(|decoded| decoded.into_owned())
    };
    query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            let key = decode(key).map_err(|_| {
                error(
                    StatusCode::BAD_REQUEST,
                    "a query parameter's name is not UTF-8 once percent-decoded",
                )
            })?;
            let value = decode(value).map_err(|_| {
                error(
                    StatusCode::BAD_REQUEST,
                    format!("the query parameter `{key}` is not UTF-8 once percent-decoded"),
                )
            })?;
            Ok((key, value))
        })
        .collect()
}

/// The query parameters of a backend's request (counts, cursors, history), once the
/// request's credential is checked.
///
/// # Errors
/// 401 or 403 as [`Manager::authorize_backend`] answers; 400 as [`query_pairs`].
pub(super) async fn backend_query(
    manager: &Manager,
    request: &Parts,
) -> Result<Vec<(String, String)>, Response> {
    manager
        .authorize_backend(request)
        .await
        .map_err(IntoResponse::into_response)?;
    query_pairs(&request.uri)
}

/// The JSON body of a publisher's request (a publish, a batch, a disconnect) as `T`, at
/// most `max` bytes, once the credential is checked: from the headers alone, so that an
/// anonymous client gets its answer before sending a byte of its body.
///
/// # Errors
/// 401, 403 or 429 as [`Manager::authorize_publish`] answers; 415 without
/// `Content-Type: application/json`; 413, 408 or 503 as [`read_body`]; 400 as
/// [`parse_json`].
pub(super) async fn publisher_body<T: DeserializeOwned>(
    manager: &Manager,
    request: axum::extract::Request,
    max: usize,
) -> Result<T, Response> {
    let (parts, body) = request.into_parts();
    manager
        .authorize_publish(&parts)
        .await
        .map_err(IntoResponse::into_response)?;
    require_json(&parts.headers)?;
    let body = read_body(manager, &parts.headers, body, max).await?;
    parse_json(&body)
}

/// The value of the parameter `key`, when there is one.
///
/// # Errors
/// 400 when it is given more than once: which one was meant is anyone's guess.
#[allow(clippy::result_large_err)]
pub(super) fn single_value<'a>(
    params: &'a [(String, String)],
    key: &str,
) -> Result<Option<&'a str>, Response> {
    let mut values = params
        .iter()
        .filter(|(k, _)| k == key)
        .map(|(_, v)| v.as_str());
    let first = values.next();
    if values.next().is_some() {
        return Err(error(
            StatusCode::BAD_REQUEST,
            format!("the query parameter `{key}` is given more than once"),
        ));
    }
    Ok(first)
}

/// The whole number `limit` of a listing: `default` when it is not given.
///
/// # Errors
/// 400 when it is given more than once, or is not a whole number from 1 to `most`.
#[allow(clippy::result_large_err)]
pub(super) fn limit(
    params: &[(String, String)],
    default: usize,
    most: usize,
) -> Result<usize, Response> {
    let Some(limit) = single_value(params, "limit")? else {
        return Ok(default);
    };
    limit
        .parse::<usize>()
        .ok()
        .filter(|limit| (1..=most).contains(limit))
        .ok_or_else(|| {
            error(
                StatusCode::BAD_REQUEST,
                format!("`limit` must be a whole number from 1 to {most}"),
            )
        })
}

/// Refuses a body that is not declared as JSON: browsers send forms and `text/plain` to
/// any site without asking it first, `application/json` only after a CORS preflight.
#[allow(clippy::result_large_err)]
pub(super) fn require_json(headers: &HeaderMap) -> Result<(), Response> {
    let mut declared = headers.get_all(http::header::CONTENT_TYPE).iter();
    let media_type = match (declared.next(), declared.next()) {
        (Some(value), None) => value.to_str().ok(),
        _ => None,
    };
    let is_json = media_type
        .and_then(|value| value.split(';').next())
        .is_some_and(|media| media.trim().eq_ignore_ascii_case("application/json"));
    if is_json {
        return Ok(());
    }
    Err(error(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "the body must be JSON, sent with the header `Content-Type: application/json`",
    ))
}

/// The request body, at most `max` bytes, read within the body timeout and the budget of
/// bytes in flight.
pub(super) async fn read_body(
    manager: &Manager,
    headers: &HeaderMap,
    body: Body,
    max: usize,
) -> Result<Bytes, Response> {
    let declared = headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok());
    if declared.is_some_and(|length| length > max as u64) {
        return Err(too_large(max));
    }
    let limits = manager.input_limits();
    // A body of unknown length may grow up to the largest accepted.
    let expected = declared.map_or(max, |length| length as usize);
    let Some(_reserved) = limits.reserve_body(expected) else {
        return Err(crate::error::busy(
            "too many request bodies are being received at once; retry in a second",
            std::time::Duration::from_secs(1),
        ));
    };
    match tokio::time::timeout(limits.body_timeout, collect(body, max)).await {
        Ok(read) => read,
        Err(_) => Err(error(
            StatusCode::REQUEST_TIMEOUT,
            format!(
                "the request body did not arrive within {} ms",
                limits.body_timeout.as_millis()
            ),
        )),
    }
}

/// The whole body, refused as soon as it grows past `max` bytes.
async fn collect(body: Body, max: usize) -> Result<Bytes, Response> {
    let mut chunks = body.into_data_stream();
    let mut collected = bytes::BytesMut::new();
    while let Some(chunk) = chunks.next().await {
        let chunk = chunk.map_err(|e| {
            error(
                StatusCode::BAD_REQUEST,
                format!("the request body could not be read: {e}"),
            )
        })?;
        if collected.len() + chunk.len() > max {
            return Err(too_large(max));
        }
        collected.extend_from_slice(&chunk);
    }
    Ok(collected.freeze())
}

fn too_large(max: usize) -> Response {
    error(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!("the request body is larger than {max} bytes"),
    )
}

/// `body` as exactly one JSON value of type `T`.
///
/// # Errors
/// 400 naming the field at fault, or saying that more follows the value.
#[allow(clippy::result_large_err)]
pub(super) fn parse_json<T: DeserializeOwned>(body: &[u8]) -> Result<T, Response> {
    parse_json_text(body).map_err(|message| error(StatusCode::BAD_REQUEST, message))
}

/// `json` as exactly one JSON value of type `T`; the message naming the field at fault.
pub(super) fn parse_json_text<T: DeserializeOwned>(json: &[u8]) -> Result<T, String> {
    let mut json = serde_json::Deserializer::from_slice(json);
    let value = serde_path_to_error::deserialize(&mut json).map_err(|e| describe_json_error(&e))?;
    json.end().map_err(|e| {
        format!("invalid JSON body: it must be exactly one JSON value, and more follows ({e})")
    })?;
    Ok(value)
}

fn describe_json_error(e: &serde_path_to_error::Error<serde_json::Error>) -> String {
    let path = e.path().to_string();
    let inner = e.inner();
    if path == "." || path.is_empty() {
        format!("invalid JSON body: {inner}")
    } else {
        format!("invalid JSON body at `{path}`: {inner}")
    }
}
