//! Composing one campaign email and handing it to the mailbox's SMTP server, step by
//! step, so every failure is known to be before DATA (nothing sent), a refusal, or in
//! the window where the outcome is unknown.

use std::time::Duration;

use coldsend_core::bounce::{BounceClass, BounceReason, SenderLimit, sender_limit};
use coldsend_core::send_key::SendKey;
pub use coldsend_service::outgoing::Composed;
use lettre::transport::smtp::client::AsyncSmtpConnection;
use lettre::transport::smtp::commands::{Data, Mail, Rcpt, Rset};
use lettre::transport::smtp::extension::{MailBodyParameter, MailParameter};

use crate::probe::SmtpSession;

/// Commands written together, as one.
struct Pipelined(String);

impl std::fmt::Display for Pipelined {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// How a send attempt ended.
#[derive(Debug)]
pub enum Delivery {
    /// 250 after the body: accepted.
    Accepted(String),
    /// Refused or failed before the body went out: nothing was sent; try again later.
    Transient(String),
    /// A 5xx for the recipient: never retried. `recipient` when the address itself is bad
    /// (the bounce class `AddressBad`): the lead bounces and the address is suppressed.
    Permanent { message: String, recipient: bool },
    /// Our mailbox, domain, IP or content was refused (the bounce class `SenderSide`), or
    /// the mailbox hit its provider's quota or rate limit (`limit`): nothing was sent, the
    /// lead is not at fault, the step waits and the mailbox is told.
    SenderRefused { message: String, reason: BounceReason, limit: Option<SenderLimit> },
    /// No session: the account's OAuth2 sign-in failed (its grant refused, or its token
    /// endpoint unavailable when `transient`). Nothing was sent; the lead is not at fault.
    SignInNeeded { message: String, transient: bool },
    /// No session: the server could not be reached, or refused our credentials. Nothing
    /// was sent; the lead is not at fault, the failure counts toward DISCONNECTED.
    Unreachable(coldsend_core::ProbeFailure),
    /// Died or timed out after the body was sent: it may or may not have been accepted.
    Unknown(String),
    /// The claim on this send was lost before DATA (swept after a stall): not sent. The
    /// session is mid-DATA and must be dropped, never reused.
    ClaimLost,
}

/// A later send's envelope, written behind this send's body where the server pipelines
/// (RFC 2920 lets message content open a group and DATA close it): the later send then
/// finds the server waiting for its body, one round trip fewer. Its answers are read by
/// that send, before its claim ([`envelope_answers`]).
pub struct EnvelopeAhead<'a> {
    pub key: &'a SendKey,
    pub mail: &'a Composed,
}

/// Runs MAIL, RCPT, DATA (in one write where the server offers PIPELINING) and the body
/// on an open session. `before_body` is called just before the body is written; if it
/// returns false nothing more is sent. `ahead` goes out behind the body (see [`body`]).
pub async fn deliver<F, Fut>(
    session: &mut SmtpSession,
    c: &Composed,
    step_timeout: Duration,
    before_body: F,
    ahead: Option<EnvelopeAhead<'_>>,
) -> Delivery
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = bool>,
{
    let (mail, rcpt) = envelope(c);
    let conn = &mut session.conn;
    let before = async {
        if session.pipelining {
            let mail_answer = conn.command(Pipelined(format!("{mail}{rcpt}{Data}"))).await;
            return pipelined_answers(conn, mail_answer).await;
        }
        conn.command(mail).await.map_err(|e| (Step::MailFrom, e))?;
        conn.command(rcpt).await.map_err(|e| (Step::RcptTo, e))?;
        conn.command(Data).await.map_err(|e| (Step::Data, e))?;
        Ok::<(), (Step, lettre::transport::smtp::Error)>(())
    };
    match tokio::time::timeout(step_timeout * 3, before).await {
        Err(_) => return Delivery::Transient("timed out before DATA".into()),
        Ok(Err((step, e))) => return classify_before_body(step, &e),
        Ok(Ok(())) => {}
    }
    if !before_body().await {
        // The server said 354: a QUIT now would be read as the message's first line and
        // never answered. The caller drops the session instead; a connection closed
        // before the final dot aborts the transaction (RFC 5321 4.1.1.4).
        return Delivery::ClaimLost;
    }
    body(session, c, step_timeout, ahead).await
}

/// Writes the body of a send the server waits for (it said 354) and reads its answer.
/// `ahead`, where the server pipelines, goes out in the same write; once the body's
/// answer is read the session records it in `envelope_ahead` (its answers come next).
pub async fn body(
    session: &mut SmtpSession,
    c: &Composed,
    step_timeout: Duration,
    ahead: Option<EnvelopeAhead<'_>>,
) -> Delivery {
    session.envelope_ahead = None;
    let ahead = ahead.filter(|_| session.pipelining);
    let conn = &mut session.conn;
    let (written_ahead, answer) = match String::from_utf8(data_block(&c.bytes)) {
        Ok(mut block) => {
            if let Some(a) = &ahead {
                let (mail, rcpt) = envelope(a.mail);
                block.push_str(&format!("{mail}{rcpt}{Data}"));
            }
            (ahead.map(|a| a.key.clone()), tokio::time::timeout(step_timeout, conn.command(Pipelined(block))).await)
        }
        Err(_) => (None, tokio::time::timeout(step_timeout, conn.message(&c.bytes)).await),
    };
    let delivery = match answer {
        Err(_) => return Delivery::Unknown("no reply to the message body in time".into()),
        Ok(Ok(resp)) => Delivery::Accepted(resp.message().collect::<Vec<_>>().join(" ")),
        Ok(Err(e)) if refused(&e) => classify_answer(None, &e),
        Ok(Err(e)) => return Delivery::Unknown(e.to_string()),
    };
    // The body's answer was read whole: the envelope's answers are next on the wire.
    session.envelope_ahead = written_ahead;
    delivery
}

/// What the answers to an envelope written ahead said.
#[derive(Debug)]
pub enum AheadAnswers {
    /// 250, 250, 354: the server waits for the body.
    Ready,
    /// Refused: nothing was sent, and `delivery` is what the refusal means for the send,
    /// exactly as [`deliver`] would have said it (a refused recipient is never asked
    /// again). `reset`: the session was reset (RSET) and is good for the next transaction.
    Refused { delivery: Delivery, reset: bool },
    /// No answers (timed out, closed, unreadable): the session must be dropped. Nothing
    /// was refused; the send goes the ordinary way over another session.
    Broken,
}

/// Reads the answers to the envelope written behind the last body.
pub async fn envelope_answers(session: &mut SmtpSession, step_timeout: Duration) -> AheadAnswers {
    session.envelope_ahead = None;
    let conn = &mut session.conn;
    let answers = async {
        let mail_answer = conn.read_response().await;
        pipelined_answers(conn, mail_answer).await
    };
    match tokio::time::timeout(step_timeout * 3, answers).await {
        Ok(Ok(())) => AheadAnswers::Ready,
        Ok(Err((step, e))) if refused(&e) => {
            // After a refused recipient a server that said 354 anyway waits for a body.
            let reset = step != Step::DataAfterRefusal
                && matches!(tokio::time::timeout(step_timeout, conn.command(Rset)).await, Ok(Ok(_)));
            AheadAnswers::Refused { delivery: classify_before_body(step, &e), reset }
        }
        _ => AheadAnswers::Broken,
    }
}

/// MAIL FROM and RCPT TO for the composed message (BODY=8BITMIME only when it needs it).
fn envelope(c: &Composed) -> (Mail, Rcpt) {
    let mut params = vec![];
    if !c.bytes.is_ascii() {
        params.push(MailParameter::Body(MailBodyParameter::EightBitMime));
    }
    (Mail::new(Some(c.from.clone()), params), Rcpt::new(c.to.clone(), vec![]))
}

/// The answers to a pipelined MAIL, RCPT and DATA, in order (RFC 2920), MAIL's already
/// read. After a refusal the remaining replies are still read, so the session stays in
/// step; a server that says 354 to DATA after refusing the recipient is left mid-DATA, so
/// that session is given up (nothing was sent: the body never went out).
async fn pipelined_answers(
    conn: &mut AsyncSmtpConnection,
    mail_answer: Result<lettre::transport::smtp::response::Response, lettre::transport::smtp::Error>,
) -> Result<(), (Step, lettre::transport::smtp::Error)> {
    if let Err(e) = mail_answer {
        if refused(&e) {
            let _ = conn.read_response().await;
            let _ = conn.read_response().await;
        }
        return Err((Step::MailFrom, e));
    }
    if let Err(e) = conn.read_response().await {
        if refused(&e) && conn.read_response().await.is_ok() {
            return Err((Step::DataAfterRefusal, e));
        }
        return Err((Step::RcptTo, e));
    }
    conn.read_response().await.map_err(|e| (Step::Data, e))?;
    Ok(())
}

fn refused(e: &lettre::transport::smtp::Error) -> bool {
    e.is_permanent() || e.is_transient()
}

/// The message as DATA carries it: a `.` that starts a line doubled (RFC 5321 4.5.2, the
/// same rule as lettre's transparency codec) and the ending `CRLF.CRLF`, in one buffer so
/// body and end go out in one write (lettre's `message` writes them separately, and its
/// codec is private).
fn data_block(message: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(message.len() + message.len() / 64 + 6);
    if message.first() == Some(&b'.') {
        out.push(b'.');
    }
    // Copied a run of lines at a time, up to each CRLF followed by a dot.
    let mut from = 0;
    for at in memchr::memmem::find_iter(message, b"\r\n.") {
        out.extend_from_slice(&message[from..at + 2]);
        out.push(b'.');
        from = at + 2;
    }
    out.extend_from_slice(&message[from..]);
    out.extend_from_slice(b"\r\n.\r\n");
    out
}

/// The SMTP commands before the body, each of which may refuse.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    MailFrom,
    RcptTo,
    Data,
    /// Pipelined: RCPT refused, and DATA then accepted anyway — the session is mid-DATA.
    DataAfterRefusal,
}

impl Step {
    fn as_str(self) -> &'static str {
        match self {
            Step::MailFrom => "MAIL FROM",
            Step::RcptTo => "RCPT TO",
            Step::Data => "DATA",
            Step::DataAfterRefusal => "RCPT TO",
        }
    }
}

fn classify_before_body(step: Step, e: &lettre::transport::smtp::Error) -> Delivery {
    if step == Step::DataAfterRefusal {
        // Out of step with the server: never reused (a transient outcome drops the session),
        // and tried again later over a fresh one.
        return Delivery::Transient(format!("RCPT TO: {e}; the server then accepted DATA anyway"));
    }
    classify_answer(Some(step), e)
}

/// What a refusal means, by the same taxonomy as DSNs: a quota or rate limit, or anything
/// about our sender, never fails or suppresses the lead; only a bad address (said at RCPT
/// or after the body) bounces it; a recipient side that cannot take it now is retried.
fn classify_answer(step: Option<Step>, e: &lettre::transport::smtp::Error) -> Delivery {
    let text = e.to_string();
    let message = match step {
        Some(s) => format!("{}: {text}", s.as_str()),
        None => text.clone(),
    };
    // lettre puts the reply code in parentheses ("transient error (421): …"): read it apart.
    let too_many_connections = e.status().is_some_and(|c| c.to_string() == "421");
    let limit = sender_limit(&text).or(too_many_connections.then_some(SenderLimit::Rate));
    if let Some(limit) = limit {
        let reason = if limit == SenderLimit::Daily { BounceReason::ExceedLimit } else { BounceReason::TooManyConn };
        return Delivery::SenderRefused { message, reason, limit: Some(limit) };
    }
    let permanent = e.is_permanent();
    match answer_class(&text, permanent) {
        (BounceClass::SenderSide, reason) if permanent => Delivery::SenderRefused { message, reason, limit: None },
        // A permanent refusal of MAIL FROM is about our sender whatever its words: the lead
        // is not at fault.
        (_, reason) if permanent && step == Some(Step::MailFrom) => {
            Delivery::SenderRefused { message, reason, limit: None }
        }
        (BounceClass::AddressBad, _) if permanent && step != Some(Step::MailFrom) && step != Some(Step::Data) => {
            Delivery::Permanent { message, recipient: true }
        }
        _ if !permanent => Delivery::Transient(message),
        // A recipient side that cannot take it now (mailbox full, too big, suspended): retried
        // with backoff, and the lead fails (never suppressed) after the last attempt.
        (BounceClass::RecipientTemporary, _) => Delivery::Transient(message),
        _ => Delivery::Permanent { message, recipient: false },
    }
}

/// The bounce reason and class of a live SMTP answer, by the same taxonomy as DSNs.
pub fn answer_class(text: &str, permanent: bool) -> (BounceClass, BounceReason) {
    let status = text
        .split(|c: char| !(c.is_ascii_digit() || c == '.'))
        .find(|t| t.len() >= 5 && t.matches('.').count() == 2 && t.starts_with(['4', '5']));
    let reason = coldsend_core::bounce::reason_for(status, text, !permanent);
    (reason.class(permanent), reason)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_data_block_doubles_leading_dots_only_after_crlf_and_ends_with_the_dot_line() {
        let block = |m: &str| String::from_utf8(data_block(m.as_bytes())).expect("utf-8");
        assert_eq!(block(".x\r\n.\r\n..y\r\nz.\r\n"), "..x\r\n..\r\n...y\r\nz.\r\n\r\n.\r\n");
        // A bare LF does not start a line for SMTP (lettre's codec agrees).
        assert_eq!(block("a\n.b"), "a\n.b\r\n.\r\n");
        assert_eq!(block("a\r.b\r\n"), "a\r.b\r\n\r\n.\r\n");
        assert_eq!(block(""), "\r\n.\r\n");
        assert_eq!(block("a\r\n.\r\n.\r\n."), "a\r\n..\r\n..\r\n..\r\n.\r\n");
        assert_eq!(block("Grüße\r\n.Ende"), "Grüße\r\n..Ende\r\n.\r\n");
    }

    #[test]
    fn live_answers_use_the_bounce_taxonomy() {
        let class = |t: &str| answer_class(t, true).0;
        assert_eq!(class("550 5.1.1 <x@y.z>: Recipient address rejected: User unknown"), BounceClass::AddressBad);
        assert_eq!(class("550 5.7.1 Client host [192.0.2.1] blocked using zen.spamhaus.org"), BounceClass::SenderSide);
        assert_eq!(class("550 5.7.26 This message does not pass DMARC"), BounceClass::SenderSide);
        assert_eq!(class("552 5.2.2 Mailbox full"), BounceClass::RecipientTemporary);
    }
}
