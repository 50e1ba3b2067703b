//! Lifecycle webhooks against a real receiver on a real port: batching and order, the
//! signature (checked by the receiver's own HMAC and by the README's Python snippet),
//! retries, giving up, closing, and the manager's metrics.

use std::collections::HashSet;
use std::time::Duration;

use serde_json::Value;
use sseor::Lifecycle;
use sseor::webhook::{Delivery, Stats, Webhook};
use sseor_testkit::webhook::{Answer, Receiver};
use sseor_testkit::{free_port, guard};

const SECRET: &str = "test-secret-0123456789abcdef-0123456789";

fn online(n: usize) -> Lifecycle {
    Lifecycle::UserOnline {
        user_id: format!("u{n}"),
    }
}

/// A webhook to `url` that retries quickly, for tests.
fn quick_webhook(url: &str) -> Webhook {
    Webhook::new(url, SECRET)
        .unwrap()
        .batch_delay(Duration::from_millis(50))
        .retry_delay(Duration::from_millis(20))
        .timeout(Duration::from_secs(5))
}

/// Waits until the delivery's counts satisfy `done`.
async fn wait_for_stats(delivery: &Delivery, done: impl Fn(&Stats) -> bool) -> Stats {
    guard(async {
        loop {
            let stats = delivery.stats();
            if done(&stats) {
                return stats;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
}

fn user_ids(changes: &[Value]) -> Vec<String> {
    changes
        .iter()
        .map(|change| change["user_id"].as_str().unwrap_or_default().to_owned())
        .collect()
}

#[tokio::test]
async fn many_changes_go_in_few_signed_requests_in_order() {
    let receiver = Receiver::start(SECRET).await;
    let delivery = Webhook::new(&receiver.url(), SECRET)
        .unwrap()
        .batch_size(100)
        .batch_delay(Duration::from_millis(200))
        .start();
    let hook = delivery.hook();
    let before = now_millis();
    for n in 0..249 {
        hook(online(n));
    }
    hook(Lifecycle::TopicVacated {
        topic: "prices".into(),
    });
    let changes = receiver.wait_for_changes(250).await;

    let requests = receiver.requests();
    let sizes: Vec<usize> = requests.iter().map(|r| r.changes.len()).collect();
    assert_eq!(
        sizes,
        [100, 100, 50],
        "full batches at once, the rest together"
    );
    for request in &requests {
        assert!(request.signature_valid, "{:?}", request.signature);
        assert_eq!(request.content_type.as_deref(), Some("application/json"));
    }
    let expected: Vec<String> = (0..249)
        .map(|n| format!("u{n}"))
        .chain([String::new()])
        .collect();
    assert_eq!(user_ids(&changes), expected, "in the order they were seen");
    assert_eq!(changes[0]["type"], "user.online");
    let last = &changes[249];
    assert_eq!(
        (&last["type"], &last["topic"]),
        (&"topic.vacated".into(), &"prices".into())
    );
    let ids: HashSet<&str> = changes.iter().map(|c| c["id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), 250, "every change has an id of its own");
    for change in &changes {
        let at = change["at"].as_u64().unwrap();
        assert!(at >= before && at <= now_millis(), "{change}");
    }
    // The receiver has the last batch before the sender has read its answer.
    let stats = wait_for_stats(&delivery, |s| s.delivered + s.failed + s.dropped >= 250).await;
    assert_eq!((stats.delivered, stats.failed, stats.dropped), (250, 0, 0));
}

fn now_millis() -> u64 {
    let since = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
    u64::try_from(since.unwrap().as_millis()).unwrap()
}

#[tokio::test]
async fn the_readme_python_snippet_verifies_a_real_request() {
    let receiver = Receiver::start(SECRET).await;
    let delivery = quick_webhook(&receiver.url()).start();
    delivery.send(online(1));
    let request = receiver.wait_for_requests(1).await.remove(0);
    assert!(request.signature_valid);

    let snippet = readme_python_snippet();
    let module_docs =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/src/webhook/mod.rs"))
            .unwrap();
    let docs: String = module_docs
        .lines()
        .filter_map(|line| line.strip_prefix("//!"))
        .map(|line| format!("{}\n", line.strip_prefix(' ').unwrap_or(line)))
        .collect();
    assert!(
        docs.contains(&snippet),
        "the module docs show the README's snippet"
    );

    let header = request.signature.unwrap();
    assert_eq!(run_python(&snippet, SECRET, &header, &request.body), "True");
    let mut forged = request.body.to_vec();
    forged.extend_from_slice(b" ");
    assert_eq!(run_python(&snippet, SECRET, &header, &forged), "False");
    let other_secret = "another-secret-0123456789abcdef-012345";
    assert_eq!(
        run_python(&snippet, other_secret, &header, &request.body),
        "False"
    );
}

/// The Python block of the README's webhook section.
fn readme_python_snippet() -> String {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md")).unwrap();
    let start = readme
        .find("```python\n")
        .expect("a Python block in the README")
        + 10;
    let length = readme[start..].find("```").unwrap();
    readme[start..start + length].to_owned()
}

/// Runs `snippet`'s `verify` with python3 on a request (its body on stdin); what it
/// prints.
fn run_python(snippet: &str, secret: &str, header: &str, body: &[u8]) -> String {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let program = format!(
        "{snippet}\nimport sys\nprint(verify(sys.argv[1], sys.argv[2], sys.stdin.buffer.read()))\n"
    );
    let mut python = Command::new("python3")
        .args(["-c", &program, secret, header])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3 runs");
    python.stdin.take().unwrap().write_all(body).unwrap();
    let output = python.wait_with_output().unwrap();
    assert!(output.status.success(), "{output:?}");
    String::from_utf8(output.stdout).unwrap().trim().to_owned()
}

#[tokio::test]
async fn a_batch_answered_500_is_retried_with_backoff_until_a_200() {
    let receiver = Receiver::start(SECRET).await;
    receiver.answer_next(&[Answer::Status(500), Answer::Status(503)]);
    let delivery = quick_webhook(&receiver.url()).start();
    for n in 0..3 {
        delivery.send(online(n));
    }
    let changes = receiver.wait_for_changes(3).await;
    assert_eq!(user_ids(&changes), ["u0", "u1", "u2"]);

    let requests = receiver.requests();
    let statuses: Vec<u16> = requests.iter().map(|r| r.status).collect();
    assert_eq!(statuses, [500, 503, 200]);
    assert!(
        requests.iter().all(|r| r.changes == changes),
        "the same batch each time"
    );
    assert!(requests.iter().all(|r| r.signature_valid));
    // Backoff: at least half of 20 ms, then of 40 ms (the jitter's lower bound).
    assert!(requests[1].at - requests[0].at >= Duration::from_millis(10));
    assert!(requests[2].at - requests[1].at >= Duration::from_millis(20));
    let stats = wait_for_stats(&delivery, |s| s.delivered == 3).await;
    assert_eq!((stats.failed_requests, stats.failed), (2, 0), "{stats:?}");
}

#[tokio::test]
async fn a_lost_answer_repeats_the_batch_and_ids_make_it_count_once() {
    let receiver = Receiver::start(SECRET).await;
    // The application takes the batch, but its answer comes after the webhook gave up
    // waiting: the webhook sends the batch again.
    receiver.answer_next(&[Answer::Late(200, Duration::from_secs(2))]);
    let delivery = quick_webhook(&receiver.url())
        .timeout(Duration::from_millis(300))
        .start();
    delivery.send(online(7));
    delivery.send(Lifecycle::UserOffline {
        user_id: "u7".into(),
    });
    let stats = wait_for_stats(&delivery, |s| s.delivered == 2).await;
    assert_eq!(stats.failed_requests, 1, "{stats:?}");

    let requests = receiver.requests();
    assert_eq!(requests.len(), 2, "at least once on the wire: twice here");
    assert_eq!(requests[0].changes, requests[1].changes);
    let changes = receiver.accepted_changes();
    let types: Vec<&str> = changes
        .iter()
        .map(|c| c["type"].as_str().unwrap())
        .collect();
    assert_eq!(
        types,
        ["user.online", "user.offline"],
        "once each after dedupe"
    );
}

#[tokio::test]
async fn a_receiver_down_at_first_gets_the_changes_once_it_is_up() {
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}/hooks");
    let delivery = quick_webhook(&url).start();
    for n in 0..5 {
        delivery.send(online(n));
    }
    // Refused connections, retried.
    wait_for_stats(&delivery, |s| s.failed_requests >= 2).await;
    let receiver = Receiver::start_on(port, SECRET).await;
    let changes = receiver.wait_for_changes(5).await;
    assert_eq!(user_ids(&changes), ["u0", "u1", "u2", "u3", "u4"]);
    let stats = wait_for_stats(&delivery, |s| s.delivered == 5).await;
    assert_eq!(stats.failed, 0, "{stats:?}");
    assert!(receiver.requests().iter().all(|r| r.signature_valid));
}

#[tokio::test]
async fn a_batch_failing_past_the_retry_limit_is_given_up_counted_and_the_next_goes() {
    let receiver = Receiver::start(SECRET).await;
    receiver.answer_usually(500);
    let delivery = quick_webhook(&receiver.url())
        .retry_for(Duration::from_millis(200))
        .start();
    delivery.send(online(1));
    delivery.send(online(2));
    let stats = wait_for_stats(&delivery, |s| s.failed == 2).await;
    assert_eq!(stats.delivered, 0);
    let attempts = receiver.requests().len();
    assert!(attempts >= 2, "retried before giving up: {attempts}");
    assert_eq!(stats.failed_requests as usize, attempts);

    receiver.answer_usually(200);
    delivery.send(online(3));
    let changes = receiver.wait_for_changes(1).await;
    assert_eq!(user_ids(&changes), ["u3"]);
}

#[tokio::test]
async fn close_sends_what_waits_at_once_then_refuses_more() {
    let receiver = Receiver::start(SECRET).await;
    let delivery = quick_webhook(&receiver.url())
        .batch_delay(Duration::from_secs(3600))
        .start();
    for n in 0..3 {
        delivery.send(online(n));
    }
    guard(delivery.close()).await;
    let stats = delivery.stats();
    assert_eq!((stats.delivered, stats.pending()), (3, 0), "{stats:?}");
    assert_eq!(user_ids(&receiver.accepted_changes()), ["u0", "u1", "u2"]);
    assert!(!delivery.send(online(4)), "closed: dropped");
    assert_eq!(delivery.stats().dropped, 1);
}

#[tokio::test]
async fn close_gives_up_what_the_receiver_still_refuses_at_its_timeout() {
    let receiver = Receiver::start(SECRET).await;
    receiver.answer_usually(500);
    let delivery = quick_webhook(&receiver.url()).start();
    delivery.send(online(1));
    wait_for_stats(&delivery, |s| s.failed_requests >= 1).await;
    guard(delivery.close_within(Duration::from_millis(300))).await;
    let stats = delivery.stats();
    assert_eq!((stats.failed, stats.pending()), (1, 0), "{stats:?}");
}

#[test]
fn bad_urls_and_short_secrets_are_refused_without_showing_them() {
    let cases = [
        ("not a url", SECRET, "does not parse"),
        ("ftp://example.com/hooks", SECRET, "http:// or https://"),
        (
            "http://example.com/hooks",
            "short-secret-xyz",
            "at least 32",
        ),
    ];
    for (url, secret, why) in cases {
        let error = Webhook::new(url, secret).unwrap_err().to_string();
        assert!(error.contains(why), "{url}: {error}");
        assert!(
            !error.contains("short-secret") && !error.contains("example"),
            "{error}"
        );
    }
}
