"""Writes services/auth/openapi.json. Run: python3 docs/openapi/auth.py

The spec is committed (the service embeds it at build time); a test checks
that every route the service serves is described."""
import json, pathlib

def ref(name): return {"$ref": f"#/components/schemas/{name}"}
def body(name): return {"required": True, "content": {"application/json": {"schema": ref(name)}}}
def ok(desc, schema=None, headers=None):
    r = {"description": desc}
    if schema: r["content"] = {"application/json": {"schema": ref(schema) if isinstance(schema, str) else schema}}
    if headers: r["headers"] = headers
    return r
def problem(desc): return {"description": desc, "content": {"application/problem+json": {"schema": ref("Problem")}}}
cookie_hdr = {"Set-Cookie": {"description": "refresh_token cookie (HttpOnly, Secure, SameSite=Strict, Path=/api/auth)", "schema": {"type": "string"}}}
bearer = [{"bearer": []}]
E401 = problem("Missing or invalid credentials (WWW-Authenticate: Bearer error=\"invalid_token\")")
E422 = problem("Validation failed; `errors` names each field")
E403 = problem("Cross-site request refused, or forbidden")

paths = {
  "/api/auth/register": {"post": {"summary": "Register with email and password", "requestBody": body("RegisterRequest"),
     "responses": {"201": ok("Created; event user.registered and a verify_email job are queued", {"type": "object", "properties": {"user": ref("User")}}),
                   "409": problem("Email already registered"), "422": E422}}},
  "/api/auth/visitors": {"post": {"summary": "Create an anonymous visitor session", "requestBody": {"required": False, "content": {"application/json": {"schema": ref("VisitorRequest")}}},
     "responses": {"201": ok("Visitor created and signed in", "TokenResponse", cookie_hdr), "422": E422}}},
  "/api/auth/login": {"post": {"summary": "Log in", "requestBody": body("LoginRequest"),
     "responses": {"200": ok("Signed in", "TokenResponse", cookie_hdr), "401": problem("Email or password incorrect (same answer for both)"),
                   "403": problem("Account disabled"), "422": E422, "429": problem("Too many failed logins (Retry-After)")}}},
  "/api/auth/refresh": {"post": {"summary": "Rotate the refresh cookie and get a new access token", "parameters": [{"in": "cookie", "name": "refresh_token", "required": True, "schema": {"type": "string"}}],
     "responses": {"200": ok("New access token; rotated cookie", "TokenResponse", cookie_hdr), "401": problem("Invalid, expired or reused refresh token (reuse revokes the session)"), "403": E403}}},
  "/api/auth/logout": {"post": {"summary": "End this session (bearer token or refresh cookie)", "security": [{"bearer": []}, {}],
     "responses": {"204": {"description": "Session ended; cookie cleared"}, "401": E401, "403": E403}}},
  "/api/auth/logout-all": {"post": {"summary": "End every session of the caller", "security": bearer, "responses": {"204": {"description": "All sessions ended"}, "401": E401}}},
  "/api/auth/sessions": {"get": {"summary": "The caller's live sessions, newest first", "security": bearer,
     "parameters": [{"in": "query", "name": "limit", "schema": {"type": "integer", "minimum": 1, "maximum": 200, "default": 50}},
                    {"in": "query", "name": "cursor", "schema": {"type": "string"}}],
     "responses": {"200": ok("A page of sessions", "SessionPage"), "401": E401, "422": E422}}},
  "/api/auth/sessions/{id}": {"delete": {"summary": "End one of the caller's sessions", "security": bearer,
     "parameters": [{"in": "path", "name": "id", "required": True, "schema": {"type": "string", "format": "uuid"}}],
     "responses": {"204": {"description": "Session ended"}, "401": E401, "404": problem("No such session of the caller")}}},
  "/api/auth/password": {"post": {"summary": "Change the password; other sessions end", "security": bearer, "requestBody": body("ChangePasswordRequest"),
     "responses": {"204": {"description": "Changed"}, "401": E401, "422": E422, "429": problem("Too many wrong current passwords")}}},
  "/api/auth/password/forgot": {"post": {"summary": "Request a reset email (always 202)", "requestBody": body("ForgotPasswordRequest"),
     "responses": {"202": ok("Accepted whether or not the account exists"), "422": E422}}},
  "/api/auth/password/reset": {"post": {"summary": "Set a new password with a single-use token (valid 1 h); every session ends", "requestBody": body("ResetPasswordRequest"),
     "responses": {"204": {"description": "Password set"}, "422": E422}}},
  "/api/auth/verify-email": {"post": {"summary": "Verify the email address; event user.email_verified", "requestBody": body("VerifyEmailRequest"),
     "responses": {"204": {"description": "Verified"}, "422": E422}}},
  "/api/auth/.well-known/jwks.json": {"get": {"summary": "Public signing keys (current and previous)", "responses": {"200": ok("JWK set", "JwkSet")}}},
  "/api/auth/healthz": {"get": {"summary": "Liveness", "responses": {"200": ok("Alive")}}},
  "/api/auth/readyz": {"get": {"summary": "Readiness: database and broker", "responses": {"200": ok("Ready"), "503": ok("Not ready; checks says which dependency failed")}}},
}

s = lambda **p: {"type": "object", "additionalProperties": False, "properties": p, "required": list(p)}
string = {"type": "string"}
schemas = {
  "User": {"type": "object", "properties": {"id": {"type": "string", "format": "uuid"}, "email": {"type": ["string", "null"], "format": "email"},
           "display_name": string, "roles": {"type": "array", "items": {"type": "string", "enum": ["visitor", "user", "staff", "admin"]}},
           "email_verified": {"type": "boolean"}, "created_at": {"type": "string", "format": "date-time"}},
           "required": ["id", "email", "display_name", "roles", "email_verified", "created_at"]},
  "TokenResponse": {"type": "object", "properties": {"access_token": string, "token_type": {"const": "Bearer"}, "expires_in": {"type": "integer"}, "user": ref("User")},
           "required": ["access_token", "token_type", "expires_in", "user"]},
  "RegisterRequest": s(email={"type": "string", "format": "email", "maxLength": 254}, password={"type": "string", "minLength": 8, "maxLength": 128}, display_name={"type": "string", "minLength": 1, "maxLength": 64}),
  "VisitorRequest": {"type": "object", "additionalProperties": False, "properties": {"display_name": {"type": "string", "minLength": 1, "maxLength": 64}}},
  "LoginRequest": s(email={"type": "string", "format": "email"}, password={"type": "string", "minLength": 1, "maxLength": 128}),
  "ChangePasswordRequest": s(current_password=string, new_password={"type": "string", "minLength": 8, "maxLength": 128}),
  "ForgotPasswordRequest": s(email={"type": "string", "format": "email"}),
  "ResetPasswordRequest": s(token=string, new_password={"type": "string", "minLength": 8, "maxLength": 128}),
  "VerifyEmailRequest": s(token=string),
  "Session": {"type": "object", "properties": {"id": {"type": "string", "format": "uuid"}, "created_at": {"type": "string", "format": "date-time"},
           "last_used_at": {"type": "string", "format": "date-time"}, "expires_at": {"type": "string", "format": "date-time"},
           "user_agent": {"type": ["string", "null"]}, "ip": {"type": ["string", "null"]}, "current": {"type": "boolean"}}},
  "SessionPage": {"type": "object", "properties": {"items": {"type": "array", "items": ref("Session")}, "next_cursor": {"type": ["string", "null"]}}, "required": ["items", "next_cursor"]},
  "JwkSet": {"type": "object", "properties": {"keys": {"type": "array", "items": {"type": "object", "properties": {"kty": {"const": "OKP"}, "crv": {"const": "Ed25519"}, "x": string, "kid": string, "alg": {"const": "EdDSA"}, "use": {"const": "sig"}}}}}},
  "Problem": {"type": "object", "properties": {"type": string, "title": string, "status": {"type": "integer"}, "code": string, "detail": string,
           "errors": {"type": "array", "items": {"type": "object", "properties": {"field": string, "message": string}}}}, "required": ["type", "title", "status"]},
}
# A body that is missing or not JSON is refused before any field is read.
E400 = problem("Missing or malformed JSON body")
for operation in (op for ops in paths.values() for op in ops.values()):
    if operation.get("requestBody", {}).get("required"):
        operation["responses"].setdefault("400", E400)
spec = {"openapi": "3.1.0",
        "info": {"title": "auth", "version": "0.1.0", "description": "Identities, passwords, sessions with rotating refresh tokens, EdDSA access tokens (typ at+jwt, aud platform) and the JWKS."},
        "servers": [{"url": "/"}], "paths": paths,
        "components": {"schemas": schemas, "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}}}}
out = pathlib.Path(__file__).resolve().parents[2] / "services/auth/openapi.json"
out.write_text(json.dumps(spec, indent=2) + "\n")
print(f"wrote {out}")
