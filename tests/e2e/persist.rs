//! Connections kept between runs (`ssh.persist`): a re-run within the time reuses the master
//! connection (the host's sshd logs no new login), `--fresh` logs in anew, and `ssh.persist =
//! 0` closes the connection at the end of every run.

use nodeprep_tests::{Testbed, lab};

use crate::worker::run_json_at;

const HOST: &str = "prdk8swok511";

/// Logins the host's sshd accepted so far.
fn logins(lab: &impl Testbed) -> usize {
    lab.sh(
        HOST,
        "journalctl -q -o cat _COMM=sshd | grep -c 'Accepted publickey' || true",
    )
    .unwrap()
    .trim()
    .parse()
    .unwrap()
}

/// A run of one step; the commands it sent the host.
fn run(inv: &std::path::Path, extra: &[&str]) -> u64 {
    let mut args = vec!["run", "k8s-worker", "--host", HOST, "--only", "swap off"];
    args.extend_from_slice(extra);
    let (code, events) = run_json_at(inv, &args);
    assert_eq!(code, 0, "{events:#?}");
    let recap = events.iter().find(|e| e["event"] == "recap").unwrap();
    recap["commands"].as_u64().unwrap()
}

#[test]
fn a_rerun_within_the_persistence_time_opens_no_new_connection() {
    let lab = lab(&[(HOST, "k8s-worker")]);
    let inv = lab.write_inventory("").unwrap();
    let start = logins(&lab);
    run(&inv, &[]);
    let first = logins(&lab);
    assert_eq!(first - start, 1, "the first run logs in once");
    // Nothing to change: the probe alone (no lock taken, none to release).
    assert_eq!(run(&inv, &[]), 1, "a no-op re-run sends one command");
    run(&inv, &["--check"]);
    assert_eq!(logins(&lab), first, "re-runs reuse the kept connection");
    run(&inv, &["--fresh"]);
    assert_eq!(logins(&lab), first + 1, "--fresh logs in anew");

    // Kept for no time: every run logs in, and leaves no connection behind.
    let text = std::fs::read_to_string(&inv).unwrap();
    let text = text.replacen("[ssh]\n", "[ssh]\npersist = 0\n", 1);
    assert!(text.contains("persist = 0"), "{text}");
    std::fs::write(&inv, text).unwrap();
    let before = logins(&lab);
    run(&inv, &[]);
    run(&inv, &[]);
    assert_eq!(logins(&lab), before + 2, "persist = 0: a login per run");
}
