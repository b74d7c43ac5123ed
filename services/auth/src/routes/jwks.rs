use crate::error::Result;
use crate::state::AppState;
use actix_web::{web, HttpResponse};

/// `GET /.well-known/jwks.json`: the current and previous public keys.
pub async fn jwks(state: web::Data<AppState>) -> Result<HttpResponse> {
    let keyring = state.keyring()?;
    Ok(HttpResponse::Ok()
        .insert_header(("cache-control", "public, max-age=60"))
        .json(keyring.jwks()))
}
