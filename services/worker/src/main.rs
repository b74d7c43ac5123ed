use std::process::ExitCode;
use worker::config::Config;
use worker::startup::{self, Application};

const USAGE: &str = "usage: worker [serve | migrate | dead-letters list --queue QUEUE | dead-letters requeue --queue QUEUE (--id ID | --all)]";

#[actix_web::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let words: Vec<&str> = args.iter().map(String::as_str).collect();
    if matches!(words.first(), Some(&("-h" | "--help" | "help"))) {
        println!("{USAGE}");
        return ExitCode::SUCCESS;
    }
    let config = Config::from_env_or_exit();
    let _telemetry = platform::telemetry::init(worker::SERVICE);
    let outcome = match words.as_slice() {
        [] | ["serve"] => serve(config).await,
        ["migrate"] => match startup::topology(&config) {
            Ok(topology) => {
                let broker = startup::broker(&config);
                bus::migrate_and_declare(
                    move || startup::migrate(&config, platform::db::COMMAND_POOL_SIZE).map(|_| ()),
                    topology,
                    broker,
                )
                .await
            }
            Err(err) => Err(err.into()),
        },
        ["dead-letters", "list", "--queue", queue] => list(&config, queue).await,
        ["dead-letters", "requeue", "--queue", queue, "--all"] => {
            requeue(&config, queue, None).await
        }
        ["dead-letters", "requeue", "--queue", queue, "--id", id] => {
            requeue(&config, queue, Some(id)).await
        }
        _ => Err(anyhow::anyhow!("{USAGE}")),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("worker: {err:#}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(config: Config) -> anyhow::Result<()> {
    let application = Application::build(config).await?;
    tracing::info!(port = application.port(), "worker running");
    application.run_until_stopped().await
}

async fn list(config: &Config, queue: &str) -> anyhow::Result<()> {
    let letters = bus::dead_letters::list(&startup::broker(config), queue).await?;
    println!("{} message(s) in {queue}.dead", letters.len());
    for letter in letters {
        println!(
            "{}\t{}\tattempts={}\tfailed_at={}\treason={}",
            letter.message_id, letter.message_type, letter.attempts, letter.failed_at, letter.error
        );
    }
    Ok(())
}

async fn requeue(config: &Config, queue: &str, id: Option<&str>) -> anyhow::Result<()> {
    let moved = bus::dead_letters::requeue(&startup::broker(config), queue, id).await?;
    println!("requeued {moved} message(s) from {queue}.dead to {queue}");
    if id.is_some() && moved == 0 {
        anyhow::bail!("no parked message with that id");
    }
    Ok(())
}
