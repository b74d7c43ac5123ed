//! The `host-agent` binary's commands (the shared shell is `platform::cli`).

use crate::config::Config;
use crate::startup::{self, Application};

/// The `host-agent` binary.
pub struct HostAgent;

impl platform::cli::Binary for HostAgent {
    const NAME: &'static str = crate::SERVICE;
    const USAGE: &'static str =
        "  serve        run the agent (the default): listen, register with instance-scheduling,
               heartbeat, and admit clients that present a connection token";
    const PREFIX: &'static str = "";
    const DEFAULT_PORT: u16 = crate::config::DEFAULT_PORT;

    type Config = Config;

    fn load_config() -> Config {
        Config::from_env_or_exit()
    }

    fn openapi() -> anyhow::Result<utoipa::openapi::OpenApi> {
        startup::openapi()
    }

    /// Ends on SIGTERM, Ctrl-C, or when the scheduler says terminate.
    async fn serve(config: Config) -> anyhow::Result<()> {
        let application = Application::build(config).await?;
        tracing::info!(port = application.port(), "host-agent listening");
        application.run_until_stopped().await
    }
}
