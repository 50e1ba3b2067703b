//! `table`: the comparison table, in markdown, from the JSON lines of a comparison run.

use std::cmp::Ordering;

use serde_json::Value;

/// One row: a figure of one scenario run, found by scenario and label.
struct Figure {
    name: &'static str,
    scenario: &'static str,
    label: Option<&'static str>,
    /// The JSON pointer of the value in the line.
    pointer: &'static str,
    lower_is_better: bool,
    /// Decimals shown.
    decimals: usize,
    /// Whether the cell says what was lost or duplicated in the run (not for a sweep,
    /// whose last step may fail by losses and whose steps say what each lost).
    losses: bool,
    /// The peers' cells come from the run without a label: for a figure of a way only
    /// sseor has (batch publish), the peers' best way is their single publish.
    peers_unlabelled: bool,
}

const FIGURES: &[Figure] = &[
    Figure {
        name: "memory per idle connection, KiB",
        scenario: "idle",
        label: None,
        pointer: "/kib_per_connection",
        lower_is_better: true,
        decimals: 2,
        losses: true,
        peers_unlabelled: false,
    },
    Figure {
        name: "time to open {connections} connections, s",
        scenario: "idle",
        label: None,
        pointer: "/open_seconds",
        lower_is_better: true,
        decimals: 2,
        losses: true,
        peers_unlabelled: false,
    },
    Figure {
        name: "broadcast deliveries/s at saturation ({rate} events/s offered)",
        scenario: "broadcast",
        label: Some("saturation"),
        pointer: "/deliveries_per_second",
        lower_is_better: false,
        decimals: 0,
        losses: true,
        peers_unlabelled: false,
    },
    Figure {
        name: "broadcast p99 latency at {rate} events/s, ms",
        scenario: "broadcast",
        label: Some("latency"),
        pointer: "/latency_ms/p99",
        lower_is_better: true,
        decimals: 1,
        losses: true,
        peers_unlabelled: false,
    },
    Figure {
        name: "broadcast p99 latency at {rate} events/s, load generator on a CPU of its own, ms",
        scenario: "broadcast",
        label: Some("latency-pinned"),
        pointer: "/latency_ms/p99",
        lower_is_better: true,
        decimals: 1,
        losses: true,
        peers_unlabelled: false,
    },
    Figure {
        name: "targeted p99 latency at {rate} events/s, ms",
        scenario: "targeted",
        label: None,
        pointer: "/latency_ms/p99",
        lower_is_better: true,
        decimals: 1,
        losses: true,
        peers_unlabelled: false,
    },
    Figure {
        name: "targeted p99 latency at {rate} events/s, load generator on a CPU of its own, ms",
        scenario: "targeted",
        label: Some("pinned"),
        pointer: "/latency_ms/p99",
        lower_is_better: true,
        decimals: 1,
        losses: true,
        peers_unlabelled: false,
    },
    Figure {
        name: "highest targeted rate with p99 < {p99_limit_ms} ms, events/s",
        scenario: "targeted-max",
        label: None,
        pointer: "/max_rate_achieved",
        lower_is_better: false,
        decimals: 0,
        losses: false,
        peers_unlabelled: false,
    },
    Figure {
        name: "highest targeted rate with p99 < {p99_limit_ms} ms, sseor publishing {batch} events per request (peers: one per request), events/s",
        scenario: "targeted-max",
        label: Some("batched"),
        pointer: "/max_rate_achieved",
        lower_is_better: false,
        decimals: 0,
        losses: false,
        peers_unlabelled: true,
    },
    // Only the Redis variants run it: the row is in the Redis half of the table alone.
    Figure {
        name: "Redis time per publish (INFO commandstats), µs",
        scenario: "publish-cost",
        label: None,
        pointer: "/usec_per_publish",
        lower_is_better: true,
        decimals: 1,
        losses: true,
        peers_unlabelled: false,
    },
];

/// The columns: the server in each, first without Redis, then with Redis between two
/// instances.
const COLUMNS: [&str; 3] = ["sseor", "nchan", "pushpin"];
const REDIS_COLUMNS: [&str; 3] = ["sseor-redis", "nchan-redis", ""];

/// The markdown table of the JSON lines in `text`.
pub(crate) fn table(text: &str) -> String {
    let lines: Vec<Value> = text
        .lines()
        .filter_map(|line| serde_json::from_str(line).ok())
        .collect();
    let find = |server: &str, figure: &Figure| {
        let label = match figure.label {
            Some(_) if figure.peers_unlabelled && !server.starts_with("sseor") => None,
            label => label,
        };
        median_run(&lines, server, figure.scenario, label, figure.pointer)
    };
    let mut out = String::from("| figure | sseor | nchan | Pushpin | sseor / best peer |\n");
    out.push_str("|---|---|---|---|---|\n");
    for (columns, suffix) in [(COLUMNS, ""), (REDIS_COLUMNS, ", Redis, 2 instances")] {
        for figure in FIGURES {
            let runs: Vec<Option<&Value>> =
                columns.iter().map(|server| find(server, figure)).collect();
            let Some(any) = runs.iter().flatten().next() else {
                continue;
            };
            let values: Vec<Option<f64>> = runs
                .iter()
                .map(|run| run.and_then(|r| r.pointer(figure.pointer)?.as_f64()))
                .collect();
            let cells: Vec<String> = runs
                .iter()
                .zip(&values)
                .zip(columns)
                .map(|((run, value), server)| cell(server, *run, *value, figure))
                .collect();
            let best_peer = values[1..].iter().flatten().copied().reduce(|a, b| {
                if figure.lower_is_better == (a < b) {
                    a
                } else {
                    b
                }
            });
            let ratio = match (values[0], best_peer) {
                (Some(ours), Some(best)) if best != 0.0 => format!("{:.2}x", ours / best),
                _ => "-".into(),
            };
            let better = if figure.lower_is_better {
                "lower is better"
            } else {
                "higher is better"
            };
            out.push_str(&format!(
                "| {}{suffix} ({better}) | {} | {ratio} |\n",
                name(figure.name, any),
                cells.join(" | ")
            ));
        }
    }
    if let Some(scale) = lines.iter().rev().find(|l| l["scenario"] == "scale") {
        out.push_str(&scale_line(scale));
    }
    out.push_str(&serving_table(&lines));
    out.push_str(&floor_table(&lines));
    out.push_str(&sends_lines(&lines));
    out
}

/// What the machine alone takes (`sends`): one event written to every connection by bare
/// writes, against nchan's broadcast p99, pinned (one writing thread on CPU 0) and shared
/// (one per CPU).
fn sends_lines(lines: &[Value]) -> String {
    let mut out = String::new();
    for (label, broadcast) in [("pinned", "latency-pinned"), ("shared", "latency")] {
        let Some(sends) = median_run(lines, "kernel", "sends", Some(label), "/round_ms/p50") else {
            continue;
        };
        let Some(ms) = sends.pointer("/round_ms/p50").and_then(Value::as_f64) else {
            continue;
        };
        let nchan = median_run(
            lines,
            "nchan",
            "broadcast",
            Some(broadcast),
            "/latency_ms/p99",
        )
        .and_then(|run| run.pointer("/latency_ms/p99")?.as_f64())
        .map_or(String::new(), |p99| {
            format!(", {:.2}x nchan's broadcast p99", ms / p99)
        });
        out.push_str(&format!(
            "\nThe machine alone ({label}, `sseor-bench sends`): one event written to each of {} connections by bare writes from {} thread(s) takes {ms:.1} ms{nchan}.\n",
            sends["connections"], sends["threads"]
        ));
    }
    out
}

/// The latency figures of sseor and nchan next to `sseor-floor`'s (the least a server
/// does): how near to nchan any server gets on this machine with this load generator.
fn floor_table(lines: &[Value]) -> String {
    let find = |server: &str, figure: &Figure| {
        let run = median_run(lines, server, figure.scenario, figure.label, figure.pointer)?;
        Some((run, run.pointer(figure.pointer)?.as_f64()?))
    };
    let show = |value: Option<f64>| value.map_or("-".into(), |v| format!("{v:.1}"));
    let ratio = |value: Option<f64>, nchan: Option<f64>| match (value, nchan) {
        (Some(value), Some(nchan)) if nchan != 0.0 => format!("{:.2}x", value / nchan),
        _ => "-".into(),
    };
    let rows: Vec<String> = FIGURES
        .iter()
        .filter(|figure| figure.pointer == "/latency_ms/p99")
        .filter_map(|figure| {
            let (run, floor) = find("floor", figure)?;
            let sseor = find("sseor", figure).map(|(_, value)| value);
            let nchan = find("nchan", figure).map(|(_, value)| value);
            Some(format!(
                "| {} | {} | {} | {floor:.1} | {} | {} |\n",
                name(figure.name, run),
                show(sseor),
                show(nchan),
                ratio(sseor, nchan),
                ratio(Some(floor), nchan)
            ))
        })
        .collect();
    if rows.is_empty() {
        return String::new();
    }
    let mut out = String::from(
        "\n| latency | sseor | nchan | floor | sseor / nchan | floor / nchan |\n|---|---|---|---|---|---|\n",
    );
    out.extend(rows);
    out
}

/// The run of `server`'s `scenario` with `label` that the tables show: of the rounds that
/// measured `pointer`, the one whose value is the median (the lower of the two middle ones
/// for an even number); the last round, failed, when none measured it.
fn median_run<'a>(
    lines: &'a [Value],
    server: &str,
    scenario: &str,
    label: Option<&str>,
    pointer: &str,
) -> Option<&'a Value> {
    let rounds: Vec<&Value> = lines
        .iter()
        .filter(|line| {
            line["server"] == server
                && line["scenario"] == scenario
                && line["label"].as_str() == label
        })
        .collect();
    let value = |run: &Value| run.pointer(pointer).and_then(Value::as_f64);
    let mut measured: Vec<&Value> = rounds
        .iter()
        .copied()
        .filter(|run| run.get("error").is_none() && value(run).is_some())
        .collect();
    if measured.is_empty() {
        return rounds.last().copied();
    }
    measured.sort_by(|a, b| value(a).partial_cmp(&value(b)).unwrap_or(Ordering::Equal));
    Some(measured[(measured.len() - 1) / 2])
}

/// The ways of serving sseor's streams, by the server name of their runs.
const SERVING: &[(&str, &str)] = &[
    ("sseor", "the `sseor` binary, HTTP/1.1"),
    ("sseor-tls", "the `sseor` binary, HTTPS, HTTP/1.1"),
    ("sseor-h2", "the `sseor` binary, HTTPS, HTTP/2"),
    (
        "app-sseor-serve",
        "an application's own router, `sseor::serve`",
    ),
    (
        "app-manager-serve",
        "an application's own router, `Manager::serve`",
    ),
    (
        "app-axum-serve",
        "an application's own router, `axum::serve`",
    ),
];

/// Memory per idle stream, and broadcast latency, of each way of serving that was run,
/// against the `sseor` binary over plain HTTP/1.1.
fn serving_table(lines: &[Value]) -> String {
    let find = |server: &str, scenario: &str, label: Option<&str>, pointer: &str| {
        median_run(lines, server, scenario, label, pointer)?
            .pointer(pointer)?
            .as_f64()
    };
    let kib = |server: &str| find(server, "idle", None, "/kib_per_connection");
    let plain = kib(SERVING[0].0);
    let show = |value: Option<f64>, decimals: usize| {
        value.map_or("-".into(), |v| format!("{v:.decimals$}"))
    };
    let rows: Vec<String> = SERVING
        .iter()
        .filter_map(|(server, way)| {
            let kib = kib(server)?;
            let ratio = plain.map_or("-".into(), |plain| format!("{:.2}x", kib / plain));
            let open = find(server, "idle", None, "/open_seconds");
            let p99 = find(server, "broadcast", Some("latency"), "/latency_ms/p99");
            Some(format!(
                "| {way} | {kib:.2} | {ratio} | {} | {} |\n",
                show(open, 2),
                show(p99, 1)
            ))
        })
        .collect();
    // The binary's row alone compares nothing.
    if rows.len() < 2 {
        return String::new();
    }
    let mut out = String::from(
        "\n| way of serving | memory per idle stream, KiB | / the binary over HTTP/1.1 | time to open them, s | broadcast p99 at 5 events/s, ms |\n|---|---|---|---|---|\n",
    );
    out.extend(rows);
    out
}

/// A figure's name with `{key}` replaced by the run's parameter or field `key`.
fn name(template: &str, run: &Value) -> String {
    let mut name = template.to_owned();
    for key in ["connections", "rate", "p99_limit_ms", "batch"] {
        let value = run["parameters"]
            .get(key)
            .or_else(|| run.get(key))
            .map(|v| v.to_string())
            .unwrap_or_default();
        name = name.replace(&format!("{{{key}}}"), &value);
    }
    name
}

/// One cell: the value, with what went wrong next to it.
fn cell(server: &str, run: Option<&Value>, value: Option<f64>, figure: &Figure) -> String {
    let Some(run) = run else {
        return if server.is_empty() { "" } else { "not run" }.into();
    };
    if let Some(error) = run["error"].as_str() {
        return format!("failed: {}", error.chars().take(60).collect::<String>());
    }
    let decimals = figure.decimals;
    let mut text = value.map_or("-".into(), |v| format!("{v:.decimals$}"));
    if !figure.losses {
        return text;
    }
    for (key, what) in [
        ("lost", "lost"),
        ("duplicated", "duplicated"),
        ("not_opened", "not opened"),
    ] {
        if let Some(n) = run[key].as_u64().filter(|n| *n > 0) {
            text.push_str(&format!(" ({n} {what})"));
        }
    }
    text
}

fn scale_line(run: &Value) -> String {
    if let Some(error) = run["error"].as_str() {
        return format!("\nScale run failed: {error}\n");
    }
    let per_instance: Vec<String> = run["instances"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|i| format!("{} KiB", i["kib_per_connection"]))
        .collect();
    format!(
        "\nScale: {} of {} connections opened over {} sseor instances on one Redis, {} deliveries of {} expected (lost {}, duplicated {}), broadcast p99 {} ms; memory per connection by instance: {}.\n",
        run["connections_opened"],
        run["connections"],
        run["parameters"]["instances"],
        run["deliveries_received"],
        run["deliveries_expected"],
        run["lost"],
        run["duplicated"],
        run["latency_ms"]["p99"],
        per_instance.join(", "),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_ratios_and_losses() {
        let text = [
            r#"{"server":"sseor","scenario":"idle","connections":10000,"kib_per_connection":2.0,"open_seconds":0.5}"#,
            r#"{"server":"nchan","scenario":"idle","connections":10000,"kib_per_connection":10.0,"open_seconds":0.9}"#,
            r#"{"server":"pushpin","scenario":"idle","connections":10000,"kib_per_connection":40.0,"open_seconds":15.0}"#,
            r#"{"server":"sseor","scenario":"broadcast","label":"saturation","parameters":{"rate":50.0},"deliveries_per_second":300000.0,"lost":0}"#,
            r#"{"server":"nchan","scenario":"broadcast","label":"saturation","parameters":{"rate":50.0},"deliveries_per_second":100000.0,"lost":3}"#,
            r#"{"server":"pushpin","scenario":"broadcast","label":"saturation","error":"pushpin does not serve streams"}"#,
        ]
        .join("\n");
        let table = table(&text);
        assert!(
            table.contains("| memory per idle connection, KiB (lower is better) | 2.00 | 10.00 | 40.00 | 0.20x |"),
            "{table}"
        );
        assert!(
            table.contains("time to open 10000 connections, s"),
            "{table}"
        );
        assert!(
            table.contains("at saturation (50.0 events/s offered) (higher is better) | 300000 | 100000 (3 lost) | failed: pushpin does not serve streams | 3.00x |"),
            "{table}"
        );
        assert!(!table.contains("Redis"), "{table}");
    }

    #[test]
    fn publish_cost_is_a_redis_row() {
        let text = [
            r#"{"server":"sseor-redis","scenario":"publish-cost","usec_per_publish":8.0,"lost":0}"#,
            r#"{"server":"nchan-redis","scenario":"publish-cost","usec_per_publish":40.0,"lost":0}"#,
        ]
        .join("\n");
        let table = table(&text);
        assert!(
            table.contains("| Redis time per publish (INFO commandstats), µs, Redis, 2 instances (lower is better) | 8.0 | 40.0 |  | 0.20x |"),
            "{table}"
        );
        assert_eq!(
            table.matches("Redis time per publish").count(),
            1,
            "{table}"
        );
    }

    #[test]
    fn labelled_runs_have_rows_of_their_own() {
        let text = [
            r#"{"server":"sseor","scenario":"targeted","label":null,"parameters":{"rate":2000.0},"latency_ms":{"p99":2.0},"lost":0}"#,
            r#"{"server":"sseor","scenario":"targeted","label":"pinned","parameters":{"rate":2000.0},"latency_ms":{"p99":1.0},"lost":0}"#,
            r#"{"server":"nchan","scenario":"targeted","label":null,"parameters":{"rate":2000.0},"latency_ms":{"p99":4.0},"lost":0}"#,
            r#"{"server":"nchan","scenario":"targeted","label":"pinned","parameters":{"rate":2000.0},"latency_ms":{"p99":5.0},"lost":0}"#,
        ]
        .join("\n");
        let table = table(&text);
        assert!(
            table.contains("| targeted p99 latency at 2000.0 events/s, ms (lower is better) | 2.0 | 4.0 | not run | 0.50x |"),
            "{table}"
        );
        assert!(
            table.contains("| targeted p99 latency at 2000.0 events/s, load generator on a CPU of its own, ms (lower is better) | 1.0 | 5.0 | not run | 0.20x |"),
            "{table}"
        );
    }

    #[test]
    fn the_batched_rate_is_set_against_the_peers_single_publishes() {
        let text = [
            r#"{"server":"sseor","scenario":"targeted-max","label":null,"parameters":{"p99_limit_ms":50.0},"max_rate_achieved":10000.0}"#,
            r#"{"server":"sseor","scenario":"targeted-max","label":"batched","batch":100,"parameters":{"p99_limit_ms":50.0},"max_rate_achieved":60000.0}"#,
            r#"{"server":"nchan","scenario":"targeted-max","label":null,"parameters":{"p99_limit_ms":50.0},"max_rate_achieved":20000.0}"#,
        ]
        .join("\n");
        let table = table(&text);
        assert!(
            table.contains("| highest targeted rate with p99 < 50.0 ms, events/s (higher is better) | 10000 | 20000 | not run | 0.50x |"),
            "{table}"
        );
        assert!(
            table.contains("sseor publishing 100 events per request (peers: one per request), events/s (higher is better) | 60000 | 20000 | not run | 3.00x |"),
            "{table}"
        );
    }

    #[test]
    fn ways_of_serving_are_set_against_the_binary() {
        let text = [
            r#"{"server":"sseor","scenario":"idle","kib_per_connection":2.0,"open_seconds":0.5}"#,
            r#"{"server":"sseor-tls","scenario":"idle","kib_per_connection":6.0,"open_seconds":1.5}"#,
            r#"{"server":"app-axum-serve","scenario":"idle","kib_per_connection":29.0,"open_seconds":0.7}"#,
            r#"{"server":"app-axum-serve","scenario":"broadcast","label":"latency","latency_ms":{"p99":120.0}}"#,
            r#"{"server":"app-sseor-serve","scenario":"idle","error":"could not start"}"#,
        ]
        .join("\n");
        let table = table(&text);
        assert!(
            table.contains("| the `sseor` binary, HTTP/1.1 | 2.00 | 1.00x | 0.50 | - |"),
            "{table}"
        );
        assert!(
            table.contains("| the `sseor` binary, HTTPS, HTTP/1.1 | 6.00 | 3.00x | 1.50 | - |"),
            "{table}"
        );
        assert!(
            table.contains(
                "| an application's own router, `axum::serve` | 29.00 | 14.50x | 0.70 | 120.0 |"
            ),
            "{table}"
        );
        assert!(
            !table.contains("sseor::serve"),
            "a failed run has no row: {table}"
        );
    }

    #[test]
    fn the_floors_latency_is_set_against_nchan_beside_sseors() {
        let text = [
            r#"{"server":"sseor","scenario":"broadcast","label":"latency","parameters":{"rate":5.0},"latency_ms":{"p99":60.0}}"#,
            r#"{"server":"nchan","scenario":"broadcast","label":"latency","parameters":{"rate":5.0},"latency_ms":{"p99":100.0}}"#,
            r#"{"server":"floor","scenario":"broadcast","label":"latency","parameters":{"rate":5.0},"latency_ms":{"p99":40.0}}"#,
            r#"{"server":"floor","scenario":"targeted","label":"pinned","error":"could not start"}"#,
        ]
        .join("\n");
        let table = table(&text);
        assert!(
            table.contains("| broadcast p99 latency at 5.0 events/s, ms | 60.0 | 100.0 | 40.0 | 0.60x | 0.40x |"),
            "{table}"
        );
        assert_eq!(
            table.matches("| targeted p99").count(),
            0,
            "a figure the floor has no run of has no row: {table}"
        );
    }

    #[test]
    fn bare_writes_are_set_against_nchans_broadcast() {
        let text = [
            r#"{"server":"nchan","scenario":"broadcast","label":"latency-pinned","latency_ms":{"p99":100.0}}"#,
            r#"{"server":"kernel","scenario":"sends","label":"pinned","connections":10000,"threads":1,"round_ms":{"p50":70.0}}"#,
            r#"{"server":"kernel","scenario":"sends","label":"shared","connections":10000,"threads":2,"round_ms":{"p50":50.0}}"#,
        ]
        .join("\n");
        let table = table(&text);
        assert!(
            table.contains("(pinned, `sseor-bench sends`): one event written to each of 10000 connections by bare writes from 1 thread(s) takes 70.0 ms, 0.70x nchan's broadcast p99."),
            "{table}"
        );
        assert!(
            table.contains("(shared, `sseor-bench sends`): one event written to each of 10000 connections by bare writes from 2 thread(s) takes 50.0 ms."),
            "without nchan's run, no ratio: {table}"
        );
    }

    #[test]
    fn of_several_rounds_the_median_one_is_shown() {
        let text = [
            r#"{"server":"sseor","scenario":"targeted","label":null,"parameters":{"rate":2000.0},"latency_ms":{"p99":5.0},"lost":0}"#,
            r#"{"server":"sseor","scenario":"targeted","label":null,"parameters":{"rate":2000.0},"latency_ms":{"p99":1.0},"lost":0}"#,
            r#"{"server":"sseor","scenario":"targeted","label":null,"error":"could not start"}"#,
            r#"{"server":"sseor","scenario":"targeted","label":null,"parameters":{"rate":2000.0},"latency_ms":{"p99":3.0},"lost":2}"#,
            r#"{"server":"nchan","scenario":"targeted","label":null,"error":"could not start"}"#,
        ]
        .join("\n");
        let table = table(&text);
        assert!(
            table.contains("| targeted p99 latency at 2000.0 events/s, ms (lower is better) | 3.0 (2 lost) | failed: could not start | not run | - |"),
            "{table}"
        );
    }
}
