//! A fleet run: four hosts in parallel, one of them killed in the middle of a package install.
//! The others finish, the recap tells each host's story, and the exit code says "unreachable".

use std::io::{BufRead, BufReader};

use nodeprep_tests::{Testbed, lab, runner_bin};
use serde_json::Value;

const HOSTS: &[(&str, &str)] = &[
    ("prdk8swok501", "k8s-worker"),
    ("prdk8swok502", "k8s-worker"),
    ("prdk8swok511", "k8s-worker"),
    ("prdk8swok512", "k8s-worker"),
];
const VICTIM: &str = "prdk8swok511";
const STEPS: &[&str] = &[
    "swap disabled in fstab",
    "sysctl persisted",
    "locale packages",
    "locale generated",
    "locale set",
];

#[test]
fn one_host_dies_mid_run_and_the_others_finish() {
    let lab = lab(HOSTS);
    let inv = lab.write_inventory("").unwrap();
    let mut args: Vec<String> = [
        "run",
        "k8s-worker",
        "--all",
        "--json",
        "--forks",
        "4",
        "--inventory",
    ]
    .map(String::from)
    .to_vec();
    args.push(inv.display().to_string());
    for s in STEPS {
        args.extend(["--only".to_string(), s.to_string()]);
    }
    let reader = duct::cmd(runner_bin(), &args)
        .stderr_null()
        .unchecked()
        .reader()
        .unwrap();
    let mut events: Vec<Value> = Vec::new();
    let mut killed = false;
    for line in BufReader::new(&reader).lines() {
        let line = line.unwrap();
        let event: Value =
            serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        // The package install is under way on the victim: kill its container now.
        if !killed && event["event"] == "progress" && event["host"] == VICTIM {
            lab.stop_node(VICTIM).unwrap();
            killed = true;
        }
        events.push(event);
    }
    let status = reader
        .try_wait()
        .unwrap()
        .expect("the runner has exited")
        .status;
    assert!(killed, "the victim never reported a long step: {events:#?}");
    assert_eq!(
        status.code(),
        Some(3),
        "exit code must say `unreachable`: {events:#?}"
    );

    let recap = |host: &str| {
        events
            .iter()
            .find(|e| e["event"] == "recap" && e["host"] == host)
            .cloned()
            .unwrap()
    };
    for (host, _) in HOSTS.iter().filter(|(h, _)| *h != VICTIM) {
        let r = recap(host);
        assert_eq!(
            (r["failed"].as_u64(), r["unreachable"].as_bool()),
            (Some(0), Some(false)),
            "{host}: {r}"
        );
        assert_eq!(
            r["changed"].as_u64().unwrap() + r["ok"].as_u64().unwrap(),
            STEPS.len() as u64,
            "{host}: {r}"
        );
        assert!(
            lab.sh(host, "locale -a")
                .unwrap()
                .to_lowercase()
                .contains("en_us.utf8"),
            "{host} did not finish"
        );
    }
    let r = recap(VICTIM);
    assert_eq!(r["unreachable"].as_bool(), Some(true), "{r}");
    let failed_step = events
        .iter()
        .find(|e| e["event"] == "step" && e["host"] == VICTIM && e["outcome"] == "failed")
        .unwrap();
    assert_eq!(failed_step["step"], "locale packages", "{failed_step}");
    // Its later steps never ran.
    assert!(
        !events
            .iter()
            .any(|e| e["event"] == "step" && e["host"] == VICTIM && e["step"] == "locale set")
    );
}
