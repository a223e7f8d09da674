use peerwarden_classifier::hosts::HostMatch;

use super::*;

/// SIGHUP's reload of the service file: a valid file reaches the deep tier's host list, an
/// invalid one leaves the running list as it was.
#[test]
fn a_bad_service_file_changes_nothing() {
    let dir = std::env::temp_dir().join(format!("pw-reload-services-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("services.yaml");
    let deep = DeepState::default();
    let mut seen = 0;
    let exampletv = Some(HostMatch::Video("exampletv".into()));

    std::fs::write(
        &path,
        "services:\n  - name: exampletv\n    domains: [example-tv.net]\n",
    )
    .expect("write");
    reload_services(&deep, &path, "test");
    let hosts = deep.hosts.newer(&mut seen).expect("a new host list");
    assert_eq!(hosts.lookup("edge.example-tv.net"), exampletv);

    std::fs::write(
        &path,
        "services:\n  - name: other\n    domains: [akamaihd.net]\n",
    )
    .expect("write");
    reload_services(&deep, &path, "test");
    assert!(
        deep.hosts.newer(&mut seen).is_none(),
        "the bad file was taken"
    );
    std::fs::remove_file(&path).expect("remove");
    reload_services(&deep, &path, "test");
    assert!(
        deep.hosts.newer(&mut seen).is_none(),
        "a missing file was taken"
    );
    std::fs::remove_dir_all(&dir).expect("clean up");
}
