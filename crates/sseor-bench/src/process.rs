//! The processes the bench starts (servers, Redis, `client` processes): started in a group
//! of their own, stopped with everything they started in turn, and measured through
//! `/proc`.

use std::process::Stdio;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use nix::sched::{CpuSet, sched_getaffinity, sched_setaffinity};
use nix::unistd::Pid;

use tokio::process::{Child, Command};

/// A process started by the bench, with every process it starts in turn: stopped (SIGTERM,
/// then SIGKILL after 3 s) when dropped, whatever the reason of the drop (end, error,
/// Ctrl-C).
pub(crate) struct Process {
    child: Child,
    pid: u32,
}

/// The CPUs started processes run on; every CPU when unset or empty.
static STARTED_ON: OnceLock<Option<CpuSet>> = OnceLock::new();

/// Runs every process started from now on only on `cpus` (none: anywhere).
pub(crate) fn pin_started_processes(cpus: &[usize]) -> Result<(), String> {
    if cpus.is_empty() {
        return Ok(());
    }
    let mut set = CpuSet::new();
    for &cpu in cpus {
        set.set(cpu)
            .map_err(|_| format!("--server-cpus: there is no CPU {cpu}"))?;
    }
    let _ = STARTED_ON.set(Some(set));
    Ok(())
}

/// Runs the calling thread on the CPUs of [`pin_started_processes`], when set: for work
/// the bench does in threads of its own in a server's stead.
pub(crate) fn pin_this_thread() -> Result<(), String> {
    match STARTED_ON.get() {
        Some(Some(set)) => sched_setaffinity(Pid::from_raw(0), set).map_err(|e| e.to_string()),
        _ => Ok(()),
    }
}

impl Process {
    /// Starts `command` as the leader of a new process group, on the CPUs of
    /// [`pin_started_processes`].
    pub(crate) fn spawn(command: &mut Command, what: &str) -> Result<Self, String> {
        // A child starts on its parent thread's CPUs: this thread moves to the servers'
        // CPUs while it starts one, then back.
        let pinned = match STARTED_ON.get() {
            Some(Some(set)) => {
                let own = sched_getaffinity(Pid::from_raw(0)).map_err(|e| e.to_string())?;
                sched_setaffinity(Pid::from_raw(0), set)
                    .map_err(|e| format!("cannot run {what} on --server-cpus: {e}"))?;
                Some(own)
            }
            _ => None,
        };
        let spawned = Self::spawn_here(command, what);
        if let Some(own) = pinned {
            sched_setaffinity(Pid::from_raw(0), &own).map_err(|e| e.to_string())?;
        }
        spawned
    }

    fn spawn_here(command: &mut Command, what: &str) -> Result<Self, String> {
        let child = command
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("cannot start {what}: {e}"))?;
        let pid = child.id().ok_or_else(|| format!("{what} exited at once"))?;
        Ok(Self { child, pid })
    }

    /// The process id, also the id of its group.
    pub(crate) fn pid(&self) -> u32 {
        self.pid
    }

    /// The child handle, to take its pipes, kill it or wait for it.
    pub(crate) fn child(&mut self) -> &mut Child {
        &mut self.child
    }

    /// Resident memory of the process and all its live descendants, KiB.
    pub(crate) fn rss_kib(&self) -> u64 {
        family(self.pid).into_iter().map(rss_kib).sum()
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        // Pushpin's runner puts each of its processes in a group of its own and stops them
        // on SIGTERM; nginx's workers share the master's group.
        let mut left = family(self.pid);
        let signal = |name: &str, target: &str| {
            let _ = std::process::Command::new("kill")
                .args([name, "--", target])
                .stderr(Stdio::null())
                .status();
        };
        signal("-TERM", &format!("-{}", self.pid));
        let deadline = Instant::now() + Duration::from_secs(3);
        loop {
            let _ = self.child.try_wait();
            left.retain(|pid| alive(*pid));
            if left.is_empty() {
                return;
            }
            if Instant::now() >= deadline {
                for pid in &left {
                    signal("-KILL", &pid.to_string());
                }
                let _ = self.child.try_wait();
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// `pid`, the processes of its group and all their descendants, zombies left out.
fn family(pid: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    // (pid, parent, group) of every live process.
    let table: Vec<(u32, u32, u32)> = entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|p| {
            let stat = std::fs::read_to_string(format!("/proc/{p}/stat")).ok()?;
            // After "(comm)": state, ppid, pgrp.
            let mut fields = stat.rsplit_once(')')?.1.split_whitespace();
            let state = fields.next()?;
            let parent = fields.next()?.parse().ok()?;
            let group = fields.next()?.parse().ok()?;
            (state != "Z").then_some((p, parent, group))
        })
        .collect();
    let mut found: Vec<u32> = table
        .iter()
        .filter(|(p, _, group)| *p == pid || *group == pid)
        .map(|(p, _, _)| *p)
        .collect();
    let mut next = 0;
    while next < found.len() {
        let parent = found[next];
        for (p, _, _) in table.iter().filter(|(_, pp, _)| *pp == parent) {
            if !found.contains(p) {
                found.push(*p);
            }
        }
        next += 1;
    }
    found
}

/// Whether `pid` runs (exists and is not a zombie).
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| Some(stat.rsplit_once(')')?.1.split_whitespace().next()? != "Z"))
        .unwrap_or(false)
}

/// VmRSS of a process, KiB (0 when it is gone).
pub(crate) fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|line| line.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

/// User and system CPU time a process used so far, in seconds.
pub(crate) fn cpu_seconds(pid: u32) -> Result<f64, String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).map_err(|e| e.to_string())?;
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let field = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    // After the command name: state is field 0; utime and stime are fields 11 and 12, in
    // clock ticks, which Linux exposes at 100 per second (USER_HZ) whatever the kernel's HZ.
    Ok((field(11) + field(12)) as f64 / 100.0)
}
