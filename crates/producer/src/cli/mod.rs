//! The `coldsend` command line, one module per subcommand group.

pub(crate) mod accounts;
pub(crate) mod campaigns;
pub(crate) mod inbox;
pub(crate) mod keys;
pub(crate) mod serve;
pub(crate) mod suppression;
pub(crate) mod webhooks;

pub(crate) fn json(v: &impl serde::Serialize) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}
