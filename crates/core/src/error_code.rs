//! The canonical list of error codes coldsend answers with (`{"error": {"code", …}}`).
//! Clients match on these strings; they never change meaning.

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    // --- the request as a whole
    BodyTooLarge,
    InvalidBody,
    InvalidJson,
    InvalidQuery,
    InvalidPath,
    MethodNotAllowed,
    NotFound,
    Unauthorized,
    // --- a field of the request
    InvalidType,
    UnknownField,
    MissingField,
    InvalidField,
    InvalidEmail,
    InvalidDisplayName,
    InvalidInboxType,
    DailyLimitExceeded,
    InvalidHost,
    InvalidPort,
    InvalidPassword,
    InvalidUsername,
    InvalidTimezone,
    InvalidSettings,
    InvalidCursor,
    InvalidToken,
    InvalidAuth,
    // --- campaigns
    InvalidName,
    InvalidAccount,
    UnknownAccount,
    InvalidDailyLimit,
    InvalidDelay,
    InvalidSchedule,
    InvalidSteps,
    InvalidTemplate,
    // --- state
    Conflict,
    DuplicateAccount,
    // --- the server side (retrying later can help)
    StorageUnavailable,
    EnqueueFailed,
    /// The OAuth2 authorization server refused or could not be reached.
    OauthFailed,
}

impl ErrorCode {
    /// The wire form, e.g. `invalid_json`.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BodyTooLarge => "body_too_large",
            ErrorCode::InvalidBody => "invalid_body",
            ErrorCode::InvalidJson => "invalid_json",
            ErrorCode::InvalidQuery => "invalid_query",
            ErrorCode::InvalidPath => "invalid_path",
            ErrorCode::MethodNotAllowed => "method_not_allowed",
            ErrorCode::NotFound => "not_found",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::InvalidType => "invalid_type",
            ErrorCode::UnknownField => "unknown_field",
            ErrorCode::MissingField => "missing_field",
            ErrorCode::InvalidField => "invalid_field",
            ErrorCode::InvalidEmail => "invalid_email",
            ErrorCode::InvalidDisplayName => "invalid_display_name",
            ErrorCode::InvalidInboxType => "invalid_inbox_type",
            ErrorCode::DailyLimitExceeded => "daily_limit_exceeded",
            ErrorCode::InvalidHost => "invalid_host",
            ErrorCode::InvalidPort => "invalid_port",
            ErrorCode::InvalidPassword => "invalid_password",
            ErrorCode::InvalidUsername => "invalid_username",
            ErrorCode::InvalidTimezone => "invalid_timezone",
            ErrorCode::InvalidSettings => "invalid_settings",
            ErrorCode::InvalidCursor => "invalid_cursor",
            ErrorCode::InvalidToken => "invalid_token",
            ErrorCode::InvalidAuth => "invalid_auth",
            ErrorCode::InvalidName => "invalid_name",
            ErrorCode::InvalidAccount => "invalid_account",
            ErrorCode::UnknownAccount => "unknown_account",
            ErrorCode::InvalidDailyLimit => "invalid_daily_limit",
            ErrorCode::InvalidDelay => "invalid_delay",
            ErrorCode::InvalidSchedule => "invalid_schedule",
            ErrorCode::InvalidSteps => "invalid_steps",
            ErrorCode::InvalidTemplate => "invalid_template",
            ErrorCode::Conflict => "conflict",
            ErrorCode::DuplicateAccount => "duplicate_account",
            ErrorCode::StorageUnavailable => "storage_unavailable",
            ErrorCode::EnqueueFailed => "enqueue_failed",
            ErrorCode::OauthFailed => "oauth_failed",
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// serde's messages quote the offending value ("invalid type: string \"hunter2\", expected
/// u16"); a secret sent with the wrong type must never be echoed. Keeps what was expected.
pub fn without_value(message: &str) -> String {
    for head in ["invalid type", "invalid value", "invalid length"] {
        if let Some(rest) = message.strip_prefix(head) {
            return match rest.rfind(", expected ") {
                Some(i) => format!("{head}:{}", &rest[i + 1..]),
                None => head.to_owned(),
            };
        }
    }
    message.to_owned()
}

#[cfg(test)]
mod tests {
    #[test]
    fn values_are_dropped_from_serde_messages() {
        let m = super::without_value("invalid type: string \"hunter2\", expected u16 at line 1 column 9");
        assert_eq!(m, "invalid type: expected u16 at line 1 column 9");
        assert!(!super::without_value("invalid value: integer `123456`, expected a string").contains("123456"));
        assert_eq!(super::without_value("missing field `x`"), "missing field `x`");
    }
}
