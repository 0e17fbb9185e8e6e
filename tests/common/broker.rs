//! A real Kafka-protocol broker for integration tests: Tansu 0.6 run as a
//! child process on a free loopback port.
//!
//! * Binary: `$TANSU_BIN`, else `tansu` on `PATH`, else `$HOME/.cargo/bin/tansu`
//!   (install with `cargo install tansu --version 0.6.0 --features dynostore,libsql --locked`).
//! * Storage: `memory://` ([`Broker::start_memory`], or [`Broker::shared`] by the tests of one
//!   binary) or a SQLite file `<dir>/tansu.db` ([`Broker::start_sqlite`]) that survives
//!   [`Broker::restart`].
//! * Listener and advertised listener are both `tcp://127.0.0.1:PORT`.
//! * Ready = Tansu printed `ready in Nms` (after binding) and a TCP connect
//!   succeeds; bounded by `TANSU_START_TIMEOUT_SECS` (default 30).
//! * The broker's stdout/stderr go to a log file in a private temp dir
//!   ([`Broker::log_path`]); its tail is printed when startup fails. The temp
//!   dir is removed on drop unless the thread is panicking.
//! * Broker log level: `$TANSU_RUST_LOG` (default `warn`); the test's own
//!   `RUST_LOG` is not passed on.
//!
//! Tansu quirks handled here: the sqlite storage path is resolved relative to
//! the process's current directory (so we `cd` into `dir` and use
//! `sqlite://tansu.db`), and Tansu reads a `.env` file from its current
//! directory, so it never runs in the test's working directory.
#![allow(dead_code)]

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::free_port;

/// The command that installs the Tansu version these tests are written against.
pub const TANSU_INSTALL: &str =
    "cargo install tansu --version 0.6.0 --features dynostore,libsql --locked";

/// How long to wait for the broker to accept TCP connections
/// (override with `TANSU_START_TIMEOUT_SECS`).
const DEFAULT_START_TIMEOUT: Duration = Duration::from_secs(30);

/// Environment variables Tansu reads as defaults for its flags; removed so
/// the caller's environment cannot change the broker's configuration.
const TANSU_ENV: &[&str] = &[
    "CLUSTER_ID",
    "LISTENER_URL",
    "ADVERTISED_LISTENER_URL",
    "STORAGE_ENGINE",
    "SCHEMA_REGISTRY",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "DATA_LAKE",
    "RUST_LOG",
];

#[derive(Debug, Clone)]
enum Storage {
    Memory,
    /// Directory holding `tansu.db`; also the broker's working directory.
    Sqlite(PathBuf),
}

#[derive(Debug)]
enum StartError {
    AddrInUse,
    Exited(String),
    Timeout(SocketAddr, Duration),
}

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StartError::AddrInUse => write!(f, "tansu could not bind its port (AddrInUse)"),
            StartError::Exited(status) => write!(f, "tansu exited during startup with {status}"),
            StartError::Timeout(addr, t) => {
                write!(f, "tansu did not become ready on {addr} within {t:?}")
            }
        }
    }
}

/// What a broker may do besides the defaults: advertise another address (a TLS terminator's
/// port in front of it), and require SASL (`--authentication`).
#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    /// The port clients are told to connect to, instead of the broker's own.
    pub advertised_port: Option<u16>,
    /// Whether clients must authenticate with SCRAM (users made by `tansu user create`, kept
    /// only by `sqlite://` storage).
    pub authentication: bool,
}

/// A running (or stopped) Tansu broker. Killed on drop.
#[derive(Debug)]
pub struct Broker {
    bin: PathBuf,
    child: Option<Child>,
    port: u16,
    storage: Storage,
    /// How it differs from a plain broker.
    options: Options,
    /// Private temp dir: log file, and working directory for `memory://`.
    work_dir: PathBuf,
    log_path: PathBuf,
}

impl Broker {
    /// Starts Tansu with `memory://` storage on a free loopback port and waits
    /// until it accepts TCP connections.
    pub fn start_memory() -> Broker {
        Self::launch(Storage::Memory, Options::default())
    }

    /// Starts Tansu with `options`: on `memory://` storage, or on `sqlite://<dir>/tansu.db`
    /// (which brokers may share: users made through one are known to the others).
    pub fn start_with(sqlite: Option<&Path>, options: Options) -> Broker {
        let storage = match sqlite {
            Some(dir) => {
                fs::create_dir_all(dir).unwrap();
                Storage::Sqlite(dir.canonicalize().unwrap())
            }
            None => Storage::Memory,
        };
        Self::launch(storage, options)
    }

    /// The `memory://` broker the tests of this binary share while any of them holds it: the
    /// first caller starts it, the last one to drop its handle stops it (a static that held it
    /// for good would leave the process running after the tests), and a later caller starts
    /// another. Tests sharing it keep apart by their own topics ([`super::gateway::topics`]).
    pub fn shared() -> Arc<Broker> {
        static SHARED: Mutex<Weak<Broker>> = Mutex::new(Weak::new());
        let mut shared = SHARED.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(broker) = shared.upgrade() {
            return broker;
        }
        let broker = Arc::new(Broker::start_memory());
        *shared = Arc::downgrade(&broker);
        broker
    }

    /// Starts Tansu with `sqlite://<dir>/tansu.db` storage (survives
    /// [`Broker::restart`]); `dir` is created if missing.
    pub fn start_sqlite(dir: &Path) -> Broker {
        fs::create_dir_all(dir)
            .unwrap_or_else(|e| panic!("creating sqlite dir {}: {e}", dir.display()));
        let dir = dir
            .canonicalize()
            .unwrap_or_else(|e| panic!("canonicalizing {}: {e}", dir.display()));
        Self::launch(Storage::Sqlite(dir), Options::default())
    }

    /// `"127.0.0.1:PORT"`, for `bootstrap.servers`.
    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The file receiving the broker's stdout and stderr (appended across restarts).
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// The SQLite database file, for a `start_sqlite` broker.
    pub fn db_path(&self) -> Option<PathBuf> {
        match &self.storage {
            Storage::Memory => None,
            Storage::Sqlite(dir) => Some(dir.join("tansu.db")),
        }
    }

    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(child) => matches!(child.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// Kills the broker (SIGKILL) and waits for it to exit. Idempotent.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops the broker (if running) and starts it again on the same port with
    /// the same storage. Only meaningful for `start_sqlite`: a `memory://`
    /// broker comes back empty.
    pub fn restart(&mut self) {
        self.stop();
        self.note(&format!("restarting on port {}", self.port));
        if let Err(e) = self.spawn_and_wait() {
            self.fail(&e.to_string());
        }
    }

    fn launch(storage: Storage, options: Options) -> Broker {
        let bin = tansu_bin();
        let work_dir = unique_temp_dir();
        let log_path = work_dir.join("tansu.log");
        let mut broker = Broker {
            bin,
            child: None,
            port: free_port(),
            storage,
            options,
            work_dir,
            log_path,
        };
        // The port is free when chosen but could be taken before Tansu binds
        // it; then pick another one.
        let mut attempt = 1;
        loop {
            match broker.spawn_and_wait() {
                Ok(()) => return broker,
                Err(StartError::AddrInUse) if attempt < 3 => {
                    attempt += 1;
                    broker.port = free_port();
                    broker.note(&format!("port taken, retrying on {}", broker.port));
                }
                Err(e) => broker.fail(&e.to_string()),
            }
        }
    }

    fn spawn_and_wait(&mut self) -> Result<(), StartError> {
        let bin = self.bin.clone();
        let listener = format!("tcp://127.0.0.1:{}", self.port);
        let advertised = match self.options.advertised_port {
            Some(port) => format!("tcp://127.0.0.1:{port}"),
            None => listener.clone(),
        };
        let (storage_url, cwd) = match &self.storage {
            Storage::Memory => ("memory://tansu/".to_string(), self.work_dir.clone()),
            // Tansu resolves the sqlite path against its current directory.
            Storage::Sqlite(dir) => ("sqlite://tansu.db".to_string(), dir.clone()),
        };
        let mut args = vec![
            "broker".to_string(),
            "--cluster-id".to_string(),
            "inlet-test".to_string(),
            "--listener-url".to_string(),
            listener,
            "--advertised-listener-url".to_string(),
            advertised,
            "--storage-engine".to_string(),
            storage_url,
        ];
        if self.options.authentication {
            args.push("--authentication".to_string());
        }
        self.note(&format!(
            "cwd {}; exec {} {}",
            cwd.display(),
            bin.display(),
            args.join(" ")
        ));
        // Only log output written after this point belongs to this start.
        let log_offset = fs::metadata(&self.log_path).map(|m| m.len()).unwrap_or(0);

        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .unwrap_or_else(|e| panic!("opening {}: {e}", self.log_path.display()));
        let log_err = log
            .try_clone()
            .unwrap_or_else(|e| panic!("cloning log handle: {e}"));

        let mut cmd = Command::new(&bin);
        cmd.args(&args)
            .current_dir(&cwd)
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(log_err))
            .env("NO_COLOR", "1")
            .env(
                "RUST_LOG",
                std::env::var("TANSU_RUST_LOG").unwrap_or_else(|_| "warn".to_string()),
            );
        for var in TANSU_ENV.iter().filter(|v| **v != "RUST_LOG") {
            cmd.env_remove(var);
        }
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("spawning {}: {e}", bin.display()));
        self.child = Some(child);
        self.wait_ready(log_offset)?;
        if let Storage::Sqlite(dir) = &self.storage {
            index_headers(&dir.join("tansu.db"));
        }
        Ok(())
    }

    /// Ready = Tansu printed `ready in Nms` (it does so right after binding
    /// its listener) and a TCP connect succeeds. The log line guards against
    /// mistaking some other process on the port for the broker.
    fn wait_ready(&mut self, log_offset: u64) -> Result<(), StartError> {
        let timeout = std::env::var("TANSU_START_TIMEOUT_SECS")
            .ok()
            .and_then(|s| s.parse().ok())
            .map(Duration::from_secs)
            .unwrap_or(DEFAULT_START_TIMEOUT);
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        let started = Instant::now();
        loop {
            let log = log_since(&self.log_path, log_offset);
            if log.contains("AddrInUse") {
                // Tansu 0.6 logs the bind error and exits with status 0.
                self.stop();
                return Err(StartError::AddrInUse);
            }
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    self.child = None;
                    return Err(StartError::Exited(status.to_string()));
                }
            }
            if log.contains("ready in ")
                && TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
            {
                self.note(&format!("ready after {:?}", started.elapsed()));
                return Ok(());
            }
            if started.elapsed() > timeout {
                self.stop();
                return Err(StartError::Timeout(addr, timeout));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Appends a harness line to the log, so restarts are visible in it.
    fn note(&self, msg: &str) {
        if let Ok(mut f) = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)
        {
            let _ = writeln!(f, "--- [inlet test harness] {msg}");
        }
    }

    fn fail(&self, msg: &str) -> ! {
        panic!(
            "{msg}\n--- tansu log {} (last 4 KiB) ---\n{}",
            self.log_path.display(),
            log_tail(&self.log_path, 4096)
        );
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.stop();
        if std::thread::panicking() {
            eprintln!(
                "tansu broker on {} kept its log at {}",
                self.bootstrap(),
                self.log_path.display()
            );
        } else {
            let _ = fs::remove_dir_all(&self.work_dir);
        }
    }
}

/// `$TANSU_BIN`, else `tansu` on `PATH`, else `$HOME/.cargo/bin/tansu`.
pub fn tansu_bin() -> PathBuf {
    if let Some(bin) = std::env::var_os("TANSU_BIN") {
        let bin = PathBuf::from(bin);
        if bin.is_file() {
            return bin;
        }
        panic!(
            "TANSU_BIN={} does not exist; install Tansu with: {TANSU_INSTALL}",
            bin.display()
        );
    }
    let on_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|dir| dir.join("tansu"))
        .find(|p| p.is_file());
    let in_cargo_home =
        std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cargo/bin/tansu"));
    on_path
        .or(in_cargo_home.filter(|p| p.is_file()))
        .unwrap_or_else(|| {
            panic!(
                "the tansu broker binary was not found (TANSU_BIN, PATH, ~/.cargo/bin); \
                 install it with: {TANSU_INSTALL}"
            )
        })
}

fn unique_temp_dir() -> PathBuf {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!(
        "inlet-tansu-{}-{}-{nanos}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("creating {}: {e}", dir.display()));
    dir
}

fn log_since(path: &Path, offset: u64) -> String {
    let Ok(mut f) = File::open(path) else {
        return String::new();
    };
    let _ = f.seek(SeekFrom::Start(offset));
    let mut buf = Vec::new();
    let _ = f.read_to_end(&mut buf);
    String::from_utf8_lossy(&buf).into_owned()
}

fn log_tail(path: &Path, max: u64) -> String {
    let Ok(mut f) = File::open(path) else {
        return "<no log>".to_string();
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let _ = f.seek(SeekFrom::Start(len.saturating_sub(max)));
    let mut buf = Vec::new();
    let _ = f.read_to_end(&mut buf);
    String::from_utf8_lossy(&buf).into_owned()
}

/// Adds the index Tansu 0.6's SQLite schema lacks on `header (topition, offset_id)`.
///
/// Tansu looks up each fetched record's headers one query at a time, and without this index
/// every lookup scans the whole table: with tens of thousands of records (inlet sends two
/// headers per message), one Fetch over 512 partitions takes minutes, and consumers read
/// nothing in time. Idempotent; run after every start, once Tansu has created its schema.
/// Uses Python's sqlite3 module, which every test machine has.
fn index_headers(db: &Path) {
    let script = "import sqlite3, sys\n\
                  c = sqlite3.connect(sys.argv[1], timeout=30)\n\
                  c.execute('CREATE INDEX IF NOT EXISTS header_topition_offset ON header (topition, offset_id)')\n\
                  c.commit()\n";
    let out = Command::new("python3")
        .args(["-c", script])
        .arg(db)
        .output()
        .unwrap_or_else(|e| panic!("python3 (needed to index Tansu's SQLite storage): {e}"));
    assert!(
        out.status.success(),
        "indexing {}: {}",
        db.display(),
        String::from_utf8_lossy(&out.stderr)
    );
}
