//! A full buffer, seen in the metrics: the receiver accepts connections and never answers,
//! so the first batch holds the task and the buffer fills.

use std::sync::Arc;
use std::time::Duration;

use super::Webhook;
use crate::Lifecycle;
use crate::metrics::Metrics;

const SECRET: &str = "0123456789abcdef0123456789abcdef";

#[tokio::test]
async fn a_full_buffer_drops_changes_without_blocking_and_counts_them_in_the_metrics() {
    // Bound, never accepted: connections complete in the backlog and get no answer.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hooks", silent.local_addr().unwrap());
    let metrics = Arc::new(Metrics::new());
    let delivery = Webhook::new(&url, SECRET)
        .unwrap()
        .batch_size(1)
        .batch_delay(Duration::ZERO)
        .buffer(10)
        .timeout(Duration::from_secs(60))
        .start_counting(metrics.clone());
    let hook = delivery.hook();
    for n in 0..100 {
        hook(Lifecycle::UserOnline {
            user_id: format!("u{n}"),
        });
    }
    let stats = delivery.stats();
    assert_eq!(stats.queued + stats.dropped, 100, "{stats:?}");
    // The buffer's 10, and at most the one change the task took before the buffer filled.
    assert!((10..=11).contains(&stats.queued), "{stats:?}");
    let text = metrics.render(0, 0, true);
    let line = format!("sseor_webhook_changes_dropped_total {}", stats.dropped);
    assert!(
        text.lines().any(|l| l == line),
        "missing `{line}` in\n{text}"
    );

    delivery.close_within(Duration::from_millis(200)).await;
    let stats = delivery.stats();
    assert_eq!(stats.pending(), 0, "{stats:?}");
    assert_eq!(
        stats.failed, stats.queued,
        "given up at the close: {stats:?}"
    );
    assert!(!delivery.send(Lifecycle::UserOffline {
        user_id: "u0".into()
    }));
    let line = format!("sseor_webhook_changes_failed_total {}", stats.failed);
    let text = metrics.render(0, 0, true);
    assert!(
        text.lines().any(|l| l == line),
        "missing `{line}` in\n{text}"
    );
}
