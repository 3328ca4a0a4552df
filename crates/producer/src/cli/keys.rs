//! `coldsend keys …`: API keys and the encryption key.

use clap::Subcommand;
use coldsend_core::sealed::SealingKey;
use coldsend_producer::api_key::{self};

#[derive(Subcommand)]
pub(crate) enum KeysCommand {
    /// Generate an API key; prints the key (give it to clients) and its hash (put it in api.key_hashes).
    New,
    /// Print the hash of an existing API key.
    Hash { key: String },
    /// Generate a credential encryption key (64 hex characters).
    NewEncryptionKey,
}

pub(crate) fn keys(cmd: KeysCommand) {
    match cmd {
        KeysCommand::New => {
            let key = api_key::generate();
            println!("api key:  {key}\nkey hash: {}", api_key::hash(&key));
        }
        KeysCommand::Hash { key } => println!("{}", api_key::hash(&key)),
        KeysCommand::NewEncryptionKey => println!("{}", SealingKey::generate_text()),
    }
}
