//! `audit [PROJECT]`: audits the running stack (default project `refdeploy`), prints the
//! table, and exits 1 on any violation.

use std::process::ExitCode;

fn main() -> ExitCode {
    let project = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "refdeploy".to_owned());
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("audit: {e}");
            return ExitCode::FAILURE;
        }
    };

    let report = runtime.block_on(async {
        let docker = bollard::Docker::connect_with_local_defaults()?;
        audit::audit(&docker, &project).await
    });
    match report {
        Ok(report) if report.containers.is_empty() => {
            eprintln!("audit: no containers in project {project}; is the stack up?");
            ExitCode::FAILURE
        }
        Ok(report) => {
            #[allow(clippy::print_stdout, reason = "the table is this command's output")]
            {
                print!("{}", report.table());
            }
            if report.passed() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("audit: {e:#}");
            ExitCode::FAILURE
        }
    }
}
