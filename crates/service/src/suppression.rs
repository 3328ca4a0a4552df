//! The global suppression list: addresses and whole domains that no campaign ever mails.
//! Bounces, complaints and unsubscribes add to it by themselves; operators add, remove,
//! import and export through the API and the CLI.

use coldsend_core::account::EmailAddress;
use coldsend_core::account::Host;
use coldsend_core::storage::campaigns::{CampaignStore, Suppressed, SuppressionReason, domain_entry};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::campaigns::CampaignError;

/// One entry as the API shows it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SuppressionEntry {
    /// A lower-case address, or `@domain` for a whole domain.
    pub entry: String,
    pub kind: EntryKind,
    /// Why it is there (absent for a value coldsend does not know).
    pub reason: Option<SuppressionReason>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum EntryKind {
    Address,
    Domain,
}

impl From<Suppressed> for SuppressionEntry {
    fn from(s: Suppressed) -> Self {
        let kind = if s.entry.starts_with('@') { EntryKind::Domain } else { EntryKind::Address };
        Self { entry: s.entry, kind, reason: s.reason }
    }
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SuppressionPage {
    pub entries: Vec<SuppressionEntry>,
    /// Pass as `cursor` for the next page; absent on the last.
    pub next_cursor: Option<String>,
}

/// What to add: addresses and/or whole domains.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SuppressionRequest {
    #[serde(default)]
    #[schema(max_items = 10000)]
    pub addresses: Vec<String>,
    /// Domains (`example.com`): every address at them.
    #[serde(default)]
    #[schema(max_items = 10000)]
    pub domains: Vec<String>,
}

/// What adding did, entry by entry for the ones refused.
#[derive(Debug, Clone, Default, Serialize, ToSchema)]
pub struct SuppressionReport {
    pub added: usize,
    /// Already on the list (their reason is kept).
    pub already: usize,
    pub invalid: Vec<InvalidEntry>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct InvalidEntry {
    /// The line (imports, from 1) or the position in the request (from 0).
    pub at: usize,
    pub entry: String,
    pub error: String,
}

/// The list, through the campaign store (one Redis hash, `p:suppression`).
#[derive(Clone)]
pub struct SuppressionService {
    store: CampaignStore,
}

impl SuppressionService {
    pub fn new(store: CampaignStore) -> Self {
        Self { store }
    }

    pub async fn list(
        &self,
        search: &str,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<SuppressionPage, CampaignError> {
        let cursor = match cursor {
            None => 0,
            Some(c) => c.parse().map_err(|_| {
                CampaignError::Invalid(coldsend_core::RequestError::new(
                    coldsend_core::error_code::ErrorCode::InvalidCursor,
                    format!("'{c}' is not a cursor: pass the next_cursor of a previous page"),
                    Some("cursor"),
                ))
            })?,
        };
        let (entries, next) = self.store.suppression_page(search, cursor, limit.clamp(1, 1000)).await?;
        Ok(SuppressionPage {
            entries: entries.into_iter().map(SuppressionEntry::from).collect(),
            next_cursor: (next != 0).then(|| next.to_string()),
        })
    }

    /// Adds what parses; reports every entry that does not, and adds nothing twice.
    pub async fn add(&self, request: SuppressionRequest) -> Result<SuppressionReport, CampaignError> {
        let mut report = SuppressionReport::default();
        let mut entries = Vec::new();
        for (i, a) in request.addresses.iter().enumerate() {
            match normalise(a, false) {
                Ok(e) => entries.push(e),
                Err(error) => report.invalid.push(InvalidEntry { at: i, entry: a.clone(), error }),
            }
        }
        for (i, d) in request.domains.iter().enumerate() {
            match normalise(d, true) {
                Ok(e) => entries.push(e),
                Err(error) => {
                    report.invalid.push(InvalidEntry { at: request.addresses.len() + i, entry: d.clone(), error })
                }
            }
        }
        entries.sort();
        entries.dedup();
        report.added = self.store.suppress_entries(&entries, SuppressionReason::Manual).await?;
        report.already = entries.len() - report.added;
        Ok(report)
    }

    /// Takes an address or `@domain` (or `domain`) off the list; `NotFound` if it was not on it.
    pub async fn remove(&self, entry: &str) -> Result<(), CampaignError> {
        let key = if entry.contains('@') { entry.to_ascii_lowercase() } else { domain_entry(entry) };
        if self.store.unsuppress(&key).await? { Ok(()) } else { Err(CampaignError::NotSuppressed(entry.to_owned())) }
    }

    /// Every entry as CSV (`entry,kind,reason`), for an export.
    pub async fn export_csv(&self) -> Result<String, CampaignError> {
        let mut out = String::from("entry,kind,reason\n");
        let mut cursor = 0;
        loop {
            let (entries, next) = self.store.suppression_page("", cursor, 1000).await?;
            for e in entries.into_iter().map(SuppressionEntry::from) {
                let kind = if e.kind == EntryKind::Domain { "domain" } else { "address" };
                out.push_str(&format!("{},{kind},{}\n", e.entry, e.reason.map(|r| r.as_str()).unwrap_or("")));
            }
            if next == 0 {
                return Ok(out);
            }
            cursor = next;
        }
    }

    /// Adds the entries of a CSV: its first column, one entry a line (a header line
    /// `entry…` or `email…` is skipped; `@domain` or `domain` for domains). Bad lines are
    /// reported by number and skipped.
    pub async fn import_csv(&self, csv: &[u8]) -> Result<SuppressionReport, CampaignError> {
        let text = String::from_utf8_lossy(csv);
        let mut report = SuppressionReport::default();
        let mut entries = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let first = line.split(',').next().unwrap_or("").trim().trim_matches('"');
            if first.is_empty()
                || i == 0 && ["entry", "email", "address", "domain"].contains(&first.to_ascii_lowercase().as_str())
            {
                continue;
            }
            let domain = !first.contains('@') || first.starts_with('@');
            match normalise(first, domain) {
                Ok(e) => entries.push(e),
                Err(error) => report.invalid.push(InvalidEntry { at: i + 1, entry: first.to_owned(), error }),
            }
        }
        entries.sort();
        entries.dedup();
        report.added = self.store.suppress_entries(&entries, SuppressionReason::Manual).await?;
        report.already = entries.len() - report.added;
        Ok(report)
    }
}

/// The stored form of an entry, or why it is not one.
fn normalise(raw: &str, domain: bool) -> Result<String, String> {
    let raw = raw.trim();
    if domain {
        let d = raw.trim_start_matches('@');
        Host::parse(d).map_err(|e| format!("not a domain: {e}"))?;
        if !d.contains('.') {
            return Err("not a domain: it has no dot".into());
        }
        Ok(domain_entry(d))
    } else {
        EmailAddress::parse(raw).map(|a| a.as_str().to_ascii_lowercase()).map_err(|e| format!("not an address: {e}"))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn entries_are_normalised_or_refused() {
        assert_eq!(super::normalise("Ann@Example.COM", false).as_deref(), Ok("ann@example.com"));
        assert_eq!(super::normalise("@Example.com", true).as_deref(), Ok("@example.com"));
        assert_eq!(super::normalise("example.com", true).as_deref(), Ok("@example.com"));
        assert!(super::normalise("not an address", false).is_err());
        assert!(super::normalise("localhost", true).is_err());
    }
}
