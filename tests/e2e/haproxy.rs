//! The haproxy role carries real traffic: a load balancer, two masters and a worker in
//! containers, a TCP listener on each master's :6443 and on the worker's :80, the haproxy
//! playbook run over ssh; then connections to the balancer's own 127.0.0.1:6443 and :80 reach
//! the masters and the worker. And a configuration haproxy rejects never replaces the live one.

use std::time::{Duration, Instant};

use nodeprep_tests::{Lab, lab};
use serde_json::Value;
use tasks::host::Docker;
use tasks::{Ctx, ErrorKind, Options, haproxy};

use crate::worker::run_json_at;

const LB: &str = "prdinfhap501";
const MASTERS: [&str; 2] = ["prdk8smst501", "prdk8smst502"];
const WORKER: &str = "prdk8swok501";

/// The haproxy role's own steps (the common ones are covered by the cluster test).
const STEPS: [&str; 5] = [
    "haproxy installed",
    "haproxy config",
    "haproxy enabled",
    "firewall ports",
    "haproxy running",
];

/// Each k8s host's cluster address: its address on the lab network (what roles.rs puts in the
/// backends), in a `[hosts.NAME.network]` table after the host's own.
fn inventory(lab: &Lab) -> std::path::PathBuf {
    let mut extra = String::from("[haproxy]\ningress = true\n");
    for node in lab.nodes().iter().filter(|n| n.role != "haproxy") {
        extra.push_str(&format!(
            "\n[hosts.{}.network]\naddress = \"{}/16\"\n",
            node.name, node.ip
        ));
    }
    lab.write_inventory(&extra).unwrap()
}

fn run_haproxy(inv: &std::path::Path) -> (i32, Vec<Value>) {
    let mut args = vec!["run", "haproxy", "--host", LB];
    for s in STEPS {
        args.extend(["--only", s]);
    }
    run_json_at(inv, &args)
}

/// A TCP service on `port` answering every connection with one line naming the host, as a
/// transient systemd unit (socket-activated `sh`, one per connection).
fn listen(lab: &Lab, host: &str, port: u16) {
    lab.sh(
        host,
        &format!(
            "systemd-run --unit=nodeprep-test-listener-{port} systemd-socket-activate -l {port} -a --inetd \
             sh -c 'echo \"hello from $(hostname) on {port}\"' && \
             for i in $(seq 50); do ss -Hltn | grep -q ':{port} ' && exit 0; sleep 0.1; done; exit 1"
        ),
    )
    .unwrap_or_else(|e| panic!("listener on {host}:{port}: {e:#}"));
}

/// Connects from `host` to 127.0.0.1:`port` and returns the first line it is sent.
fn connect(lab: &Lab, host: &str, port: u16) -> String {
    let script = format!("exec 3<>/dev/tcp/127.0.0.1/{port} && timeout 5 head -n 1 <&3");
    let out = lab.exec(host, &["bash", "-c", &script]).unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// What to look at when traffic does not flow: haproxy's state and log on the balancer.
fn diagnose(lab: &Lab) -> String {
    lab.exec(
        LB,
        &["sh", "-c", "systemctl status haproxy --no-pager | head -5; journalctl -u haproxy --no-pager | tail -15; ss -Hltn"],
    )
    .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
    .unwrap_or_default()
}

/// Replies through the balancer until `want` hosts have answered on `port` (or 20 s passed:
/// haproxy may still be starting). Returns every reply.
fn replies(lab: &Lab, port: u16, want: &[&str]) -> Vec<String> {
    let start = Instant::now();
    let mut got = Vec::new();
    while start.elapsed() < Duration::from_secs(20) {
        let reply = connect(lab, LB, port);
        if !reply.is_empty() {
            got.push(reply);
        }
        let seen = want.iter().all(|h| {
            got.iter()
                .any(|r| *r == format!("hello from {h} on {port}"))
        });
        if seen {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    got
}

#[test]
fn haproxy_balances_the_api_and_ingress() {
    let hosts = [
        (LB, "haproxy"),
        (MASTERS[0], "k8s-master"),
        (MASTERS[1], "k8s-master"),
        (WORKER, "k8s-worker"),
    ];
    let lab = lab(&hosts);
    for m in MASTERS {
        listen(&lab, m, 6443);
    }
    listen(&lab, WORKER, 80);
    listen(&lab, WORKER, 443);
    let inv = inventory(&lab);

    let (code, events) = run_haproxy(&inv);
    assert_eq!(code, 0, "{events:#?}");
    let cfg = lab.read_file(LB, haproxy::CONFIG).unwrap();
    for m in MASTERS {
        let ip = &lab.node(m).ip;
        assert!(
            cfg.contains(&format!("    server {m} {ip}:6443 check\n")),
            "{cfg}"
        );
    }
    assert!(
        cfg.contains(&format!(
            "    server {WORKER} {}:80 check\n",
            lab.node(WORKER).ip
        )),
        "{cfg}"
    );
    // No firewall in these containers (neither lab image installs one, on either base): the
    // step says so and opens nothing.
    let fw = events
        .iter()
        .find(|e| e["event"] == "step" && e["step"] == "firewall ports")
        .unwrap();
    assert_eq!(fw["outcome"], "skipped", "{fw}");

    // The API frontend reaches every master; the ingress frontends reach the worker.
    let api = replies(&lab, 6443, &MASTERS);
    for m in MASTERS {
        let line = format!("hello from {m} on 6443");
        assert!(
            api.contains(&line),
            "no reply from {m} through haproxy: {api:?}"
        );
    }
    assert!(
        api.iter().all(|r| MASTERS
            .iter()
            .any(|m| *r == format!("hello from {m} on 6443"))),
        "{api:?}"
    );
    for port in [80, 443] {
        let got = replies(&lab, port, &[WORKER]);
        assert!(
            got.contains(&format!("hello from {WORKER} on {port}")),
            "ingress :{port}: {got:?}\n{}",
            diagnose(&lab)
        );
    }

    // Second run: nothing changes, haproxy is not reloaded.
    let (code, events) = run_haproxy(&inv);
    assert_eq!(code, 0, "{events:#?}");
    let recap = events.iter().find(|e| e["event"] == "recap").unwrap();
    assert_eq!(recap["changed"], 0, "{events:#?}");
}

#[test]
fn a_rejected_config_never_goes_live() {
    let lab = lab(&[(LB, "haproxy"), (MASTERS[0], "k8s-master")]);
    listen(&lab, MASTERS[0], 6443);
    let inv = inventory(&lab);
    let (code, events) = run_haproxy(&inv);
    assert_eq!(code, 0, "{events:#?}");
    let live = lab.read_file(LB, haproxy::CONFIG).unwrap();
    let reply = replies(&lab, 6443, &[MASTERS[0]]);
    assert!(
        reply.contains(&format!("hello from {} on 6443", MASTERS[0])),
        "{reply:?}\n{}",
        diagnose(&lab)
    );

    // The task itself, over docker exec, with a configuration haproxy refuses.
    let host = Docker::new(LB, lab.node(LB).container.clone());
    let mut cx = Ctx::connect(Box::new(host), Options::default()).unwrap();
    let bad = format!("{live}\nbackend broken\n    server x 10.0.0.1:6443 bogus-keyword\n");
    let e = haproxy::config(&mut cx, &bad).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Invalid, "{e}");
    assert!(
        e.to_string()
            .contains("haproxy rejected the new configuration"),
        "{e}"
    );
    assert!(e.stderr_tail().contains("bogus-keyword"), "{e}");

    // The live file is byte for byte the same, the candidate is gone, traffic still flows.
    assert_eq!(lab.read_file(LB, haproxy::CONFIG).unwrap(), live);
    assert_eq!(lab.read_file(LB, haproxy::CANDIDATE), None);
    assert_eq!(
        lab.sh(LB, "systemctl is-active haproxy").unwrap().trim(),
        "active"
    );
    assert_eq!(
        connect(&lab, LB, 6443),
        format!("hello from {} on 6443", MASTERS[0])
    );

    // The runner afterwards finds the live file as it wants it: nothing changes.
    let (code, events) = run_haproxy(&inv);
    assert_eq!(code, 0, "{events:#?}");
    let recap = events.iter().find(|e| e["event"] == "recap").unwrap();
    assert_eq!(recap["changed"], 0, "{events:#?}");
}
