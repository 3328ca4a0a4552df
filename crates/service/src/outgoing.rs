//! One campaign email for one lead at one step, exactly as it is sent: the templates
//! rendered with the lead, the threading headers (earlier steps' Message-IDs),
//! List-Unsubscribe, the MIME message. The worker sends what this makes; previews and
//! test sends show and send the same thing.

use coldsend_core::account::SenderAccount;
use coldsend_core::campaign::Campaign;
use coldsend_core::lead::Lead;
use coldsend_core::send_key::SendKey;
use coldsend_core::template;
use coldsend_core::unsubscribe::UnsubscribeSigner;
use lettre::Address;
use lettre::message::header::{ContentType, HeaderName, HeaderValue};
use lettre::message::{Mailbox, MultiPart, SinglePart};

/// Why an email cannot be made for a lead: never retried, the lead is stopped.
#[derive(Debug, thiserror::Error)]
pub enum Unsendable {
    #[error("the campaign has no step {0}")]
    NoSuchStep(usize),
    #[error("template: {0}")]
    Template(String),
    #[error("template: the rendered subject holds a line break or control character")]
    SubjectControlCharacter,
    #[error("the message cannot be composed: {0}")]
    Compose(String),
}

/// Where List-Unsubscribe points.
pub struct UnsubscribeLinks<'a> {
    pub signer: &'a UnsubscribeSigner,
    /// `sending.public_base_url`; empty: mailto only.
    pub public_base_url: &'a str,
}

/// A composed email and its Message-ID (without angle brackets).
pub struct Email {
    pub mail: Composed,
    pub message_id: String,
    pub rendered: Rendered,
}

/// Renders and composes the email `key` names for `lead`, from `account`.
pub fn email(
    campaign: &Campaign,
    account: &SenderAccount,
    key: &SendKey,
    lead: &Lead,
    links: &UnsubscribeLinks<'_>,
) -> Result<Email, Unsendable> {
    let rendered = render(campaign, key, lead)?;
    let domain = account.email.domain().to_owned();
    let message_id = key.message_id(&domain);
    let thread: Vec<String> = (0..key.step).map(|s| SendKey { step: s, ..key.clone() }.message_id(&domain)).collect();
    let mut list_unsubscribe = format!("<mailto:{}?subject=unsubscribe>", account.email);
    if !links.public_base_url.is_empty() {
        let token = links.signer.token(&key.campaign, &key.lead);
        list_unsubscribe = format!(
            "<{}/api/public/v1/unsubscribe?token={token}>, {list_unsubscribe}",
            links.public_base_url.trim_end_matches('/')
        );
    }
    let full_name =
        [lead.first_name.as_deref(), lead.last_name.as_deref()].into_iter().flatten().collect::<Vec<_>>().join(" ");
    let outgoing = Outgoing {
        from_name: account.display_name.as_str().to_owned(),
        from: account.email.to_string(),
        to: lead.email.to_string(),
        to_name: Some(full_name).filter(|n| !n.is_empty()),
        subject: rendered.subject.clone(),
        text: rendered.text.clone(),
        html: rendered.html.clone(),
        message_id: message_id.clone(),
        thread,
        list_unsubscribe,
        extra_headers: Vec::new(),
    };
    let mail = compose(&outgoing).map_err(|e| Unsendable::Compose(e.to_string()))?;
    Ok(Email { mail, message_id, rendered })
}

/// A test email of step `step` for `lead` (whose fields fill the templates; its address
/// is where the test goes): "[TEST]" in the subject, an `X-Coldsend-Test` header, its
/// own Message-ID (never one a lead's thread uses) threaded after the test's earlier
/// steps `before`, and a mailto-only List-Unsubscribe (no lead to unsubscribe).
pub fn test_email(
    campaign: &Campaign,
    account: &SenderAccount,
    lead: &Lead,
    test_id: &str,
    step: usize,
    before: &[usize],
) -> Result<Email, Unsendable> {
    let key = SendKey { campaign: campaign.id, lead: lead.id.clone(), step };
    let rendered = render(campaign, &key, lead)?;
    let domain = account.email.domain();
    let id = |s: usize| format!("cs-test.{test_id}.{s}@{domain}");
    let outgoing = Outgoing {
        from_name: account.display_name.as_str().to_owned(),
        from: account.email.to_string(),
        to: lead.email.to_string(),
        to_name: None,
        subject: format!("[TEST] {}", rendered.subject),
        text: rendered.text.clone(),
        html: rendered.html.clone(),
        message_id: id(step),
        thread: before.iter().map(|s| id(*s)).collect(),
        list_unsubscribe: format!("<mailto:{}?subject=unsubscribe>", account.email),
        extra_headers: vec![("X-Coldsend-Test", format!("campaign {}, step {step}", campaign.id))],
    };
    let mail = compose(&outgoing).map_err(|e| Unsendable::Compose(e.to_string()))?;
    Ok(Email { mail, message_id: id(step), rendered })
}

/// Subject, text and HTML of one step for one lead.
#[derive(Debug, Clone)]
pub struct Rendered {
    pub subject: String,
    pub text: String,
    pub html: Option<String>,
}

/// Renders one step's templates for one lead.
pub fn render(campaign: &Campaign, key: &SendKey, lead: &Lead) -> Result<Rendered, Unsendable> {
    let step = campaign.steps.get(key.step).ok_or(Unsendable::NoSuchStep(key.step))?;
    let ctx = template::lead_context(lead);
    let subject = template::render(campaign.subject_template(key.step), &ctx).map_err(Unsendable::Template)?;
    let subject = if campaign.is_reply_subject(key.step) { format!("Re: {subject}") } else { subject };
    // A lead's variables may hold line breaks: never let one into a header.
    if subject.chars().any(char::is_control) {
        return Err(Unsendable::SubjectControlCharacter);
    }
    let text = template::render(&step.text, &ctx).map_err(Unsendable::Template)?;
    let html = step.html.as_deref().map(|h| template::render(h, &ctx)).transpose().map_err(Unsendable::Template)?;
    Ok(Rendered { subject, text, html })
}

/// What goes into one email.
pub struct Outgoing {
    pub from_name: String,
    pub from: String,
    pub to: String,
    pub to_name: Option<String>,
    pub subject: String,
    pub text: String,
    pub html: Option<String>,
    /// Without angle brackets.
    pub message_id: String,
    /// Message-IDs of the earlier steps of the thread, oldest first.
    pub thread: Vec<String>,
    /// `List-Unsubscribe` value (mailto and, if configured, https).
    pub list_unsubscribe: String,
    /// Further headers (a test send's marker).
    pub extra_headers: Vec<(&'static str, String)>,
}

#[derive(Debug, thiserror::Error)]
pub enum ComposeError {
    #[error("invalid address {0}: {1}")]
    Address(String, String),
    #[error("cannot build the message: {0}")]
    Build(String),
}

/// The envelope addresses and the RFC 5322 bytes.
pub struct Composed {
    pub from: Address,
    pub to: Address,
    pub bytes: Vec<u8>,
}

pub fn compose(o: &Outgoing) -> Result<Composed, ComposeError> {
    let addr = |s: &str| s.parse::<Address>().map_err(|e| ComposeError::Address(s.to_owned(), e.to_string()));
    let (from, to) = (addr(&o.from)?, addr(&o.to)?);
    // Given, the envelope is not parsed back out of the From and To headers just written.
    let envelope = lettre::address::Envelope::new(Some(from.clone()), vec![to.clone()])
        .map_err(|e| ComposeError::Build(e.to_string()))?;
    let mut b = lettre::Message::builder()
        .envelope(envelope)
        .from(Mailbox::new(Some(o.from_name.clone()).filter(|n| !n.is_empty()), from.clone()))
        .to(Mailbox::new(o.to_name.clone(), to.clone()))
        .subject(o.subject.clone())
        .message_id(Some(format!("<{}>", o.message_id)))
        .date_now()
        .raw_header(HeaderValue::new(HeaderName::new_from_ascii_str("List-Unsubscribe"), o.list_unsubscribe.clone()));
    // RFC 8058 one-click unsubscribe: only with an https link to POST to (a mailto-only
    // header with it is invalid, and providers penalise it).
    if o.list_unsubscribe.contains("<https://") {
        b = b.raw_header(HeaderValue::new(
            HeaderName::new_from_ascii_str("List-Unsubscribe-Post"),
            "List-Unsubscribe=One-Click".into(),
        ));
    }
    for (name, value) in &o.extra_headers {
        b = b.raw_header(HeaderValue::new(HeaderName::new_from_ascii_str(name), value.clone()));
    }
    if let Some(previous) = o.thread.last() {
        b = b.in_reply_to(format!("<{previous}>"));
        let refs: Vec<String> = o.thread.iter().map(|id| format!("<{id}>")).collect();
        b = b.references(refs.join(" "));
    }
    let text = SinglePart::builder().header(ContentType::TEXT_PLAIN).body(o.text.clone());
    let message = match &o.html {
        Some(html) => b.multipart(
            MultiPart::alternative()
                .singlepart(text)
                .singlepart(SinglePart::builder().header(ContentType::TEXT_HTML).body(html.clone())),
        ),
        None => b.singlepart(text),
    }
    .map_err(|e| ComposeError::Build(e.to_string()))?;
    Ok(Composed { from, to, bytes: message.formatted() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn threaded_headers_and_unsubscribe() {
        let o = Outgoing {
            from_name: "Ann at Acme".into(),
            from: "ann@acme.test".into(),
            to: "bob@example.test".into(),
            to_name: Some("Bob".into()),
            subject: "Re: Hello".into(),
            text: "Hi Bob".into(),
            html: None,
            message_id: "cs.1.abc@acme.test".into(),
            thread: vec!["cs.0.xyz@acme.test".into()],
            list_unsubscribe: "<https://cs.example/u?token=t>, <mailto:ann@acme.test?subject=unsubscribe>".into(),
            extra_headers: vec![("X-Coldsend-Test", "yes".into())],
        };
        let c = compose(&o).expect("composes");
        let text = String::from_utf8(c.bytes).expect("utf8");
        for h in [
            "Message-ID: <cs.1.abc@acme.test>",
            "In-Reply-To: <cs.0.xyz@acme.test>",
            "References: <cs.0.xyz@acme.test>",
            "List-Unsubscribe: <https://cs.example/u?token=t>,",
            "List-Unsubscribe-Post: List-Unsubscribe=One-Click",
            "Subject: Re: Hello",
            "X-Coldsend-Test: yes",
        ] {
            assert!(text.contains(h), "missing {h} in\n{text}");
        }
        let mailto_only = Outgoing { list_unsubscribe: "<mailto:ann@acme.test?subject=unsubscribe>".into(), ..o };
        let text = String::from_utf8(compose(&mailto_only).expect("composes").bytes).expect("utf8");
        assert!(!text.contains("List-Unsubscribe-Post"), "one-click needs an https link:\n{text}");
    }
}
