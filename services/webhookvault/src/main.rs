//! The `webhookvault` binary: `web`, `worker`, `migrate`, or `healthcheck web|worker`.

fn main() -> std::process::ExitCode {
    platform::cli::main::<webhookvault::WebhookVault>()
}
