//! `PATCH /sender-accounts/{id}`: a partial registration body applied to a stored
//! account. Every field of the registration body may change except the address, the
//! inbox type and the way it signs in (those make a different account); the result must
//! pass the same rules as a new registration, because it is checked by them.

use secrecy::SecretString;
use serde_json::{Map, Value};

use crate::account::{AccountSecrets, SenderAccount};
use crate::account_request::{FIELDS, RequestError, SenderAccountRequest};
use crate::error_code::ErrorCode;

/// Fields that make a different account: a patch may carry every other registration field.
const FIXED: [&str; 3] = ["email_address", "inbox_type", "auth"];

/// Whether a patch may carry the registration field `name`.
fn patchable(name: &str) -> bool {
    FIELDS.contains(&name) && !FIXED.contains(&name)
}

/// A stand-in for a password the patch leaves alone: it only lets the registration
/// rules run and is never stored.
const KEEP: &str = "unchanged-password-stand-in";

/// A stored account with a patch applied.
#[derive(Debug)]
pub struct PatchedAccount {
    pub account: SenderAccount,
    /// New passwords to seal, by field (`smtp_password`, `imap_password`).
    pub passwords: Vec<(&'static str, SecretString)>,
    /// Hosts, ports, TLS, usernames or passwords changed: the account must be validated
    /// again before it sends or scans.
    pub revalidate: bool,
}

/// Applies a raw patch body to `current`.
pub fn apply(current: &SenderAccount, body: &[u8]) -> Result<PatchedAccount, RequestError> {
    let patch = crate::account_request::patch_object(body)?;
    for name in patch.keys() {
        if FIXED.contains(&name.as_str()) {
            return Err(RequestError::new(
                ErrorCode::InvalidField,
                format!("{name} cannot be changed: register the mailbox as a new account"),
                Some(name),
            ));
        }
        if !patchable(name) {
            let allowed: Vec<&str> = FIELDS.into_iter().filter(|f| patchable(f)).collect();
            return Err(RequestError::new(
                ErrorCode::UnknownField,
                format!("unknown field '{name}'; a patch may carry {}", allowed.join(", ")),
                Some(name),
            ));
        }
    }
    let oauth = current.auth.is_oauth();
    if oauth && let Some(f) = ["smtp_password", "imap_password"].into_iter().find(|f| patch.contains_key(*f)) {
        return Err(RequestError::new(
            ErrorCode::InvalidAuth,
            format!("{f}: this account signs in with OAuth2; give it a new grant with PUT …/oauth"),
            Some(f),
        ));
    }
    let mut merged = as_request(current);
    for (k, v) in &patch {
        merged.insert(k.clone(), v.clone());
    }
    if oauth {
        // The registration rules take OAuth2 through `auth`; stand-in passwords check the
        // rest the same way and are dropped below.
        merged.insert("smtp_password".into(), Value::String(KEEP.into()));
        merged.insert("imap_password".into(), Value::String(KEEP.into()));
    }
    let parsed = SenderAccountRequest::parse_value(Value::Object(merged))?;
    let mut passwords = Vec::new();
    if let AccountSecrets::Password { smtp, imap } = parsed.secrets
        && !oauth
    {
        for (field, secret) in [("smtp_password", smtp), ("imap_password", imap)] {
            if patch.contains_key(field) {
                passwords.push((field, secret));
            }
        }
    }
    let account = SenderAccount {
        display_name: parsed.display_name,
        daily_limit: parsed.daily_limit,
        smtp: parsed.smtp,
        imap: parsed.imap,
        ..current.clone()
    };
    let revalidate = account.smtp != current.smtp || account.imap != current.imap || !passwords.is_empty();
    Ok(PatchedAccount { account, passwords, revalidate })
}

/// The stored account as a registration body, with stand-in passwords.
fn as_request(a: &SenderAccount) -> Map<String, Value> {
    let Value::Object(map) = serde_json::json!({
        "email_address": a.email.as_str(),
        "display_name": a.display_name.as_str(),
        "inbox_type": a.inbox_type.as_str(),
        "daily_limit": a.daily_limit.get(),
        "smtp_host": a.smtp.host.as_str(),
        "smtp_port": a.smtp.port.get(),
        "smtp_username": a.smtp.username,
        "smtp_password": KEEP,
        "smtp_use_tls": a.smtp.tls,
        "imap_host": a.imap.host.as_str(),
        "imap_port": a.imap.port.get(),
        "imap_username": a.imap.username,
        "imap_password": KEEP,
        "imap_use_ssl": a.imap.tls,
    }) else {
        unreachable!("a json! object literal is an object")
    };
    map
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    fn stored() -> SenderAccount {
        let new = SenderAccountRequest::parse_value(serde_json::json!({
            "email_address": "ann@example.test", "display_name": "Ann", "inbox_type": "CUSTOM_SMTP",
            "daily_limit": 50, "smtp_host": "smtp.example.test", "smtp_port": 587, "smtp_username": "ann",
            "smtp_password": "pw", "smtp_use_tls": true, "imap_host": "imap.example.test", "imap_port": 993,
            "imap_username": "ann", "imap_password": "pw", "imap_use_ssl": true
        }))
        .expect("valid");
        new.into_stored(crate::account::AccountId::new_random(), time::OffsetDateTime::now_utc()).0
    }

    #[test]
    fn sending_fields_change_without_revalidation() {
        let a = stored();
        let p = apply(&a, br#"{"display_name": "Ann B", "daily_limit": 80}"#).expect("valid");
        assert_eq!((p.account.display_name.as_str(), p.account.daily_limit.get()), ("Ann B", 80));
        assert!(!p.revalidate && p.passwords.is_empty());
        assert_eq!((p.account.id, &p.account.email, p.account.created_at), (a.id, &a.email, a.created_at));
    }

    #[test]
    fn connection_fields_and_passwords_revalidate_and_only_given_passwords_are_kept() {
        let a = stored();
        let p = apply(&a, br#"{"smtp_port": 465}"#).expect("valid");
        assert!(p.revalidate && p.passwords.is_empty());
        assert_eq!(p.account.smtp.port.get(), 465);
        let p = apply(&a, br#"{"imap_password": "new"}"#).expect("valid");
        assert!(p.revalidate);
        assert_eq!(p.passwords.len(), 1);
        assert_eq!((p.passwords[0].0, p.passwords[0].1.expose_secret()), ("imap_password", "new"));
    }

    #[test]
    fn bad_patches_name_their_field() {
        let a = stored();
        for (body, code, field) in [
            (&br#"{"smtp_port": 0}"#[..], "invalid_port", Some("smtp_port")),
            (br#"{"daily_limit": 100001}"#, "daily_limit_exceeded", Some("daily_limit")),
            (br#"{"display_name": "a\r\nBcc: x"}"#, "invalid_display_name", Some("display_name")),
            (br#"{"email_address": "b@example.test"}"#, "invalid_field", Some("email_address")),
            (br#"{"smtp_hots": "x"}"#, "unknown_field", Some("smtp_hots")),
            (br#"{"smtp_port": "587"}"#, "invalid_type", Some("smtp_port")),
            (br#"{}"#, "invalid_body", None),
            (br#"[1]"#, "invalid_json", None),
        ] {
            let e = apply(&a, body).expect_err("refused");
            assert_eq!((e.code.as_str(), e.field.as_deref()), (code, field), "{}", String::from_utf8_lossy(body));
        }
    }
}
