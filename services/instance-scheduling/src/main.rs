use instance_scheduling::config::Config;
use instance_scheduling::startup::{self, Application};
use std::process::ExitCode;

const USAGE: &str = "usage: instance-scheduling [serve | migrate | rotate-keys]

  serve        run the service (the default)
  migrate      create the database if needed, apply migrations, declare the broker topology
  rotate-keys  make a new connection-token signing key current; the previous one stays
               published, so tokens already handed out still verify";

#[actix_web::main]
async fn main() -> ExitCode {
    let command = std::env::args().nth(1).unwrap_or_else(|| "serve".into());
    if matches!(command.as_str(), "-h" | "--help" | "help") {
        println!("{USAGE}");
        return ExitCode::SUCCESS;
    }
    let config = Config::from_env_or_exit();
    let _telemetry = platform::telemetry::init(instance_scheduling::SERVICE);
    let outcome = match command.as_str() {
        "serve" => match Application::build(config).await {
            Ok(application) => {
                tracing::info!(port = application.port(), "instance-scheduling listening");
                application.run_until_stopped().await
            }
            Err(err) => Err(err),
        },
        "migrate" => match config.retry_delays() {
            Ok(delays) => {
                let broker = startup::broker(&config);
                bus::migrate_and_declare(
                    move || startup::migrate(&config, platform::db::COMMAND_POOL_SIZE).map(|_| ()),
                    instance_scheduling::topology(delays),
                    broker,
                )
                .await
            }
            Err(err) => Err(err.into()),
        },
        "rotate-keys" => startup::rotate_keys(config).await,
        other => Err(anyhow::anyhow!("unknown command `{other}`\n{USAGE}")),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("instance-scheduling: {err:#}");
            ExitCode::FAILURE
        }
    }
}
