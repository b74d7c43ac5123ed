use crate::error::Result;
use crate::state::AppState;
use actix_web::{get, web, HttpResponse};

/// The public keys that verify connection tokens: the current and the
/// previous one.
#[utoipa::path(
    tag = "keys",
    responses(
        (status = 200, description = "The current and the previous public signing keys", body = authn::JwkSet),
    )
)]
#[get("/.well-known/jwks.json")]
pub async fn jwks(state: web::Data<AppState>) -> Result<HttpResponse> {
    let keyring = state.keyring()?;
    Ok(HttpResponse::Ok()
        .insert_header(("cache-control", "public, max-age=60"))
        .json(keyring.jwks()))
}
