//! Shared by the corpus tests: where the corpus is, and running the classifier over it.

#![allow(dead_code, reason = "each test binary uses part of this module")]

use std::path::{Path, PathBuf};

use peerwarden_classifier::{CaptureOutcome, EngineConfig, classify_capture_partial};

/// The repository root (the workspace, one level above this crate).
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// `<repo>/../shared/corpus/ndpi`, where CI and developers keep the reference corpus.
pub fn corpus() -> PathBuf {
    let dir = repo().join("../shared/corpus/ndpi");
    assert!(
        dir.join("pcap").is_dir(),
        "the reference corpus is missing: expected {} (the repository is cloned beside shared/)",
        dir.display()
    );
    dir
}

/// Every capture of the corpus, sorted by name.
pub fn captures() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(corpus().join("pcap"))
        .expect("corpus readable")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file())
        .collect();
    v.sort();
    v
}

/// Classifies every capture, on as many threads as the machine has; results in `captures()`
/// order.
pub fn classify_all() -> Vec<(PathBuf, CaptureOutcome)> {
    let files = captures();
    let n = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(8);
    let mut results: Vec<Option<CaptureOutcome>> = files.iter().map(|_| None).collect();
    std::thread::scope(|s| {
        let chunks: Vec<_> = results.chunks_mut(files.len().div_ceil(n).max(1)).collect();
        let mut start = 0;
        for chunk in chunks {
            let my = &files[start..start + chunk.len()];
            start += chunk.len();
            s.spawn(move || {
                for (slot, f) in chunk.iter_mut().zip(my) {
                    *slot = Some(classify_capture_partial(f, EngineConfig::default(), &[]));
                }
            });
        }
    });
    files
        .into_iter()
        .zip(results)
        .map(|(f, r)| (f, r.expect("every capture classified")))
        .collect()
}
