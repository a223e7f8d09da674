//! The installation's [`PseudonymKey`] on disk: 32 raw bytes in a file of mode 0600 (the
//! daemon keeps it beside its history store), made once and read back on every start, so a
//! swarm keeps its pseudonym across restarts.

use std::{
    io::{self, Read, Write},
    os::unix::fs::{OpenOptionsExt, PermissionsExt},
    path::Path,
};

use crate::PseudonymKey;

/// Reads the key at `path`, or makes a fresh one there (mode 0600) when there is no file.
/// A file of another length, or readable by others than its owner, is refused rather than
/// replaced: replacing it would change every pseudonym already stored.
pub fn load_or_create(path: &Path) -> io::Result<PseudonymKey> {
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(mut file) => {
            let key = PseudonymKey::generate()?;
            let written = file
                .write_all(&key.to_bytes())
                .and_then(|()| file.sync_all());
            if let Err(e) = written {
                // A half-written key would be refused on the next start; leave no file.
                let _ = std::fs::remove_file(path);
                return Err(e);
            }
            Ok(key)
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => read(path),
        Err(e) => Err(io::Error::new(
            e.kind(),
            format!("creating the swarm pseudonym key {}: {e}", path.display()),
        )),
    }
}

fn read(path: &Path) -> io::Result<PseudonymKey> {
    let refuse = |why: String| {
        Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("the swarm pseudonym key {}: {why}", path.display()),
        ))
    };
    let file = std::fs::File::open(path)?;
    let mode = file.metadata()?.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return refuse(format!(
            "mode {mode:o} lets others read it; chmod 600 it (or delete it to make a new key, which changes every stored pseudonym)"
        ));
    }
    let mut bytes = Vec::with_capacity(33);
    file.take(33).read_to_end(&mut bytes)?;
    match <[u8; 32]>::try_from(bytes.as_slice()) {
        Ok(key) => Ok(PseudonymKey::from_bytes(key)),
        Err(_) => refuse(format!(
            "expected 32 bytes, found {}{}",
            bytes.len().min(32),
            if bytes.len() > 32 { " or more" } else { "" }
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::InfoHash;

    fn dir(name: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("pw-swarms-key-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).expect("temp dir");
        d
    }

    fn refused(path: &Path) -> String {
        match load_or_create(path) {
            Ok(_) => panic!("{} accepted", path.display()),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn made_once_with_mode_0600_and_reused() {
        let d = dir("reuse");
        let path = d.join("swarms.key");
        let first = load_or_create(&path).expect("made");
        let meta = std::fs::metadata(&path).expect("file");
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        assert_eq!(meta.len(), 32);
        let again = load_or_create(&path).expect("read back");
        assert_eq!(first.to_bytes(), again.to_bytes());
        let h = InfoHash([7; 20]);
        assert_eq!(first.pseudonym(&h), again.pseudonym(&h));
        // Another installation draws another key.
        let other = load_or_create(&d.join("other.key")).expect("made");
        assert_ne!(first.to_bytes(), other.to_bytes());
        std::fs::remove_dir_all(&d).ok();
    }

    #[test]
    fn refuses_a_short_or_open_file_and_keeps_it() {
        let d = dir("refuse");
        let path = d.join("swarms.key");
        std::fs::write(&path, [1u8; 10]).expect("write");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        let e = refused(&path);
        assert!(e.contains("expected 32 bytes, found 10"), "{e}");
        std::fs::write(&path, [1u8; 32]).expect("write");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        let e = refused(&path);
        assert!(e.contains("mode 644"), "{e}");
        assert_eq!(std::fs::read(&path).expect("kept"), vec![1u8; 32]);
        let e = refused(&d.join("missing/dir/swarms.key"));
        assert!(e.contains("creating the swarm pseudonym key"), "{e}");
        std::fs::remove_dir_all(&d).ok();
    }
}
