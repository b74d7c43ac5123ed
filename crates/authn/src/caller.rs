use crate::verifier::Verifier;
use actix_web::dev::Payload;
use actix_web::http::header::AUTHORIZATION;
use actix_web::{web, FromRequest, HttpRequest};
use domain::claims::AccessClaims;
use domain::{Role, SessionId, UserId};
use futures_util::future::LocalBoxFuture;
use platform::Problem;

/// The authenticated caller, from `Authorization: Bearer <access token>`.
/// Needs `web::Data<Verifier>` in the app.
#[derive(Debug, Clone)]
pub struct Caller {
    pub user_id: UserId,
    pub session_id: SessionId,
    pub roles: Vec<Role>,
    pub claims: AccessClaims,
}

impl Caller {
    pub fn has_role(&self, role: Role) -> bool {
        self.roles.contains(&role)
    }

    /// 403 unless the caller has `role`.
    pub fn require(&self, role: Role) -> Result<(), Problem> {
        if self.has_role(role) {
            Ok(())
        } else {
            Err(Problem::forbidden(format!("requires the {role} role")))
        }
    }

    /// 403 unless the caller has one of `roles`.
    pub fn require_any(&self, roles: &[Role]) -> Result<(), Problem> {
        if roles.iter().any(|r| self.has_role(*r)) {
            Ok(())
        } else {
            let names: Vec<_> = roles.iter().map(Role::as_str).collect();
            Err(Problem::forbidden(format!(
                "requires one of the roles {}",
                names.join(", ")
            )))
        }
    }

    fn from_claims(claims: AccessClaims) -> Result<Self, Problem> {
        let user_id = claims
            .sub
            .parse()
            .map_err(|_| Problem::invalid_token("sub is not a user id"))?;
        let session_id = claims
            .sid
            .parse()
            .map_err(|_| Problem::invalid_token("sid is not a session id"))?;
        Ok(Self {
            user_id,
            session_id,
            roles: claims.roles.clone(),
            claims,
        })
    }
}

/// The bearer token of a request, if it has one.
pub fn bearer_token(req: &HttpRequest) -> Option<String> {
    let value = req.headers().get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim().to_string())
        .filter(|t| !t.is_empty())
}

impl FromRequest for Caller {
    type Error = Problem;
    type Future = LocalBoxFuture<'static, Result<Self, Problem>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let token = bearer_token(req);
        let verifier = req.app_data::<web::Data<Verifier>>().cloned();
        Box::pin(async move {
            let token = token.ok_or_else(|| {
                Problem::invalid_token("an Authorization: Bearer access token is required")
            })?;
            let verifier = verifier.ok_or_else(|| {
                tracing::error!("no token verifier configured");
                Problem::internal()
            })?;
            let claims = verifier
                .verify(&token)
                .await
                .map_err(|err| Problem::invalid_token(err.to_string()))?;
            Caller::from_claims(claims)
        })
    }
}

impl Caller {
    /// For routes that accept but do not require a bearer token.
    pub async fn optional(req: &HttpRequest) -> Result<Option<Self>, Problem> {
        if bearer_token(req).is_none() {
            return Ok(None);
        }
        Self::from_request(req, &mut Payload::None).await.map(Some)
    }
}
