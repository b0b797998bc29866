//! The `heft` command line. Each subcommand parses its arguments and calls into the library.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use heft::config::{Config, LogFormat};
use heft::domain::operator::Role;
use heft::domain::reconcile::{Job, Part, RunStatus};
use heft::flows::reconcile::JobReport;

#[derive(Parser)]
#[command(name = "heft", version, about = "Backend for weight-sensing smart vending cabinets")]
struct Cli {
    /// Configuration file; every key can be overridden by HEFT__SECTION__KEY.
    #[arg(long, global = true, default_value = "config.toml", env = "HEFT_CONFIG")]
    config: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the node: HTTP API, embedded MQTT broker, cabinet actors, liveness watchdog.
    Serve,
    /// Apply pending database migrations and exit.
    Migrate,
    /// Create a cabinet and print its MQTT token and frame-signing key (shown once).
    Provision {
        /// Serial number: ASCII letters, digits, '-' and '_', at most 64.
        #[arg(long)]
        sn: String,
        /// Cabinet type, e.g. fridge or ambient.
        #[arg(long = "type", default_value = "standard")]
        cabinet_type: String,
        /// Issue new credentials for an existing cabinet (the old ones stop working).
        #[arg(long)]
        rotate: bool,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Operator accounts.
    Admin {
        #[command(subcommand)]
        action: AdminCommand,
    },
    /// Run simulated cabinets against a broker (load generator and demo).
    Simulate(heft::sim::SimArgs),
    /// Reconcile one business day (Asia/Shanghai) now, as the nightly scheduler would: fetch the
    /// platforms' bills and open a case for each difference. Running a day again changes nothing
    /// that was right and opens no case twice.
    Reconcile {
        /// The business day, YYYY-MM-DD.
        #[arg(long)]
        date: chrono::NaiveDate,
        /// Only this part of the night.
        #[arg(long, value_parser = parse_part)]
        only: Option<Part>,
    },
    /// Run only the payment platform simulator (WeChat Pay + Alipay) at `pay_sim.listen`, for a
    /// node whose own simulator is off (the production profile's tests and demos).
    PaySim,
}

#[derive(Subcommand)]
enum AdminCommand {
    /// Create an operator account; without --password-stdin a strong password is generated and
    /// printed once.
    Create {
        /// 3–32 ASCII letters, digits, '.', '_' or '-' (compared without case).
        #[arg(long)]
        username: String,
        /// admin, operator, restocker or maintainer.
        #[arg(long, default_value = "admin", value_parser = parse_role)]
        role: Role,
        /// Read the password from the first line of standard input instead of generating one.
        #[arg(long)]
        password_stdin: bool,
    },
}

fn parse_part(s: &str) -> Result<Part, String> {
    Part::parse(s).ok_or_else(|| {
        format!("must be one of: {}", Part::ALL.iter().map(|p| p.as_str()).collect::<Vec<_>>().join(", "))
    })
}

fn parse_role(s: &str) -> Result<Role, String> {
    Role::parse(s).ok_or_else(|| "must be admin, operator, restocker or maintainer".into())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let config = match Config::load(&cli.config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("heft: {e}");
            return ExitCode::from(2);
        }
    };
    init_logging(&config);
    let result = actix_rt::System::new().block_on(run(cli.command, config));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // Every error type here already carries its cause in its message.
            eprintln!("heft: {e}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging(config: &Config) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&config.log.filter));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match config.log.format {
        // Colour codes only where a person reads them: a file or a pipe gets plain text.
        LogFormat::Text => builder.with_ansi(std::io::stderr().is_terminal()).init(),
        LogFormat::Json => builder.json().with_current_span(false).init(),
    }
}

async fn run(command: Command, config: Config) -> anyhow::Result<()> {
    match command {
        Command::Serve => {
            let heft = heft::app::Heft::start(config).await?;
            shutdown_signal().await?;
            tracing::info!("shutting down");
            heft.stop().await;
            Ok(())
        }
        Command::PaySim => {
            let sim = heft::pay::sim::start(&config.pay_sim, &config.wechat, &config.alipay).await?;
            println!("payment simulator listening on http://{}", sim.addr);
            shutdown_signal().await?;
            sim.stop().await;
            Ok(())
        }
        Command::Migrate => {
            heft::app::open_database(&config).await?;
            println!("database is up to date");
            Ok(())
        }
        Command::Provision { sn, cabinet_type, rotate, json } => {
            let db = heft::app::open_database(&config).await?;
            let seal =
                heft::secrets::SealKey::load_or_create(&config.security.seal_key, &config.security.seal_key_file)?;
            let creds = db.write(move |c| heft::provision::provision(c, &seal, &sn, &cabinet_type, rotate)).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&creds)?);
            } else {
                println!("sn (MQTT client id and username): {}", creds.sn);
                println!("token (MQTT password):             {}", creds.token);
                println!("frame key (base64, HMAC-SHA256):   {}", creds.frame_key);
                println!();
                println!("These are shown once; Heft keeps only a hash of the token and the key sealed.");
            }
            Ok(())
        }
        Command::Admin { action: AdminCommand::Create { username, role, password_stdin } } => {
            let (password, generated) = if password_stdin {
                let mut line = String::new();
                std::io::stdin().read_line(&mut line).context("reading the password from standard input")?;
                // Only the line ending goes: spaces may be part of the password.
                (line.trim_end_matches(['\r', '\n']).to_string(), false)
            } else {
                (heft::admin::generate_password(), true)
            };
            let db = heft::app::open_database(&config).await?;
            let shown = generated.then(|| password.clone());
            let op = heft::admin::create_operator(&db, &username, password, role, config.auth.min_password_len).await?;
            println!("operator {} created (id {}, role {})", op.username, op.id, op.role);
            if let Some(password) = shown {
                println!("password: {password}");
                println!();
                println!(
                    "The password is shown once; Heft keeps only its argon2 hash. Log in with POST /ops/auth/login."
                );
            }
            Ok(())
        }
        Command::Simulate(args) => heft::sim::run(args, config).await,
        Command::Reconcile { date, only } => reconcile(config, date, only).await,
    }
}

/// `heft reconcile` runs outside `serve`: no live view to tell, progress goes to the terminal.
struct NoLiveView;

impl heft::flows::Runner for NoLiveView {
    fn run(&self, _: heft::flows::Effects) {}
}

/// `heft reconcile`: each job of the day in a night's order, a line of progress per job. Fails
/// when a job did not finish, so a script sees it.
async fn reconcile(config: Config, date: chrono::NaiveDate, only: Option<Part>) -> anyhow::Result<()> {
    let node = format!("{} (heft reconcile)", config.node.id);
    let ctx = heft::app::flows_ctx(config).await?;
    let mut unfinished = Vec::new();
    for job in Job::of(only) {
        println!("{date} {job}: running");
        let outcome = heft::flows::reconcile::run(&ctx, &NoLiveView, job, date, &node).await?;
        match (&outcome.report, &outcome.error) {
            (Some(JobReport::Stock(r)), _) => println!(
                "{date} {job}: {} — {} cabinets, {} lanes: {} agree, {} differ, {} unreadable; {} findings, {} charged, {} units lost ({})",
                outcome.status,
                r.cabinets,
                r.lanes,
                r.agree,
                r.differ,
                r.unreadable,
                r.findings,
                r.charged_fen.yuan(),
                r.loss_units,
                r.loss_fen.yuan()
            ),
            (Some(JobReport::Bills(r)), _) => println!(
                "{date} {job}: {} — {} rows, {} payments and {} refunds matched, {} waiting, {} cases ({} new)",
                outcome.status, r.rows, r.matched, r.refunds_matched, r.waiting, r.cases, r.opened
            ),
            (Some(JobReport::Settlement(r)), _) => println!(
                "{date} {job}: {} — {} orders, {} rows; gross {} net {} (fees {} of {} from the bills)",
                outcome.status,
                r.orders,
                r.rows,
                r.gross_fen.yuan(),
                r.net_fen.yuan(),
                r.fees_from_bills,
                r.fees_counted
            ),
            (None, error) => println!("{date} {job}: {} — {}", outcome.status, error.as_deref().unwrap_or("")),
        }
        if outcome.status != RunStatus::Done {
            unfinished.push(job.to_string());
        }
    }
    match unfinished.is_empty() {
        true => Ok(()),
        false => anyhow::bail!("not finished: {}", unfinished.join(", ")),
    }
}

/// Ctrl-C, or SIGTERM from a service manager.
async fn shutdown_signal() -> std::io::Result<()> {
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            r = tokio::signal::ctrl_c() => r,
            _ = term.recv() => Ok(()),
        }
    }
    #[cfg(not(unix))]
    {
        tokio::signal::ctrl_c().await
    }
}
