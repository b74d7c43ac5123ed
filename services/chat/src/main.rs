use std::process::ExitCode;

#[actix_web::main]
async fn main() -> ExitCode {
    platform::cli::main::<chat::cli::Chat>().await
}
