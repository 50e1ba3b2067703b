//! Who calls each command: a sample of Redis's `MONITOR` feed, which marks the commands a
//! script or a function runs (`[0 lua]`) apart from those clients send. `INFO
//! commandstats` counts a command a script runs both on its own line and in the script's
//! time; the sample tells which lines to leave out so that nothing counts twice.

use std::collections::HashMap;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Who was seen calling a command while the sample was taken.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Caller {
    /// Only clients.
    Client,
    /// Only scripts and functions.
    Script,
    /// Both.
    Both,
    /// Not seen (commands `MONITOR` does not show, or that the sample missed).
    Unseen,
}

impl Caller {
    /// How the JSON line names it.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Caller::Client => "client",
            Caller::Script => "script",
            Caller::Both => "both",
            Caller::Unseen => "unseen",
        }
    }
}

/// The callers seen, by command (lower case).
#[derive(Debug, Default)]
pub(crate) struct Callers {
    /// (calls from clients, calls from scripts) by command.
    seen: HashMap<String, (u64, u64)>,
}

impl Callers {
    /// Who called `command` (`config` for `config|resetstat`).
    pub(crate) fn caller(&self, command: &str) -> Caller {
        match self.seen.get(command) {
            None => Caller::Unseen,
            Some((0, _)) => Caller::Script,
            Some((_, 0)) => Caller::Client,
            Some(_) => Caller::Both,
        }
    }

    /// The callers in `lines` of a `MONITOR` feed.
    #[cfg(test)]
    pub(crate) fn from_lines(lines: &[&str]) -> Self {
        let mut callers = Self::default();
        for line in lines {
            callers.record(line);
        }
        callers
    }

    fn record(&mut self, line: &str) {
        if let Some((from_script, command)) = parse_line(line) {
            let entry = self.seen.entry(command).or_default();
            if from_script {
                entry.1 += 1;
            } else {
                entry.0 += 1;
            }
        }
    }
}

/// A `MONITOR` connection being read.
pub(crate) struct Monitor {
    stop: CancellationToken,
    task: JoinHandle<Callers>,
}

impl Monitor {
    /// Starts monitoring the Redis at `address` (`HOST:PORT`).
    pub(crate) async fn start(address: &str) -> Result<Self, String> {
        let mut socket = TcpStream::connect(address)
            .await
            .map_err(|e| format!("MONITOR {address}: {e}"))?;
        socket
            .write_all(b"MONITOR\r\n")
            .await
            .map_err(|e| format!("MONITOR {address}: {e}"))?;
        let mut lines = BufReader::new(socket).lines();
        match lines.next_line().await {
            Ok(Some(line)) if line == "+OK" => {}
            other => return Err(format!("MONITOR {address} answered {other:?}")),
        }
        let stop = CancellationToken::new();
        let stopped = stop.clone();
        let task = tokio::spawn(async move {
            let mut callers = Callers::default();
            loop {
                tokio::select! {
                    biased;
                    () = stopped.cancelled() => break,
                    line = lines.next_line() => match line {
                        Ok(Some(line)) => callers.record(&line),
                        _ => break,
                    },
                }
            }
            callers
        });
        Ok(Self { stop, task })
    }

    /// Stops monitoring (the connection closes) and returns who called what.
    pub(crate) async fn stop(self) -> Callers {
        self.stop.cancel();
        self.task.await.unwrap_or_default()
    }
}

/// A `MONITOR` line, `+1700000000.123456 [0 127.0.0.1:5555] "FCALL" "sseor_publish" ...`
/// or `+1700000000.123456 [0 lua] "XADD" ...`: whether a script ran the command, and the
/// command in lower case.
fn parse_line(line: &str) -> Option<(bool, String)> {
    let (client, rest) = line.split_once('[')?.1.split_once("] ")?;
    let from_script = client.split_whitespace().nth(1) == Some("lua");
    let command = rest.strip_prefix('"')?.split('"').next()?;
    Some((from_script, command.to_ascii_lowercase()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tells_scripts_from_clients() {
        let callers = Callers::from_lines(&[
            r#"+1796035318.871499 [0 127.0.0.1:59722] "EVALSHA" "1c68" "0" "/c1""#,
            r#"+1796035318.871569 [0 lua] "TIME""#,
            r#"+1796035318.872474 [0 lua] "PUBLISH" "{channel:/c1}:pubsub" "x""#,
            r#"+1796035318.872480 [0 unix:/tmp/redis.sock] "publish" "c" "x""#,
            "+OK",
        ]);
        assert_eq!(callers.caller("evalsha"), Caller::Client);
        assert_eq!(callers.caller("time"), Caller::Script);
        assert_eq!(callers.caller("publish"), Caller::Both);
        assert_eq!(callers.caller("xadd"), Caller::Unseen);
    }

    #[tokio::test]
    async fn a_real_redis_tells_what_scripts_run() {
        let (_redis, url) = crate::server::start_redis().await.expect("redis-server");
        let mut node = crate::redis_info::RedisNode::connect(&url)
            .await
            .expect("connected");
        let monitor = Monitor::start(&node.address).await.expect("MONITOR");
        let mut script = redis::cmd("EVAL");
        script
            .arg("return redis.call('INCR', KEYS[1])")
            .arg(1)
            .arg("k");
        assert_eq!(node.query::<i64>(&script).await, Ok(1));
        node.query::<()>(redis::cmd("SET").arg("j").arg("1"))
            .await
            .expect("SET");
        // The feed arrives after the answers.
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        let callers = monitor.stop().await;
        assert_eq!(callers.caller("eval"), Caller::Client);
        assert_eq!(callers.caller("incr"), Caller::Script);
        assert_eq!(callers.caller("set"), Caller::Client);
        let stats = node.command_stats().await.expect("INFO commandstats");
        let incr = stats.iter().find(|stat| stat.name == "incr").expect("incr");
        assert_eq!(incr.calls, 1);
        assert!(stats.iter().all(|stat| stat.name != "info"), "{stats:?}");
    }
}
