//! Logging: JSON lines when stdout is not a terminal (containers, CI), readable text when
//! it is. The filter comes from `RUST_LOG`, defaulting to info.

use std::io::IsTerminal as _;

use tracing_subscriber::EnvFilter;

pub fn init() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stdout);

    // try_init: a second call (tests) keeps the first subscriber instead of panicking.
    if std::io::stdout().is_terminal() {
        let _ = builder.try_init();
    } else {
        let _ = builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .try_init();
    }
}
