//! Every `tests/bad/NAME.yaml` must fail to load with exactly the errors in
//! `tests/bad/NAME.expected`, compared whole (one `NAME.yaml:LINE:COL: message (hint)`
//! per line), like nDPI's `pcap` / `result` pairs.
//!
//! To regenerate after a deliberate change of wording, run with `UPDATE_EXPECTED=1`
//! and review the diff before committing it.

use std::fs;
use std::path::{Path, PathBuf};

fn bad_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/bad")
}

#[test]
fn bad_policies_fail_with_the_expected_errors() {
    let update = std::env::var_os("UPDATE_EXPECTED").is_some_and(|v| v == "1");
    let mut yamls: Vec<PathBuf> = fs::read_dir(bad_dir())
        .expect("tests/bad exists")
        .map(|e| e.expect("readable dir entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    yamls.sort();
    assert!(
        yamls.len() >= 50,
        "expected at least 50 bad policies, found {}",
        yamls.len()
    );

    let mut failures = Vec::new();
    for yaml in &yamls {
        let name = yaml
            .file_name()
            .and_then(|n| n.to_str())
            .expect("utf-8 file name");
        let src = fs::read_to_string(yaml).expect("readable policy");
        // The file name alone as origin, so the expectations do not depend on where the
        // repository is checked out.
        let actual = match peerwarden_policies::load_str(&src, name) {
            Ok(_) => {
                failures.push(format!("{name}: loaded, but it is in tests/bad"));
                continue;
            }
            Err(errors) => format!("{errors}\n"),
        };
        let expected_path = yaml.with_extension("expected");
        if update {
            fs::write(&expected_path, &actual).expect("write .expected");
            continue;
        }
        match fs::read_to_string(&expected_path) {
            Err(_) => failures.push(format!(
                "{name}: no {} (run with UPDATE_EXPECTED=1 and review it); got:\n{actual}",
                expected_path
                    .file_name()
                    .and_then(|n| n.to_str())
                    .unwrap_or("?")
            )),
            Ok(expected) if expected != actual => failures.push(format!(
                "{name}:\n  expected:\n{expected}  actual:\n{actual}"
            )),
            Ok(_) => {}
        }
    }

    // An .expected whose .yaml is gone is a test nobody runs.
    for entry in fs::read_dir(bad_dir()).expect("tests/bad exists") {
        let path = entry.expect("readable dir entry").path();
        if path.extension().is_some_and(|x| x == "expected")
            && !path.with_extension("yaml").exists()
        {
            failures.push(format!("{}: no matching .yaml", path.display()));
        }
    }

    assert!(
        failures.is_empty(),
        "{} of {} bad policies:\n{}",
        failures.len(),
        yamls.len(),
        failures.join("\n")
    );
}
