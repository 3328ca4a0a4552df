//! Log setup shared by the binaries: an env filter, text on a terminal, JSON otherwise.

use tracing_subscriber::EnvFilter;

use crate::settings::LogSettings;

/// Log targets silenced whatever the filter says, because they can carry secrets.
const NEVER_LOGGED: [&str; 1] = ["async_imap::imap_stream=off"];

/// Installs the global subscriber; `RUST_LOG` wins over `log.filter`. Logs go to stderr.
pub fn init(log: &LogSettings) {
    let mut filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&log.filter));
    // async-imap traces raw protocol lines, LOGIN credentials included: never let them through.
    for directive in NEVER_LOGGED {
        if let Ok(d) = directive.parse() {
            filter = filter.add_directive(d);
        }
    }
    let json = match log.format.as_str() {
        "json" => true,
        "text" => false,
        _ => !std::io::IsTerminal::is_terminal(&std::io::stderr()),
    };
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    if json {
        builder.json().with_current_span(true).init();
    } else {
        builder.init();
    }
}
