//! Child processes of the stack: started in their own process group with output to a log file,
//! recorded by pid, stopped with SIGTERM (then SIGKILL after a grace period).

use std::{
    fs::File,
    net::{SocketAddr, TcpListener, TcpStream},
    os::unix::process::CommandExt,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

/// One started process.
#[derive(Debug, Clone)]
pub struct Proc {
    pub name: String,
    pub pid: u32,
    pub log: PathBuf,
}

impl Proc {
    pub fn to_json(&self) -> Value {
        json!({ "name": self.name, "pid": self.pid, "log": self.log })
    }

    pub fn from_json(v: &Value) -> Option<Proc> {
        Some(Proc {
            name: v["name"].as_str()?.to_owned(),
            pid: v["pid"].as_u64()? as u32,
            log: PathBuf::from(v["log"].as_str()?),
        })
    }
}

/// A port the OS says is free right now on loopback.
pub fn free_port() -> Result<u16> {
    let [port] = free_ports::<1>()?;
    Ok(port)
}

/// `n` distinct free ports: each is held until all are picked (a port just released may be
/// handed out again by the next bind).
pub fn free_ports<const N: usize>() -> Result<[u16; N]> {
    let listeners = (0..N)
        .map(|_| TcpListener::bind("127.0.0.1:0").context("find a free port"))
        .collect::<Result<Vec<_>>>()?;
    let mut ports = [0; N];
    for (port, listener) in ports.iter_mut().zip(&listeners) {
        *port = listener.local_addr()?.port();
    }
    Ok(ports)
}

pub fn port_in_use(port: u16) -> bool {
    TcpListener::bind(("127.0.0.1", port)).is_err()
}

/// Starts `command` with stdout/stderr appended to `logs/{name}.log`, and writes how it was
/// started to `logs/{name}.launch.json` (program, arguments, the variables it was given, working
/// directory), so that a test that kills it can start it again the same way (`xtask/tests/faults.rs`).
pub fn spawn(name: &str, command: &mut Command, logs: &Path) -> Result<Proc> {
    std::fs::create_dir_all(logs)?;
    let log = logs.join(format!("{name}.log"));
    std::fs::write(
        logs.join(format!("{name}.launch.json")),
        serde_json::to_vec_pretty(&launch(command))?,
    )?;
    let out = File::options().create(true).append(true).open(&log)?;
    let child = command
        .stdin(Stdio::null())
        .stdout(out.try_clone()?)
        .stderr(out)
        // Own process group: Ctrl-C in the terminal reaches xtask, which stops children in order.
        .process_group(0)
        .spawn()
        .with_context(|| format!("cannot start {name}: {command:?}"))?;
    Ok(Proc {
        name: name.to_owned(),
        pid: child.id(),
        log,
    })
}

/// How `command` starts: what [`spawn`] writes beside the log. The environment is the variables
/// set on the command (services are started with a cleared environment and everything they read
/// set; the backends inherit `PATH` and `HOME`).
fn launch(command: &Command) -> Value {
    let text = |s: &std::ffi::OsStr| s.to_string_lossy().into_owned();
    let env: serde_json::Map<String, Value> = command
        .get_envs()
        .filter_map(|(k, v)| Some((text(k), Value::String(text(v?)))))
        .collect();
    json!({
        "program": text(command.get_program()),
        "args": command.get_args().map(text).collect::<Vec<_>>(),
        "env": env,
        "cwd": command.get_current_dir().map(|d| d.display().to_string()),
    })
}

/// Alive and not a zombie.
pub fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(')')
            .map(|(_, rest)| !rest.trim_start().starts_with('Z'))
            .unwrap_or(false),
        Err(_) => false,
    }
}

fn signal(pid: u32, signal: &str) {
    let _ = Command::new("kill")
        .args([signal, &pid.to_string()])
        .stderr(Stdio::null())
        .status();
}

/// SIGTERM, wait up to `grace`, then SIGKILL. (An exited child of ours stays a zombie until xtask
/// exits; [`alive`] counts zombies as stopped.)
pub fn stop(proc: &Proc, grace: Duration) {
    if !alive(proc.pid) {
        return;
    }
    signal(proc.pid, "-TERM");
    let deadline = Instant::now() + grace;
    while alive(proc.pid) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    if alive(proc.pid) {
        eprintln!(
            "    {} did not stop within {grace:?}; killing it",
            proc.name
        );
        signal(proc.pid, "-KILL");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The last lines of a log, for error messages.
pub fn tail(log: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Waits until `port` accepts connections, failing early if the process died.
pub fn wait_for_port(proc: &Proc, port: u16, deadline: Duration) -> Result<()> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let until = Instant::now() + deadline;
    loop {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return Ok(());
        }
        if !alive(proc.pid) {
            bail!(
                "{} exited before listening on {port}; its log ends:\n{}",
                proc.name,
                tail(&proc.log, 20)
            );
        }
        if Instant::now() > until {
            bail!(
                "{} did not listen on {port} within {deadline:?}; its log ends:\n{}",
                proc.name,
                tail(&proc.log, 20)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
