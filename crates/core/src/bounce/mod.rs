//! Why a message bounced, and what that means for the address, the recipient's side or
//! our own mailbox: one taxonomy for DSNs found over IMAP and for live SMTP answers.
//!
//! The reasons are Sisimai's (the most complete open bounce classifier), so its verdicts
//! can be compared one to one; so are the text patterns (`patterns.txt`, generated from
//! Sisimai 4.25 by `scripts/gen-bounce-patterns.py`) and the status-code table. What is
//! coldsend's own is the [`BounceClass`] each reason belongs to, which decides the action:
//! only an address that is bad is ever suppressed.

use std::sync::LazyLock;

use serde::Serialize;

/// Why a message could not be delivered (Sisimai's reason names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum BounceReason {
    // --- the address is bad
    UserUnknown,
    HostUnknown,
    HasMoved,
    NotAccept,
    // --- the recipient's side cannot take it now
    MailboxFull,
    MesgTooBig,
    ExceedLimit,
    Expired,
    Suspend,
    SystemError,
    SystemFull,
    NetworkError,
    MailerError,
    Greylisted,
    OnHold,
    Undefined,
    // --- the sender (our mailbox, domain, IP or content) is refused
    Filtered,
    PolicyViolation,
    SpamDetected,
    VirusDetected,
    ContentError,
    Blocked,
    AuthFailure,
    SecurityError,
    Rejected,
    NoRelaying,
    TooManyConn,
    SyntaxError,
}

/// Whose problem a bounce is, which decides what coldsend does about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum BounceClass {
    /// The address cannot receive mail: the lead bounces and the address is suppressed.
    AddressBad,
    /// The recipient's side cannot take it now: retried later, never suppressed.
    RecipientTemporary,
    /// Our mailbox, domain, IP or content is refused: the lead is kept, the mailbox is
    /// told (and paused after repeated refusals).
    SenderSide,
}

impl BounceReason {
    pub const ALL: [BounceReason; 28] = [
        BounceReason::UserUnknown,
        BounceReason::HostUnknown,
        BounceReason::HasMoved,
        BounceReason::NotAccept,
        BounceReason::MailboxFull,
        BounceReason::MesgTooBig,
        BounceReason::ExceedLimit,
        BounceReason::Expired,
        BounceReason::Suspend,
        BounceReason::SystemError,
        BounceReason::SystemFull,
        BounceReason::NetworkError,
        BounceReason::MailerError,
        BounceReason::Greylisted,
        BounceReason::OnHold,
        BounceReason::Undefined,
        BounceReason::Filtered,
        BounceReason::PolicyViolation,
        BounceReason::SpamDetected,
        BounceReason::VirusDetected,
        BounceReason::ContentError,
        BounceReason::Blocked,
        BounceReason::AuthFailure,
        BounceReason::SecurityError,
        BounceReason::Rejected,
        BounceReason::NoRelaying,
        BounceReason::TooManyConn,
        BounceReason::SyntaxError,
    ];

    /// The wire name (Sisimai's).
    pub fn as_str(self) -> &'static str {
        match self {
            BounceReason::UserUnknown => "userunknown",
            BounceReason::HostUnknown => "hostunknown",
            BounceReason::HasMoved => "hasmoved",
            BounceReason::NotAccept => "notaccept",
            BounceReason::MailboxFull => "mailboxfull",
            BounceReason::MesgTooBig => "mesgtoobig",
            BounceReason::ExceedLimit => "exceedlimit",
            BounceReason::Expired => "expired",
            BounceReason::Suspend => "suspend",
            BounceReason::SystemError => "systemerror",
            BounceReason::SystemFull => "systemfull",
            BounceReason::NetworkError => "networkerror",
            BounceReason::MailerError => "mailererror",
            BounceReason::Greylisted => "greylisted",
            BounceReason::OnHold => "onhold",
            BounceReason::Undefined => "undefined",
            BounceReason::Filtered => "filtered",
            BounceReason::PolicyViolation => "policyviolation",
            BounceReason::SpamDetected => "spamdetected",
            BounceReason::VirusDetected => "virusdetected",
            BounceReason::ContentError => "contenterror",
            BounceReason::Blocked => "blocked",
            BounceReason::AuthFailure => "authfailure",
            BounceReason::SecurityError => "securityerror",
            BounceReason::Rejected => "rejected",
            BounceReason::NoRelaying => "norelaying",
            BounceReason::TooManyConn => "toomanyconn",
            BounceReason::SyntaxError => "syntaxerror",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.as_str() == s)
    }

    /// Whose problem it is. `NotAccept` (null MX, "does not accept mail") is the address's
    /// when permanent; a temporary one is the recipient side's.
    pub fn class(self, permanent: bool) -> BounceClass {
        use BounceReason as R;
        match self {
            R::UserUnknown | R::HostUnknown | R::HasMoved => BounceClass::AddressBad,
            R::NotAccept if permanent => BounceClass::AddressBad,
            R::NotAccept
            | R::MailboxFull
            | R::MesgTooBig
            | R::ExceedLimit
            | R::Expired
            | R::Suspend
            | R::SystemError
            | R::SystemFull
            | R::NetworkError
            | R::MailerError
            | R::Greylisted
            | R::OnHold
            | R::Undefined => BounceClass::RecipientTemporary,
            R::Filtered
            | R::PolicyViolation
            | R::SpamDetected
            | R::VirusDetected
            | R::ContentError
            | R::Blocked
            | R::AuthFailure
            | R::SecurityError
            | R::Rejected
            | R::NoRelaying
            | R::TooManyConn
            | R::SyntaxError => BounceClass::SenderSide,
        }
    }
}

enum Matcher {
    Regex(fancy_regex::Regex),
    Literal(String),
}

impl Matcher {
    fn is_match(&self, text: &str) -> bool {
        match self {
            Matcher::Regex(r) => r.is_match(text).unwrap_or(false),
            Matcher::Literal(l) => text.contains(l.as_str()),
        }
    }
}

struct Table {
    /// Text patterns by reason.
    text: Vec<(BounceReason, Matcher)>,
    /// Enhanced status code → reason (RFC 3463 as Sisimai reads it).
    status: Vec<(String, BounceReason)>,
}

/// The reason table, compiled once; a pattern that does not compile is skipped (and a
/// unit test makes sure none is).
static TABLE: LazyLock<Table> = LazyLock::new(|| parse_table(include_str!("patterns.txt")).0);

fn parse_table(src: &str) -> (Table, Vec<String>) {
    let mut table = Table { text: Vec::new(), status: Vec::new() };
    let mut broken = Vec::new();
    for line in src.lines().filter(|l| !l.starts_with('#') && !l.trim().is_empty()) {
        let mut f = line.splitn(3, '\t');
        let (Some(name), Some(kind), Some(pattern)) = (f.next(), f.next(), f.next()) else { continue };
        let Some(reason) = BounceReason::parse(name) else {
            // "delivered", "feedback", "vacation" codes are not bounces.
            continue;
        };
        match kind {
            "status" => table.status.push((pattern.to_owned(), reason)),
            "literal" => table.text.push((reason, Matcher::Literal(pattern.to_ascii_lowercase()))),
            _ => match fancy_regex::Regex::new(pattern) {
                Ok(r) => table.text.push((reason, Matcher::Regex(r))),
                Err(e) => broken.push(format!("{name}: {e}")),
            },
        }
    }
    (table, broken)
}

/// Reasons tried first against the diagnostic (Sisimai's first pass), then the rest.
/// One deviation: `Blocked` before `Rejected`, because Postfix prefixes every access-map
/// refusal with "Recipient address rejected:" ("…: Client host rejected: blocked using
/// zen.spamhaus.org" is a blocked IP, not a rejected sender).
const FIRST: [BounceReason; 13] = [
    BounceReason::MailboxFull,
    BounceReason::MesgTooBig,
    BounceReason::ExceedLimit,
    BounceReason::Suspend,
    BounceReason::HasMoved,
    BounceReason::NoRelaying,
    BounceReason::UserUnknown,
    BounceReason::Filtered,
    BounceReason::Blocked,
    BounceReason::Rejected,
    BounceReason::HostUnknown,
    BounceReason::SpamDetected,
    BounceReason::TooManyConn,
];
const SECOND: [BounceReason; 14] = [
    BounceReason::MailboxFull,
    BounceReason::SpamDetected,
    BounceReason::PolicyViolation,
    BounceReason::VirusDetected,
    BounceReason::NoRelaying,
    BounceReason::SecurityError,
    BounceReason::SystemError,
    BounceReason::NetworkError,
    BounceReason::Suspend,
    BounceReason::Expired,
    BounceReason::ContentError,
    BounceReason::SystemFull,
    BounceReason::NotAccept,
    BounceReason::MailerError,
];

/// Reasons a status code names but the text may make more precise.
fn worth_a_second_look(r: BounceReason) -> bool {
    use BounceReason as R;
    matches!(
        r,
        R::Undefined
            | R::OnHold
            | R::SystemError
            | R::SecurityError
            | R::NetworkError
            | R::HostUnknown
            | R::UserUnknown
            | R::Expired
    )
}

/// The reason for one recipient's failure, from its own evidence only: the enhanced
/// status code (`status`, the most specific one available), the diagnostic text (the
/// server's words), and whether the MTA was still retrying (`delayed`).
pub fn reason_for(status: Option<&str>, diagnostic: &str, delayed: bool) -> BounceReason {
    let table = &*TABLE;
    // One line, single spaces: MTAs fold their words anywhere ("Mail quota\n exceeded").
    let text = diagnostic.split_whitespace().collect::<Vec<_>>().join(" ").to_lowercase();
    let matches = |r: BounceReason| table.text.iter().any(|(reason, m)| *reason == r && m.is_match(&text));
    if let Some(r) = sender_authentication(&text) {
        return r;
    }
    if text.contains("greylist") || text.contains("graylist") {
        return BounceReason::Greylisted;
    }
    let named = status.and_then(|s| table.status.iter().find(|(code, _)| code == s).map(|(_, r)| *r));
    for r in FIRST {
        if named == Some(r) || matches(r) {
            return r;
        }
    }
    if let Some(r) = named.filter(|r| !worth_a_second_look(*r)) {
        return r;
    }
    if let Some(r) = SECOND.into_iter().find(|r| matches(*r)) {
        return r;
    }
    if let Some((r, _)) = NOTICE_PHRASES.iter().find(|(_, p)| text.contains(p)) {
        return *r;
    }
    if let Some(r) = named {
        return r;
    }
    match status.map(|s| s.get(..3).unwrap_or(s)) {
        Some("5.6" | "4.6") => BounceReason::ContentError,
        Some("5.7" | "4.7") => BounceReason::SecurityError,
        _ if delayed => BounceReason::Expired,
        // No code and no words we know: the notice says too little to tell (Sisimai's
        // "onhold"); a code it does not explain is "undefined".
        None => BounceReason::OnHold,
        _ => BounceReason::Undefined,
    }
}

/// Phrases of MTAs' own notices (Exchange, GroupWise, SMTP32, MDaemon, …) that the
/// diagnostic patterns above do not cover, tried last.
const NOTICE_PHRASES: &[(BounceReason, &str)] = &[
    (BounceReason::NetworkError, "name service error"),
    (BounceReason::MesgTooBig, "maximum incoming message size"),
    (BounceReason::MesgTooBig, "maximum inbound message size"),
    (BounceReason::MesgTooBig, "message is too large"),
    (BounceReason::MesgTooBig, "message too large"),
    (BounceReason::UserUnknown, "recipient name is not recognized"),
    (BounceReason::UserUnknown, "unknown recipient"),
    (BounceReason::UserUnknown, "user unknown"),
    (BounceReason::UserUnknown, "unknown user"),
    (BounceReason::UserUnknown, "user not found"),
    (BounceReason::UserUnknown, "no such user"),
    (BounceReason::UserUnknown, "no such address"),
    (BounceReason::UserUnknown, "address is wrong or no longer valid"),
    (BounceReason::UserUnknown, "user doesn't have a"),
    (BounceReason::UserUnknown, "unknown local part"),
    (BounceReason::UserUnknown, "account does not exist"),
    (BounceReason::UserUnknown, "not a valid user"),
    (BounceReason::UserUnknown, "not listed in domino directory"),
    (BounceReason::UserUnknown, "not listed in the directory"),
    (BounceReason::UserUnknown, "invalid final delivery userid"),
    (BounceReason::UserUnknown, "doesn't have a"),
    (BounceReason::MailboxFull, "full mailbox"),
    (BounceReason::MailboxFull, "mailbox is full"),
    (BounceReason::MailboxFull, "over quota"),
    (BounceReason::MailboxFull, "overquota"),
    (BounceReason::MailboxFull, "over disk quota"),
    (BounceReason::MailboxFull, "quota exceeded"),
    (BounceReason::Expired, "delivery failed"),
    (BounceReason::Expired, "could not be delivered for"),
    (BounceReason::Expired, "retry timeout exceeded"),
    (BounceReason::Expired, "has not been delivered"),
    (BounceReason::Expired, "delivery attempts will continue"),
    (BounceReason::Expired, "will continue to try"),
    (BounceReason::Expired, "have not yet been able to deliver"),
    (BounceReason::Expired, "delayed"),
    (BounceReason::HostUnknown, "host unknown"),
    (BounceReason::HostUnknown, "unknown host"),
    (BounceReason::HostUnknown, "host not found"),
    (BounceReason::HostUnknown, "domain not found"),
    (BounceReason::HostUnknown, "nameserver error"),
    (BounceReason::NetworkError, "connection timed out"),
    (BounceReason::NetworkError, "connection refused"),
    (BounceReason::NetworkError, "no route to host"),
    (BounceReason::NetworkError, "host unreachable"),
];

/// A provider's sending quota or rate limit, which stops a mailbox for a while without
/// saying anything about the recipient.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SenderLimit {
    /// The mailbox's daily quota (Gmail 5.4.5, Microsoft 5.2.2 submission quota): wait
    /// for the mailbox's next day.
    Daily,
    /// A rate limit or too many connections (4.7.x, 421): back off for a while.
    Rate,
}

/// Whether an SMTP answer is a quota or rate limit of the sending mailbox.
pub fn sender_limit(answer: &str) -> Option<SenderLimit> {
    let t = answer.to_lowercase();
    let daily = [
        "daily user sending quota",
        "sending quota exceeded",
        "submission quota",
        "submissionquotaexceeded",
        "daily message quota",
        "message quota exceeded",
        "exceeded the max emails per",
    ];
    if daily.iter().any(|p| t.contains(p)) || t.contains("5.4.5") && t.contains("quota") {
        return Some(SenderLimit::Daily);
    }
    let rate = [
        "too many connections",
        "rate limit",
        "rate-limit",
        "ratelimit",
        "sending rate",
        "too many messages",
        "throttl",
        "try again later, closing connection",
    ];
    (rate.iter().any(|p| t.contains(p)) || t.starts_with("421")).then_some(SenderLimit::Rate)
}

/// SPF, DKIM or DMARC failing for *our* domain: the sender's problem, whatever the code.
fn sender_authentication(text: &str) -> Option<BounceReason> {
    let auth = ["spf", "dkim", "dmarc", "sender authentication", "unauthenticated email"];
    let failed = ["fail", "not pass", "did not", "unauthenticated", "authentication"];
    (auth.iter().any(|a| text.contains(a)) && failed.iter().any(|f| text.contains(f)))
        .then_some(BounceReason::AuthFailure)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_pattern_compiles() {
        let (table, broken) = parse_table(include_str!("patterns.txt"));
        assert!(broken.is_empty(), "{broken:?}");
        assert!(table.text.len() > 150 && table.status.len() > 50);
    }

    #[test]
    fn quotas_and_rate_limits() {
        assert_eq!(sender_limit("550 5.4.5 Daily user sending quota exceeded."), Some(SenderLimit::Daily));
        assert_eq!(
            sender_limit("554 5.2.2 mailbox full; STOREDRV.Submission.Exception:SubmissionQuotaExceededException"),
            Some(SenderLimit::Daily)
        );
        assert_eq!(sender_limit("421 4.7.0 Too many connections"), Some(SenderLimit::Rate));
        assert_eq!(sender_limit("550 5.1.1 User unknown"), None);
    }

    #[test]
    fn reasons_and_classes() {
        let r = |s: Option<&str>, d: &str| reason_for(s, d, false);
        assert_eq!(
            r(Some("5.1.1"), "550 5.1.1 <a@b.c>: Recipient address rejected: User unknown"),
            BounceReason::UserUnknown
        );
        assert_eq!(r(Some("5.2.2"), "552 5.2.2 Mailbox full"), BounceReason::MailboxFull);
        assert_eq!(
            r(Some("5.7.1"), "550 5.7.1 Client host rejected: blocked using zen.spamhaus.org"),
            BounceReason::Blocked
        );
        assert_eq!(
            r(
                Some("5.7.26"),
                "550 5.7.26 Unauthenticated email from example.com is not accepted due to domain's DMARC policy"
            ),
            BounceReason::AuthFailure
        );
        assert_eq!(r(None, "451 4.7.1 Greylisted, please try again later"), BounceReason::Greylisted);
        assert_eq!(BounceReason::UserUnknown.class(true), BounceClass::AddressBad);
        assert_eq!(BounceReason::MailboxFull.class(true), BounceClass::RecipientTemporary);
        assert_eq!(BounceReason::Blocked.class(true), BounceClass::SenderSide);
        assert_eq!(BounceReason::NotAccept.class(false), BounceClass::RecipientTemporary);
    }
}
