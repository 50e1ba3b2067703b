//! The `sseor` binary as a real child process: started with a clean environment, found
//! where its "listening" log line says, and asked over HTTP. The binary's path is a
//! parameter: only the server crate's tests know it (`CARGO_BIN_EXE_sseor`).

use std::ffi::OsStr;
use std::net::SocketAddr;
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::hang::guard;
use crate::net::http;
use crate::sse::Client;

/// The environment variables the server reads, from its command definition (deprecated
/// names included); removed from every child so that the environment the tests run in
/// cannot change what they see.
pub fn server_env() -> Vec<String> {
    sseor_server::cli::environment_variables()
}

/// Variables that change how any program logs; removed from every child too.
const LOGGING_ENV: &[&str] = &["RUST_LOG", "NO_COLOR"];

/// The `binary` (the `sseor` that cargo built for the tests) with a clean environment.
pub fn command(binary: impl AsRef<OsStr>) -> Command {
    let mut command = Command::new(binary);
    clean_env(&mut command);
    command
}

/// Removes [`server_env`] and the logging variables from `command`'s environment, closes
/// its stdin and kills it when dropped: what every child of the tests gets, whatever
/// program starts the server (`sh` that lowers a limit first, for one).
pub fn clean_env(command: &mut Command) -> &mut Command {
    for name in server_env() {
        command.env_remove(name);
    }
    for name in LOGGING_ENV {
        command.env_remove(name);
    }
    command.stdin(Stdio::null()).kill_on_drop(true)
}

/// [`command`] for a server on any free port that logs JSON: `--port 0 --log-format json`.
pub fn listening_command(binary: impl AsRef<OsStr>) -> Command {
    let mut command = command(binary);
    command.args(["--port", "0", "--log-format", "json"]);
    command
}

/// What a process that ran to its end printed, and how it ended.
#[derive(Debug)]
pub struct Finished {
    /// How it ended.
    pub status: ExitStatus,
    /// What it printed on stdout.
    pub stdout: String,
    /// What it printed on stderr.
    pub stderr: String,
}

impl Finished {
    /// Stdout and stderr together, for searching and for assertion messages.
    pub fn all_output(&self) -> String {
        format!(
            "--- stdout ---\n{}\n--- stderr ---\n{}",
            self.stdout, self.stderr
        )
    }
}

/// Runs `binary` with `args` and `envs` until it exits on its own.
pub async fn run_to_exit(
    binary: impl AsRef<OsStr>,
    args: &[&str],
    envs: &[(&str, &str)],
) -> Finished {
    let mut command = command(binary);
    command.args(args).envs(envs.iter().copied());
    let output = guard(command.output()).await.expect("cannot run sseor");
    Finished {
        status: output.status,
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// A running `sseor` process; killed when dropped.
pub struct Server {
    child: Child,
    pid: u32,
    /// Where the server accepts connections, as its "listening" log line says.
    pub addr: SocketAddr,
    /// The "listening" log line.
    listening: Value,
    stdout: Arc<Mutex<Vec<String>>>,
    stderr: Arc<Mutex<Vec<String>>>,
    /// The tasks reading stdout and stderr; they end when the process closes them.
    readers: Vec<JoinHandle<()>>,
}

impl Server {
    /// `binary --port 0 --log-format json` plus `args`.
    pub async fn start(binary: impl AsRef<OsStr>, args: &[&str]) -> Self {
        let mut command = listening_command(binary);
        command.args(args);
        Self::spawn(command).await
    }

    /// Starts the prepared `command`, whose logs must be JSON, and waits until it listens.
    pub async fn spawn(mut command: Command) -> Self {
        command.stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = command.spawn().expect("cannot start sseor");
        let pid = child.id().expect("the child has a pid");
        let stdout = Arc::new(Mutex::new(Vec::new()));
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let (listening_tx, listening_rx) = oneshot::channel();
        let readers = vec![
            tokio::spawn(collect_lines(
                child.stdout.take().unwrap(),
                stdout.clone(),
                Some(listening_tx),
            )),
            tokio::spawn(collect_lines(
                child.stderr.take().unwrap(),
                stderr.clone(),
                None,
            )),
        ];
        let Ok((logged_addr, listening)) = guard(listening_rx).await else {
            let status = guard(child.wait()).await;
            for reader in readers {
                let _ = guard(reader).await;
            }
            panic!(
                "sseor ended ({status:?}) without logging that it listens\n\
                 --- stdout ---\n{}\n--- stderr ---\n{}",
                stdout.lock().unwrap().join("\n"),
                stderr.lock().unwrap().join("\n"),
            );
        };
        assert_ne!(
            logged_addr.port(),
            0,
            "with `--port 0` the server must log the port the system chose"
        );
        Self {
            child,
            pid,
            addr: logged_addr,
            listening,
            stdout,
            stderr,
            readers,
        }
    }

    /// `http://ADDR` and `path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// The JSON log line that said where the server listens (its `fields` name the broker
    /// and the authentication too).
    pub fn listening_log(&self) -> &Value {
        &self.listening
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Opens `/api/v1/sse` for `user_id` and `topics`.
    pub async fn subscribe(&self, user_id: &str, topics: &[&str]) -> Client {
        Client::connect(&self.sse_url(user_id, topics)).await
    }

    /// The URL of `/api/v1/sse` for `user_id` and `topics`.
    pub fn sse_url(&self, user_id: &str, topics: &[&str]) -> String {
        let mut url = self.url(&format!("/api/v1/sse?user_id={user_id}"));
        for topic in topics {
            url.push_str(&format!("&topic={topic}"));
        }
        url
    }

    /// POSTs `body` to `/api/v1/publish`; the status and the JSON answer.
    pub async fn publish(&self, body: &Value) -> (u16, Value) {
        self.post_raw(body.to_string().into_bytes()).await
    }

    /// POSTs raw bytes to `/api/v1/publish`; the status and the JSON answer.
    pub async fn post_raw(&self, body: Vec<u8>) -> (u16, Value) {
        self.post_to(
            "/api/v1/publish",
            &[("content-type", "application/json")],
            body,
        )
        .await
    }

    /// POSTs `body` to `path` with `headers`; the status and the JSON answer.
    pub async fn post_to(
        &self,
        path: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> (u16, Value) {
        let request = headers
            .iter()
            .fold(http().post(self.url(path)), |request, (name, value)| {
                request.header(*name, *value)
            });
        let response = guard(request.body(body).send()).await.unwrap();
        json_of(response).await
    }

    /// GETs `path`; the status and the JSON answer.
    pub async fn get_json(&self, path: &str) -> (u16, Value) {
        let response = guard(http().get(self.url(path)).send()).await.unwrap();
        json_of(response).await
    }

    /// `/api/v1/connections?user_id=...`: (connections of the user, total).
    pub async fn connections(&self, user_id: &str) -> (u64, u64) {
        let (status, body) = self
            .get_json(&format!("/api/v1/connections?user_id={user_id}"))
            .await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["user_id"], user_id, "{body}");
        (
            body["user"].as_u64().expect("`user` is a count"),
            body["total"].as_u64().expect("`total` is a count"),
        )
    }

    /// Polls until the server counts (`user`, `total`) connections.
    pub async fn wait_for_connections(&self, user_id: &str, expected: (u64, u64)) {
        guard(async {
            while self.connections(user_id).await != expected {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await;
    }

    /// Sends a signal (`TERM`, `INT`, ...) to the server process.
    pub fn signal(&self, name: &str) {
        let status = std::process::Command::new("kill")
            .args(["-s", name, &self.pid.to_string()])
            .status()
            .expect("cannot run `kill`");
        assert!(status.success(), "kill -s {name} {} failed", self.pid);
    }

    /// Waits for the process to exit, and for everything it printed to be read.
    pub async fn wait_exit(&mut self) -> ExitStatus {
        let status = guard(self.child.wait()).await.unwrap();
        for reader in self.readers.drain(..) {
            guard(reader).await.unwrap();
        }
        status
    }

    /// Everything logged so far, stdout then stderr.
    pub fn output(&self) -> String {
        format!(
            "--- stdout ---\n{}\n--- stderr ---\n{}",
            self.stdout.lock().unwrap().join("\n"),
            self.stderr.lock().unwrap().join("\n"),
        )
    }

    /// The `fields.message` of every JSON log line so far.
    pub fn log_messages(&self) -> Vec<String> {
        self.stdout
            .lock()
            .unwrap()
            .iter()
            .filter_map(|line| serde_json::from_str::<Value>(line).ok())
            .filter_map(|log| log["fields"]["message"].as_str().map(str::to_owned))
            .collect()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

/// Reads lines of `from` into `into`; sends the "listening" log line and its address.
async fn collect_lines(
    from: impl AsyncRead + Unpin,
    into: Arc<Mutex<Vec<String>>>,
    mut listening: Option<oneshot::Sender<(SocketAddr, Value)>>,
) {
    let mut lines = BufReader::new(from).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        if let Some(found) = listening_address(&line)
            && let Some(tx) = listening.take()
        {
            let _ = tx.send(found);
        }
        into.lock().unwrap().push(line);
    }
}

/// The address in a JSON log line `{"fields": {"message": "sseor listening on ..."}}`,
/// and the line.
fn listening_address(line: &str) -> Option<(SocketAddr, Value)> {
    let log: Value = serde_json::from_str(line).ok()?;
    let message = log["fields"]["message"].as_str()?;
    let url = message
        .strip_prefix("sseor listening on http://")
        .or_else(|| message.strip_prefix("sseor listening on https://"))?;
    let addr = url.trim_end_matches('/').parse().ok()?;
    Some((addr, log))
}

async fn json_of(response: reqwest::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    let text = guard(response.text()).await.unwrap();
    let body = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("status {status}: the body is not JSON ({e}): {text:?}"));
    (status, body)
}
