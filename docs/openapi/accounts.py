"""Writes services/accounts/openapi.json. Run: python3 docs/openapi/accounts.py"""
import json, pathlib

def ref(name): return {"$ref": f"#/components/schemas/{name}"}
def ok(desc, schema=None):
    r = {"description": desc}
    if schema: r["content"] = {"application/json": {"schema": ref(schema)}}
    return r
def problem(desc): return {"description": desc, "content": {"application/problem+json": {"schema": ref("Problem")}}}
bearer = [{"bearer": []}]
uid = [{"in": "path", "name": "id", "required": True, "schema": {"type": "string", "format": "uuid"}}]
E401, E403, E404, E422 = problem("Missing or invalid access token"), problem("Not allowed for the caller's roles"), problem("No such user"), problem("Validation failed; `errors` names each field")

paths = {
  "/api/accounts/me": {
    "get": {"summary": "The caller's profile", "security": bearer, "responses": {"200": ok("Profile", "Profile"), "401": E401, "404": problem("Profile not created yet")}},
    "patch": {"summary": "Update the caller's display name, avatar, locale, time zone (null clears); event account.profile_updated", "security": bearer,
              "requestBody": {"required": True, "content": {"application/json": {"schema": ref("ProfileUpdate")}}},
              "responses": {"200": ok("Updated profile", "Profile"), "401": E401, "422": E422}}},
  "/api/accounts/users": {"get": {"summary": "Search the directory (admin)", "security": bearer,
    "parameters": [{"in": "query", "name": "q", "description": "case-insensitive substring (and so prefix) of email or display name", "schema": {"type": "string", "maxLength": 254}},
                   {"in": "query", "name": "role", "schema": {"type": "string", "enum": ["visitor", "user", "staff", "admin"]}},
                   {"in": "query", "name": "status", "schema": {"type": "string", "enum": ["active", "disabled"]}},
                   {"in": "query", "name": "limit", "schema": {"type": "integer", "minimum": 1, "maximum": 200, "default": 50}},
                   {"in": "query", "name": "cursor", "description": "next_cursor of the previous page; absent or empty for the first", "schema": {"type": "string"}}],
    "responses": {"200": ok("A page of profiles", "ProfilePage"), "401": E401, "403": E403, "422": E422}}},
  "/api/accounts/users/{id}": {"get": {"summary": "A profile (admin, staff)", "security": bearer, "parameters": uid,
    "responses": {"200": ok("Profile", "Profile"), "401": E401, "403": E403, "404": E404}}},
  "/api/accounts/users/{id}/roles": {"put": {"summary": "Set roles (admin); event account.roles_changed. An admin cannot remove their own admin role.", "security": bearer, "parameters": uid,
    "requestBody": {"required": True, "content": {"application/json": {"schema": ref("RolesUpdate")}}},
    "responses": {"200": ok("Updated profile", "Profile"), "401": E401, "403": E403, "404": E404, "422": E422}}},
  "/api/accounts/users/{id}/disable": {"post": {"summary": "Disable (admin); event account.disabled; every session ends. Not oneself.", "security": bearer, "parameters": uid,
    "responses": {"200": ok("Profile", "Profile"), "401": E401, "403": E403, "404": E404}}},
  "/api/accounts/users/{id}/enable": {"post": {"summary": "Enable (admin); event account.enabled", "security": bearer, "parameters": uid,
    "responses": {"200": ok("Profile", "Profile"), "401": E401, "403": E403, "404": E404}}},
  "/api/accounts/healthz": {"get": {"summary": "Liveness", "responses": {"200": ok("Alive")}}},
  "/api/accounts/readyz": {"get": {"summary": "Readiness: database and broker", "responses": {"200": ok("Ready"), "503": ok("Not ready")}}},
}
string, nstring = {"type": "string"}, {"type": ["string", "null"]}
schemas = {
  "Profile": {"type": "object", "required": ["id", "email", "display_name", "avatar_url", "locale", "timezone", "roles", "status", "created_at", "updated_at"],
    "properties": {"id": {"type": "string", "format": "uuid"}, "email": nstring, "display_name": string, "avatar_url": nstring, "locale": nstring, "timezone": nstring,
                   "roles": {"type": "array", "items": {"type": "string", "enum": ["visitor", "user", "staff", "admin"]}}, "status": {"type": "string", "enum": ["active", "disabled"]},
                   "created_at": {"type": "string", "format": "date-time"}, "updated_at": {"type": "string", "format": "date-time"}}},
  "ProfilePage": {"type": "object", "required": ["items", "next_cursor"], "properties": {"items": {"type": "array", "items": ref("Profile")}, "next_cursor": nstring}},
  "ProfileUpdate": {"type": "object", "additionalProperties": False, "properties": {"display_name": {"type": "string", "minLength": 1, "maxLength": 64},
    "avatar_url": {"type": ["string", "null"], "format": "uri", "maxLength": 2048}, "locale": {"type": ["string", "null"], "description": "BCP 47, e.g. pt-BR"},
    "timezone": {"type": ["string", "null"], "description": "IANA, e.g. Europe/Paris"}}},
  "RolesUpdate": {"type": "object", "additionalProperties": False, "required": ["roles"], "properties": {"roles": {"type": "array", "minItems": 1, "items": {"type": "string", "enum": ["visitor", "user", "staff", "admin"]}}}},
  "Problem": {"type": "object", "required": ["type", "title", "status"], "properties": {"type": string, "title": string, "status": {"type": "integer"}, "code": string, "detail": string,
    "errors": {"type": "array", "items": {"type": "object", "properties": {"field": string, "message": string}}}}},
}
# A body that is missing or not JSON is refused before any field is read.
E400 = problem("Missing or malformed JSON body")
for operation in (op for ops in paths.values() for op in ops.values()):
    if operation.get("requestBody", {}).get("required"):
        operation["responses"].setdefault("400", E400)
spec = {"openapi": "3.1.0", "info": {"title": "accounts", "version": "0.1.0", "description": "User directory; authority for roles and account status."},
        "servers": [{"url": "/"}], "paths": paths,
        "components": {"schemas": schemas, "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}}}}
out = pathlib.Path(__file__).resolve().parents[2] / "services/accounts/openapi.json"
out.write_text(json.dumps(spec, indent=2) + "\n")
print(f"wrote {out}")
