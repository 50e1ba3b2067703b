//! `table`: the comparison table, in markdown, from the JSON lines of a comparison run.

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
    },
    Figure {
        name: "time to open {connections} connections, s",
        scenario: "idle",
        label: None,
        pointer: "/open_seconds",
        lower_is_better: true,
        decimals: 2,
        losses: true,
    },
    Figure {
        name: "broadcast deliveries/s at saturation ({rate} events/s offered)",
        scenario: "broadcast",
        label: Some("saturation"),
        pointer: "/deliveries_per_second",
        lower_is_better: false,
        decimals: 0,
        losses: true,
    },
    Figure {
        name: "broadcast p99 latency at {rate} events/s, ms",
        scenario: "broadcast",
        label: Some("latency"),
        pointer: "/latency_ms/p99",
        lower_is_better: true,
        decimals: 1,
        losses: true,
    },
    Figure {
        name: "targeted p99 latency at {rate} events/s, ms",
        scenario: "targeted",
        label: None,
        pointer: "/latency_ms/p99",
        lower_is_better: true,
        decimals: 1,
        losses: true,
    },
    Figure {
        name: "highest targeted rate with p99 < {p99_limit_ms} ms, events/s",
        scenario: "targeted-max",
        label: None,
        pointer: "/max_rate_achieved",
        lower_is_better: false,
        decimals: 0,
        losses: false,
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
    let mut out = String::from("| figure | sseor | nchan | Pushpin | sseor / best peer |\n");
    out.push_str("|---|---|---|---|---|\n");
    for (columns, suffix) in [(COLUMNS, ""), (REDIS_COLUMNS, ", Redis, 2 instances")] {
        for figure in FIGURES {
            let runs: Vec<Option<&Value>> = columns
                .iter()
                .map(|server| find(&lines, server, figure))
                .collect();
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
    out.push_str(&app_table(&lines));
    out
}

/// The application that embeds the library (`sseor-app`), served three ways, beside the
/// `sseor` binary: the figures of the scenarios it runs.
const APP_COLUMNS: [&str; 4] = [
    "sseor",
    "app-sseor-serve",
    "app-manager-serve",
    "app-axum-serve",
];

/// The second table, of the `app-*` runs, when there are any: each figure for the `sseor`
/// binary and the application served by `sseor::serve`, `Manager::serve` and
/// `axum::serve`.
fn app_table(lines: &[Value]) -> String {
    if !lines.iter().any(|line| {
        line["server"]
            .as_str()
            .is_some_and(|server| server.starts_with("app-"))
    }) {
        return String::new();
    }
    let mut out = String::from(
        "\n| figure, an application embedding the library | `sseor` binary | `sseor::serve` | `Manager::serve` | `axum::serve` |\n|---|---|---|---|---|\n",
    );
    for figure in FIGURES {
        let runs: Vec<Option<&Value>> = APP_COLUMNS
            .iter()
            .map(|server| find(lines, server, figure))
            .collect();
        // Only the figures of the scenarios the application ran.
        let Some(any) = runs[1..].iter().flatten().next() else {
            continue;
        };
        let cells: Vec<String> = runs
            .iter()
            .zip(APP_COLUMNS)
            .map(|(run, server)| {
                let value = run.and_then(|r| r.pointer(figure.pointer)?.as_f64());
                cell(server, *run, value, figure)
            })
            .collect();
        out.push_str(&format!(
            "| {} | {} |\n",
            name(figure.name, any),
            cells.join(" | ")
        ));
    }
    out
}

/// The last run of `figure`'s scenario against `server`.
fn find<'a>(lines: &'a [Value], server: &str, figure: &Figure) -> Option<&'a Value> {
    lines.iter().rev().find(|line| {
        line["server"] == server
            && line["scenario"] == figure.scenario
            && figure.label.is_none_or(|label| line["label"] == label)
    })
}

/// A figure's name with `{key}` replaced by the run's parameter or field `key`.
fn name(template: &str, run: &Value) -> String {
    let mut name = template.to_owned();
    for key in ["connections", "rate", "p99_limit_ms"] {
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
        assert!(!table.contains("axum::serve"), "{table}");
    }

    #[test]
    fn the_app_runs_get_a_table_of_their_own_beside_the_binary() {
        let text = [
            r#"{"server":"sseor","scenario":"idle","connections":10000,"kib_per_connection":2.5,"open_seconds":0.5}"#,
            r#"{"server":"app-sseor-serve","scenario":"idle","connections":10000,"kib_per_connection":2.6,"open_seconds":0.5}"#,
            r#"{"server":"app-axum-serve","scenario":"idle","connections":10000,"kib_per_connection":29.0,"open_seconds":0.6}"#,
        ]
        .join("\n");
        let table = table(&text);
        assert!(
            table.contains("| memory per idle connection, KiB | 2.50 | 2.60 | not run | 29.00 |"),
            "{table}"
        );
        assert!(!table.contains("deliveries/s"), "{table}");
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
}
