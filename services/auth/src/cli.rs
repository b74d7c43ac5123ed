//! The `auth` binary's commands.

use crate::config::Config;
use crate::signup::create_user;
use crate::startup::{self, Application};
use crate::store::users::{self, NewUser};
use diesel::Connection;
use domain::messages::UserKind;
use domain::{DisplayName, Email, Password, Role};
use std::io::{BufRead, IsTerminal};

/// The `auth` binary.
pub struct Auth;

impl platform::cli::Binary for Auth {
    const NAME: &'static str = crate::SERVICE;
    const USAGE: &'static str = "  serve        run the HTTP service (the default)
  migrate      apply database migrations and exit
  create-admin --email EMAIL [--display-name NAME]
               create an administrator; the password is read from stdin
               (prompted for when stdin is a terminal)
  rotate-keys  make a new signing key current; the previous one stays
               published, so tokens it signed keep working until they expire";
    const PREFIX: &'static str = "/api/auth";
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
        tracing::info!(port = application.port(), "auth listening");
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
        Some(match args.first().map(String::as_str)? {
            "create-admin" => create_admin_command(config, &args[1..]).await,
            "rotate-keys" if args.len() == 1 => {
                match tokio::task::spawn_blocking(move || rotate_keys(&config)).await {
                    Ok(outcome) => outcome,
                    Err(err) => Err(err.into()),
                }
            }
            _ => return None,
        })
    }
}

async fn create_admin_command(config: Config, args: &[String]) -> anyhow::Result<()> {
    let (email, name) = admin_arguments(args).map_err(|message| anyhow::anyhow!("{message}"))?;
    let password = tokio::task::spawn_blocking(read_password).await??;
    let id = create_admin(config, email.clone(), name, password).await?;
    println!("created admin {id} ({email})");
    Ok(())
}

fn admin_arguments(args: &[String]) -> Result<(Email, DisplayName), String> {
    let mut email = None;
    let mut name = None;
    let mut rest = args.iter();
    while let Some(flag) = rest.next() {
        let value = rest.next().ok_or_else(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--email" => email = Some(Email::parse(value).map_err(|e| format!("--email {e}"))?),
            "--display-name" => {
                name = Some(DisplayName::parse(value).map_err(|e| format!("--display-name {e}"))?)
            }
            other => return Err(format!("unknown option {other}")),
        }
    }
    let email = email.ok_or("--email is required")?;
    let name = match name {
        Some(name) => name,
        None => DisplayName::parse("Administrator").map_err(|e| e.to_string())?,
    };
    Ok((email, name))
}

fn read_password() -> anyhow::Result<Password> {
    let raw = if std::io::stdin().is_terminal() {
        let first = rpassword::prompt_password("Password: ")?;
        let second = rpassword::prompt_password("Repeat password: ")?;
        if first != second {
            anyhow::bail!("the passwords do not match");
        }
        first
    } else {
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line)?;
        line.trim_end_matches(['\r', '\n']).to_string()
    };
    Password::parse(&raw).map_err(|e| anyhow::anyhow!("password {e}"))
}

/// Creates an administrator (roles user and admin, email verified);
/// `user.registered` with kind `admin` leaves through the outbox, so the
/// accounts service lists them too.
pub async fn create_admin(
    config: Config,
    email: Email,
    name: DisplayName,
    password: Password,
) -> anyhow::Result<uuid::Uuid> {
    let hasher = crate::domain::password::Hasher::new(
        config.argon2_memory_kib,
        config.argon2_iterations,
        config.argon2_parallelism,
    )?;
    let hash = hasher.hash(&password).await?;
    tokio::task::spawn_blocking(move || {
        let pool = startup::migrate(&config, platform::db::COMMAND_POOL_SIZE)?;
        let mut conn = pool.get()?;
        let user = conn.transaction(|conn| -> anyhow::Result<_> {
            if users::find_by_email(conn, email.as_str())?.is_some() {
                anyhow::bail!("an account with email {email} already exists");
            }
            let user = create_user(
                conn,
                NewUser::new(
                    Some(email.as_str().to_string()),
                    name.as_str().to_string(),
                    Some(hash),
                    &[Role::User, Role::Admin],
                )
                .verified(),
                UserKind::Admin,
            )?;
            Ok(user)
        })?;
        Ok(user.id)
    })
    .await?
}

fn rotate_keys(config: &Config) -> anyhow::Result<()> {
    let pool = startup::migrate(config, platform::db::COMMAND_POOL_SIZE)?;
    let mut conn = pool.get()?;
    let keys = signing::store::rotate(&mut conn, crate::domain::keys::KEYS_LOCK)?;
    let kids: Vec<&str> = keys.iter().map(|k| k.kid.as_str()).collect();
    println!(
        "signing key rotated; current kid {}, published kids {}",
        kids.first().copied().unwrap_or("-"),
        kids.join(", ")
    );
    Ok(())
}
