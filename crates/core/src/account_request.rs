//! The sender-account registration request, exactly as the provider documentation
//! gives it, and the rules that turn it into a [`NewSenderAccount`].
//!
//! Parsing is done in three passes so every rejection names its field: the body must
//! be a JSON object, it may hold only known fields, and each field must have the
//! right type and a valid value.

use secrecy::SecretString;
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::error_code::{ErrorCode, without_value};

use crate::account::{
    AccountSecrets, DailyLimit, DisplayName, EmailAddress, Endpoint, Host, InboxType, NewSenderAccount, Port,
};
use crate::oauth::{AuthMethod, OAuthClient, OAuthProvider};

/// Largest body accepted by the API, in bytes.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// The JSON body of `POST /api/public/v1/sender-accounts`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(example = json!({
    "email_address": "john@mydomain.com",
    "display_name": "John Smith from Company",
    "inbox_type": "GOOGLE_WORKSPACE",
    "daily_limit": 50,
    "smtp_host": "smtp.gmail.com",
    "smtp_port": 587,
    "smtp_username": "john@mydomain.com",
    "smtp_password": "your-app-password",
    "smtp_use_tls": true,
    "imap_host": "imap.gmail.com",
    "imap_port": 993,
    "imap_username": "john@mydomain.com",
    "imap_password": "your-app-password",
    "imap_use_ssl": true
})))]
pub struct SenderAccountRequest {
    #[cfg_attr(feature = "openapi", schema(format = Email, min_length = 3, max_length = 254))]
    pub email_address: String,
    /// Shown in the From header; no CR/LF.
    #[cfg_attr(feature = "openapi", schema(min_length = 1, max_length = 200, pattern = r"^[^\r\n]*$"))]
    pub display_name: String,
    /// GOOGLE_WORKSPACE, OUTLOOK_365 or CUSTOM_SMTP.
    #[cfg_attr(feature = "openapi", schema(pattern = "^(GOOGLE_WORKSPACE|OUTLOOK_365|CUSTOM_SMTP)$"))]
    pub inbox_type: String,
    /// 1 to the inbox type's maximum (2,000 / 10,000 / 100,000).
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 100000))]
    pub daily_limit: i64,
    /// Optional for GOOGLE_WORKSPACE and OUTLOOK_365 (provider default).
    #[cfg_attr(feature = "openapi", schema(min_length = 1, max_length = 253))]
    pub smtp_host: Option<String>,
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 65535))]
    pub smtp_port: Option<i64>,
    /// Required with passwords; with OAuth2 it defaults to email_address.
    #[cfg_attr(feature = "openapi", schema(min_length = 1, max_length = 320))]
    pub smtp_username: Option<String>,
    /// Required with passwords; absent with OAuth2.
    #[cfg_attr(feature = "openapi", schema(format = Password, min_length = 1, max_length = 1024))]
    pub smtp_password: Option<String>,
    /// STARTTLS, or implicit TLS on port 465. Defaults to true.
    pub smtp_use_tls: Option<bool>,
    #[cfg_attr(feature = "openapi", schema(min_length = 1, max_length = 253))]
    pub imap_host: Option<String>,
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 65535))]
    pub imap_port: Option<i64>,
    /// Required with passwords; with OAuth2 it defaults to email_address.
    #[cfg_attr(feature = "openapi", schema(min_length = 1, max_length = 320))]
    pub imap_username: Option<String>,
    /// Required with passwords; absent with OAuth2.
    #[cfg_attr(feature = "openapi", schema(format = Password, min_length = 1, max_length = 1024))]
    pub imap_password: Option<String>,
    /// Implicit TLS (993). When false, STARTTLS is used if the server offers it. Defaults to true.
    pub imap_use_ssl: Option<bool>,
    /// Not in the provider documentation: absent (or `{"type": "PASSWORD"}`) means the
    /// passwords above; `{"type": "OAUTH2", …}` signs in with a refresh token instead.
    pub auth: Option<AuthRequest>,
}

/// The optional `auth` object of a registration.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(example = json!({
    "type": "OAUTH2", "provider": "MICROSOFT", "refresh_token": "0.AXoA…"
})))]
pub struct AuthRequest {
    /// PASSWORD or OAUTH2.
    #[serde(rename = "type")]
    #[cfg_attr(feature = "openapi", schema(pattern = "^(PASSWORD|OAUTH2)$"))]
    pub kind: String,
    /// GOOGLE, MICROSOFT (client from the server's `[oauth]` settings) or CUSTOM.
    #[cfg_attr(feature = "openapi", schema(pattern = "^(GOOGLE|MICROSOFT|CUSTOM)$"))]
    pub provider: Option<String>,
    /// A refresh token the operator already holds; sealed at rest, never returned.
    #[cfg_attr(feature = "openapi", schema(format = Password, min_length = 1, max_length = 8192))]
    pub refresh_token: Option<String>,
    /// CUSTOM only: the OAuth client and the token endpoint that refreshes its tokens.
    pub client_id: Option<String>,
    #[cfg_attr(feature = "openapi", schema(format = Password))]
    pub client_secret: Option<String>,
    pub token_url: Option<String>,
    pub authorize_url: Option<String>,
    pub scopes: Option<Vec<String>>,
}

/// Every field the request may carry, in documentation order.
pub const FIELDS: [&str; 15] = [
    "email_address",
    "display_name",
    "inbox_type",
    "daily_limit",
    "smtp_host",
    "smtp_port",
    "smtp_username",
    "smtp_password",
    "smtp_use_tls",
    "imap_host",
    "imap_port",
    "imap_username",
    "imap_password",
    "imap_use_ssl",
    "auth",
];

/// The body of a `PATCH`: a JSON object (within the size limit) naming at least one field.
pub fn patch_object(body: &[u8]) -> Result<Map<String, Value>, RequestError> {
    if body.len() > MAX_BODY_BYTES {
        return Err(RequestError::new(
            ErrorCode::BodyTooLarge,
            format!("request body is larger than {MAX_BODY_BYTES} bytes"),
            None,
        ));
    }
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| RequestError::new(ErrorCode::InvalidJson, format!("request body is not valid JSON: {e}"), None))?;
    let Value::Object(patch) = value else {
        return Err(RequestError::new(ErrorCode::InvalidJson, "request body must be a JSON object", None));
    };
    if patch.is_empty() {
        return Err(RequestError::new(ErrorCode::InvalidBody, "the patch changes nothing: name a field", None));
    }
    Ok(patch)
}

/// Fields required whatever the inbox type.
const ALWAYS_REQUIRED: [&str; 4] = ["email_address", "display_name", "inbox_type", "daily_limit"];

/// Fields required with passwords (and refused with OAuth2's, which carry none).
const PASSWORD_FIELDS: [&str; 4] = ["smtp_username", "smtp_password", "imap_username", "imap_password"];

/// Why a request was rejected; `code` is stable and machine-readable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct RequestError {
    pub code: ErrorCode,
    pub message: String,
    pub field: Option<String>,
}

impl RequestError {
    pub fn new(code: ErrorCode, message: impl Into<String>, field: Option<&str>) -> Self {
        Self { code, message: message.into(), field: field.map(str::to_owned) }
    }

    fn field(code: ErrorCode, field: &str, message: impl Into<String>) -> Self {
        Self::new(code, message, Some(field))
    }
}

impl SenderAccountRequest {
    /// Parses a raw body (already size-checked) into a valid new account.
    pub fn parse_body(body: &[u8]) -> Result<NewSenderAccount, RequestError> {
        if body.len() > MAX_BODY_BYTES {
            return Err(RequestError::new(
                ErrorCode::BodyTooLarge,
                format!("request body is larger than {MAX_BODY_BYTES} bytes"),
                None,
            ));
        }
        let value: Value = serde_json::from_slice(body).map_err(|e| {
            RequestError::new(ErrorCode::InvalidJson, format!("request body is not valid JSON: {e}"), None)
        })?;
        Self::parse_value(value)
    }

    /// Parses an already-decoded JSON value into a valid new account.
    pub fn parse_value(value: Value) -> Result<NewSenderAccount, RequestError> {
        let Value::Object(map) = value else {
            return Err(RequestError::new(ErrorCode::InvalidJson, "request body must be a JSON object", None));
        };
        check_field_names(&map)?;
        let request: SenderAccountRequest = serde_path_to_error::deserialize(Value::Object(map)).map_err(|e| {
            let field = e.path().to_string();
            // Never quote the value: it may be a password sent with the wrong type.
            RequestError::field(
                ErrorCode::InvalidType,
                &field,
                format!("{field}: {}", without_value(&e.inner().to_string())),
            )
        })?;
        request.into_account()
    }

    /// Applies the value rules and provider defaults.
    pub fn into_account(self) -> Result<NewSenderAccount, RequestError> {
        let inbox_type: InboxType = self.inbox_type.parse().map_err(|()| {
            RequestError::field(
                ErrorCode::InvalidInboxType,
                "inbox_type",
                format!(
                    "unknown inbox_type '{}'; expected GOOGLE_WORKSPACE, OUTLOOK_365 or CUSTOM_SMTP",
                    self.inbox_type
                ),
            )
        })?;
        let email = EmailAddress::parse(&self.email_address)
            .map_err(|m| RequestError::field(ErrorCode::InvalidEmail, "email_address", m))?;
        let display_name = DisplayName::parse(&self.display_name)
            .map_err(|m| RequestError::field(ErrorCode::InvalidDisplayName, "display_name", m))?;
        let daily_limit = DailyLimit::parse(self.daily_limit, inbox_type)
            .map_err(|m| RequestError::field(ErrorCode::DailyLimitExceeded, "daily_limit", m))?;
        let preset = inbox_type.preset();
        let (auth, secrets) = match self.auth {
            Some(a) if a.kind == "OAUTH2" => a.into_oauth()?,
            Some(a) if a.kind == "PASSWORD" => {
                if let Some(f) = a.set_fields().first() {
                    return Err(RequestError::field(
                        ErrorCode::InvalidAuth,
                        &format!("auth.{f}"),
                        format!("auth.{f} is only for \"type\": \"OAUTH2\""),
                    ));
                }
                (AuthMethod::Password, password_secrets(self.smtp_password, self.imap_password)?)
            }
            Some(a) => {
                return Err(RequestError::field(
                    ErrorCode::InvalidAuth,
                    "auth.type",
                    format!("unknown auth.type '{}'; expected PASSWORD or OAUTH2", a.kind),
                ));
            }
            None => (AuthMethod::Password, password_secrets(self.smtp_password, self.imap_password)?),
        };
        // OAuth2 signs in as the mailbox itself unless told otherwise.
        let username = |given: Option<String>| given.unwrap_or_else(|| email.as_str().to_owned());
        let smtp = endpoint(
            "smtp",
            self.smtp_host,
            self.smtp_port,
            self.smtp_use_tls,
            username(self.smtp_username),
            preset.map(|p| p.smtp),
        )?;
        let imap = endpoint(
            "imap",
            self.imap_host,
            self.imap_port,
            self.imap_use_ssl,
            username(self.imap_username),
            preset.map(|p| p.imap),
        )?;
        Ok(NewSenderAccount { email, display_name, inbox_type, daily_limit, smtp, imap, auth, secrets })
    }
}

fn password_secrets(smtp: Option<String>, imap: Option<String>) -> Result<AccountSecrets, RequestError> {
    let missing = |f: &str| RequestError::field(ErrorCode::MissingField, f, format!("missing required field '{f}'"));
    Ok(AccountSecrets::Password {
        smtp: password("smtp_password", smtp.ok_or_else(|| missing("smtp_password"))?)?,
        imap: password("imap_password", imap.ok_or_else(|| missing("imap_password"))?)?,
    })
}

impl AuthRequest {
    /// The OAuth2-only fields this object sets.
    fn set_fields(&self) -> Vec<&'static str> {
        [
            ("provider", self.provider.is_some()),
            ("refresh_token", self.refresh_token.is_some()),
            ("client_id", self.client_id.is_some()),
            ("client_secret", self.client_secret.is_some()),
            ("token_url", self.token_url.is_some()),
            ("authorize_url", self.authorize_url.is_some()),
            ("scopes", self.scopes.is_some()),
        ]
        .into_iter()
        .filter_map(|(f, set)| set.then_some(f))
        .collect()
    }

    fn into_oauth(self) -> Result<(AuthMethod, AccountSecrets), RequestError> {
        let bad = |f: &str, m: String| RequestError::field(ErrorCode::InvalidAuth, &format!("auth.{f}"), m);
        let raw = self.provider.ok_or_else(|| bad("provider", "auth.provider is required with OAUTH2".into()))?;
        let provider = OAuthProvider::ALL.into_iter().find(|p| p.as_str() == raw).ok_or_else(|| {
            bad("provider", format!("unknown auth.provider '{raw}'; expected GOOGLE, MICROSOFT or CUSTOM"))
        })?;
        let refresh = self.refresh_token.ok_or_else(|| {
            bad(
                "refresh_token",
                "auth.refresh_token is required here; to sign in through the provider instead, \
                 POST /api/public/v1/sender-accounts/oauth/{provider}/start"
                    .into(),
            )
        })?;
        let refresh_token = token("refresh_token", refresh)?;
        let client_secret = self.client_secret.map(|s| token("client_secret", s)).transpose()?;
        let client = if provider == OAuthProvider::Custom {
            let client_id = self
                .client_id
                .filter(|c| !c.trim().is_empty() && !c.chars().any(char::is_control))
                .ok_or_else(|| bad("client_id", "auth.client_id is required with provider CUSTOM".into()))?;
            let token_url = http_url("token_url", self.token_url)?
                .ok_or_else(|| bad("token_url", "auth.token_url is required with provider CUSTOM".into()))?;
            let authorize_url = http_url("authorize_url", self.authorize_url)?;
            let scopes = self.scopes.unwrap_or_default();
            if scopes.iter().any(|s| s.is_empty() || s.chars().any(|c| c.is_whitespace() || c.is_control())) {
                return Err(bad("scopes", "each scope must be a non-empty word without spaces".into()));
            }
            Some(OAuthClient { client_id, token_url, authorize_url, scopes })
        } else {
            let own = [
                ("client_id", self.client_id.is_some()),
                ("client_secret", client_secret.is_some()),
                ("token_url", self.token_url.is_some()),
                ("authorize_url", self.authorize_url.is_some()),
                ("scopes", self.scopes.is_some()),
            ];
            if let Some((f, _)) = own.into_iter().find(|(_, set)| *set) {
                return Err(bad(
                    f,
                    format!("auth.{f} is only for provider CUSTOM; {raw} uses the server's [oauth] settings"),
                ));
            }
            None
        };
        Ok((AuthMethod::OAuth2 { provider, client }, AccountSecrets::OAuth2 { refresh_token, client_secret }))
    }
}

fn token(field: &str, raw: String) -> Result<SecretString, RequestError> {
    if raw.is_empty() || raw.len() > 8192 || raw.chars().any(|c| c.is_control() || c == ' ') {
        return Err(RequestError::field(
            ErrorCode::InvalidAuth,
            &format!("auth.{field}"),
            format!("auth.{field} must be 1-8192 printable characters without spaces"),
        ));
    }
    Ok(SecretString::from(raw))
}

fn http_url(field: &str, raw: Option<String>) -> Result<Option<String>, RequestError> {
    let Some(raw) = raw else { return Ok(None) };
    let ok = (raw.starts_with("https://") || raw.starts_with("http://"))
        && raw.len() <= 2048
        && !raw.chars().any(|c| c.is_whitespace() || c.is_control());
    if !ok {
        return Err(RequestError::field(
            ErrorCode::InvalidAuth,
            &format!("auth.{field}"),
            format!("auth.{field} must be an http(s) URL"),
        ));
    }
    Ok(Some(raw))
}

fn check_field_names(map: &Map<String, Value>) -> Result<(), RequestError> {
    if let Some(unknown) = map.keys().find(|k| !FIELDS.contains(&k.as_str())) {
        return Err(RequestError::field(
            ErrorCode::UnknownField,
            unknown,
            format!("unknown field '{unknown}'; allowed fields: {}", FIELDS.join(", ")),
        ));
    }
    // An explicit null counts as missing for required fields.
    let present = |f: &str| map.get(f).is_some_and(|v| !v.is_null());
    if let Some(missing) = ALWAYS_REQUIRED.into_iter().find(|f| !present(f)) {
        return Err(RequestError::field(
            ErrorCode::MissingField,
            missing,
            format!("missing required field '{missing}'"),
        ));
    }
    let oauth = map.get("auth").and_then(|a| a.get("type")).and_then(Value::as_str) == Some("OAUTH2");
    if oauth {
        if let Some(f) = ["smtp_password", "imap_password"].into_iter().find(|f| present(f)) {
            return Err(RequestError::field(
                ErrorCode::InvalidAuth,
                f,
                format!("{f} must be left out when auth.type is OAUTH2 (the account signs in with tokens)"),
            ));
        }
    } else if let Some(missing) = PASSWORD_FIELDS.into_iter().find(|f| !present(f)) {
        return Err(RequestError::field(
            ErrorCode::MissingField,
            missing,
            format!("missing required field '{missing}'"),
        ));
    }
    let custom = map.get("inbox_type").and_then(Value::as_str) == Some(InboxType::CustomSmtp.as_str());
    if custom {
        let needed = ["smtp_host", "smtp_port", "imap_host", "imap_port"];
        if let Some(missing) = needed.into_iter().find(|f| !present(f)) {
            return Err(RequestError::field(
                ErrorCode::MissingField,
                missing,
                format!("missing required field '{missing}' (CUSTOM_SMTP has no provider defaults)"),
            ));
        }
    }
    Ok(())
}

fn endpoint(
    proto: &str,
    host: Option<String>,
    port: Option<i64>,
    tls: Option<bool>,
    username: String,
    preset: Option<(&'static str, u16, bool)>,
) -> Result<Endpoint, RequestError> {
    let host_field = format!("{proto}_host");
    let port_field = format!("{proto}_port");
    let host = match (host, preset) {
        (Some(h), _) => Host::parse(&h).map_err(|m| RequestError::field(ErrorCode::InvalidHost, &host_field, m))?,
        (None, Some((h, _, _))) => {
            Host::parse(h).map_err(|m| RequestError::field(ErrorCode::InvalidHost, &host_field, m))?
        }
        (None, None) => {
            return Err(RequestError::field(ErrorCode::MissingField, &host_field, format!("missing {host_field}")));
        }
    };
    let port = match (port, preset) {
        (Some(p), _) => Port::parse(p).map_err(|m| RequestError::field(ErrorCode::InvalidPort, &port_field, m))?,
        (None, Some((_, p, _))) => {
            Port::parse(i64::from(p)).map_err(|m| RequestError::field(ErrorCode::InvalidPort, &port_field, m))?
        }
        (None, None) => {
            return Err(RequestError::field(ErrorCode::MissingField, &port_field, format!("missing {port_field}")));
        }
    };
    let tls = tls.or(preset.map(|(_, _, t)| t)).unwrap_or(true);
    let user_field = format!("{proto}_username");
    if username.trim().is_empty() || username.len() > 320 || username.chars().any(char::is_control) {
        return Err(RequestError::field(
            ErrorCode::InvalidUsername,
            &user_field,
            format!("{user_field} must be 1-320 characters without control characters"),
        ));
    }
    Ok(Endpoint { host, port, tls, username: username.trim().to_owned() })
}

fn password(field: &str, raw: String) -> Result<SecretString, RequestError> {
    // CR, LF and NUL cannot travel inside SMTP AUTH or an IMAP LOGIN string.
    if raw.is_empty() || raw.len() > 1024 || raw.chars().any(|c| matches!(c, '\r' | '\n' | '\0')) {
        return Err(RequestError::field(
            ErrorCode::InvalidPassword,
            field,
            format!("{field} must be 1-1024 characters without CR, LF or NUL"),
        ));
    }
    Ok(SecretString::from(raw))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn google() -> Value {
        json!({
            "email_address": "john@mydomain.com",
            "display_name": "John Smith from Company",
            "inbox_type": "GOOGLE_WORKSPACE",
            "daily_limit": 50,
            "smtp_host": "smtp.gmail.com",
            "smtp_port": 587,
            "smtp_username": "john@mydomain.com",
            "smtp_password": "your-app-password",
            "smtp_use_tls": true,
            "imap_host": "imap.gmail.com",
            "imap_port": 993,
            "imap_username": "john@mydomain.com",
            "imap_password": "your-app-password",
            "imap_use_ssl": true
        })
    }

    fn rejects(mut patch: impl FnMut(&mut Map<String, Value>)) -> RequestError {
        let mut v = google();
        patch(v.as_object_mut().expect("object"));
        SenderAccountRequest::parse_value(v).expect_err("should be rejected")
    }

    #[test]
    fn documentation_example_parses() {
        let a = SenderAccountRequest::parse_value(google()).expect("valid");
        assert_eq!(a.smtp.host.as_str(), "smtp.gmail.com");
        assert_eq!(a.imap.port.get(), 993);
    }

    #[test]
    fn provider_defaults_fill_missing_hosts() {
        let mut v = google();
        let m = v.as_object_mut().expect("object");
        m.insert("inbox_type".into(), json!("OUTLOOK_365"));
        for f in ["smtp_host", "smtp_port", "smtp_use_tls", "imap_host", "imap_port", "imap_use_ssl"] {
            m.remove(f);
        }
        let a = SenderAccountRequest::parse_value(v).expect("valid");
        assert_eq!((a.smtp.host.as_str(), a.smtp.port.get(), a.smtp.tls), ("smtp.office365.com", 587, true));
        assert_eq!((a.imap.host.as_str(), a.imap.port.get(), a.imap.tls), ("outlook.office365.com", 993, true));
    }

    #[test]
    fn each_rule_names_its_field() {
        let e = rejects(|m| {
            m.insert("daily_limit".into(), json!(2001));
        });
        assert_eq!((e.code.as_str(), e.field.as_deref()), ("daily_limit_exceeded", Some("daily_limit")));
        let e = rejects(|m| {
            m.insert("email_address".into(), json!("not-an-email"));
        });
        assert_eq!((e.code.as_str(), e.field.as_deref()), ("invalid_email", Some("email_address")));
        let e = rejects(|m| {
            m.insert("inbox_type".into(), json!("YAHOO"));
        });
        assert_eq!((e.code.as_str(), e.field.as_deref()), ("invalid_inbox_type", Some("inbox_type")));
        let e = rejects(|m| {
            m.insert("smtp_port".into(), json!(70000));
        });
        assert_eq!((e.code.as_str(), e.field.as_deref()), ("invalid_port", Some("smtp_port")));
        let e = rejects(|m| {
            m.insert("display_name".into(), json!("A\r\nBcc: x@y.com"));
        });
        assert_eq!((e.code.as_str(), e.field.as_deref()), ("invalid_display_name", Some("display_name")));
        let e = rejects(|m| {
            m.remove("smtp_password");
        });
        assert_eq!((e.code.as_str(), e.field.as_deref()), ("missing_field", Some("smtp_password")));
        let e = rejects(|m| {
            m.insert("smtp_pasword".into(), json!("x"));
        });
        assert_eq!((e.code.as_str(), e.field.as_deref()), ("unknown_field", Some("smtp_pasword")));
        let e = rejects(|m| {
            m.insert("daily_limit".into(), json!("fifty"));
        });
        assert_eq!((e.code.as_str(), e.field.as_deref()), ("invalid_type", Some("daily_limit")));
    }

    #[test]
    fn custom_smtp_needs_its_hosts() {
        let e = rejects(|m| {
            m.insert("inbox_type".into(), json!("CUSTOM_SMTP"));
            m.remove("imap_host");
        });
        assert_eq!((e.code.as_str(), e.field.as_deref()), ("missing_field", Some("imap_host")));
    }

    #[test]
    fn oversized_and_non_object_bodies() {
        let big = vec![b' '; MAX_BODY_BYTES + 1];
        assert_eq!(SenderAccountRequest::parse_body(&big).map(|_| ()).unwrap_err().code.as_str(), "body_too_large");
        assert_eq!(SenderAccountRequest::parse_body(b"[1]").map(|_| ()).unwrap_err().code.as_str(), "invalid_json");
        assert_eq!(SenderAccountRequest::parse_body(b"{").map(|_| ()).unwrap_err().code.as_str(), "invalid_json");
    }
}
