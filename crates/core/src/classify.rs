//! What an incoming message is: a bounce (hard or soft, with a reason), an automatic
//! reply (out of office, with its return date if it names one), a complaint (ARF), a
//! reply from a person, or something else. MIME is mail-parser's; this module only
//! reads the parts it yields.
//!
//! Order matters: a delivery report is a bounce even though MTAs mark it
//! `Auto-Submitted`, and a vacation message is never a bounce.

use chrono::NaiveDate;
use mail_parser::{Message, MessageParser, MimeHeaders, PartType};
use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Bounce,
    AutoReply,
    Reply,
    /// A reply asking to be taken off (by subject or its first line), e.g. to the
    /// `mailto:` List-Unsubscribe address.
    Unsubscribe,
    Complaint,
    Other,
}

pub use crate::bounce::{BounceClass, BounceReason};

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Bounce {
    /// The address is bad (its class is `AddressBad`): the only bounce that suppresses.
    pub hard: bool,
    /// The server gave up (5.x.x or a failed action); false for delays and 4.x.x.
    pub permanent: bool,
    pub reason: BounceReason,
    pub class: BounceClass,
    /// Enhanced status code, e.g. "5.1.1".
    pub status: Option<String>,
    pub recipient: Option<String>,
    pub diagnostic: Option<String>,
    /// Message-ID of the message that bounced (from the attached original), without <>.
    pub original_message_id: Option<String>,
}

/// What a message is, with what only that kind of message carries: a reply cannot hold
/// bounce fields, nor a bounce a return date.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Bounce(Bounce),
    AutoReply {
        /// The return date found in the text.
        returns_on: Option<NaiveDate>,
    },
    Reply,
    Unsubscribe,
    Complaint,
    Other,
}

impl Verdict {
    pub fn kind(&self) -> Kind {
        match self {
            Verdict::Bounce(_) => Kind::Bounce,
            Verdict::AutoReply { .. } => Kind::AutoReply,
            Verdict::Reply => Kind::Reply,
            Verdict::Unsubscribe => Kind::Unsubscribe,
            Verdict::Complaint => Kind::Complaint,
            Verdict::Other => Kind::Other,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Classified {
    pub verdict: Verdict,
    pub from: Option<String>,
    pub subject: Option<String>,
    pub message_id: Option<String>,
    /// In-Reply-To and References, without <>.
    pub refers_to: Vec<String>,
    pub snippet: String,
    /// Why it is what the verdict says, in words an operator can check against the
    /// message (the header, report or phrase that decided it).
    pub why: String,
}

impl Classified {
    pub fn kind(&self) -> Kind {
        self.verdict.kind()
    }

    pub fn bounce(&self) -> Option<&Bounce> {
        match &self.verdict {
            Verdict::Bounce(b) => Some(b),
            _ => None,
        }
    }

    pub fn returns_on(&self) -> Option<NaiveDate> {
        match self.verdict {
            Verdict::AutoReply { returns_on } => returns_on,
            _ => None,
        }
    }
}

/// Subject phrases of automatic replies (English, German, French, Spanish, Portuguese,
/// Dutch, Swedish, Latvian, and a few more), compared in lower case.
const AUTO_REPLY_SUBJECTS: &[&str] = &[
    "out of office",
    "out of the office",
    "automatic reply",
    "auto-reply",
    "autoreply",
    "auto reply",
    "away from the office",
    "on vacation",
    "on holiday",
    "abwesenheitsnotiz",
    "automatische antwort",
    "abwesend",
    "im urlaub",
    "réponse automatique",
    "reponse automatique",
    "absence du bureau",
    "absent du bureau",
    "respuesta automática",
    "respuesta automatica",
    "fuera de la oficina",
    "resposta automática",
    "resposta automatica",
    "ausência temporária",
    "fora do escritório",
    "automatisch antwoord",
    "afwezig",
    "niet aanwezig",
    "frånvaro",
    "franvaro",
    "automatiskt svar",
    "automātiskā atbilde",
    "automatiska atbilde",
    "prombūtnē",
    "risposta automatica",
    "fuori ufficio",
    "automatyczna odpowiedź",
];

/// Subject phrases of delivery-failure notices, compared in lower case.
const BOUNCE_SUBJECTS: &[&str] = &[
    "undelivered mail",
    "undeliverable",
    "undelivered",
    "delivery status notification",
    "mail delivery failed",
    "delivery failure",
    "delivery failed",
    "failed delivery",
    "returned mail",
    "return mail",
    "failure notice",
    "mail delivery subsystem",
    "message not delivered",
    "mail not delivered",
    "could not be delivered",
    "non-delivery",
    "nondeliverable",
    "non deliverable",
    "delivery notification",
    "delivery problem",
    "permanent delivery failure",
    "error during delivery",
    "warning: message",
    "delivery delayed",
    "delayed mail",
    "mail system error",
    "mail failed",
    "failure notification",
    "rejected mail",
    "user unknown",
    "delivery warning",
    "processing error",
    "not delivered",
    "nameserver error",
    "unzustellbar",
    "nicht zustellbar",
    "non remis",
    "échec de la remise",
    "no entregado",
    "não entregue",
    "onbestelbaar",
    "返送",
    "配信不能",
    "未配達",
];

/// Local parts (and display names) that only delivery systems send from.
const DAEMON_SENDERS: &[&str] =
    &["mailer-daemon", "mailer_daemon", "mailerdaemon", "postmaster", "mdaemon", "mail delivery", "smtp_mail_service"];

/// Parses and classifies raw message bytes. Never panics; unparseable input is `Other`.
pub fn classify(raw: &[u8]) -> Classified {
    let Some(msg) = MessageParser::default().parse(raw) else {
        return Classified {
            verdict: Verdict::Other,
            from: None,
            subject: None,
            message_id: None,
            refers_to: Vec::new(),
            snippet: String::new(),
            why: "not a readable MIME message".into(),
        };
    };
    // mail-parser can lose the headers after one it cannot read (a date in "UT", say):
    // fall back to the raw header block for the two that matter most.
    let from = msg
        .from()
        .and_then(|a| a.first())
        .and_then(|a| a.address())
        .map(str::to_ascii_lowercase)
        .or_else(|| raw_header(raw, "from").and_then(|f| address_in(&f)));
    let subject = msg.subject().map(str::to_owned).or_else(|| raw_header(raw, "subject"));
    let message_id = msg.message_id().map(str::to_owned);
    let mut refers_to: Vec<String> = Vec::new();
    for v in [msg.in_reply_to(), msg.references()] {
        if let Some(list) = v.as_text_list() {
            refers_to.extend(list.iter().map(|s| s.trim_matches(['<', '>']).to_owned()));
        } else if let Some(t) = v.as_text() {
            refers_to.extend(t.split_whitespace().map(|s| s.trim_matches(['<', '>']).to_owned()));
        }
    }
    let text = body_text(&msg);
    let snippet: String = text.split_whitespace().collect::<Vec<_>>().join(" ").chars().take(200).collect();
    let mut out = Classified {
        verdict: Verdict::Other,
        from,
        subject,
        message_id,
        refers_to,
        snippet,
        why: "no sign of a reply, bounce, automatic reply or complaint".into(),
    };
    let report_type = msg
        .content_type()
        .filter(|ct| ct.ctype().eq_ignore_ascii_case("multipart") && ct.subtype() == Some("report"))
        .and_then(|ct| ct.attribute("report-type"))
        .map(str::to_ascii_lowercase);
    // ARF (RFC 5965), and Microsoft's older JMRP reports (the complained-about message
    // attached, the original recipient in X-HmXmrOriginalRecipient).
    let jmrp = header_text(&msg, "X-HmXmrOriginalRecipient").is_some()
        || out.subject.as_deref().is_some_and(|s| s.to_lowercase().starts_with("complaint about message from"));
    if report_type.as_deref() == Some("feedback-report") || has_part(&msg, "message", "feedback-report") || jmrp {
        out.verdict = Verdict::Complaint;
        out.why = if jmrp {
            "a Microsoft JMRP complaint report".into()
        } else {
            "an ARF feedback report (RFC 5965): the recipient marked the email as spam".into()
        };
        // The complained-about message: its headers are attached.
        if let Some(b) = bounce_parts(&msg) {
            out.refers_to.extend(b.original_message_id);
        }
        return out;
    }
    if let Some(b) = bounce(&msg, out.from.as_deref(), out.subject.as_deref(), &text) {
        out.why = bounce_why(&b, report_type.as_deref() == Some("delivery-status"));
        out.verdict = Verdict::Bounce(b);
        return out;
    }
    // A delivery system's message that is not a bounce is never a reply or an auto-reply.
    if from_delivery_system(out.from.as_deref()) || has_part(&msg, "message", "delivery-status") {
        out.why = "from a delivery system, but no failed recipient in it (a delay or success notice)".into();
        return out;
    }
    if let Some(sign) = auto_reply_sign(&msg, out.subject.as_deref()) {
        let sent =
            msg.date().and_then(|d| NaiveDate::from_ymd_opt(i32::from(d.year), u32::from(d.month), u32::from(d.day)));
        let returns_on = return_date(&text, sent);
        out.why = match returns_on {
            Some(d) => format!("{sign}; the text names {d} as the return date"),
            None => format!("{sign}; no return date found in the text"),
        };
        out.verdict = Verdict::AutoReply { returns_on };
        return out;
    }
    let re = out.subject.as_deref().is_some_and(|s| {
        let l = s.trim_start().to_ascii_lowercase();
        ["re:", "aw:", "sv:", "antw:", "réf:", "r:"].iter().any(|p| l.starts_with(p))
    });
    if asks_to_unsubscribe(out.subject.as_deref(), &text) {
        out.verdict = Verdict::Unsubscribe;
        out.why = "a person's answer whose subject or first line asks to be taken off".into();
    } else if !out.refers_to.is_empty() || re {
        out.verdict = Verdict::Reply;
        out.why = if out.refers_to.is_empty() {
            "a person's answer: the subject starts with a reply prefix".into()
        } else {
            "a person's answer: In-Reply-To/References name an earlier message".into()
        };
    }
    out
}

/// A bounce's reason, in the report's own terms.
fn bounce_why(b: &Bounce, delivery_status: bool) -> String {
    let source = if delivery_status { "a delivery status report (RFC 3464)" } else { "a bounce message" };
    let mut why = format!(
        "{source}: {} {} ({:?}, {:?})",
        if b.permanent { "permanent failure" } else { "temporary failure" },
        b.status.as_deref().unwrap_or("without a status code"),
        b.reason,
        b.class,
    );
    if let Some(d) = &b.diagnostic {
        why.push_str(": ");
        why.extend(d.chars().take(160));
    }
    why
}

/// Phrases asking to be taken off a list, in the languages whose auto-reply phrases are
/// recognised, compared in lower case.
const UNSUBSCRIBE_PHRASES: &[&str] = &[
    "unsubscribe",
    "remove me",
    "take me off",
    "opt out",
    "opt-out",
    "stop emailing",
    "stop sending",
    "abmelden",
    "austragen",
    "désabonner",
    "desabonner",
    "désinscrire",
    "desinscrire",
    "dar de baja",
    "darme de baja",
    "cancelar suscripción",
    "cancelar inscrição",
    "descadastrar",
    "uitschrijven",
    "afmelden",
    "avregistrera",
    "avsluta prenumeration",
    "atteikties",
    "cancellami",
    "annulla iscrizione",
    "wypisz",
];

/// The subject, or the first line the person wrote (quoted lines skipped), asks to be
/// taken off: never a word further down, where a quoted footer says "unsubscribe".
fn asks_to_unsubscribe(subject: Option<&str>, text: &str) -> bool {
    let has = |s: &str| {
        let l = s.to_lowercase();
        UNSUBSCRIBE_PHRASES.iter().any(|p| l.contains(p))
    };
    let first_line = text.lines().map(str::trim).find(|l| !l.is_empty() && !l.starts_with('>'));
    subject.is_some_and(has) || first_line.is_some_and(has)
}

fn from_delivery_system(from: Option<&str>) -> bool {
    from.is_some_and(|f| DAEMON_SENDERS.iter().any(|d| f.split('@').next().is_some_and(|local| local.contains(d))))
}

/// A header's unfolded value read straight from the raw header block.
fn raw_header(raw: &[u8], name: &str) -> Option<String> {
    let text = String::from_utf8_lossy(raw);
    let mut value: Option<String> = None;
    for line in text.lines() {
        if line.trim().is_empty() {
            break;
        }
        if line.starts_with([' ', '\t']) {
            if let Some(v) = value.as_mut() {
                v.push(' ');
                v.push_str(line.trim());
            }
            continue;
        }
        if value.is_some() {
            break;
        }
        if let Some((n, v)) = line.split_once(':')
            && n.trim().eq_ignore_ascii_case(name)
        {
            value = Some(v.trim().to_owned());
        }
    }
    value
}

fn header_text<'a>(msg: &'a Message<'a>, name: &'a str) -> Option<&'a str> {
    msg.header_raw(name).map(str::trim)
}

/// What marks the message as an automatic reply, if anything does.
fn auto_reply_sign(msg: &Message<'_>, subject: Option<&str>) -> Option<String> {
    // RFC 3834: "auto-replied" is an automatic answer; "auto-generated" (shipping notices,
    // digests, alerts) is not, unless its subject says it is an absence note.
    let auto_submitted = header_text(msg, "Auto-Submitted").map(str::to_ascii_lowercase);
    if auto_submitted.as_deref().is_some_and(|v| v.starts_with("auto-replied")) {
        return Some("header Auto-Submitted: auto-replied (RFC 3834)".into());
    }
    for header in ["X-Autoreply", "X-Autorespond"] {
        if header_text(msg, header).is_some() {
            return Some(format!("header {header}"));
        }
    }
    if header_text(msg, "Precedence").is_some_and(|p| p.eq_ignore_ascii_case("auto_reply")) {
        return Some("header Precedence: auto_reply".into());
    }
    if header_text(msg, "X-Auto-Response-Suppress").is_some()
        && header_text(msg, "X-MS-Exchange-Inbox-Rules-Loop").is_some()
    {
        return Some("Exchange inbox-rule headers (X-MS-Exchange-Inbox-Rules-Loop)".into());
    }
    let lower = subject?.to_lowercase();
    AUTO_REPLY_SUBJECTS.iter().find(|p| lower.contains(*p)).map(|p| format!("the subject says \"{p}\""))
}

/// All text parts (decoded), concatenated.
fn body_text(msg: &Message<'_>) -> String {
    let mut s = String::new();
    for part in msg.text_bodies() {
        if let Some(t) = part.text_contents() {
            s.push_str(t);
            s.push('\n');
        }
    }
    if s.is_empty()
        && let Some(html) = msg.body_html(0)
    {
        s.push_str(&html);
    }
    s
}

fn has_part(msg: &Message<'_>, ctype: &str, subtype: &str) -> bool {
    msg.parts.iter().any(|p| {
        p.content_type().is_some_and(|ct| {
            ct.ctype().eq_ignore_ascii_case(ctype) && ct.subtype().is_some_and(|s| s.eq_ignore_ascii_case(subtype))
        })
    })
}

fn part_text<'a>(p: &'a mail_parser::MessagePart<'_>) -> std::borrow::Cow<'a, str> {
    match &p.body {
        PartType::Text(t) | PartType::Html(t) => std::borrow::Cow::Borrowed(t.as_ref()),
        PartType::Binary(b) | PartType::InlineBinary(b) => String::from_utf8_lossy(b),
        _ => std::borrow::Cow::Borrowed(""),
    }
}

/// Reads the delivery-status and attached-original parts; `None` if there are neither.
fn bounce_parts(msg: &Message<'_>) -> Option<Bounce> {
    let (b, is_report) = read_parts(msg);
    (is_report || b.original_message_id.is_some()).then_some(b)
}

fn read_parts(msg: &Message<'_>) -> (Bounce, bool) {
    let mut b = Bounce {
        hard: false,
        permanent: true,
        reason: BounceReason::Undefined,
        class: BounceClass::RecipientTemporary,
        status: None,
        recipient: None,
        diagnostic: None,
        original_message_id: None,
    };
    let mut is_report = false;
    for p in &msg.parts {
        let Some(ct) = p.content_type() else { continue };
        let (ty, sub) = (ct.ctype().to_ascii_lowercase(), ct.subtype().unwrap_or("").to_ascii_lowercase());
        match (ty.as_str(), sub.as_str()) {
            ("message", "delivery-status") | ("message", "global-delivery-status") => {
                is_report = true;
                read_delivery_status(&part_text(p), &mut b);
            }
            ("message", "rfc822") | ("message", "global") => {
                if let PartType::Message(m) = &p.body {
                    b.original_message_id = b.original_message_id.take().or(m.message_id().map(str::to_owned));
                }
            }
            ("text", "rfc822-headers") => {
                let mut headers = part_text(p).into_owned();
                headers.push_str("\r\n\r\n");
                if let Some(m) = MessageParser::default().parse(headers.as_bytes()) {
                    b.original_message_id = b.original_message_id.take().or(m.message_id().map(str::to_owned));
                }
            }
            _ => {}
        }
    }
    (b, is_report)
}

fn bounce(msg: &Message<'_>, from: Option<&str>, subject: Option<&str>, text: &str) -> Option<Bounce> {
    let (mut b, is_report) = read_parts(msg);
    let display = msg.from().and_then(|a| a.first()).and_then(|a| a.name()).unwrap_or("").to_lowercase();
    let daemon = from.is_some_and(|f| {
        let f = f.to_lowercase();
        DAEMON_SENDERS.iter().any(|d| f.split('@').next().is_some_and(|local| local.contains(d)) || display.contains(d))
    });
    // An empty (or daemon) envelope sender is what notices are sent with.
    let return_path = header_text(msg, "Return-Path").map(|r| r.trim_matches(['<', '>', ' ']).to_ascii_lowercase());
    let null_sender = return_path.as_deref().is_some_and(|r| {
        r.is_empty() || DAEMON_SENDERS.iter().any(|d| r.split('@').next().is_some_and(|local| local.contains(d)))
    });
    let failed_header = header_text(msg, "X-Failed-Recipients").map(str::to_owned);
    let bounce_subject = subject.is_some_and(|s| {
        let l = s.to_lowercase();
        BOUNCE_SUBJECTS.iter().any(|p| l.contains(p))
    });
    let status_in_text = find_status(text).is_some() || smtp_reply_in(text);
    // A delivery-status part (RFC 3464) or a report of that type, X-Failed-Recipients, or
    // a delivery system's notice: from a daemon or with an empty envelope sender, with a
    // failure subject or a status code in its text.
    let notice = daemon || null_sender;
    let says_undelivered = says_undelivered(text);
    let evidence = bounce_subject || status_in_text || says_undelivered;
    let strong = bounce_subject && (status_in_text || says_undelivered);
    if !(is_report || failed_header.is_some() || notice && evidence || strong) {
        return None;
    }
    if b.recipient.is_none() {
        b.recipient = failed_header
            .as_deref()
            .and_then(|h| h.split(',').next())
            .map(|s| s.trim().to_ascii_lowercase())
            .or_else(|| first_address(text));
    }
    let notice = notice_text(text);
    if b.status.is_none() {
        b.status = find_status(&notice);
    }
    if b.original_message_id.is_none() {
        // Non-MIME bounces (qmail, Exim) quote the original headers in the text.
        b.original_message_id = text
            .lines()
            .filter_map(|l| l.trim().split_once(':'))
            .find(|(name, _)| name.eq_ignore_ascii_case("message-id"))
            .map(|(_, v)| v.trim().trim_matches(['<', '>']).to_owned());
    }
    if b.diagnostic.is_none() {
        b.diagnostic =
            notice.lines().map(str::trim).find(|l| l.starts_with('5') || l.starts_with('4')).map(str::to_owned);
    }
    // The reason comes from this recipient's own evidence: its diagnostic (or, without a
    // delivery-status part, the notice's own text before the returned original).
    let evidence = match &b.diagnostic {
        Some(d) if is_report => d.clone(),
        _ => notice,
    };
    if !is_report || b.status.is_none() {
        b.status = most_specific(b.status.take(), find_status(&evidence));
    }
    let status = b.status.clone().unwrap_or_default();
    if status.starts_with('4') || evidence.trim_start().starts_with('4') && status.is_empty() {
        b.permanent = false;
    }
    b.reason = crate::bounce::reason_for(b.status.as_deref(), &evidence, !b.permanent);
    if is_report && matches!(b.reason, BounceReason::Undefined | BounceReason::OnHold) {
        // The diagnostic said too little: the report's own human-readable words may tell.
        b.reason = crate::bounce::reason_for(b.status.as_deref(), &notice_text(text), !b.permanent);
    }
    b.class = b.reason.class(b.permanent);
    b.hard = b.class == BounceClass::AddressBad;
    Some(b)
}

/// A bounce notice's own words: the text up to where the returned message (or its
/// headers) begins, so a word in the original never decides the reason.
fn notice_text(text: &str) -> String {
    let mut out = String::new();
    for line in text.lines() {
        let l = line.to_ascii_lowercase();
        // A header at the start of a line begins the returned original (quoted, indented
        // header fields inside the notice itself do not).
        let original = ["received:", "message-id:", "return-path:", "dkim-signature:"].iter().any(|h| l.starts_with(h))
            || [
                "original message",
                "copy of the message",
                "message headers follow",
                "returned message",
                "unsent message below",
                "this is a copy",
            ]
            .iter()
            .any(|m| l.trim_start().contains(m));
        if original {
            break;
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// The more specific of two enhanced codes (5.1.1 over 5.0.0), the first when equal.
fn most_specific(a: Option<String>, b: Option<String>) -> Option<String> {
    let detail = |s: &str| s.split('.').skip(1).filter(|p| *p != "0").count();
    match (a, b) {
        (Some(a), Some(b)) if detail(&b) > detail(&a) && a.get(..1) == b.get(..1) => Some(b),
        (Some(a), _) => Some(a),
        (None, b) => b,
    }
}

/// Reads RFC 3464 per-recipient blocks (the first recipient that was not delivered wins):
/// folded field values are unfolded, a multi-line Diagnostic-Code is joined, and the more
/// specific of `Status:` and a code inside the Diagnostic-Code is kept.
fn read_delivery_status(ds: &str, b: &mut Bounce) {
    #[derive(Default)]
    struct Block {
        recipient: Option<String>,
        action: Option<String>,
        status: Option<String>,
        diagnostic: Option<String>,
    }
    let mut blocks: Vec<Block> = vec![Block::default()];
    let mut last_field: Option<String> = None;
    for line in ds.lines() {
        if line.trim().is_empty() {
            blocks.push(Block::default());
            last_field = None;
            continue;
        }
        let Some(block) = blocks.last_mut() else { continue };
        if line.starts_with([' ', '\t']) {
            // A folded continuation: only the diagnostic is long enough to care.
            if last_field.as_deref() == Some("diagnostic-code")
                && let Some(d) = block.diagnostic.as_mut()
            {
                d.push(' ');
                d.push_str(line.trim());
            }
            continue;
        }
        let Some((name, value)) = line.split_once(':') else { continue };
        let (name, value) = (name.trim().to_ascii_lowercase(), value.trim());
        match name.as_str() {
            "final-recipient" => block.recipient = Some(address_of(value)),
            "original-recipient" if block.recipient.is_none() => block.recipient = Some(address_of(value)),
            "action" => block.action = Some(value.to_ascii_lowercase()),
            "status" => block.status = value.split_whitespace().next().map(str::to_owned),
            "diagnostic-code" => {
                block.diagnostic = Some(value.split_once(';').map_or(value, |(_, d)| d).trim().to_owned())
            }
            _ => {}
        }
        last_field = Some(name);
    }
    let failed = blocks
        .into_iter()
        .filter(|k| k.recipient.is_some() && !matches!(k.action.as_deref(), Some("delivered" | "relayed" | "expanded")))
        .find(|_| b.recipient.is_none());
    if let Some(k) = failed {
        let in_diagnostic = k.diagnostic.as_deref().and_then(find_status);
        b.status = most_specific(k.status.filter(|s| s.starts_with(['4', '5'])), in_diagnostic);
        b.recipient = k.recipient;
        b.diagnostic = k.diagnostic;
        if k.action.as_deref() == Some("delayed") {
            b.permanent = false;
        }
    }
}

fn address_of(value: &str) -> String {
    value.rsplit(';').next().unwrap_or(value).trim().trim_matches(['<', '>']).to_ascii_lowercase()
}

/// The first enhanced status code (x.y.z with x = 4 or 5) in a text.
fn find_status(text: &str) -> Option<String> {
    text.split(|c: char| !(c.is_ascii_digit() || c == '.'))
        .filter(|t| t.len() >= 5)
        .find(|t| {
            let parts: Vec<&str> = t.split('.').collect();
            parts.len() == 3
                && (parts[0] == "4" || parts[0] == "5")
                && (1..=3).contains(&parts[1].len())
                && (1..=3).contains(&parts[2].len())
                && parts[1..].iter().all(|p| p.chars().all(|c| c.is_ascii_digit()))
        })
        .map(str::to_owned)
}

/// The address in a header value: inside <…> if there is one, else the word with an @.
fn address_in(value: &str) -> Option<String> {
    let inner = value.rsplit_once('<').and_then(|(_, r)| r.split_once('>')).map(|(a, _)| a);
    inner
        .or_else(|| value.split_whitespace().find(|w| w.contains('@')))
        .map(|a| a.trim_matches(['<', '>', '"', '(', ')']).to_ascii_lowercase())
        .filter(|a| a.contains('@'))
}

/// Whether the notice's first lines say a message was not delivered (in the notice's own
/// words, before any quoted original).
fn says_undelivered(text: &str) -> bool {
    const PHRASES: &[&str] = &[
        "could not be delivered to",
        "could not deliver message to",
        "delivery has failed to",
        "was not delivered to",
        "did not reach the following recipient",
        "unable to deliver message to",
        "undeliverable to the following",
        "n'a pas pu etre delivre",
        "n'a pas pu être délivré",
        "n'a pas pu être remis",
        "konnte nicht zugestellt werden",
        "no se pudo entregar",
        "não pôde ser entregue",
        "kon niet worden afgeleverd",
    ];
    let head: String = text.lines().take(30).collect::<Vec<_>>().join(" ").to_lowercase();
    PHRASES.iter().any(|p| head.contains(p))
}

/// Whether the text quotes an SMTP error reply ("550 …", "554-…") at a line's start.
fn smtp_reply_in(text: &str) -> bool {
    text.lines().any(|l| {
        let t = l.trim_start();
        let b = t.as_bytes();
        b.len() > 4
            && matches!(b[0], b'4' | b'5')
            && b[1].is_ascii_digit()
            && b[2].is_ascii_digit()
            && matches!(b[3], b' ' | b'-')
    })
}

fn first_address(text: &str) -> Option<String> {
    text.split(|c: char| c.is_whitespace() || matches!(c, '<' | '>' | '"' | '(' | ')' | ',' | ';' | ':'))
        .find(|w| w.contains('@') && w.contains('.') && !w.to_ascii_lowercase().starts_with("mailer-daemon"))
        .map(|w| w.trim_matches('.').to_ascii_lowercase())
}

/// Month names (and their common abbreviations and inflections) in the languages whose
/// auto-reply phrases are recognised.
const MONTHS: &[(&str, u32)] = &[
    // English
    ("january", 1),
    ("february", 2),
    ("march", 3),
    ("april", 4),
    ("may", 5),
    ("june", 6),
    ("july", 7),
    ("august", 8),
    ("september", 9),
    ("october", 10),
    ("november", 11),
    ("december", 12),
    ("jan", 1),
    ("feb", 2),
    ("mar", 3),
    ("apr", 4),
    ("jun", 6),
    ("jul", 7),
    ("aug", 8),
    ("sep", 9),
    ("sept", 9),
    ("oct", 10),
    ("nov", 11),
    ("dec", 12),
    // German
    ("januar", 1),
    ("jänner", 1),
    ("februar", 2),
    ("märz", 3),
    ("mai", 5),
    ("juni", 6),
    ("juli", 7),
    ("oktober", 10),
    ("dezember", 12),
    // French
    ("janvier", 1),
    ("février", 2),
    ("fevrier", 2),
    ("mars", 3),
    ("avril", 4),
    ("juin", 6),
    ("juillet", 7),
    ("août", 8),
    ("aout", 8),
    ("septembre", 9),
    ("octobre", 10),
    ("novembre", 11),
    ("décembre", 12),
    ("decembre", 12),
    // Spanish
    ("enero", 1),
    ("febrero", 2),
    ("marzo", 3),
    ("abril", 4),
    ("mayo", 5),
    ("junio", 6),
    ("julio", 7),
    ("agosto", 8),
    ("septiembre", 9),
    ("setiembre", 9),
    ("octubre", 10),
    ("noviembre", 11),
    ("diciembre", 12),
    // Portuguese
    ("janeiro", 1),
    ("fevereiro", 2),
    ("março", 3),
    ("marco", 3),
    ("maio", 5),
    ("junho", 6),
    ("julho", 7),
    ("setembro", 9),
    ("outubro", 10),
    ("novembro", 11),
    ("dezembro", 12),
    // Dutch
    ("januari", 1),
    ("februari", 2),
    ("maart", 3),
    ("mei", 5),
    ("augustus", 8),
    // Swedish
    ("maj", 5),
    ("augusti", 8),
    // Italian
    ("gennaio", 1),
    ("febbraio", 2),
    ("aprile", 4),
    ("maggio", 5),
    ("giugno", 6),
    ("luglio", 7),
    ("settembre", 9),
    ("ottobre", 10),
    ("dicembre", 12),
    // Polish (genitive, as dates are written)
    ("stycznia", 1),
    ("lutego", 2),
    ("marca", 3),
    ("kwietnia", 4),
    ("maja", 5),
    ("czerwca", 6),
    ("lipca", 7),
    ("sierpnia", 8),
    ("września", 9),
    ("października", 10),
    ("listopada", 11),
    ("grudnia", 12),
    // Latvian (nominative and the locative/dative forms dates use)
    ("janvāris", 1),
    ("janvārī", 1),
    ("februāris", 2),
    ("februārī", 2),
    ("marts", 3),
    ("martā", 3),
    ("aprīlis", 4),
    ("aprīlī", 4),
    ("maijs", 5),
    ("maijā", 5),
    ("jūnijs", 6),
    ("jūnijā", 6),
    ("jūlijs", 7),
    ("jūlijā", 7),
    ("augusts", 8),
    ("augustā", 8),
    ("septembris", 9),
    ("septembrī", 9),
    ("oktobris", 10),
    ("oktobrī", 10),
    ("novembris", 11),
    ("novembrī", 11),
    ("decembris", 12),
    ("decembrī", 12),
];

/// Words that announce when the person is back (so that date wins over others, such as
/// the day they left).
const BACK_WORDS: &[&str] = &[
    "back",
    "return",
    "returning",
    "until",
    "till",
    "zurück",
    "wieder",
    "bis",
    "retour",
    "jusqu",
    "regreso",
    "vuelta",
    "hasta",
    "volta",
    "regresso",
    "até",
    "terug",
    "tot",
    "tillbaka",
    "till och med",
    "atpakaļ",
    "līdz",
    "rientro",
    "fino",
    "powrót",
    "do",
];

/// The date the sender is back, from an auto-reply's text: ISO (2026-11-28), numeric
/// (28.11.2026 day first; 11/28/2026 month first when the day cannot be first or the text
/// is English), or with a month name in any recognised language, with or without a year
/// (then the next such date). A date after a "back"/"until" word wins; otherwise the
/// latest date not before the message's own.
pub fn return_date(text: &str, sent: Option<NaiveDate>) -> Option<NaiveDate> {
    let lower = text.to_lowercase();
    let words: Vec<&str> = lower
        .split(|c: char| c.is_whitespace() || matches!(c, ',' | '(' | ')' | '"' | '*'))
        .filter(|w| !w.is_empty())
        .collect();
    let english = ["back", "office", "return", "the"].iter().filter(|w| words.contains(w)).count() >= 2;
    let not_past = |d: NaiveDate| sent.is_none_or(|s| d >= s);
    let without_year = |m: u32, d: u32| {
        let base = sent.unwrap_or_else(|| chrono::Utc::now().date_naive());
        let this_year = NaiveDate::from_ymd_opt(chrono::Datelike::year(&base), m, d)?;
        if this_year >= base {
            Some(this_year)
        } else {
            NaiveDate::from_ymd_opt(chrono::Datelike::year(&base) + 1, m, d)
        }
    };
    let month = |s: &str| {
        let s = s.trim_end_matches(['.', ';', ':']);
        MONTHS.iter().find(|(m, _)| s == *m).map(|(_, n)| *n)
    };
    let day = |s: &str| {
        s.trim_end_matches(|c: char| c.is_ascii_alphabetic() || c == '.' || c == ':')
            .parse::<u32>()
            .ok()
            .filter(|d| (1..=31).contains(d))
    };
    let year = |s: Option<&&str>| {
        s.and_then(|y| y.trim_end_matches(['.', ';']).parse::<i32>().ok()).filter(|y| *y > 2000 && *y < 2200)
    };
    let mut found: Vec<(usize, NaiveDate)> = Vec::new();
    for (i, raw) in words.iter().enumerate() {
        let w = raw.trim_end_matches(['.', ';', ':', '!']);
        let nums: Vec<&str> = w.split(['-', '.', '/']).collect();
        if nums.len() == 3 && nums.iter().all(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit())) {
            let n: Vec<u32> = nums.iter().filter_map(|x| x.parse().ok()).collect();
            let date = if nums[0].len() == 4 {
                NaiveDate::from_ymd_opt(n[0] as i32, n[1], n[2])
            } else if nums[2].len() == 4 {
                let month_first = w.contains('/') && (n[1] > 12 || n[0] <= 12 && english);
                if month_first {
                    NaiveDate::from_ymd_opt(n[2] as i32, n[0], n[1])
                } else {
                    NaiveDate::from_ymd_opt(n[2] as i32, n[1], n[0])
                }
            } else {
                None
            };
            found.extend(date.map(|d| (i, d)));
            continue;
        }
        let Some(m) = month(w) else { continue };
        // "November 28, 2026" / "November 28" / "28 November 2026" / "28. November" / "4 de diciembre de 2026"
        let after = words.get(i + 1).and_then(|x| day(x));
        let before = i.checked_sub(1).and_then(|k| words.get(k)).and_then(|x| day(x));
        let before = before.or_else(|| {
            // "4 de diciembre"
            (i >= 2 && words[i - 1] == "de").then(|| day(words[i - 2])).flatten()
        });
        let y_after = year(words.get(i + 1)).or(year(words.get(i + 2))).or(year(words.get(i + 3)));
        let date = match (after, before) {
            (Some(d), _) => y_after.map_or_else(|| without_year(m, d), |y| NaiveDate::from_ymd_opt(y, m, d)),
            (None, Some(d)) => y_after.map_or_else(|| without_year(m, d), |y| NaiveDate::from_ymd_opt(y, m, d)),
            _ => None,
        };
        found.extend(date.map(|d| (i, d)));
    }
    found.retain(|(_, d)| not_past(*d));
    let back_at = words.iter().position(|w| BACK_WORDS.iter().any(|b| w.trim_end_matches(['.', ':']) == *b));
    if let Some(b) = back_at
        && let Some((_, d)) = found.iter().find(|(i, _)| *i > b)
    {
        return Some(*d);
    }
    found.into_iter().map(|(_, d)| d).max()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn return_dates() {
        let sent = NaiveDate::from_ymd_opt(2026, 11, 20);
        let d = |y, m, dd| NaiveDate::from_ymd_opt(y, m, dd);
        assert_eq!(return_date("I am back on 2026-11-28.", sent), d(2026, 11, 28));
        assert_eq!(return_date("Ich bin ab dem 30.11.2026 wieder im Büro.", sent), d(2026, 11, 30));
        assert_eq!(return_date("Back on November 30, 2026", sent), d(2026, 11, 30));
        assert_eq!(return_date("returning 1 December 2026", sent), d(2026, 12, 1));
        assert_eq!(return_date("Out since 01/11/2026, back 02/12/2026", sent), d(2026, 12, 2));
        assert_eq!(return_date("no date here", sent), None);
        // US order where the day cannot come first, or the text is English.
        assert_eq!(return_date("I am out of the office and back on 12/03/2026.", sent), d(2026, 12, 3));
        assert_eq!(return_date("Zurück am 03/12/2026", sent), d(2026, 12, 3));
        assert_eq!(return_date("back 11/28/2026", sent), d(2026, 11, 28));
        // Month names in other languages, and no year (the next such date).
        assert_eq!(return_date("Ich bin bis 4. Dezember nicht im Büro.", sent), d(2026, 12, 4));
        assert_eq!(return_date("Je serai de retour le 3 décembre 2026.", sent), d(2026, 12, 3));
        assert_eq!(return_date("Estaré fuera hasta el 4 de diciembre de 2026.", sent), d(2026, 12, 4));
        assert_eq!(return_date("Atgriezīšos 5. decembrī.", sent), d(2026, 12, 5));
        assert_eq!(return_date("I'll be back January 5", sent), d(2027, 1, 5));
        // The day they are back, not the day they left.
        assert_eq!(
            return_date("I left on 2026-11-25 and will be back on 2026-12-01.", NaiveDate::from_ymd_opt(2026, 11, 20)),
            d(2026, 12, 1)
        );
        assert_eq!(return_date("Out from November 21 until November 30, 2026", sent), d(2026, 11, 30));
    }

    #[test]
    fn statuses() {
        assert_eq!(find_status("550 5.1.1 <a@b.c>: Recipient address rejected").as_deref(), Some("5.1.1"));
        assert_eq!(find_status("version 1.2.3.4 and 452 4.2.2 full").as_deref(), Some("4.2.2"));
        assert_eq!(find_status("nothing"), None);
    }

    #[test]
    fn never_panics_on_junk() {
        for junk in [
            &b""[..],
            b"\r\r\r",
            b"Subject: x",
            b"\xff\xfe\x00garbage",
            b"Content-Type: multipart/report; boundary=\r\n\r\n--",
        ] {
            let _ = classify(junk);
        }
    }
}
