//! Golden files: the jsonl `peerwarden classify` prints for each capture of the reference
//! corpus, compared whole. A capture that cannot be read to its end also has a
//! `<pcap>.error` file with the error.
//!
//! Regenerate on purpose, then review the diff in the commit:
//! `UPDATE_GOLDEN=1 cargo test -p peerwarden-classifier --test golden`

mod support;

use std::{fmt::Write as _, fs, path::PathBuf};

fn golden_dir() -> PathBuf {
    support::repo().join("tests/golden/ndpi")
}

#[test]
fn corpus_matches_golden_files() {
    let update = std::env::var_os("UPDATE_GOLDEN").is_some_and(|v| v == "1");
    let dir = golden_dir();
    if update {
        fs::create_dir_all(&dir).expect("golden dir");
    }
    let mut mismatches = Vec::new();
    let mut names = Vec::new();
    for (path, out) in support::classify_all() {
        let name = path
            .file_name()
            .expect("file name")
            .to_string_lossy()
            .into_owned();
        let mut jsonl = String::new();
        for f in &out.flows {
            let _ = writeln!(jsonl, "{}", f.to_json());
        }
        let error = out.error.map(|e| format!("{e}\n"));
        let (jp, ep) = (
            dir.join(format!("{name}.jsonl")),
            dir.join(format!("{name}.error")),
        );
        names.push(name.clone());
        if update {
            fs::write(&jp, &jsonl).expect("write golden");
            match &error {
                Some(e) => fs::write(&ep, e).expect("write golden error"),
                None => {
                    let _ = fs::remove_file(&ep);
                }
            }
            continue;
        }
        let want = fs::read_to_string(&jp).unwrap_or_else(|_| "<missing>".into());
        let want_err = fs::read_to_string(&ep).ok();
        if want != jsonl {
            let diff = first_difference(&want, &jsonl);
            mismatches.push(format!("{name}: {diff}"));
        } else if want_err != error {
            mismatches.push(format!("{name}: error {want_err:?} != {error:?}"));
        }
    }
    if update {
        // Golden files of captures that left the corpus.
        for e in fs::read_dir(&dir).expect("golden dir").flatten() {
            let f = e.file_name().to_string_lossy().into_owned();
            let base = f.trim_end_matches(".jsonl").trim_end_matches(".error");
            if !names.iter().any(|n| n == base) {
                let _ = fs::remove_file(e.path());
            }
        }
        println!("golden files written to {}", dir.display());
        return;
    }
    assert!(
        mismatches.is_empty(),
        "{} of {} captures differ from their golden files (review, then regenerate with \
         UPDATE_GOLDEN=1 cargo test -p peerwarden-classifier --test golden):\n{}",
        mismatches.len(),
        names.len(),
        mismatches
            .iter()
            .take(20)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
}

fn first_difference(want: &str, got: &str) -> String {
    for (i, (w, g)) in want.lines().zip(got.lines()).enumerate() {
        if w != g {
            return format!("line {}:\n  want {w}\n  got  {g}", i + 1);
        }
    }
    format!(
        "{} lines wanted, {} got",
        want.lines().count(),
        got.lines().count()
    )
}
