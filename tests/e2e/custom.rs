//! An operator's own playbook (playbooks/site/motd.rs), found by name and run over ssh.

use nodeprep_tests::{Testbed, lab};

use crate::worker::run_json;

#[test]
fn custom_playbook_runs_by_name_and_is_idempotent() {
    let lab = lab(&[("prdk8swok512", "k8s-worker")]);
    let (code, events) = run_json(&lab, &["run", "motd", "--host", "prdk8swok512"]);
    assert_eq!(code, 0, "{events:#?}");
    let motd = lab.read_file("prdk8swok512", "/etc/motd").unwrap();
    assert_eq!(
        motd,
        "prdk8swok512: k8s-worker of zone -, prepared by nodeprep.\n"
    );
    let (code, events) = run_json(&lab, &["run", "motd", "--host", "prdk8swok512"]);
    assert_eq!(code, 0);
    let recap = events.iter().find(|e| e["event"] == "recap").unwrap();
    assert_eq!(
        (recap["ok"].as_u64(), recap["changed"].as_u64()),
        (Some(1), Some(0)),
        "{events:#?}"
    );
}
