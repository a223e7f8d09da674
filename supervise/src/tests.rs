use std::time::{Duration, Instant};

use super::*;

#[test]
fn a_thread_that_beats_is_never_stalled_and_one_that_stops_is_after_its_bound() {
    let threads = Threads::default();
    let bound = Duration::from_millis(200);
    let busy = threads.register("read-subscribers", bound);
    let quiet = threads.register("read-counters", bound);
    assert!(threads.check(Instant::now()).is_empty());
    // The busy one beats once per pass (passes shorter than the bound); the quiet one stops.
    for _ in 0..4 {
        std::thread::sleep(Duration::from_millis(100));
        busy.beat();
    }
    let failed = threads.check(Instant::now());
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert_eq!(failed[0].0, "read-counters");
    match &failed[0].1 {
        Failure::Stalled(d) => assert!(*d >= bound, "{d:?}"),
        other => panic!("{other:?}"),
    }
    assert!(
        failed[0]
            .1
            .to_string()
            .starts_with("stalled: no progress for 0 s"),
        "{}",
        failed[0].1
    );
    // Reported once; it stays failed, and a late beat does not heal it.
    quiet.beat();
    assert!(threads.check(Instant::now()).is_empty());
    let health = threads.health();
    assert_eq!(health.len(), 2);
    assert_eq!(health[0].failure, None);
    assert!(matches!(health[1].failure, Some(Failure::Stalled(_))));
    assert_eq!(
        threads.first_failure().map(|f| f.0).as_deref(),
        Some("read-counters")
    );
    // The default bound: a thread is not stalled 29 s after its beat, and is after 31 s.
    let other = Threads::default();
    let _hb = other.register("read-flows", STALL_BOUND);
    let now = Instant::now();
    assert!(other.check(now + Duration::from_secs(29)).is_empty());
    let failed = other.check(now + Duration::from_secs(31));
    assert_eq!(failed.len(), 1);
    assert!(
        failed[0]
            .1
            .to_string()
            .starts_with("stalled: no progress for 3"),
        "{}",
        failed[0].1
    );
}

#[test]
fn a_panic_is_recorded_with_its_message_and_still_reaches_the_join_handle() {
    let threads = std::sync::Arc::new(Threads::default());
    let hb = threads.register("read-flows", STALL_BOUND);
    let joined = std::thread::spawn(move || {
        supervised(&hb, || {
            hb.beat();
            panic!("walking the table: {}", 42)
        })
    })
    .join();
    assert!(joined.is_err(), "the panic is resumed for the JoinHandle");
    assert_eq!(
        threads.first_failure(),
        Some((
            "read-flows".to_string(),
            Failure::Panicked("walking the table: 42".to_string())
        ))
    );
    assert_eq!(
        threads.health()[0]
            .failure
            .as_ref()
            .map(ToString::to_string)
            .as_deref(),
        Some("panicked: walking the table: 42")
    );
    // The check after the panic reports no second failure for the ended thread.
    assert!(threads.check(Instant::now()).is_empty());
}

#[test]
fn a_thread_that_returns_while_the_daemon_runs_has_failed() {
    let threads = Threads::default();
    let hb = threads.register("deep", STALL_BOUND);
    assert_eq!(supervised(&hb, || 7), 7);
    let failed = threads.check(Instant::now());
    assert_eq!(failed, vec![("deep".to_string(), Failure::Exited)]);
}

#[test]
fn an_armed_panic_strikes_only_its_thread_at_its_first_beat() {
    let threads = std::sync::Arc::new(Threads::default());
    threads.arm(Fault::parse("panic:read-flows").expect("a valid fault"));
    let other = threads.register("read-counters", STALL_BOUND);
    other.beat();
    let target = threads.register("read-flows", STALL_BOUND);
    let joined = std::thread::spawn(move || supervised(&target, || target.beat())).join();
    assert!(joined.is_err());
    let health = threads.health();
    assert_eq!(health[0].failure, None);
    assert_eq!(
        health[1].failure,
        Some(Failure::Panicked(
            "injected fault (PEERWARDEN_FAULT=panic:read-flows)".to_string()
        ))
    );
}

#[test]
fn an_armed_stall_sets_the_threads_bound() {
    let threads = Threads::default();
    threads.arm(Fault::parse("stall:read-counters:2").expect("a valid fault"));
    let _hb = threads.register("read-counters", STALL_BOUND);
    let _other = threads.register("read-flows", STALL_BOUND);
    let failed = threads.check(Instant::now() + Duration::from_secs(3));
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert_eq!(failed[0].0, "read-counters");
}

#[test]
fn fault_specs_parse_or_are_refused() {
    assert_eq!(
        Fault::parse("panic:read-flows"),
        Ok(Fault {
            thread: "read-flows".into(),
            kind: FaultKind::Panic
        })
    );
    assert_eq!(
        Fault::parse("stall:deep"),
        Ok(Fault {
            thread: "deep".into(),
            kind: FaultKind::Stall(None)
        })
    );
    assert_eq!(
        Fault::parse("stall:deep:5").map(|f| f.kind),
        Ok(FaultKind::Stall(Some(Duration::from_secs(5))))
    );
    for bad in [
        "panic",
        "panic:",
        "panic:read-flows:3",
        "stall:deep:0",
        "stall:deep:x",
        "stall:deep:1:2",
        "crash:deep",
        "",
    ] {
        let e = Fault::parse(bad).expect_err("refused");
        assert!(e.contains("PEERWARDEN_FAULT"), "{bad:?}: {e}");
    }
}

#[test]
fn panic_messages_of_both_payload_kinds_and_others() {
    let s: Box<dyn Any + Send> = Box::new("static");
    assert_eq!(panic_message(&*s), "static");
    let s: Box<dyn Any + Send> = Box::new(String::from("owned"));
    assert_eq!(panic_message(&*s), "owned");
    let s: Box<dyn Any + Send> = Box::new(3u8);
    assert_eq!(panic_message(&*s), "(no message)");
}
