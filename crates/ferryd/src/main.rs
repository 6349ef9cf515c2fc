//! `ferryd`: keeps a stateful EC2 instance's EBS data and Elastic IP highly available across AZs.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, CommandFactory, Parser, Subcommand};
use tokio::sync::watch;
use tracing::{error, warn};

use ferryd::config::{self, Config, LogFormat};
use ferryd::{cli, daemon, exit, logging};

/// `ferryd --version`: the package version and the git commit it was built from (build.rs), e.g.
/// `ferryd 0.1.0 (0123456789ab)`; `unknown` for a build outside a git checkout without `FERRY_GIT_COMMIT`.
const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (",
    env!("FERRY_BUILD_COMMIT"),
    ")"
);

/// ferry: carries a stateful Auto Scaling group's EBS volumes and Elastic IP across Availability Zones
/// through lifecycle hooks.
#[derive(Debug, Parser)]
#[command(name = "ferryd", version = VERSION, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the daemon: consume lifecycle hooks from the queue and move the data.
    Run(ConfigArgs),
    /// Read and validate the configuration, print a summary, and exit.
    ValidateConfig(ConfigArgs),
    /// Show each group's instance, attached volume and generation, newest snapshot, Elastic IP and pending hooks.
    Status {
        #[command(flatten)]
        config: ConfigArgs,
        #[command(flatten)]
        args: cli::status::StatusArgs,
    },
    /// Check the config, credentials, queue, groups, hooks, Elastic IP and IAM permissions (exit 3 on FAIL).
    Doctor {
        #[command(flatten)]
        config: ConfigArgs,
        #[command(flatten)]
        args: cli::doctor::DoctorArgs,
    },
    /// Take an on-demand, ledger-tagged snapshot of a group's InService instance's ferry volumes.
    Snapshot {
        #[command(flatten)]
        config: ConfigArgs,
        #[command(flatten)]
        args: cli::snapshot_cmd::SnapshotArgs,
    },
    /// Delete old ledger snapshots and detached volumes by generation count and age (`[gc]`).
    Gc {
        #[command(flatten)]
        config: ConfigArgs,
        #[command(flatten)]
        args: cli::gc::GcArgs,
    },
    /// Declare a slot new: retire its unreadable volumes and snapshots so that a launch starts it empty.
    ResetSlot {
        #[command(flatten)]
        config: ConfigArgs,
        #[command(flatten)]
        args: cli::reset_slot::ResetSlotArgs,
    },
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell) on stdout.
    Completions(cli::generate::CompletionsArgs),
    /// Print the man page (roff) on stdout, or write one page per subcommand with --out-dir.
    Man(cli::generate::ManArgs),
}

/// Where the configuration comes from, and the keys flags and `FERRY_*` variables override.
#[derive(Debug, Args)]
struct ConfigArgs {
    /// The TOML configuration file.
    #[arg(
        long,
        short,
        env = "FERRY_CONFIG",
        default_value = "/etc/ferry/ferry.toml"
    )]
    config: PathBuf,
    /// Overrides `queue.url`.
    #[arg(long, env = "FERRY_QUEUE_URL")]
    queue_url: Option<String>,
    /// Overrides `daemon.log_format`.
    #[arg(long, env = "FERRY_LOG_FORMAT", value_enum)]
    log_format: Option<LogFormat>,
    /// Overrides `daemon.max_in_flight`.
    #[arg(long, env = "FERRY_MAX_IN_FLIGHT")]
    max_in_flight: Option<usize>,
    /// Overrides `aws.region`.
    #[arg(long, env = "FERRY_REGION")]
    region: Option<String>,
}

impl ConfigArgs {
    /// Reads the file, applies overrides, and validates.
    fn load(&self) -> Result<Config, config::ConfigError> {
        let mut c = Config::read(&self.config)?;
        if let Some(u) = &self.queue_url {
            c.queue.url = u.clone();
        }
        if let Some(f) = self.log_format {
            c.daemon.log_format = f;
        }
        if let Some(n) = self.max_in_flight {
            c.daemon.max_in_flight = n;
        }
        if let Some(r) = &self.region {
            c.aws.region = Some(r.clone());
        }
        c.validate()?;
        Ok(c)
    }
}

/// Loads the config for an operator command; a config error prints `ferryd: <error>` and exits 2.
fn with_config(args: &ConfigArgs, command: impl FnOnce(&Config) -> ExitCode) -> ExitCode {
    match args.load() {
        Ok(c) => command(&c),
        Err(e) => {
            eprintln!("ferryd: {e}");
            ExitCode::from(exit::CONFIG)
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Status { config, args } => with_config(&config, |c| cli::status::main(c, &args)),
        Command::Doctor { config, args } => cli::doctor::main(config.load(), &args),
        Command::Snapshot { config, args } => {
            with_config(&config, |c| cli::snapshot_cmd::main(c, &args))
        }
        Command::Gc { config, args } => with_config(&config, |c| cli::gc::main(c, &args)),
        Command::ResetSlot { config, args } => {
            with_config(&config, |c| cli::reset_slot::main(c, &args))
        }
        Command::Completions(args) => cli::generate::completions(Cli::command(), &args),
        Command::Man(args) => cli::generate::man(Cli::command(), &args),
        Command::ValidateConfig(args) => match args.load() {
            Ok(c) => {
                let groups: Vec<String> = c
                    .groups
                    .iter()
                    .map(|g| format!("{} ({} volume(s))", g.name, g.volumes.len()))
                    .collect();
                #[allow(clippy::print_stdout)]
                {
                    println!(
                        "config OK: queue {} groups: {}",
                        c.queue.url,
                        groups.join(", ")
                    );
                }
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("ferryd: {e}");
                ExitCode::from(exit::CONFIG)
            }
        },
        Command::Run(args) => {
            let config = match args.load() {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("ferryd: {e}");
                    return ExitCode::from(exit::CONFIG);
                }
            };
            logging::init(config.daemon.log_format);
            let rt = match tokio::runtime::Runtime::new() {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("ferryd: cannot start the async runtime: {e}");
                    return ExitCode::from(exit::RUNTIME);
                }
            };
            rt.block_on(async {
                let (tx, rx) = watch::channel(false);
                tokio::spawn(signals(tx));
                match daemon::run(config, rx).await {
                    Ok(()) => ExitCode::SUCCESS,
                    Err(e) => {
                        error!(error = %format!("{e:#}"), "ferryd failed");
                        ExitCode::from(exit::RUNTIME)
                    }
                }
            })
        }
    }
}

/// First SIGTERM or SIGINT: stop polling and let in-flight hooks reach a safe point. Second: exit at once.
async fn signals(tx: watch::Sender<bool>) {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        error!("cannot install signal handlers; stop ferryd with SIGKILL");
        return;
    };
    tokio::select! { _ = term.recv() => {}, _ = int.recv() => {} }
    warn!("shutdown requested: no new hooks; in-flight hooks stop at their next safe point (signal again to exit now)");
    let _ = tx.send(true);
    tokio::select! { _ = term.recv() => {}, _ = int.recv() => {} }
    warn!("second signal: exiting now; unfinished hooks' messages will return to the queue");
    std::process::exit(130);
}
