//! Same seed, same trace: a scenario run twice with one seed records the
//! same events (every connect, every message received with its virtual
//! timestamp, every close with its code and time, the server's opens,
//! closes, broadcasts with their receiver counts, and the counts sampled
//! after every step), and a different seed records a different run.

use std::fmt::Debug;

use sim_tests::*;

/// Panics at the first difference, showing it rather than two dumps.
fn assert_same<T: Debug + PartialEq>(what: &str, a: &[T], b: &[T]) {
    if let Some(i) = (0..a.len().min(b.len())).find(|&i| a[i] != b[i]) {
        panic!(
            "{what}: the runs diverge at entry {i}:\n  first:  {:?}\n  second: {:?}",
            a[i], b[i]
        );
    }
    assert_eq!(a.len(), b.len(), "{what}: one run recorded more entries");
}

#[test]
fn same_seed_same_trace() {
    run_seeds("same_seed_same_trace", &[11], |seed| {
        // The randomized scenario: faults, topics, reconnects.
        let (agents_a, server_a, counts_a) = crate::model_check::model_check(seed);
        let (agents_b, server_b, counts_b) = crate::model_check::model_check(seed);
        assert_same("model check: server log", &server_a, &server_b);
        assert_same("model check: counts", &counts_a, &counts_b);
        assert_same("model check: client logs", &agents_a, &agents_b);
        let (agents_c, server_c, _) = crate::model_check::model_check(seed + 1000);
        assert!(
            agents_a != agents_c || server_a != server_c,
            "a different seed gave the same run"
        );

        // Partitions and holds, pruning, probes, reconnects.
        let a = crate::partition::partition(seed);
        let b = crate::partition::partition(seed);
        assert_same("partition: server log", &a.1, &b.1);
        assert_same("partition: client logs", &a.0, &b.0);

        // Shutdown closes every connection at once (in id order).
        let a = crate::shutdown::shutdown(seed, 1, std::time::Duration::from_millis(500));
        let b = crate::shutdown::shutdown(seed, 1, std::time::Duration::from_millis(500));
        assert_same("shutdown: server log", &a.1, &b.1);
        assert_same("shutdown: client logs", &a.0, &b.0);
    });
}
