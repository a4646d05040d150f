//! `hostkit`: the server binary. Parses flags, builds a config, calls the library.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use hostkit_api::values::Duration as HkDuration;
use hostkit_controller::serve::{self, ServeOptions};
use hostkit_controller::server::TlsFiles;

mod offline;
mod token;

#[derive(Parser)]
#[command(
    name = "hostkit",
    version,
    about = "Kubernetes-style reconciliation controller for bare Linux hosts"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the API server, controller and store in one process.
    Serve(ServeArgs),
    /// Plan hosts from manifest files, without a server (exit 0: no changes, 1: changes,
    /// 2: error).
    Plan(offline::PlanArgs),
    /// Apply manifest files to their hosts and write what was applied with its down plan.
    Apply(offline::ApplyArgs),
    /// Run the down plan of an applied.json.
    Down(offline::DownArgs),
    /// Mint, list and revoke the tokens every replica honours (through the API server).
    Token(token::TokenArgs),
    /// Install HostKit as a system service: the hardened systemd unit, /etc/hostkit/hostkit.env
    /// and the controller's SSH key (each only where missing but the unit).
    Install(InstallArgs),
    /// Write the JSON Schema of every kind into a folder.
    Schemas {
        /// Folder to write into, e.g. manifests/schemas.
        dir: PathBuf,
    },
}

#[derive(clap::Args)]
struct InstallArgs {
    /// Install the systemd unit (the only kind of install there is; says what is made).
    #[arg(long, required = true)]
    systemd: bool,
    /// Write into this folder instead of / (a package's staging tree).
    #[arg(long, default_value = "/")]
    root: PathBuf,
    /// The binary's path on the target, for the unit's ExecStart= (default: this binary).
    #[arg(long)]
    bin: Option<PathBuf>,
    /// Then reload systemd and enable and start the service.
    #[arg(long)]
    now: bool,
}

#[derive(clap::Args)]
struct ServeArgs {
    /// Address of the API server.
    #[arg(long, default_value = "127.0.0.1:7443", env = "HOSTKIT_LISTEN")]
    listen: SocketAddr,
    /// Folder for the embedded store, the admin token and other state.
    #[arg(long, default_value = "./.hostkit", env = "HOSTKIT_DATA_DIR")]
    data_dir: PathBuf,
    /// Use etcd instead of the embedded store: comma-separated endpoints.
    #[arg(long, value_delimiter = ',', env = "HOSTKIT_ETCD")]
    etcd: Vec<String>,
    /// Extra bearer tokens: a CSV of `token,user,role` (role admin or read-only).
    #[arg(long, env = "HOSTKIT_TOKENS")]
    tokens: Option<PathBuf>,
    /// Serve HTTPS with this PEM certificate (needs --tls-key).
    #[arg(long, requires = "tls_key", env = "HOSTKIT_TLS_CERT")]
    tls_cert: Option<PathBuf>,
    /// PEM private key for --tls-cert.
    #[arg(long, requires = "tls_cert", env = "HOSTKIT_TLS_KEY")]
    tls_key: Option<PathBuf>,
    /// How often idle watches get a BOOKMARK.
    #[arg(long, default_value = "10s", value_parser = HkDuration::parse_std)]
    bookmark_interval: Duration,
    /// Which controllers run: `all`, or `none` (API and store only: no reconciles, no
    /// leader election, no connection to any host; what a stateless API replica runs, and
    /// what a tour of the example manifests wants).
    #[arg(long, value_enum, default_value = "all", env = "HOSTKIT_CONTROLLERS")]
    controllers: Controllers,
    /// The same as `--controllers none`.
    #[arg(long, hide = true)]
    no_controller: bool,
    /// Reconciles running at once.
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
    /// How long a restarted unit must stay active before an apply goes on.
    #[arg(long, default_value = "300ms", value_parser = HkDuration::parse_std)]
    settle: Duration,
    /// Leader lease TTL (renewed every 2/3 of it).
    #[arg(long, default_value = "15s", value_parser = HkDuration::parse_std)]
    leader_lease: Duration,
    /// How long Events are kept.
    #[arg(long, default_value = "1h", value_parser = HkDuration::parse_std)]
    event_ttl: Duration,
    /// Events the embedded store keeps for watches before compacting older history.
    #[arg(long, default_value_t = 50_000)]
    watch_history: i64,
    /// Do not write an hkctl config for the local user.
    #[arg(long)]
    no_client_config: bool,
    /// An image Instances may boot: NAME=PATH, a root folder or a .tar/.tar.zst (repeat).
    #[arg(long = "image", value_name = "NAME=PATH", value_parser = parse_image)]
    images: Vec<(String, PathBuf)>,
    /// The Prometheus that rollout.analysis queries ask unless they name their own url.
    #[arg(long, value_name = "URL")]
    prometheus_url: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum Controllers {
    All,
    None,
}

fn parse_image(s: &str) -> Result<(String, PathBuf), String> {
    let (name, path) = s
        .split_once('=')
        .ok_or_else(|| format!("{s:?}: expected NAME=PATH"))?;
    let path = PathBuf::from(path);
    if name.is_empty() || !path.exists() {
        return Err(format!("{s:?}: expected NAME=PATH with an existing PATH"));
    }
    Ok((name.to_string(), path))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // `hostkit plan`, `hkctl plan` and `hkctl diff` share one scheme: 0 nothing to
    // change, 1 changes, 2 the question could not be answered.
    let error_code = if matches!(cli.command, Command::Plan(_)) {
        2
    } else {
        1
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,h2=warn,tower=warn".into()),
        )
        .with_writer(std::io::stderr)
        // Colour for a person at a terminal; a log file or journald gets plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    match run(cli) {
        Ok(0) => ExitCode::SUCCESS,
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(error_code)
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<u8> {
    let engine = |f: std::pin::Pin<Box<dyn std::future::Future<Output = anyhow::Result<u8>>>>| {
        tokio::runtime::Runtime::new()
            .context("starting the async runtime")?
            .block_on(f)
    };
    match cli.command {
        Command::Plan(args) => engine(Box::pin(offline::plan(args))),
        Command::Apply(args) => engine(Box::pin(offline::apply(args))),
        Command::Down(args) => engine(Box::pin(offline::down(args))),
        Command::Token(args) => engine(Box::pin(token::run(args))),
        Command::Install(args) => install(args),
        Command::Schemas { dir } => {
            hostkit_api::schema::write_schemas(&dir)?;
            println!(
                "wrote {} schemas to {}",
                hostkit_api::KINDS.len(),
                dir.display()
            );
            Ok(0)
        }
        Command::Serve(args) => {
            let options = ServeOptions {
                listen: args.listen,
                data_dir: args.data_dir,
                etcd: args.etcd,
                tokens_file: args.tokens,
                tls: args
                    .tls_cert
                    .zip(args.tls_key)
                    .map(|(cert, key)| TlsFiles { cert, key }),
                bookmark_interval: args.bookmark_interval,
                event_ttl: args.event_ttl,
                client_config: if args.no_client_config {
                    None
                } else {
                    hostkit_api::config::default_config_path()
                },
                max_events: args.watch_history,
                concurrency: args.concurrency,
                controller: args.controllers == Controllers::All && !args.no_controller,
                settle: args.settle,
                images: args.images,
                prometheus_url: args.prometheus_url,
                leader: hostkit_controller::runtime::leader::Timings {
                    lease: args.leader_lease,
                    renew: args.leader_lease.mul_f64(2.0 / 3.0),
                    retry: (args.leader_lease / 7).max(Duration::from_millis(200)),
                },
            };
            let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
            runtime.block_on(serve::run(options, shutdown_signal()))?;
            Ok(0)
        }
    }
}

fn install(args: InstallArgs) -> anyhow::Result<u8> {
    use hostkit_controller::install::{self, InstallOptions};
    debug_assert!(args.systemd);
    let bin = match args.bin {
        Some(bin) => bin,
        None => std::env::current_exe().context("finding this binary's path for ExecStart=")?,
    };
    let done = install::systemd(&InstallOptions {
        root: args.root,
        bin,
        start: args.now,
    })?;
    for path in &done.written {
        println!("wrote {}", path.display());
    }
    for path in &done.kept {
        println!("kept {}", path.display());
    }
    if let Some(key) = &done.public_key {
        println!("the controller's SSH key (add it to each host's authorized_keys):\n{key}");
    }
    if done.started {
        println!("started hostkit.service");
    } else {
        println!("start it with: systemctl daemon-reload && systemctl enable --now hostkit");
    }
    Ok(0)
}

/// Resolves on SIGTERM or SIGINT.
async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("installing a SIGTERM handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    tracing::info!("shutting down");
}
