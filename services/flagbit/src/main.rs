//! The `flagbit` binary: `web`, `worker`, `migrate`, or `healthcheck web|worker`.

fn main() -> std::process::ExitCode {
    platform::cli::main::<flagbit::FlagBit>()
}
