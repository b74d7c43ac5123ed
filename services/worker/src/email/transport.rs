//! Where emails go: SMTP (lettre, pooled connections, TLS per the URL) or
//! `.eml` files in a folder (the local default).

use lettre::message::Message;
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncFileTransport, AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use std::path::PathBuf;

pub enum Transport {
    Smtp(AsyncSmtpTransport<Tokio1Executor>),
    File(AsyncFileTransport<Tokio1Executor>),
}

/// Why a send failed, and whether trying again may help.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendError {
    pub permanent: bool,
    pub reason: String,
}

impl Transport {
    /// SMTP from a lettre URL: `smtp://host:port` (plain, or STARTTLS with
    /// `?tls=required|opportunistic`), `smtps://` for implicit TLS,
    /// credentials in the URL or, for the password, in a secret file.
    pub fn smtp(url: &str, password_file: Option<&str>) -> anyhow::Result<Self> {
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::from_url(url)
            .map_err(|err| anyhow::anyhow!("SMTP_URL: {err}"))?;
        if let Some(path) = password_file {
            let password = std::fs::read_to_string(path)
                .map_err(|err| anyhow::anyhow!("SMTP_PASSWORD_FILE: cannot read {path}: {err}"))?;
            let user = url_user(url).unwrap_or_default();
            builder = builder.credentials(Credentials::new(user, password.trim_end().to_string()));
        }
        Ok(Transport::Smtp(builder.build()))
    }

    pub fn file(dir: impl Into<PathBuf>) -> anyhow::Result<Self> {
        let dir = dir.into();
        std::fs::create_dir_all(&dir).map_err(|err| {
            anyhow::anyhow!("EMAIL_OUTBOX_DIR: cannot create {}: {err}", dir.display())
        })?;
        Ok(Transport::File(AsyncFileTransport::new(dir)))
    }

    pub async fn send(&self, message: Message) -> Result<(), SendError> {
        match self {
            Transport::Smtp(smtp) => {
                smtp.send(message)
                    .await
                    .map(|_| ())
                    .map_err(|err| SendError {
                        // 5xx answers are final; refused connections, timeouts and
                        // 4xx answers are worth another try.
                        permanent: err.is_permanent(),
                        reason: smtp_reason(&err),
                    })
            }
            Transport::File(file) => {
                file.send(message)
                    .await
                    .map(|_| ())
                    .map_err(|err| SendError {
                        permanent: false,
                        reason: format!("writing the .eml file failed: {err}"),
                    })
            }
        }
    }
}

fn smtp_reason(err: &lettre::transport::smtp::Error) -> String {
    match err.status() {
        Some(code) => format!("SMTP {code}: {err}"),
        None => format!("SMTP: {err}"),
    }
}

fn url_user(url: &str) -> Option<String> {
    let rest = url.split_once("://")?.1;
    let authority = rest.split('/').next()?;
    let (userinfo, _) = authority.rsplit_once('@')?;
    Some(userinfo.split(':').next()?.to_string())
}

#[cfg(test)]
mod tests {
    #[test]
    fn takes_the_user_from_the_url() {
        assert_eq!(
            super::url_user("smtps://mailer@smtp.example.com:465").as_deref(),
            Some("mailer")
        );
        assert_eq!(super::url_user("smtp://a:b@h").as_deref(), Some("a"));
        assert_eq!(super::url_user("smtp://h:25"), None);
    }
}
