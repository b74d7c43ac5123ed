use std::process::ExitCode;

#[actix_web::main]
async fn main() -> ExitCode {
    platform::cli::main::<worker::cli::Worker>().await
}
