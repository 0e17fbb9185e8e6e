//! The `inlet` binary: parse the command line and configuration, set up logging, then hand the
//! bound listeners, the Kafka producer and the shutdown signals to [`inlet::server::run`].
//! Exits 2 on bad configuration, 1 when it cannot start, 0 after a graceful shutdown.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::Parser;
use tokio::signal::unix::{signal, SignalKind};

use inlet::config::{self, Cli, Command, Config, DrainArgs, LogFormat};
use inlet::lane::Lane;
use inlet::sink::kafka::KafkaSink;
use inlet::sink::spool::progress::{duration, thousands, Progress};
use inlet::sink::spool::{Options, SpoolSink};
use inlet::sink::Sink;

fn main() -> ExitCode {
    let mut cli = Cli::parse();
    match cli.command.take() {
        Some(Command::Tail(args)) => {
            init_logging(LogFormat::Text);
            return report(inlet::tail::run(args));
        }
        Some(Command::Drain(args)) => return drain(&mut cli, &args),
        None => {}
    }
    let mut config = match config::load(&mut cli) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("inlet: invalid configuration: {error:#}");
            return ExitCode::from(2);
        }
    };
    init_logging(config.log_format);
    // The registry is configuration too: one that is unreadable, invalid or empty stops inlet
    // before it binds.
    let tokens = match inlet::server::tokens(&config) {
        Ok(tokens) => tokens,
        Err(error) => {
            eprintln!("inlet: invalid configuration: {error:#}");
            return ExitCode::from(2);
        }
    };
    // Kept alive for the whole run: dropping it stops the embedded cluster.
    let _dev = if cli.dev {
        let topics: Vec<&str> = config.topics().collect();
        let cluster = match inlet::dev::DevCluster::start(&topics) {
            Ok(cluster) => cluster,
            Err(error) => return report(Err(error)),
        };
        if config.kafka.brokers.is_empty() {
            config.kafka.brokers = cluster.bootstrap_servers();
        }
        print_dev_banner(&config);
        if let Some(spool) = &config.spool {
            println!(
                "  spool              {} (delivery `spool`)\n",
                spool.dir.display()
            );
        }
        Some(cluster)
    } else {
        None
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("inlet-worker")
        .worker_threads(config.edge.worker_threads)
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => return report(Err(error.into())),
    };
    let listen_file = cli.listen_file.take();
    let result = runtime.block_on(async move {
        let listeners = inlet::server::Listeners {
            public: tokio::net::TcpListener::bind(config.edge.listen)
                .await
                .with_context(|| format!("listen: cannot bind {}", config.edge.listen))?,
            admin: tokio::net::TcpListener::bind(config.edge.admin_listen)
                .await
                .with_context(|| {
                    format!("admin_listen: cannot bind {}", config.edge.admin_listen)
                })?,
        };
        let sink = sink(&config)?;
        let (first, second) = signals()?;
        // Last before serving: whoever reads the file may send requests and signals at once.
        if let Some(path) = &listen_file {
            write_listen_file(path, &listeners)?;
        }
        inlet::server::run(config, tokens, sink, listeners, first, second).await
    });
    // Do not wait on a flush a forced exit abandoned.
    runtime.shutdown_timeout(std::time::Duration::from_millis(500));
    report(result)
}

/// Writes where `listeners` are bound to `path`, as the lines `public=ADDR` and `admin=ADDR`:
/// to `PATH.tmp` first, then renamed over `path`, so a reader finds all of it or nothing.
fn write_listen_file(path: &Path, listeners: &inlet::server::Listeners) -> anyhow::Result<()> {
    let text = format!(
        "public={}\nadmin={}\n",
        listeners.public.local_addr()?,
        listeners.admin.local_addr()?
    );
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    std::fs::write(&tmp, text)
        .and_then(|()| std::fs::rename(&tmp, path))
        .with_context(|| format!("listen_file: cannot write {}", path.display()))
}

/// The sink `config` asks for: the Kafka producer, or the spool in front of it.
fn sink(config: &Config) -> anyhow::Result<Arc<dyn Sink>> {
    // The spool counts what its start-up repair found: the recorder must be there first.
    inlet::metrics::install();
    let kafka = Arc::new(KafkaSink::new(&config.kafka, &config.lanes).context("kafka")?);
    Ok(match &config.spool {
        Some(spool) => Arc::new(SpoolSink::open(Options::new(spool), kafka)?),
        None => kafka,
    })
}

/// `inlet drain`: delivers the spool, then exits 0 once it is empty; 1 (counting what is
/// left) when the deadline passes or a delivery fails for `delivery_timeout`.
fn drain(cli: &mut Cli, args: &DrainArgs) -> ExitCode {
    let config = match config::load_for_drain(cli, args) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("inlet: invalid configuration: {error:#}");
            return ExitCode::from(2);
        }
    };
    init_logging(config.log_format);
    let result = (|| {
        let kafka = Arc::new(KafkaSink::new(&config.kafka, &config.lanes).context("kafka")?);
        let options = Options::new(config.spool.as_ref().context("spool_dir")?);
        let spool = SpoolSink::open(options, kafka)?;
        let deadline = args
            .deadline_ms
            .map(|ms| std::time::Instant::now() + std::time::Duration::from_millis(ms));
        let dir = args.spool_dir.display();
        let (now, left) = (std::time::Instant::now(), spool.records());
        let mut progress = Progress::new(now, left, spool.delivered());
        let terminal = std::io::IsTerminal::is_terminal(&std::io::stderr());
        let every = match terminal {
            true => std::time::Duration::from_millis(250),
            false => std::time::Duration::from_millis(args.progress_every_ms.max(1)),
        };
        let mut shown = now;
        eprintln!("inlet: draining {} records from {dir}", thousands(left));
        while spool.records() > 0 {
            let now = std::time::Instant::now();
            if now.duration_since(shown) >= every {
                let snapshot = progress.sample(now, spool.records(), spool.delivered());
                match terminal {
                    true => eprint!("\r{}\x1b[K", snapshot.bar()),
                    false => eprintln!("inlet: drain: {snapshot}"),
                }
                shown = now;
            }
            if terminal && (spool.delivery_failures() > 0 || deadline.is_some_and(|d| now >= d)) {
                eprintln!();
            }
            if spool.delivery_failures() > 0 {
                anyhow::bail!("{} records not delivered: Kafka did not acknowledge them within delivery_timeout_ms; they stay in the spool", spool.records());
            }
            if deadline.is_some_and(|d| std::time::Instant::now() >= d) {
                anyhow::bail!(
                    "{} records not delivered by the deadline; they stay in the spool",
                    spool.records()
                );
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        spool.close(std::time::Duration::ZERO);
        let (records, took) = progress.so_far(std::time::Instant::now(), spool.delivered());
        let rate = records as f64 / took.as_secs_f64().max(0.001);
        if terminal {
            eprintln!();
        }
        eprintln!(
            "inlet: the spool in {dir} is empty: {} records delivered in {} ({} records/s)",
            thousands(records),
            duration(took),
            thousands(rate.round() as u64)
        );
        Ok(())
    })();
    report(result)
}

/// Logs go to stderr, filtered by `INLET_LOG` (default `info`): JSON lines for machines, or
/// text for people (`auto`: text on a terminal, JSON otherwise).
fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("INLET_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let terminal = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .init(),
        LogFormat::Auto if !terminal => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .init(),
        LogFormat::Text | LogFormat::Auto => builder.with_ansi(terminal).init(),
    }
}

fn report(result: anyhow::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("inlet: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// Two futures: the first SIGTERM or SIGINT (begin the graceful shutdown), and the second
/// (stop waiting for it).
fn signals() -> anyhow::Result<(
    impl std::future::Future<Output = ()>,
    impl std::future::Future<Output = ()>,
)> {
    let mut term = signal(SignalKind::terminate()).context("SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("SIGINT handler")?;
    let (first_tx, first_rx) = tokio::sync::oneshot::channel::<()>();
    let (second_tx, second_rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        for (i, tx) in [first_tx, second_tx].into_iter().enumerate() {
            tokio::select! {
                _ = term.recv() => tracing::info!(count = i + 1, "SIGTERM received"),
                _ = int.recv() => tracing::info!(count = i + 1, "SIGINT received"),
            }
            let _ = tx.send(());
        }
    });
    Ok((
        async move {
            let _ = first_rx.await;
        },
        async move {
            if second_rx.await.is_err() {
                std::future::pending::<()>().await;
            }
        },
    ))
}

fn print_dev_banner(config: &inlet::config::Config) {
    let token = inlet::auth::DEV_TOKEN;
    let brokers = &config.kafka.brokers;
    let listen = config.edge.listen;
    let topics = config.topics().collect::<Vec<_>>().join(" ");
    println!(
        "\ninlet --dev: an embedded in-memory Kafka cluster (librdkafka's mock cluster, {} brokers, \
         {} partitions per topic).\nFor trying inlet out, never for production: nothing survives \
         the process.\n\n  bootstrap servers  {brokers}\n  topics             {topics}\n  \
         development token  {token}\n  ingest             http://{listen}/v1/beacons\n  \
         metrics            http://{}/metrics\n\nTry it:\n  curl -sS http://{listen}/v1/beacons \
         -H 'Authorization: Bearer {token}' \\\n    -H 'Content-Type: application/json' -d '{{\"session_id\":\"s-1\",\"event\":\"page_view\"}}'\n  \
         cargo run --release -- tail --brokers {brokers} --topic {}\n",
        inlet::dev::BROKERS,
        inlet::dev::PARTITIONS,
        config.edge.admin_listen,
        config.topic(Lane::BEACON),
    );
}
