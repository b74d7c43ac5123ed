//! The `instance-scheduling` binary's commands (the shared shell is `platform::cli`).

use crate::config::Config;
use crate::startup::{self, Application};

/// The `instance-scheduling` binary.
pub struct InstanceScheduling;

impl platform::cli::Binary for InstanceScheduling {
    const NAME: &'static str = crate::SERVICE;
    const USAGE: &'static str = "  serve        run the service (the default)
  migrate      create the database if needed, apply migrations, declare the broker topology
  rotate-keys  make a new connection-token signing key current; the previous one stays
               published, so tokens already handed out still verify";
    const PREFIX: &'static str = "/api/scheduling";
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
        tracing::info!(port = application.port(), "instance-scheduling listening");
        application.run_until_stopped().await
    }

    async fn migrate(config: Config) -> anyhow::Result<()> {
        let delays = config.retry_delays()?;
        let broker = startup::broker(&config);
        bus::migrate_and_declare(
            move || startup::migrate(&config, platform::db::COMMAND_POOL_SIZE).map(|_| ()),
            crate::topology(delays),
            broker,
        )
        .await
    }

    async fn command(config: Config, args: &[String]) -> Option<anyhow::Result<()>> {
        match args {
            [command] if command == "rotate-keys" => Some(startup::rotate_keys(config).await),
            _ => None,
        }
    }
}
