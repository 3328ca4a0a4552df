//! Filing a copy of each sent email in the mailbox's Sent folder over IMAP, for servers
//! that do not do it themselves (custom SMTP; Gmail and Microsoft 365 file their own).
//!
//! Best effort: the email is already sent, so a failure here is logged, never retried
//! as a send.

use std::time::Duration;

use async_imap::types::NameAttribute;
use coldsend_core::account::SenderAccount;
use futures::TryStreamExt;
use tracing::warn;

use crate::dispatch::{DispatchState, SessionError};
use crate::probe::{ImapSession, open_imap_session};

/// Common names, tried when no folder is marked `\Sent` (RFC 6154).
pub const SENT_NAMES: [&str; 5] = ["Sent", "Sent Items", "Sent Messages", "[Gmail]/Sent Mail", "INBOX.Sent"];

/// The Sent folder: the account's own setting if it names an existing folder, then
/// SPECIAL-USE `\Sent` (RFC 6154), then the common names.
pub async fn find_sent_folder(
    session: &mut ImapSession,
    configured: Option<&str>,
) -> Result<Option<String>, async_imap::error::Error> {
    Ok(pick_sent_folder(&list_folders(session).await?, configured))
}

/// A folder as LIST names it: its name, and whether it carries SPECIAL-USE `\Sent`.
pub type Folder = (String, bool);

/// Every folder of the mailbox (one LIST).
pub async fn list_folders(session: &mut ImapSession) -> Result<Vec<Folder>, async_imap::error::Error> {
    let names: Vec<_> = session.list(Some(""), Some("*")).await?.try_collect().await?;
    Ok(names
        .iter()
        .map(|n| (n.name().to_owned(), n.attributes().iter().any(|a| matches!(a, NameAttribute::Sent))))
        .collect())
}

/// The Sent folder among `folders`: the configured one if it exists, then `\Sent`, then a
/// common name.
pub fn pick_sent_folder(folders: &[Folder], configured: Option<&str>) -> Option<String> {
    if let Some(c) = configured
        && folders.iter().any(|(n, _)| n == c)
    {
        return Some(c.to_owned());
    }
    if let Some((n, _)) = folders.iter().find(|(_, sent)| *sent) {
        return Some(n.clone());
    }
    SENT_NAMES.iter().find(|want| folders.iter().any(|(n, _)| n == *want)).map(|s| (*s).to_owned())
}

#[cfg(test)]
mod tests {
    use super::pick_sent_folder;

    #[test]
    fn the_configured_folder_then_special_use_then_a_common_name() {
        let f = |v: &[(&str, bool)]| v.iter().map(|(n, s)| ((*n).to_owned(), *s)).collect::<Vec<_>>();
        let folders = f(&[("INBOX", false), ("Sent Items", false), ("Gesendet", true), ("Archive", false)]);
        assert_eq!(pick_sent_folder(&folders, Some("Archive")).as_deref(), Some("Archive"));
        assert_eq!(pick_sent_folder(&folders, Some("Missing")).as_deref(), Some("Gesendet"));
        assert_eq!(
            pick_sent_folder(&f(&[("INBOX", false), ("Sent Items", false)]), None).as_deref(),
            Some("Sent Items")
        );
        assert_eq!(pick_sent_folder(&f(&[("INBOX", false)]), None), None);
    }
}

/// Why the copy could not be filed (the send itself stands).
#[derive(Debug, thiserror::Error)]
enum CopyError {
    #[error(transparent)]
    Session(#[from] SessionError),
    #[error(transparent)]
    Settings(#[from] coldsend_core::storage::accounts::StoreError),
    #[error("IMAP: {0}")]
    Imap(#[from] async_imap::error::Error),
    #[error("no Sent folder found (set imap_sent_folder in the account's sending settings)")]
    NoSentFolder,
}

pub async fn append(state: &DispatchState, account: &SenderAccount, message: &[u8]) {
    let limit = Duration::from_secs(state.config.smtp_timeout_secs);
    let result = tokio::time::timeout(limit, async {
        let ctx = &state.connect_context(limit);
        let mut session = state
            .signin
            .open(account, coldsend_core::Protocol::Imap, |login| async move {
                open_imap_session(ctx, &account.imap, &login).await
            })
            .await
            .map_err(SessionError::from)?;
        let settings = state.accounts.sending_settings(account, &state.config.default_timezone).await?;
        let folder = find_sent_folder(&mut session, settings.imap_sent_folder.as_deref())
            .await?
            .ok_or(CopyError::NoSentFolder)?;
        session.append(&folder, Some("(\\Seen)"), None, message).await?;
        let _ = session.logout().await;
        Ok::<(), CopyError>(())
    })
    .await;
    match result {
        Ok(Ok(())) => {}
        Ok(Err(e)) => warn!(error = %e, "could not file the copy in Sent"),
        Err(_) => warn!("filing the copy in Sent timed out"),
    }
}
