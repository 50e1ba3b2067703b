//! The lifecycle webhook's settings in the real `sseor` binary: what stops the start, and
//! a server that starts with one.

use sseor_testkit::server::{Server, listening_command, run_to_exit};
use sseor_testkit::webhook::Receiver;
use sseor_testkit::{guard, http};

use crate::SSEOR;

/// The webhook secret of the tests.
pub(crate) const SECRET: &str = "webhook-secret-0123456789abcdef-0123456789";

/// Variables set, the setting the error must name, and why.
type Case = (
    &'static [(&'static str, &'static str)],
    &'static str,
    &'static str,
);

#[tokio::test]
async fn bad_webhook_settings_stop_the_start_with_one_line_naming_them() {
    const URL: &str = "https://app.example.com/hooks";
    let cases: &[Case] = &[
        (
            &[("SSEOR_WEBHOOK_URL", URL)],
            "SSEOR_WEBHOOK_SECRET",
            "must be set too",
        ),
        (
            &[("SSEOR_WEBHOOK_SECRET", SECRET)],
            "SSEOR_WEBHOOK_URL",
            "must be set too",
        ),
        (
            &[
                ("SSEOR_WEBHOOK_URL", URL),
                ("SSEOR_WEBHOOK_SECRET", "short-secret-xyz"),
            ],
            "SSEOR_WEBHOOK_SECRET",
            "too short",
        ),
        (
            &[
                (
                    "SSEOR_WEBHOOK_URL",
                    "ftp://user:pw-in-url@app.example.com/x",
                ),
                ("SSEOR_WEBHOOK_SECRET", SECRET),
            ],
            "SSEOR_WEBHOOK_URL",
            "http:// or https://",
        ),
        (
            &[
                ("SSEOR_WEBHOOK_URL", "not a url"),
                ("SSEOR_WEBHOOK_SECRET", SECRET),
            ],
            "SSEOR_WEBHOOK_URL",
            "does not parse",
        ),
        (
            &[
                ("SSEOR_WEBHOOK_URL", URL),
                ("SSEOR_WEBHOOK_SECRET", SECRET),
                ("SSEOR_WEBHOOK_TIMEOUT", "0s"),
            ],
            "SSEOR_WEBHOOK_TIMEOUT",
            "above zero",
        ),
    ];
    for (envs, named, why) in cases {
        let run = run_to_exit(SSEOR, &["--port", "0"], envs).await;
        let output = run.all_output();
        assert_eq!(run.status.code(), Some(2), "{envs:?}: {output}");
        assert_eq!(
            run.stderr.trim().lines().count(),
            1,
            "{envs:?}: one line:\n{output}"
        );
        assert!(
            run.stderr.contains(named) && run.stderr.contains(why),
            "{envs:?}: {output}"
        );
        for hidden in [SECRET, "short-secret-xyz", "pw-in-url"] {
            assert!(
                !output.contains(hidden),
                "{envs:?} shows a secret: {output}"
            );
        }
        assert!(!output.contains("listening"), "it must not start: {output}");
    }
}

#[tokio::test]
async fn an_empty_webhook_url_and_secret_mean_no_webhook() {
    let mut command = listening_command(SSEOR);
    command.envs([("SSEOR_WEBHOOK_URL", ""), ("SSEOR_WEBHOOK_SECRET", "")]);
    let server = Server::spawn(command).await;
    assert_eq!(server.listening_log()["fields"]["webhook"], "off");
}

#[tokio::test]
async fn a_server_with_a_webhook_starts_says_so_and_never_logs_its_secret() {
    let receiver = Receiver::start(SECRET).await;
    let mut command = listening_command(SSEOR);
    command.envs([
        ("SSEOR_WEBHOOK_URL", receiver.url().as_str()),
        ("SSEOR_WEBHOOK_SECRET", SECRET),
        ("LOG_LEVEL", "debug"),
    ]);
    let server = Server::spawn(command).await;
    assert_eq!(server.listening_log()["fields"]["webhook"], "on");
    let metrics = guard(http().get(server.url("/metrics")).send())
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("sseor_webhook_changes_dropped_total 0"),
        "{metrics}"
    );
    assert!(!server.output().contains(SECRET), "{}", server.output());
}
