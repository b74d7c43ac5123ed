//! The `worker` binary's commands (the shared shell is `platform::cli`).

use crate::config::Config;
use crate::startup::{self, Application};

/// The `worker` binary.
pub struct Worker;

impl platform::cli::Binary for Worker {
    const NAME: &'static str = crate::SERVICE;
    const USAGE: &'static str = "  serve        consume the job queues (the default)
  migrate      create the database if needed, apply migrations, declare the broker topology
  dead-letters list --queue QUEUE
               the messages parked in QUEUE.dead
  dead-letters requeue --queue QUEUE (--id ID | --all)
               move parked messages back to QUEUE";
    const PREFIX: &'static str = "/api/worker";
    const DEFAULT_PORT: u16 = crate::config::DEFAULT_PORT;

    type Config = Config;

    fn load_config() -> Config {
        Config::from_env_or_exit()
    }

    fn openapi() -> anyhow::Result<utoipa::openapi::OpenApi> {
        startup::openapi()
    }

    async fn serve(config: Config) -> anyhow::Result<()> {
        let application = Application::build(config).await?;
        tracing::info!(port = application.port(), "worker running");
        application.run_until_stopped().await
    }

    async fn migrate(config: Config) -> anyhow::Result<()> {
        let topology = startup::topology(&config)?;
        let broker = startup::broker(&config);
        bus::migrate_and_declare(
            move || startup::migrate(&config, platform::db::COMMAND_POOL_SIZE).map(|_| ()),
            topology,
            broker,
        )
        .await
    }

    async fn command(config: Config, args: &[String]) -> Option<anyhow::Result<()>> {
        let words: Vec<&str> = args.iter().map(String::as_str).collect();
        Some(match words.as_slice() {
            ["dead-letters", "list", "--queue", queue] => list(&config, queue).await,
            ["dead-letters", "requeue", "--queue", queue, "--all"] => {
                requeue(&config, queue, None).await
            }
            ["dead-letters", "requeue", "--queue", queue, "--id", id] => {
                requeue(&config, queue, Some(id)).await
            }
            _ => return None,
        })
    }
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
