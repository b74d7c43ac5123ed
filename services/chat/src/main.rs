use chat::config::Config;
use chat::startup::{self, Application};
use std::process::ExitCode;

const USAGE: &str = "usage: chat [serve | migrate]";

#[actix_web::main]
async fn main() -> ExitCode {
    let command = std::env::args().nth(1).unwrap_or_else(|| "serve".into());
    if matches!(command.as_str(), "-h" | "--help" | "help") {
        println!("{USAGE}");
        return ExitCode::SUCCESS;
    }
    let config = Config::from_env_or_exit();
    let _telemetry = platform::telemetry::init(chat::SERVICE);
    let outcome = match command.as_str() {
        "serve" => match Application::build(config).await {
            Ok(application) => {
                tracing::info!(port = application.port(), "chat listening");
                application.run_until_stopped().await
            }
            Err(err) => Err(err),
        },
        "migrate" => match config.retry_delays() {
            Ok(delays) => {
                let broker = startup::broker(&config);
                bus::migrate_and_declare(
                    move || startup::migrate(&config, platform::db::COMMAND_POOL_SIZE).map(|_| ()),
                    chat::topology(delays),
                    broker,
                )
                .await
            }
            Err(err) => Err(err.into()),
        },
        other => Err(anyhow::anyhow!("unknown command `{other}`\n{USAGE}")),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("chat: {err:#}");
            ExitCode::FAILURE
        }
    }
}
