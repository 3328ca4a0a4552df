//! `coldsend suppression …`: the global suppression list (addresses and whole domains).

use std::path::PathBuf;

use anyhow::Context as _;
use clap::Subcommand;
use coldsend_service::suppression::{SuppressionRequest, SuppressionService};

use super::json;

impl SuppressionCommand {
    /// Whether the command only reads (and so runs without the encryption key).
    pub(crate) fn read_only(&self) -> bool {
        matches!(self, Self::List { .. } | Self::Export)
    }
}

#[derive(Subcommand)]
pub(crate) enum SuppressionCommand {
    /// List entries (addresses and @domains), optionally containing a text.
    List {
        /// Only entries containing this text.
        #[arg(long, default_value = "")]
        search: String,
    },
    /// Suppress addresses and/or whole domains.
    Add {
        /// An address to suppress (repeat for several).
        #[arg(long = "address")]
        addresses: Vec<String>,
        /// A whole domain to suppress (repeat for several).
        #[arg(long = "domain")]
        domains: Vec<String>,
    },
    /// Take an address or a domain off the list.
    Rm { entry: String },
    /// Add the entries of a CSV file (first column; `-` for standard input).
    Import { file: PathBuf },
    /// Print the whole list as CSV.
    Export,
}

pub(crate) async fn suppression(service: &SuppressionService, cmd: SuppressionCommand) -> anyhow::Result<()> {
    match cmd {
        SuppressionCommand::List { search } => {
            let mut cursor: Option<String> = None;
            loop {
                let page = service.list(&search, cursor.as_deref(), 1000).await?;
                for e in &page.entries {
                    println!("{}", serde_json::to_string(e)?);
                }
                match page.next_cursor {
                    Some(c) => cursor = Some(c),
                    None => return Ok(()),
                }
            }
        }
        SuppressionCommand::Add { addresses, domains } => {
            if addresses.is_empty() && domains.is_empty() {
                anyhow::bail!("nothing to add: pass --address and/or --domain");
            }
            json(&service.add(SuppressionRequest { addresses, domains }).await?)
        }
        SuppressionCommand::Rm { entry } => {
            service.remove(&entry).await?;
            eprintln!("removed {entry}");
            Ok(())
        }
        SuppressionCommand::Import { file } => {
            let bytes = if file.as_os_str() == "-" {
                let mut buf = Vec::new();
                std::io::Read::read_to_end(&mut std::io::stdin(), &mut buf)?;
                buf
            } else {
                std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?
            };
            json(&service.import_csv(&bytes).await?)
        }
        SuppressionCommand::Export => {
            print!("{}", service.export_csv().await?);
            Ok(())
        }
    }
}
