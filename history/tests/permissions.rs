//! Issue 14: the store holds subscriber ids and their traffic, so its file and the
//! directory made for it are readable by the daemon's user only.

use std::os::unix::fs::PermissionsExt as _;

use peerwarden_history::{History, Retention};

fn mode(p: &std::path::Path) -> u32 {
    std::fs::metadata(p).expect("metadata").permissions().mode() & 0o777
}

#[test]
fn the_store_and_the_directory_made_for_it_are_private() {
    let root =
        std::env::temp_dir().join(format!("peerwarden-history-perms-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(&root).expect("root");
    std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let db = root.join("state").join("history.db");
    let h = History::open(&db, "test", Retention::default()).expect("store");
    for side in ["history.db-wal", "history.db-shm"] {
        let p = db.with_file_name(side);
        if p.exists() {
            assert_eq!(mode(&p) & 0o077, 0, "{side}");
        }
    }
    drop(h);
    assert_eq!(mode(&db), 0o600, "the file");
    assert_eq!(
        mode(db.parent().expect("dir")),
        0o700,
        "the directory made for it"
    );
    // A directory that was there already is left as it was.
    assert_eq!(mode(&root), 0o755);
    // An existing store readable by others is made private when opened.
    std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    drop(History::open(&db, "test", Retention::default()).expect("store"));
    assert_eq!(mode(&db), 0o600);
    let _ = std::fs::remove_dir_all(&root);
}
