//! What one Redis server says about the work it did: `INFO commandstats` (calls and
//! microseconds per command) and `INFO cpu` (its CPU time), read on a plain connection of
//! the bench's own. A cluster node answers these on a plain connection too: they name no
//! key.

use redis::aio::MultiplexedConnection;

/// A connection to one Redis server, for its statistics.
pub(crate) struct RedisNode {
    /// `127.0.0.1:PORT`.
    pub(crate) address: String,
    connection: MultiplexedConnection,
}

/// The bench's own commands, left out of what the servers under test cost.
const OWN_COMMANDS: [&str; 2] = ["info", "config|resetstat"];

impl RedisNode {
    /// Connects to the Redis at `url` (`redis://HOST:PORT[/DB]`).
    pub(crate) async fn connect(url: &str) -> Result<Self, String> {
        let client = redis::Client::open(url).map_err(|e| format!("{url}: {e}"))?;
        let connection = client
            .get_multiplexed_async_connection()
            .await
            .map_err(|e| format!("{url}: {e}"))?;
        let address = client.get_connection_info().addr().to_string();
        Ok(Self {
            address,
            connection,
        })
    }

    /// Runs `command` and returns its answer.
    pub(crate) async fn query<T: redis::FromRedisValue>(
        &mut self,
        command: &redis::Cmd,
    ) -> Result<T, String> {
        command
            .query_async(&mut self.connection)
            .await
            .map_err(|e| format!("Redis {}: {e}", self.address))
    }

    /// Zeroes the command statistics (`CONFIG RESETSTAT`): what follows is measured alone.
    pub(crate) async fn reset_stats(&mut self) -> Result<(), String> {
        self.query::<()>(redis::cmd("CONFIG").arg("RESETSTAT"))
            .await
    }

    /// A section of `INFO`.
    pub(crate) async fn info(&mut self, section: &str) -> Result<String, String> {
        self.query(redis::cmd("INFO").arg(section)).await
    }

    /// The CPU time the server used since it started (`used_cpu_sys` + `used_cpu_user`),
    /// in seconds.
    pub(crate) async fn cpu_seconds(&mut self) -> Result<f64, String> {
        let info = self.info("cpu").await?;
        let field = |key: &str| {
            info_field(&info, key)
                .and_then(|v| v.parse::<f64>().ok())
                .ok_or_else(|| format!("Redis {}: no {key} in INFO cpu", self.address))
        };
        Ok(field("used_cpu_sys")? + field("used_cpu_user")?)
    }

    /// The command statistics since the last reset, without the bench's own commands.
    pub(crate) async fn command_stats(&mut self) -> Result<Vec<CommandStat>, String> {
        let info = self.info("commandstats").await?;
        Ok(parse_command_stats(&info)
            .into_iter()
            .filter(|stat| !OWN_COMMANDS.contains(&stat.name.as_str()))
            .collect())
    }
}

/// One line of `INFO commandstats`.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct CommandStat {
    /// The command in lower case, `container|subcommand` for a subcommand.
    pub(crate) name: String,
    pub(crate) calls: u64,
    /// Microseconds spent executing it, all calls together. A command that a script or a
    /// function calls is counted on its own line too, and its time is in the script's.
    pub(crate) usec: u64,
}

impl CommandStat {
    /// The command without its subcommand: `config` for `config|resetstat`.
    pub(crate) fn command(&self) -> &str {
        self.name.split('|').next().unwrap_or(&self.name)
    }
}

/// The value of `key` in an `INFO` answer (`key:value` lines).
pub(crate) fn info_field<'a>(info: &'a str, key: &str) -> Option<&'a str> {
    info.lines()
        .find_map(|line| line.strip_prefix(key)?.strip_prefix(':'))
        .map(str::trim)
}

/// The lines of `INFO commandstats`:
/// `cmdstat_NAME:calls=N,usec=N,usec_per_call=X,rejected_calls=N,failed_calls=N`.
pub(crate) fn parse_command_stats(info: &str) -> Vec<CommandStat> {
    info.lines()
        .filter_map(|line| {
            let (name, fields) = line.trim().strip_prefix("cmdstat_")?.split_once(':')?;
            let field = |key: &str| {
                fields
                    .split(',')
                    .find_map(|pair| pair.strip_prefix(key)?.strip_prefix('='))
                    .and_then(|v| v.parse::<u64>().ok())
            };
            Some(CommandStat {
                name: name.to_ascii_lowercase(),
                calls: field("calls")?,
                usec: field("usec")?,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_command_stats() {
        let info = "# Commandstats\r\n\
            cmdstat_fcall:calls=8000,usec=96000,usec_per_call=12.00,rejected_calls=0,failed_calls=0\r\n\
            cmdstat_config|resetstat:calls=1,usec=44,usec_per_call=44.00,rejected_calls=0,failed_calls=0\r\n";
        let stats = parse_command_stats(info);
        assert_eq!(stats.len(), 2);
        assert_eq!(
            stats[0],
            CommandStat {
                name: "fcall".into(),
                calls: 8000,
                usec: 96000
            }
        );
        assert_eq!(stats[1].command(), "config");
    }

    #[test]
    fn reads_info_fields() {
        let info =
            "# CPU\r\nused_cpu_sys:1.25\r\nused_cpu_sys_children:0.5\r\nused_cpu_user:2.5\r\n";
        assert_eq!(info_field(info, "used_cpu_sys"), Some("1.25"));
        assert_eq!(info_field(info, "used_cpu_user"), Some("2.5"));
        assert_eq!(info_field(info, "used_cpu"), None);
    }
}
