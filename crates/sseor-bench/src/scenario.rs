//! The scenarios run against any server under test: `idle`, `broadcast`, `targeted` and
//! `targeted-max`, each printing one JSON line.

use std::sync::atomic::Ordering;
use std::time::Duration;

use serde_json::{Value, json};

use crate::client::{OpenOptions, Opened, Readers, open_all_over};
use crate::publish::{Published, Publisher};
use crate::random;
use crate::server::{Channel, Server, ServerOptions, Target};
use crate::stats::{Received, round, unix_nanos};

/// What every scenario is given.
#[derive(Clone, Debug, clap::Args)]
pub(crate) struct Common {
    /// The server under test.
    #[arg(long, value_enum, default_value = "sseor")]
    pub(crate) target: Target,
    /// Streams to open, each on a TCP connection of its own.
    #[arg(long, default_value_t = 10_000)]
    pub(crate) connections: usize,
    /// A label copied into the JSON line (the comparison table finds runs by it).
    #[arg(long)]
    pub(crate) label: Option<String>,
    #[command(flatten)]
    pub(crate) wait: Waits,
    /// Publish requests in flight at once.
    #[arg(long, default_value_t = 128)]
    pub(crate) in_flight: usize,
    /// Events per publish request: above 1, consecutive events go together through
    /// sseor's `POST /api/v1/publish/batch` (sseor targets only).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=1000))]
    pub(crate) batch: u64,
    #[command(flatten)]
    pub(crate) open: OpenOptions,
}

impl Common {
    /// The publisher of a run: `in_flight` requests at once, `batch` events each,
    /// trusting `root` (the DER certificate of a server under test over HTTPS).
    pub(crate) fn publisher(&self, root: Option<&[u8]>) -> Result<Publisher, String> {
        if self.batch > 1 && !self.target.publishes_in_batches() {
            return Err(format!(
                "--batch needs a server with a batch publish; {} has none",
                self.target.name()
            ));
        }
        Ok(Publisher::trusting(self.in_flight, root)?.batched(self.batch as usize))
    }
}

/// How long a run waits.
#[derive(Clone, Debug, clap::Args)]
pub(crate) struct Waits {
    /// Seconds between the last stream opened and the first publish (subscriptions of the
    /// Redis variants reach Redis asynchronously: give them 2).
    #[arg(long, default_value_t = 1.0)]
    pub(crate) settle: f64,
    /// Seconds without any delivery after which what has not arrived counts as lost.
    #[arg(long, default_value_t = 5.0)]
    pub(crate) quiet: f64,
}

impl Waits {
    pub(crate) fn settle(&self) -> Duration {
        Duration::from_secs_f64(self.settle)
    }

    pub(crate) fn quiet(&self) -> Duration {
        Duration::from_secs_f64(self.quiet)
    }
}

/// A server with its streams open, and its memory before and after opening them.
struct Run {
    server: Server,
    common: Common,
    opened: Opened,
    rss_before: u64,
    rss_idle: u64,
}

impl Run {
    /// Starts the server and opens `common.connections` streams, stream `i` on `channel(i)`.
    async fn start(
        common: &Common,
        options: &ServerOptions,
        channel: impl Fn(usize) -> Channel,
    ) -> Result<Self, String> {
        let server = Server::start(common.target, options).await?;
        tokio::time::sleep(Duration::from_millis(500)).await;
        let rss_before = server.rss_kib();
        let port = server.stream_port();
        let streams = (0..common.connections)
            .map(|i| (i, port, server.stream_path(channel(i), i)))
            .collect();
        let opened = open_all_over(server.connector(), streams, &common.open).await;
        tokio::time::sleep(Duration::from_secs(1)).await;
        let rss_idle = server.rss_kib();
        Ok(Self {
            server,
            common: common.clone(),
            opened,
            rss_before,
            rss_idle,
        })
    }

    /// Starts reading every stream, and lets the server settle.
    async fn read(&mut self) -> Readers {
        let readers = Readers::start(std::mem::take(&mut self.opened.streams));
        tokio::time::sleep(self.common.wait.settle()).await;
        readers
    }

    fn opened_count(&self) -> usize {
        self.common.connections - self.opened.not_opened
    }

    /// Prints the JSON line of the scenario.
    fn report(&self, scenario: &str, parameters: Value, outcome: Outcome) {
        let opened = self.opened_count();
        let rss_end = self.server.rss_kib();
        let mut line = json!({
            "server": self.server.target.name(),
            "scenario": scenario,
            "label": self.common.label,
            "parameters": parameters,
            "batch": self.common.batch,
            "connections": self.common.connections,
            "connections_opened": opened,
            "not_opened": self.opened.not_opened,
            "failed_attempts": self.opened.failed_attempts,
            "open_error": self.opened.first_error,
            "open_seconds": round(self.opened.seconds),
            "rss_kib": {"before": self.rss_before, "idle": self.rss_idle, "end": rss_end},
            "kib_per_connection": round(
                (self.rss_idle as f64 - self.rss_before as f64) / opened.max(1) as f64
            ),
        });
        if let (Some(line), Value::Object(more)) = (line.as_object_mut(), outcome.json()) {
            line.extend(more);
        }
        println!("{line}");
    }
}

/// What the streams of a run received.
struct Outcome {
    published: Option<Published>,
    expected: u64,
    received: Received,
    readers_ended: usize,
    /// Seconds from the first publish to the last receipt.
    seconds: f64,
    latency: Value,
    /// More fields of the scenario's own.
    extra: Value,
}

impl Outcome {
    fn none() -> Self {
        Self {
            published: None,
            expected: 0,
            received: Received::default(),
            readers_ended: 0,
            seconds: 0.0,
            latency: Value::Null,
            extra: Value::Null,
        }
    }

    fn json(&self) -> Value {
        let published = self.published.as_ref();
        let mut line = json!({
            "events_published": published.map_or(0, |p| p.ok),
            "publish_failures": published.map_or(0, |p| p.failed),
            "publish_error": published.and_then(|p| p.first_error.clone()),
            "publish_rate_achieved": published.map(|p| round(p.rate())),
            "deliveries_expected": self.expected,
            "deliveries_received": self.received.unique,
            "lost": self.expected.saturating_sub(self.received.unique),
            "duplicated": self.received.duplicated,
            "streams_ended_by_server": self.readers_ended,
            "deliveries_per_second": round(self.received.unique as f64 / self.seconds.max(1e-9)),
            "latency_ms": self.latency,
        });
        if let (Some(line), Value::Object(more)) = (line.as_object_mut(), &self.extra) {
            line.extend(more.clone());
        }
        line
    }
}

/// Publishes `count` events at `rate` (event `n` to `channel(n)`), waits for the
/// deliveries, stops the readers and counts.
async fn publish_and_count(
    run: &Run,
    readers: Readers,
    count: u64,
    rate: f64,
    expected: impl Fn(&Published) -> u64,
    channel: impl Fn(u64) -> Channel,
) -> Result<Outcome, String> {
    let publisher = run.common.publisher(run.server.tls_root())?;
    let started = unix_nanos();
    let published = publisher
        .paced(run.server.publish_api(), 0, count, rate, channel)
        .await;
    let expected = expected(&published);
    readers
        .tally
        .wait_for(expected, run.common.wait.quiet())
        .await;
    // A moment for duplicates, if any, to arrive too.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let tally = readers.tally.clone();
    let received = readers.stop_and_count().await;
    let last = tally.last_receipt.load(Ordering::Relaxed);
    Ok(Outcome {
        published: Some(published),
        expected,
        received,
        readers_ended: tally.ended.load(Ordering::Relaxed),
        seconds: last.saturating_sub(started) as f64 / 1e9,
        latency: tally.latency.percentiles_ms(),
        extra: Value::Null,
    })
}

/// Idle streams: memory per stream (each on a connection of its own) and the time to open
/// them.
pub(crate) async fn idle(common: &Common, options: &ServerOptions) -> Result<(), String> {
    let run = Run::start(common, options, |_| Channel::Broadcast).await?;
    run.report("idle", json!({}), Outcome::none());
    Ok(())
}

/// Every stream on one channel; `events` published at `rate`.
pub(crate) async fn broadcast(
    common: &Common,
    options: &ServerOptions,
    events: u64,
    rate: f64,
) -> Result<(), String> {
    let mut run = Run::start(common, options, |_| Channel::Broadcast).await?;
    let readers = run.read().await;
    let opened = run.opened_count() as u64;
    let outcome = publish_and_count(
        &run,
        readers,
        events,
        rate,
        |p| p.ok * opened,
        |_| Channel::Broadcast,
    )
    .await?;
    run.report(
        "broadcast",
        json!({"events": events, "rate": rate}),
        outcome,
    );
    Ok(())
}

/// Deliveries expected when events `first..first + count` went to random channels and only
/// the streams in `open` are there.
fn expected_targeted(open: &[bool], first: u64, count: u64, failed: u64) -> u64 {
    let reachable = (first..first + count)
        .filter(|&n| open[random::pick(n, open.len())])
        .count() as u64;
    reachable.saturating_sub(failed)
}

/// Which streams of a run are open, by index.
fn open_streams(run: &Run) -> Vec<bool> {
    let mut open = vec![false; run.common.connections];
    for (index, _) in &run.opened.streams {
        open[*index] = true;
    }
    open
}

/// Each stream on a channel of its own; events to random channels at `rate` for `seconds`.
pub(crate) async fn targeted(
    common: &Common,
    options: &ServerOptions,
    rate: f64,
    seconds: f64,
) -> Result<(), String> {
    let mut run = Run::start(common, options, Channel::Own).await?;
    let open = open_streams(&run);
    let readers = run.read().await;
    let channels = common.connections;
    let count = (rate * seconds).round() as u64;
    let outcome = publish_and_count(
        &run,
        readers,
        count,
        rate,
        |p| expected_targeted(&open, 0, count, p.failed),
        |n| Channel::Own(random::pick(n, channels)),
    )
    .await?;
    run.report(
        "targeted",
        json!({"rate": rate, "seconds": seconds, "events": count}),
        outcome,
    );
    Ok(())
}

/// The sweep of `targeted-max`.
#[derive(Clone, Debug, clap::Args)]
pub(crate) struct Sweep {
    /// Events per second of the first step.
    #[arg(long, default_value_t = 1000.0)]
    pub(crate) start_rate: f64,
    /// Each step's rate is the previous one's times this.
    #[arg(long, default_value_t = 1.5)]
    pub(crate) factor: f64,
    /// The last rate tried.
    #[arg(long, default_value_t = 100_000.0)]
    pub(crate) max_rate: f64,
    /// Seconds each step publishes.
    #[arg(long, default_value_t = 3.0)]
    pub(crate) step_seconds: f64,
    /// The p99 latency a step must stay under, ms.
    #[arg(long, default_value_t = 50.0)]
    pub(crate) p99_ms: f64,
    /// Steps tried after the first that fails, each halfway (geometrically) between the
    /// highest rate that passed and the lowest that failed: three narrow a factor of 1.5
    /// down to 5%.
    #[arg(long, default_value_t = 3)]
    pub(crate) refine: u32,
}

/// The highest rate that passed and the lowest that failed, so far.
#[derive(Default)]
struct Bracket {
    passed: Option<f64>,
    failed: Option<f64>,
    refined: u32,
}

impl Bracket {
    /// Records the step at `rate`; the next rate to try, if any.
    fn next(&mut self, rate: f64, passed: bool, sweep: &Sweep) -> Option<f64> {
        if passed {
            self.passed = Some(rate);
        } else {
            self.failed = Some(rate);
        }
        let next = match (self.passed, self.failed) {
            (_, None) => rate * sweep.factor,
            (Some(low), Some(high)) if self.refined < sweep.refine => {
                self.refined += 1;
                (low * high).sqrt()
            }
            _ => return None,
        };
        (next <= sweep.max_rate * 1.0001).then_some(next)
    }
}

/// Targeted events at increasing rates until p99 reaches the limit (lost events counting
/// as late) or the publisher cannot reach 90 % of the offered rate, then a few rates
/// between the last that passed and the first that failed; the highest rate that passed.
pub(crate) async fn targeted_max(
    common: &Common,
    options: &ServerOptions,
    sweep: &Sweep,
) -> Result<(), String> {
    let mut run = Run::start(common, options, Channel::Own).await?;
    let open = open_streams(&run);
    let readers = run.read().await;
    let channels = common.connections;
    let publisher = common.publisher(run.server.tls_root())?;
    let tally = readers.tally.clone();
    let mut steps = Vec::new();
    let mut best: Option<(f64, f64, Value)> = None;
    let (mut first, mut expected_total) = (0u64, 0u64);
    let mut next_rate = Some(sweep.start_rate).filter(|rate| *rate <= sweep.max_rate * 1.0001);
    let mut bracket = Bracket::default();
    let started = unix_nanos();
    let mut total_published: Option<Published> = None;
    while let Some(rate) = next_rate {
        let count = (rate * sweep.step_seconds).round() as u64;
        tally.latency.reset();
        let received_before = tally.received.load(Ordering::Relaxed);
        let published = publisher
            .paced(run.server.publish_api(), first, count, rate, |n| {
                Channel::Own(random::pick(n, channels))
            })
            .await;
        let expected = expected_targeted(&open, first, count, published.failed);
        expected_total += expected;
        tally.wait_for(expected_total, common.wait.quiet()).await;
        let lost =
            expected.saturating_sub(tally.received.load(Ordering::Relaxed) - received_before);
        let latency = tally.latency.percentiles_ms();
        let achieved = published.rate();
        // p99 over the deliveries expected: a lost event counts as later than the limit.
        let in_time = tally.latency.count_below((sweep.p99_ms * 1000.0) as u64);
        let passed = in_time as f64 >= 0.99 * expected as f64 && achieved >= 0.9 * rate;
        steps.push(json!({
            "rate": round(rate), "achieved": round(achieved), "events": count,
            "lost": lost, "latency_ms": latency, "passed": passed,
        }));
        total_published = Some(match total_published {
            None => published,
            Some(t) => Published {
                ok: t.ok + published.ok,
                failed: t.failed + published.failed,
                seconds: t.seconds + published.seconds,
                first_error: t.first_error.or(published.first_error),
            },
        });
        first += count;
        if passed && best.as_ref().is_none_or(|(best, ..)| rate > *best) {
            best = Some((rate, achieved, latency));
        }
        if !passed {
            // What the failed step left queued drains before the next step is timed.
            tokio::time::sleep(common.wait.quiet()).await;
        }
        next_rate = bracket.next(rate, passed, sweep);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let received = readers.stop_and_count().await;
    let last = tally.last_receipt.load(Ordering::Relaxed);
    let (best_rate, best_achieved, best_latency) = best
        .map_or((None, None, Value::Null), |(r, a, l)| {
            (Some(round(r)), Some(round(a)), l)
        });
    let outcome = Outcome {
        published: total_published,
        expected: expected_total,
        received,
        readers_ended: tally.ended.load(Ordering::Relaxed),
        seconds: last.saturating_sub(started) as f64 / 1e9,
        latency: best_latency,
        extra: json!({
            "max_rate_offered": best_rate,
            "max_rate_achieved": best_achieved,
            "steps": steps,
        }),
    };
    let parameters = json!({
        "start_rate": sweep.start_rate, "factor": sweep.factor, "max_rate": sweep.max_rate,
        "step_seconds": sweep.step_seconds, "p99_limit_ms": sweep.p99_ms,
        "refine": sweep.refine,
    });
    run.report("targeted-max", parameters, outcome);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sweep(refine: u32) -> Sweep {
        Sweep {
            start_rate: 1000.0,
            factor: 2.0,
            max_rate: 100_000.0,
            step_seconds: 3.0,
            p99_ms: 50.0,
            refine,
        }
    }

    /// The rates a sweep tries when every rate up to `limit` passes.
    fn tried(sweep: &Sweep, limit: f64) -> Vec<f64> {
        let mut bracket = Bracket::default();
        let mut rates = Vec::new();
        let mut next = Some(sweep.start_rate);
        while let Some(rate) = next {
            rates.push(rate.round());
            next = bracket.next(rate, rate <= limit, sweep);
        }
        rates
    }

    #[test]
    fn a_sweep_grows_by_its_factor_then_narrows_between_the_last_pass_and_the_first_fail() {
        assert_eq!(tried(&sweep(0), 5000.0), [1000.0, 2000.0, 4000.0, 8000.0]);
        // Then 5,657 (passes, under 6,000), 6,727 (fails), 6,169 (fails).
        assert_eq!(
            tried(&sweep(3), 6000.0),
            [1000.0, 2000.0, 4000.0, 8000.0, 5657.0, 6727.0, 6169.0]
        );
        // Nothing fails up to the highest rate: no narrowing.
        assert_eq!(tried(&sweep(3), 1e9).last(), Some(&64000.0));
    }
}
