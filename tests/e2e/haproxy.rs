//! The haproxy role carries real traffic: a load balancer, two masters and a worker in
//! containers; one master serves HTTPS on :6443 with a healthy `/healthz`, the other only
//! accepts TCP connections there; the worker listens on the ingress NodePorts. The haproxy
//! playbook runs over ssh; then HTTPS requests to the balancer's own 127.0.0.1:6443 reach only
//! the healthy master (the other is taken out by the `/healthz` check), and :80/:443 reach the
//! worker's NodePorts. And a configuration haproxy rejects never replaces the live one.

use std::time::{Duration, Instant};

use nodeprep_tests::{Lab, Testbed, lab, snapshot};
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

/// Each k8s host's cluster address: its address on the lab network (what the haproxy role
/// puts in the backends), in a `[hosts.NAME.network]` table after the host's own, which
/// says its ssh address (loopback) is a separate management address.
fn inventory(lab: &Lab) -> std::path::PathBuf {
    let mut extra = String::from("[haproxy]\ningress = true\n");
    let hosts: Vec<_> = lab.hosts().iter().filter(|h| h.role != "haproxy").collect();
    for host in &hosts {
        extra.push_str(&format!(
            "\n[hosts.{}.network]\naddress = \"{}/16\"\n",
            host.name,
            lab.ip(&host.name)
        ));
    }
    let path = lab.write_inventory(&extra).unwrap();
    let mut text = std::fs::read_to_string(&path).unwrap();
    for host in &hosts {
        let header = format!("[hosts.{}]\n", host.name);
        text = text.replacen(&header, &format!("{header}management_address = true\n"), 1);
    }
    std::fs::write(&path, text).unwrap();
    path
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

/// An HTTPS server on :6443 standing for a healthy apiserver (`openssl s_server -WWW`, a
/// self-signed certificate): `GET /healthz` answers 200, `GET /who` names the host.
fn serve_api(lab: &Lab, host: &str) {
    lab.sh(
        host,
        "set -e; mkdir -p /srv/api && cd /srv/api && echo ok > healthz && \
         echo \"hello from $(hostname) on 6443\" > who && \
         openssl req -x509 -newkey rsa:2048 -nodes -keyout key.pem -out cert.pem -days 1 \
           -subj /CN=kube-apiserver 2>/dev/null && \
         systemd-run --unit=nodeprep-test-apiserver --working-directory=/srv/api \
           openssl s_server -quiet -4 -WWW -accept 6443 -cert cert.pem -key key.pem && \
         for i in $(seq 50); do ss -Hltn | grep -q ':6443 ' && exit 0; sleep 0.1; done; exit 1",
    )
    .unwrap_or_else(|e| panic!("HTTPS server on {host}:6443: {e:#}"));
}

/// Connects from `host` to 127.0.0.1:`port` and returns the first line it is sent.
fn connect(lab: &Lab, host: &str, port: u16) -> String {
    let script = format!("exec 3<>/dev/tcp/127.0.0.1/{port} && timeout 5 head -n 1 <&3");
    let out = lab.exec(host, &["bash", "-c", &script]).unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// `GET /who` over HTTPS from `host` to its 127.0.0.1:6443: the last line of the answer.
fn https_who(lab: &Lab, host: &str) -> String {
    let script = "printf 'GET /who HTTP/1.0\\r\\n\\r\\n' | \
                  timeout 5 openssl s_client -quiet -connect 127.0.0.1:6443 2>/dev/null | tail -n 1";
    let out = lab.exec(host, &["bash", "-c", script]).unwrap();
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

/// Replies through the balancer, each read by `get`, until every line of `want` has been
/// seen (or 60 s passed: haproxy brings servers up after their first checks). Returns every
/// reply.
fn replies(lab: &Lab, get: impl Fn(&Lab) -> String, want: &[String]) -> Vec<String> {
    let start = Instant::now();
    let mut got = Vec::new();
    while start.elapsed() < Duration::from_secs(60) {
        let reply = get(lab);
        if !reply.is_empty() {
            got.push(reply);
        }
        if want.iter().all(|w| got.contains(w)) {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    got
}

/// Waits (60 s at most) until haproxy's log says `server` of `backend` is down.
fn wait_down(lab: &Lab, backend: &str, server: &str) -> bool {
    let start = Instant::now();
    let needle = format!("{backend}/{server} is DOWN");
    while start.elapsed() < Duration::from_secs(60) {
        let log = lab
            .sh(LB, "journalctl -u haproxy --no-pager")
            .unwrap_or_default();
        if log.contains(&needle) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    false
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
    let (healthy, sick) = (MASTERS[0], MASTERS[1]);
    serve_api(&lab, healthy);
    // Accepts connections on :6443 but is no apiserver: no TLS, no /healthz.
    listen(&lab, sick, 6443);
    // The ingress controller's NodePorts (the inventory's defaults).
    listen(&lab, WORKER, 30080);
    listen(&lab, WORKER, 30443);
    let inv = inventory(&lab);

    let (code, events) = run_haproxy(&inv);
    assert_eq!(code, 0, "{events:#?}");
    let cfg = lab.read_file(LB, haproxy::CONFIG).unwrap();
    assert!(cfg.contains("    option httpchk GET /healthz\n"), "{cfg}");
    for m in MASTERS {
        let ip = lab.ip(m);
        assert!(
            cfg.contains(&format!(
                "    server {m} {ip}:6443 check check-ssl verify none\n"
            )),
            "{cfg}"
        );
    }
    for port in [30080, 30443] {
        let ip = lab.ip(WORKER);
        assert!(
            cfg.contains(&format!("    server {WORKER} {ip}:{port} check\n")),
            "{cfg}"
        );
    }
    // No firewall in these containers (neither lab image installs one, on either base): the
    // step says so and opens nothing.
    let fw = events
        .iter()
        .find(|e| e["event"] == "step" && e["step"] == "firewall ports")
        .unwrap();
    assert_eq!(fw["outcome"], "skipped", "{fw}");

    // The API frontend: the master whose /healthz fails is taken out, the healthy one answers.
    assert!(
        wait_down(&lab, "kube-apiserver", sick),
        "haproxy never took {sick} out:\n{}",
        diagnose(&lab)
    );
    let want = format!("hello from {healthy} on 6443");
    let api = replies(&lab, |l| https_who(l, LB), std::slice::from_ref(&want));
    assert!(api.contains(&want), "{api:?}\n{}", diagnose(&lab));
    let more: Vec<String> = (0..6).map(|_| https_who(&lab, LB)).collect();
    assert!(more.iter().all(|r| *r == want), "{more:?}");

    // The ingress frontends reach the worker's NodePorts.
    for (port, nodeport) in [(80, 30080), (443, 30443)] {
        let want = format!("hello from {WORKER} on {nodeport}");
        let got = replies(&lab, |l| connect(l, LB, port), std::slice::from_ref(&want));
        assert!(
            got.contains(&want),
            "ingress :{port}: {got:?}\n{}",
            diagnose(&lab)
        );
    }

    // Second run: nothing changes, haproxy is not reloaded (a reload keeps the master's pid and
    // the unit's invocation but replaces the workers: their pids say, as a reload by hand
    // shows first).
    let pids = haproxy_pids(&lab);
    lab.sh(LB, "systemctl reload haproxy").unwrap();
    assert!(
        wait_until(Duration::from_secs(20), || haproxy_pids(&lab) != pids),
        "a reload left haproxy's processes as they were: {pids}"
    );
    let pids = haproxy_pids(&lab);
    let before = snapshot(&lab, &inv, "haproxy", LB);
    assert!(
        before
            .entry("unit haproxy")
            .or(before.entry("unit haproxy.service"))
            .is_some_and(|u| u.contains("ActiveState=active")),
        "haproxy's unit not in the snapshot: {:?}",
        before.keys().collect::<Vec<_>>()
    );
    let (code, events) = run_haproxy(&inv);
    assert_eq!(code, 0, "{events:#?}");
    let recap = events.iter().find(|e| e["event"] == "recap").unwrap();
    assert_eq!(recap["changed"], 0, "{events:#?}");
    before.assert_same(&snapshot(&lab, &inv, "haproxy", LB), "second run");
    assert_eq!(
        haproxy_pids(&lab),
        pids,
        "haproxy was reloaded or restarted"
    );
}

/// The pids of haproxy's processes on the balancer (master and workers), sorted.
fn haproxy_pids(lab: &Lab) -> String {
    lab.sh(
        LB,
        "for p in /proc/[0-9]*; do [ \"$(cat $p/comm 2>/dev/null)\" = haproxy ] && echo ${p#/proc/}; done | sort -n",
    )
    .unwrap()
}

/// Polls `done` every 200 ms until it holds or `limit` passes.
fn wait_until(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if done() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    false
}

#[test]
fn a_rejected_config_never_goes_live() {
    let lab = lab(&[(LB, "haproxy"), (MASTERS[0], "k8s-master")]);
    serve_api(&lab, MASTERS[0]);
    let inv = inventory(&lab);
    let (code, events) = run_haproxy(&inv);
    assert_eq!(code, 0, "{events:#?}");
    let live = lab.read_file(LB, haproxy::CONFIG).unwrap();
    let want = format!("hello from {} on 6443", MASTERS[0]);
    let reply = replies(&lab, |l| https_who(l, LB), std::slice::from_ref(&want));
    assert!(reply.contains(&want), "{reply:?}\n{}", diagnose(&lab));

    // The task itself, over docker exec, with a configuration haproxy refuses.
    let host = Docker::new(LB, lab.container(LB).to_string());
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
    assert_eq!(https_who(&lab, LB), want);

    // The runner afterwards finds the live file as it wants it: nothing changes.
    let before = snapshot(&lab, &inv, "haproxy", LB);
    let pids = haproxy_pids(&lab);
    let (code, events) = run_haproxy(&inv);
    assert_eq!(code, 0, "{events:#?}");
    let recap = events.iter().find(|e| e["event"] == "recap").unwrap();
    assert_eq!(recap["changed"], 0, "{events:#?}");
    before.assert_same(&snapshot(&lab, &inv, "haproxy", LB), "second run");
    assert_eq!(
        haproxy_pids(&lab),
        pids,
        "haproxy was reloaded or restarted"
    );
}
