//! Test harness: real Redis, Postfix and Dovecot on free 127.0.0.1 ports, and the real
//! coldsend binaries, each stopped when its guard drops (also when a test panics).
//!
//! Postfix + Dovecot come from `tests/harness/start.sh` (a self-contained config with
//! a CA and server certificate made at start). Binaries are taken from the cargo
//! target directory: `scripts/test.sh` builds them before running the tests.

use std::collections::HashMap;
use std::fs::File;
use std::io::Read as _;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub mod fixtures;

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().map(Path::to_path_buf).unwrap_or_default()
}

/// A port nothing listens on right now, below the kernel's ephemeral range (32768+): a
/// port the kernel hands out (`bind :0`) can become the local port of some outgoing
/// connection before the process it was chosen for binds it (seen in CI: a worker's health
/// port). The mail harness picks its ports from 20000-31999; these come from 10000-19999.
pub fn free_port() -> u16 {
    use std::hash::{BuildHasher, Hasher};
    for _ in 0..1000 {
        let random = std::collections::hash_map::RandomState::new().build_hasher().finish();
        let port = 10_000 + (random % 10_000) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port in 10000-19999 on 127.0.0.1")
}

/// Path of a workspace binary built by `cargo build --workspace --bins` (or, with
/// `COLDSEND_PROFILE=release`, `--release`).
pub fn bin(name: &str) -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| repo_root().join("target"));
    let profile = std::env::var("COLDSEND_PROFILE").unwrap_or_else(|_| "debug".into());
    let path = target.join(profile).join(name);
    assert!(
        path.exists(),
        "{} is missing: run `cargo build --workspace --bins` first (scripts/test.sh does)",
        path.display()
    );
    path
}

fn wait_until(what: &str, timeout: Duration, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !ready() {
        assert!(Instant::now() < deadline, "{what} not ready within {timeout:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A throw-away redis-server with its own port and directory.
pub struct Redis {
    child: Option<Child>,
    pub port: u16,
    dir: tempfile::TempDir,
    /// Keep data across `kill` + `restart` (an append-only file, fsync'd on every write).
    persistent: bool,
}

impl Redis {
    pub fn start() -> Self {
        Self::start_with(false)
    }

    /// A Redis whose data survives a crash (`kill`) and `restart`, as a production one would.
    pub fn start_persistent() -> Self {
        Self::start_with(true)
    }

    fn start_with(persistent: bool) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let port = free_port();
        let mut redis = Self { child: None, port, dir, persistent };
        redis.spawn();
        redis
    }

    /// Every value of every key, whatever its type (queues, streams and job data included),
    /// must not contain `needle`.
    pub fn assert_nowhere(&self, needle: &str) {
        let mut conn = self.connection();
        let keys: Vec<String> = redis::cmd("KEYS").arg("*").query(&mut conn).expect("keys");
        for key in keys {
            let kind: String = redis::cmd("TYPE").arg(&key).query(&mut conn).expect("type");
            let dump: Vec<Vec<u8>> = match kind.as_str() {
                "string" => vec![redis::cmd("GET").arg(&key).query(&mut conn).expect("get")],
                "hash" => redis::cmd("HGETALL").arg(&key).query(&mut conn).expect("hgetall"),
                "list" => redis::cmd("LRANGE").arg(&key).arg(0).arg(-1).query(&mut conn).expect("lrange"),
                "set" => redis::cmd("SMEMBERS").arg(&key).query(&mut conn).expect("smembers"),
                "zset" => redis::cmd("ZRANGE").arg(&key).arg(0).arg(-1).query(&mut conn).expect("zrange"),
                "stream" => {
                    let v: redis::Value =
                        redis::cmd("XRANGE").arg(&key).arg("-").arg("+").query(&mut conn).expect("xrange");
                    vec![format!("{v:?}").into_bytes()]
                }
                "none" => continue,
                other => panic!("unexpected key type {other} for {key}"),
            };
            for value in dump {
                let text = String::from_utf8_lossy(&value);
                assert!(!text.contains(needle), "'{needle}' found in Redis key {key}: {text}");
            }
        }
    }

    /// Drops every client connection (what a proxy restart or a network blip does).
    pub fn kill_clients(&self) {
        let mut conn = self.connection();
        let _: redis::Value =
            redis::cmd("CLIENT").arg("KILL").arg("TYPE").arg("normal").query(&mut conn).expect("client kill");
    }

    /// Stalls the whole server for `secs` (DEBUG SLEEP): every client waits, none is dropped.
    pub fn stall(&self, secs: f64) {
        let mut conn = self.connection();
        let _: redis::Value = redis::cmd("DEBUG").arg("SLEEP").arg(secs).query(&mut conn).expect("debug sleep");
    }

    fn spawn(&mut self) {
        let log = File::create(self.dir.path().join("redis.log")).expect("redis log");
        let child = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &self.port.to_string(), "--save", ""])
            // DEBUG SLEEP stalls the server for [`Redis::stall`].
            .args(["--enable-debug-command", "local"])
            .args(if self.persistent {
                ["--appendonly", "yes", "--appendfsync", "always"]
            } else {
                ["--appendonly", "no", "--appendfsync", "everysec"]
            })
            .arg("--dir")
            .arg(self.dir.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("redis-server (install it: scripts/test.sh does)");
        self.child = Some(child);
        let url = self.url();
        wait_until("redis", Duration::from_secs(10), || {
            redis::Client::open(url.as_str())
                .and_then(|c| c.get_connection())
                .and_then(|mut c| redis::cmd("PING").query::<String>(&mut c))
                .is_ok()
        });
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub fn connection(&self) -> redis::Connection {
        redis::Client::open(self.url()).and_then(|c| c.get_connection()).expect("redis connection")
    }

    /// Kills the server (like a crash); `restart` brings it back on the same port.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A Postfix + Dovecot pair from `tests/harness/start.sh`.
pub struct Mail {
    dir: PathBuf,
    env: HashMap<String, String>,
}

impl Mail {
    /// Users as "name:password[:profile] ..." at example.test.
    pub fn start(users: &str) -> Self {
        Self::start_with(users, &[])
    }

    /// With harness settings, e.g. `("MH_OAUTH_ACCESS_TTL", "5")` (tests/harness/start.sh).
    pub fn start_with(users: &str, settings: &[(&str, &str)]) -> Self {
        // A randomly chosen port can be taken between the choice and the bind: retry.
        let mut last_error = String::new();
        for _ in 0..3 {
            let dir = tempfile::Builder::new().prefix("coldsend-mail-").tempdir().expect("tempdir").keep();
            let out = Command::new("bash")
                .arg(repo_root().join("tests/harness/start.sh"))
                .arg(&dir)
                .env("MH_USERS", users)
                .envs(settings.iter().copied())
                .stdin(Stdio::null())
                .output()
                .expect("run tests/harness/start.sh");
            let mail = Self { dir, env: HashMap::new() };
            if out.status.success() {
                return mail.with_env();
            }
            last_error = String::from_utf8_lossy(&out.stderr).into_owned();
            drop(mail); // stops whatever did start
        }
        panic!("mail harness failed to start: {last_error}");
    }

    fn with_env(mut self) -> Self {
        let env = std::fs::read_to_string(self.dir.join("env")).expect("harness env file");
        self.env = env
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.trim_matches('\'').to_owned()))
            .collect();
        self
    }

    fn port(&self, key: &str) -> u16 {
        self.env.get(key).and_then(|p| p.parse().ok()).unwrap_or_else(|| panic!("{key} missing from harness env"))
    }

    /// Dovecot's master process (its CPU includes that of the children it reaped).
    pub fn dovecot_pid(&self) -> Option<u32> {
        std::fs::read_to_string(self.dir.join("run/dovecot/master.pid")).ok()?.trim().parse().ok()
    }

    /// 25-style: no AUTH, local delivery (for test mail from "outside").
    pub fn smtp_port(&self) -> u16 {
        self.port("MH_SMTP_PORT")
    }
    pub fn submission_port(&self) -> u16 {
        self.port("MH_SUBMISSION_PORT")
    }
    pub fn smtps_port(&self) -> u16 {
        self.port("MH_SMTPS_PORT")
    }
    pub fn imap_port(&self) -> u16 {
        self.port("MH_IMAP_PORT")
    }
    pub fn imaps_port(&self) -> u16 {
        self.port("MH_IMAPS_PORT")
    }
    pub fn ca_cert(&self) -> PathBuf {
        self.dir.join("tls/ca.pem")
    }

    /// Every message delivered to `user`'s INBOX (Maildir new + cur), as text.
    pub fn messages(&self, user: &str) -> Vec<String> {
        let base = self.dir.join("mail").join(self.domain()).join(user).join("Maildir");
        let mut out = Vec::new();
        for sub in ["new", "cur"] {
            if let Ok(entries) = std::fs::read_dir(base.join(sub)) {
                for e in entries.flatten() {
                    if let Ok(text) = std::fs::read(e.path()) {
                        out.push(String::from_utf8_lossy(&text).into_owned());
                    }
                }
            }
        }
        out
    }

    /// Messages in one of `user`'s folders other than INBOX (Maildir++ `.Name`).
    pub fn folder_messages(&self, user: &str, folder: &str) -> Vec<String> {
        let base = self.dir.join("mail").join(self.domain()).join(user).join("Maildir").join(format!(".{folder}"));
        ["new", "cur"]
            .iter()
            .filter_map(|sub| std::fs::read_dir(base.join(sub)).ok())
            .flat_map(|entries| entries.flatten())
            .filter_map(|e| std::fs::read(e.path()).ok())
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .collect()
    }

    /// A value the harness printed (`MH_OAUTH_TOKEN_URL`, …).
    pub fn setting(&self, name: &str) -> String {
        self.env.get(name).cloned().unwrap_or_else(|| panic!("the harness printed no {name}"))
    }

    /// Runs tests/harness/oauth_client.py (`login EMAIL PASSWORD`, `refresh RT`, `revoke RT`)
    /// against the harness's authorization server; returns its JSON answer.
    pub fn oauth(&self, args: &[&str]) -> serde_json::Value {
        let out = Command::new("python3")
            .arg(repo_root().join("tests/harness/oauth_client.py"))
            .args(args)
            .envs(self.env.iter().filter(|(k, _)| k.starts_with("MH_OAUTH_")))
            .stdin(Stdio::null())
            .output()
            .expect("run oauth_client.py");
        let text = String::from_utf8_lossy(&out.stdout);
        serde_json::from_str(&text)
            .unwrap_or_else(|_| panic!("oauth_client.py {args:?}: {text} {}", String::from_utf8_lossy(&out.stderr)))
    }

    /// Signs `email` in at the authorization server (the real code flow with PKCE, consent
    /// scripted) and returns the refresh token.
    pub fn refresh_token(&self, email: &str, password: &str) -> String {
        let tokens = self.oauth(&["login", email, password]);
        tokens["refresh_token"].as_str().unwrap_or_else(|| panic!("no refresh token: {tokens}")).to_owned()
    }

    /// How many tokens the authorization server issued for `grant_type` (e.g. `refresh_token`).
    pub fn tokens_issued(&self, grant_type: &str) -> usize {
        let log = std::fs::read_to_string(self.dir.join("log/oauth-as.log")).unwrap_or_default();
        log.lines().filter(|l| *l == format!("grant.success {grant_type}")).count()
    }

    /// Lines of Postfix's log containing `needle` (for failure messages).
    pub fn log_tail(&self, needle: &str) -> String {
        let log = std::fs::read_to_string(self.dir.join("log/postfix.log")).unwrap_or_default();
        log.lines().filter(|l| l.contains(needle)).take(500).collect::<Vec<_>>().join("\n")
    }

    /// Lines of Dovecot's log containing `needle`.
    pub fn dovecot_log_count(&self, needle: &str) -> usize {
        self.dovecot_log_lines(needle).len()
    }

    /// The lines of Dovecot's log containing `needle`.
    pub fn dovecot_log_lines(&self, needle: &str) -> Vec<String> {
        let log = std::fs::read_to_string(self.dir.join("log/dovecot.log")).unwrap_or_default();
        log.lines().filter(|l| l.contains(needle)).map(str::to_owned).collect()
    }

    /// Changes `user`'s password (Dovecot re-reads its users file when it changes).
    pub fn set_password(&self, user: &str, password: &str) {
        let path = self.dir.join("etc/dovecot/users");
        let text = std::fs::read_to_string(&path).expect("users file");
        let login = format!("{user}@{}:", self.domain());
        let changed: Vec<String> = text
            .lines()
            .map(|l| match l.strip_prefix(&login).and_then(|r| r.split_once("::")) {
                Some((_, rest)) => format!("{login}{{PLAIN}}{password}::{rest}"),
                None => l.to_owned(),
            })
            .collect();
        std::fs::write(&path, changed.join("\n") + "\n").expect("write users file");
        let _ = self.doveadm(&["auth", "cache", "flush"], None);
    }

    /// `user`'s Maildir.
    pub fn maildir(&self, user: &str) -> PathBuf {
        self.dir.join("mail").join(self.domain()).join(user).join("Maildir")
    }

    /// Runs doveadm against this Dovecot; stdin from `input`. Panics on failure.
    pub fn doveadm(&self, args: &[&str], input: Option<&[u8]>) -> String {
        use std::io::Write;
        let mut child = Command::new("doveadm")
            .arg("-c")
            .arg(self.dir.join("etc/dovecot/dovecot.conf"))
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("doveadm");
        if let Some(mut stdin) = child.stdin.take() {
            let _ = stdin.write_all(input.unwrap_or_default());
        }
        let out = child.wait_with_output().expect("doveadm");
        assert!(out.status.success(), "doveadm {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The pids of `user`'s IMAP processes (one per logged-in session), from Dovecot's
    /// own connection list.
    pub fn imap_pids(&self, user: &str) -> Vec<u32> {
        let login = format!("{user}@{}", self.domain());
        let out = self.doveadm(&["who", "-1"], None);
        out.lines()
            .map(|l| l.split_whitespace().collect::<Vec<_>>())
            .filter(|f| f.len() >= 3 && (f[0] == user || f[0] == login) && f[1] == "imap")
            .filter_map(|f| f[2].parse().ok())
            .collect()
    }

    /// How many IMAP sessions are logged in, all users.
    pub fn imap_session_count(&self) -> usize {
        let out = self.doveadm(&["who", "-1"], None);
        out.lines().filter(|l| l.split_whitespace().nth(1) == Some("imap")).count()
    }

    /// Flags of every message in `user`'s INBOX (the Maildir `:2,FLAGS` suffixes), sorted.
    pub fn inbox_flags(&self, user: &str) -> Vec<String> {
        let base = self.dir.join("mail").join(self.domain()).join(user).join("Maildir");
        let mut flags: Vec<String> = ["new", "cur"]
            .iter()
            .filter_map(|sub| std::fs::read_dir(base.join(sub)).ok())
            .flat_map(|e| e.flatten())
            .map(|e| e.file_name().to_string_lossy().split_once(":2,").map(|(_, f)| f.to_owned()).unwrap_or_default())
            .collect();
        flags.sort();
        flags
    }

    pub fn domain(&self) -> String {
        self.env.get("MH_DOMAIN").cloned().unwrap_or_else(|| "example.test".into())
    }

    /// Makes Postfix answer `reply` (e.g. "450 4.2.0 try later") to RCPT TO:<address>
    /// on the submission ports; `None` lifts the rule.
    pub fn set_recipient_rule(&self, address: &str, reply: Option<&str>) {
        let table = self.dir.join("etc/postfix/recipient_access");
        let mut lines: Vec<String> = std::fs::read_to_string(&table)
            .unwrap_or_default()
            .lines()
            .filter(|l| !l.starts_with(&format!("{address} ")))
            .map(str::to_owned)
            .collect();
        if let Some(r) = reply {
            lines.push(format!("{address} {r}"));
        }
        std::fs::write(&table, lines.join("\n") + "\n").expect("write access table");
        let out = Command::new("postfix")
            .arg("-c")
            .arg(self.dir.join("etc/postfix"))
            .arg("reload")
            .stdin(Stdio::null())
            .output()
            .expect("postfix reload");
        assert!(out.status.success(), "postfix reload: {}", String::from_utf8_lossy(&out.stderr));
        // smtpd processes restart on their next connection.
        std::thread::sleep(Duration::from_millis(300));
    }
}

impl Drop for Mail {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(repo_root().join("tests/harness/stop.sh"))
            .arg(&self.dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .output();
    }
}

/// A running coldsend binary whose stdout and stderr go to a log file.
pub struct Proc {
    child: Child,
    /// The port of its /healthz, /readyz and /metrics.
    pub health_port: u16,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Proc {
    /// Spawns a binary with its own health port (so several can run side by side).
    pub fn spawn(name: &str, args: &[&str], env: &[(String, String)]) -> Self {
        let health_port = free_port();
        let var = if name == "coldsend" { "COLDSEND_API__HEALTH_LISTEN" } else { "COLDSEND_WORKER__HEALTH_LISTEN" };
        let mut env = env.to_vec();
        env.push((var.into(), format!("127.0.0.1:{health_port}")));
        let dir = tempfile::tempdir().expect("tempdir");
        let log = dir.path().join(format!("{name}.log"));
        let file = File::create(&log).expect("log file");
        let child = Command::new(bin(name))
            .args(args)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .envs(env.iter().map(|(k, v)| (k, v)))
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(file.try_clone().expect("log"))
            .stderr(file)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {name}: {e}"));
        Self { child, health_port, log, _dir: dir }
    }

    /// GET a path on its health port: (status, body); (0, "") if it does not answer.
    pub fn health_get(&self, path: &str) -> (u16, String) {
        use std::io::{Read, Write};
        let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", self.health_port)) else {
            return (0, String::new());
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
        let _ = write!(s, "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        let status = out.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
        let body = out.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default();
        (status, body)
    }

    /// Kills the process with SIGKILL (a crash: no handler runs) and reaps it.
    pub fn kill9(&mut self) {
        let _ = Command::new("kill").arg("-9").arg(self.child.id().to_string()).status();
        let _ = self.child.wait();
    }

    /// Sends SIGTERM.
    pub fn terminate(&self) {
        let _ = Command::new("kill").arg("-TERM").arg(self.child.id().to_string()).status();
    }

    /// Waits for the process to exit; its exit code, or None on timeout.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<i32> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status.code().unwrap_or(-1));
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn log_text(&self) -> String {
        let mut s = String::new();
        let _ = File::open(&self.log).and_then(|mut f| f.read_to_string(&mut s));
        s
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // A failing test shows what the process said last (its log goes with its tempdir).
        if std::thread::panicking() {
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            // Logs run at trace level (see `coldsend_env`): the tail of what is INFO and above.
            let quiet = |l: &&str| !l.contains("\"level\":\"TRACE\"") && !l.contains("\"level\":\"DEBUG\"");
            let lines: Vec<&str> = log.lines().filter(quiet).collect();
            let tail = &lines[lines.len().saturating_sub(PANIC_LOG_LINES)..];
            eprintln!("--- last {} lines of {} ---\n{}", tail.len(), self.log.display(), tail.join("\n"));
        }
    }
}

/// How much of each process's log a failing test prints.
const PANIC_LOG_LINES: usize = 150;

/// Runs a coldsend binary to completion; returns (success, stdout, stderr).
pub fn run(name: &str, args: &[&str], env: &[(String, String)]) -> (bool, String, String) {
    let out = Command::new(bin(name))
        .args(args)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("run {name}: {e}"));
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

pub const API_KEY: &str = "cs_test_key_0123456789abcdef";
/// 32 bytes as hex, used only by tests.
pub const ENCRYPTION_KEY: &str = "4f2c8a1be7d3960e5c1f7a2b8d4e6f0a1b3c5d7e9f0a2b4c6d8e0f1a3b5c7d9e";

/// The environment every coldsend process of one test shares.
pub fn coldsend_env(redis: &Redis, mail: Option<&Mail>, api_port: u16) -> Vec<(String, String)> {
    let hash = coldsend_core_key_hash(API_KEY);
    let mut env = vec![
        ("COLDSEND_REDIS__URL".into(), redis.url()),
        ("COLDSEND_REDIS__KEY_PREFIX".into(), "cstest".into()),
        ("COLDSEND_API__LISTEN".into(), format!("127.0.0.1:{api_port}")),
        ("COLDSEND_API__KEY_HASHES".into(), format!("[\"{hash}\"]")),
        ("COLDSEND_ENCRYPTION_KEY".into(), ENCRYPTION_KEY.into()),
        ("COLDSEND_VALIDATION__TIMEOUT_SECS".into(), "10".into()),
        ("COLDSEND_LOG__FORMAT".into(), "json".into()),
        // Most verbose logging, so a secret that reaches any log line is caught.
        ("RUST_LOG".into(), "trace".into()),
    ];
    if let Some(mail) = mail {
        env.push(("COLDSEND_VALIDATION__EXTRA_CA_FILES".into(), format!("[\"{}\"]", mail.ca_cert().display())));
    }
    env
}

fn coldsend_core_key_hash(key: &str) -> String {
    let out = Command::new(bin("coldsend")).args(["keys", "hash", key]).output().expect("coldsend keys hash");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// The API and workers on one Redis, talking to a real mail server.
pub struct Stack {
    pub redis: Redis,
    pub api: Proc,
    pub workers: Vec<Proc>,
    pub base_url: String,
    pub env: Vec<(String, String)>,
}

/// Settings for fast campaign tests: no gap, quick retries, a short stale-send sweep.
pub const FAST_SENDING: [(&str, &str); 8] = [
    ("COLDSEND_SENDING__MIN_GAP_SECS", "0"),
    ("COLDSEND_SENDING__JITTER_SECS", "0"),
    ("COLDSEND_SENDING__SMTP_TIMEOUT_SECS", "10"),
    ("COLDSEND_SENDING__STALE_SEND_SECS", "20"),
    ("COLDSEND_SENDING__IDLE_POLL_SECS", "1"),
    ("COLDSEND_SENDING__RETRY_BASE_SECS", "1"),
    ("COLDSEND_SENDING__PUBLIC_BASE_URL", "https://coldsend.example.test"),
    // As fast as the gap allows (the default spreads a day's sends over the window).
    ("COLDSEND_SENDING__PACING", "fast"),
];

impl Stack {
    pub fn start(mail: Option<&Mail>) -> Self {
        Self::start_with(mail, &[], 1)
    }

    /// The API and `workers` worker processes, with extra environment settings.
    pub fn start_with(mail: Option<&Mail>, extra: &[(&str, &str)], workers: usize) -> Self {
        Self::start_on(Redis::start(), mail, extra, workers)
    }

    /// The same on a given Redis (e.g. [`Redis::start_persistent`] for crash drills).
    pub fn start_on(redis: Redis, mail: Option<&Mail>, extra: &[(&str, &str)], workers: usize) -> Self {
        let api_port = free_port();
        let mut env = coldsend_env(&redis, mail, api_port);
        env.extend(extra.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
        let api = Proc::spawn("coldsend", &["serve"], &env);
        let workers = (0..workers).map(|_| Proc::spawn("coldsend-worker", &[], &env)).collect();
        let base_url = format!("http://127.0.0.1:{api_port}");
        wait_until("coldsend serve", Duration::from_secs(20), || {
            std::net::TcpStream::connect(("127.0.0.1", api_port)).is_ok()
        });
        Self { redis, api, workers, base_url, env }
    }

    pub fn add_worker(&mut self) {
        self.workers.push(Proc::spawn("coldsend-worker", &[], &self.env));
    }

    pub fn logs(&self) -> String {
        let mut all = self.api.log_text();
        for w in &self.workers {
            all.push('\n');
            all.push_str(&w.log_text());
        }
        all
    }
}

/// A client of the HTTP API with the test key.
pub struct Api {
    pub http: reqwest::Client,
    pub base: String,
    /// The stack's process logs, quoted when a wait times out.
    logs: Vec<PathBuf>,
}

impl Api {
    pub fn new(stack: &Stack) -> Self {
        let logs = std::iter::once(&stack.api).chain(&stack.workers).map(|p| p.log.clone()).collect();
        Self { http: reqwest::Client::new(), base: format!("{}/api/public/v1", stack.base_url), logs }
    }

    /// The last warnings and errors the stack's processes logged (for failure messages).
    pub fn trouble(&self) -> String {
        let mut lines = Vec::new();
        for path in &self.logs {
            let text = std::fs::read_to_string(path).unwrap_or_default();
            lines.extend(
                text.lines()
                    .filter(|l| l.contains("\"level\":\"WARN\"") || l.contains("\"level\":\"ERROR\""))
                    .map(str::to_owned),
            );
        }
        let skip = lines.len().saturating_sub(40);
        lines[skip..].join("\n")
    }

    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> (reqwest::StatusCode, serde_json::Value) {
        let mut req = self.http.request(method, format!("{}{path}", self.base)).header("X-API-Key", API_KEY);
        if let Some(b) = body {
            req = req.json(b);
        }
        let resp = req.send().await.expect("request");
        let status = resp.status();
        let text = resp.text().await.expect("body");
        (status, serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text)))
    }

    pub async fn create(&self, body: &serde_json::Value) -> (reqwest::StatusCode, serde_json::Value) {
        self.call(reqwest::Method::POST, "/sender-accounts", Some(body)).await
    }

    pub async fn get(&self, path: &str) -> (reqwest::StatusCode, serde_json::Value) {
        self.call(reqwest::Method::GET, path, None).await
    }

    /// Registers `body`, waits until the account is ACTIVE, and turns warm-up and Sent
    /// copies off (tests set caps through daily_limit); returns its id.
    pub async fn active_account(&self, body: &serde_json::Value) -> String {
        let (status, created) = self.create(body).await;
        assert_eq!(status, 201, "{created}");
        let id = created["id"].as_str().expect("id").to_owned();
        let settled = self.settled(&id).await;
        assert_eq!(settled["status"], "ACTIVE", "{settled}");
        let sending = serde_json::json!({"timezone": "UTC", "warmup": false, "append_to_sent": false});
        let (status, s) =
            self.call(reqwest::Method::PUT, &format!("/sender-accounts/{id}/sending"), Some(&sending)).await;
        assert_eq!(status, 200, "{s}");
        id
    }

    /// Sets the account up as Google Workspace and Microsoft 365 accounts are: its Sent
    /// folder the server's own record of what it accepted (no Sent copy by coldsend), so
    /// an UNCERTAIN send missing there is sent again and claims are taken in phase `data`.
    pub async fn trust_sent_folder(&self, account: &str) {
        let sending = serde_json::json!({"timezone": "UTC", "warmup": false, "append_to_sent": false,
                                         "sent_folder_authoritative": true});
        let (status, s) =
            self.call(reqwest::Method::PUT, &format!("/sender-accounts/{account}/sending"), Some(&sending)).await;
        assert_eq!(status, 200, "{s}");
    }

    /// A one-step campaign ("Hi" / "Hello") from `account` to `leads`, started; returns its id.
    pub async fn start_campaign(&self, name: &str, account: &str, leads: &[&str]) -> String {
        use serde_json::json;
        let body =
            json!({"name": name, "sender_account_ids": [account], "steps": [{"subject": "Hi", "text": "Hello"}]});
        let (status, c) = self.call(reqwest::Method::POST, "/campaigns", Some(&body)).await;
        assert_eq!(status, 201, "{c}");
        let cid = c["id"].as_str().expect("id").to_owned();
        let leads: Vec<serde_json::Value> = leads.iter().map(|email| json!({"email": email})).collect();
        let path = format!("/campaigns/{cid}/leads");
        let (status, added) = self.call(reqwest::Method::POST, &path, Some(&json!({"leads": leads}))).await;
        assert!(status.is_success(), "{added}");
        let (status, started) = self.call(reqwest::Method::POST, &format!("/campaigns/{cid}/start"), None).await;
        assert_eq!(status, 200, "{started}");
        cid
    }

    /// Polls until the account leaves PENDING_VALIDATION.
    pub async fn settled(&self, id: &str) -> serde_json::Value {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let (status, body) = self.get(&format!("/sender-accounts/{id}")).await;
            assert_eq!(status, reqwest::StatusCode::OK, "{body}");
            if body["status"] != "PENDING_VALIDATION" {
                return body;
            }
            assert!(Instant::now() < deadline, "still pending: {body}\nwarnings and errors:\n{}", self.trouble());
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// The registration body of a CUSTOM_SMTP account `user@example.test` (password for
/// SMTP and IMAP alike) on 127.0.0.1.
pub fn account_json(
    user: &str,
    password: &str,
    smtp_port: u16,
    smtp_tls: bool,
    imap_port: u16,
    daily_limit: u32,
) -> serde_json::Value {
    serde_json::json!({
        "email_address": format!("{user}@example.test"), "display_name": format!("{user} at Example"),
        "inbox_type": "CUSTOM_SMTP", "daily_limit": daily_limit,
        "smtp_host": "127.0.0.1", "smtp_port": smtp_port, "smtp_username": format!("{user}@example.test"),
        "smtp_password": password, "smtp_use_tls": smtp_tls,
        "imap_host": "127.0.0.1", "imap_port": imap_port, "imap_username": format!("{user}@example.test"),
        "imap_password": password, "imap_use_ssl": true
    })
}
