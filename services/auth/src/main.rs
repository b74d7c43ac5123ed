use std::process::ExitCode;

#[actix_web::main]
async fn main() -> ExitCode {
    auth::cli::main().await
}
