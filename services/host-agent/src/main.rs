use host_agent::config::Config;
use host_agent::startup::Application;
use std::process::ExitCode;

const USAGE: &str = "usage: host-agent [serve]

  serve  run the agent (the default): listen, register with instance-scheduling,
         heartbeat, and admit clients that present a connection token";

#[actix_web::main]
async fn main() -> ExitCode {
    let command = std::env::args().nth(1).unwrap_or_else(|| "serve".into());
    if matches!(command.as_str(), "-h" | "--help" | "help") {
        println!("{USAGE}");
        return ExitCode::SUCCESS;
    }
    // Before the command is looked at, as in every service: a bad setting
    // is one line naming it (exit 2), whatever was asked.
    let config = Config::from_env_or_exit();
    let _telemetry = platform::telemetry::init(host_agent::SERVICE);
    let outcome = match command.as_str() {
        "serve" => serve(config).await,
        other => Err(anyhow::anyhow!("unknown command `{other}`\n{USAGE}")),
    };
    match outcome {
        // SIGTERM, Ctrl-C, or the scheduler said terminate.
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("host-agent: {err:#}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(config: Config) -> anyhow::Result<()> {
    let application = Application::build(config).await?;
    tracing::info!(port = application.port(), "host-agent listening");
    application.run_until_stopped().await
}
