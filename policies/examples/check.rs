//! Validates policy files and prints their errors, like `peerwarden policy check`:
//! `cargo run -p peerwarden-policies --example check -- policies/examples/isp.yaml`

use std::process::ExitCode;

fn main() -> ExitCode {
    let mut failed = false;
    for path in std::env::args_os().skip(1) {
        match peerwarden_policies::load_file(path.as_ref()) {
            Ok(policy) => println!(
                "{}: ok ({} subscribers, {} plans)",
                path.to_string_lossy(),
                policy.subscribers().len(),
                policy.plans().len()
            ),
            Err(errors) => {
                eprintln!("{errors}");
                failed = true;
            }
        }
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
