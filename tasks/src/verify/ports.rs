//! The ports a host must serve are free, or held by what may hold them.

use std::collections::BTreeMap;

use crate::ctx::Ctx;
use crate::error::Result;
use crate::firewall::Ports;

use super::Check;

pub const TCP: &str = "/proc/net/tcp";
pub const TCP6: &str = "/proc/net/tcp6";

/// Processes of Kubernetes itself that may hold a node's ports (as `ss` shows names, cut at
/// 15 characters): a node already in a cluster passes.
pub const KUBERNETES_HOLDERS: &[&str] = &[
    "kube-apiserver",
    "etcd",
    "kubelet",
    "kube-controller",
    "kube-scheduler",
    "kube-proxy",
];

/// Check names.
pub(super) mod name {
    pub const PORTS_FREE: &str = "ports free";
}

// ---- parsers --------------------------------------------------------------------------------

/// Local TCP ports in LISTEN state, from /proc/net/tcp or /proc/net/tcp6.
pub fn listening_ports(proc_net_tcp: &str) -> Vec<u16> {
    proc_net_tcp
        .lines()
        .skip(1)
        .filter_map(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            if w.get(3) != Some(&"0A") {
                return None;
            }
            let port = w.get(1)?.rsplit(':').next()?;
            u16::from_str_radix(port, 16).ok()
        })
        .collect()
}

/// Port → the names of the processes listening there, from `ss -Hltnp`.
pub fn holders(ss: &str) -> BTreeMap<u16, Vec<String>> {
    let mut out: BTreeMap<u16, Vec<String>> = BTreeMap::new();
    for line in ss.lines() {
        let w: Vec<&str> = line.split_whitespace().collect();
        let Some(port) = w
            .get(3)
            .and_then(|a| a.rsplit(':').next())
            .and_then(|p| p.parse::<u16>().ok())
        else {
            continue;
        };
        let names: Vec<String> = line
            .split("((\"")
            .skip(1)
            .chain(line.split("),(\"").skip(1))
            .filter_map(|s| s.split('"').next())
            .map(str::to_string)
            .collect();
        let slot = out.entry(port).or_default();
        for n in names {
            if !slot.contains(&n) {
                slot.push(n);
            }
        }
    }
    out
}

// ---- checks ---------------------------------------------------------------------------------

/// Nothing listens on `ports`, except processes named in `allowed` (haproxy on a load
/// balancer, Kubernetes itself on a node).
pub fn ports_free(cx: &mut Ctx, ports: &[Ports], allowed: &[&str]) -> Result<Check> {
    const NAME: &str = name::PORTS_FREE;
    if ports.is_empty() {
        return Ok(Check::skip(NAME, "no ports for this role"));
    }
    let mut listening = Vec::new();
    for path in [TCP, TCP6] {
        if let Some(f) = cx.file(path)? {
            listening.extend(listening_ports(&f.text()));
        }
    }
    listening.sort_unstable();
    listening.dedup();
    let taken: Vec<u16> = listening
        .into_iter()
        .filter(|p| ports.iter().any(|r| r.contains(&Ports::one(*p))))
        .collect();
    if taken.is_empty() {
        return Ok(Check::pass(NAME));
    }
    let out = cx.query(&["ss", "-Hltnp"])?;
    let by_port = holders(&out.stdout_str());
    let mut busy = Vec::new();
    for p in taken {
        let names = by_port.get(&p).cloned().unwrap_or_default();
        if !names.is_empty() && names.iter().all(|n| allowed.contains(&n.as_str())) {
            continue;
        }
        if names.is_empty() {
            busy.push(format!("{p}"));
        } else {
            busy.push(format!("{p} (by {})", names.join(", ")));
        }
    }
    if busy.is_empty() {
        return Ok(Check::pass(NAME));
    }
    let wanted: Vec<String> = ports.iter().map(Ports::to_string).collect();
    Ok(Check::fail(
        NAME,
        format!("in use: {}", busy.join(", ")),
        format!(
            "stop or move what listens there (`ss -ltnp` names it): this role needs TCP {}",
            wanted.join(", ")
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ctx::Mode;
    use crate::firewall;
    use crate::host::Output;
    use crate::verify::fixtures::{hint, ok, ready_ctx, ready_photon, reason};

    const TCP_WITH_10250: &str = "  sl  local_address rem_address   st\n   0: 00000000:0016 00000000:0000 0A 0\n   1: 0100007F:280A 00000000:0000 0A 0\n   2: 0100007F:1A0B 0200007F:1A0C 01 0\n";

    #[test]
    fn ports() {
        assert_eq!(listening_ports(TCP_WITH_10250), [22, 10250]);
        let ss = "LISTEN 0 4096 127.0.0.1:10250 0.0.0.0:* users:((\"socat\",pid=7,fd=5))\nLISTEN 0 128 [::]:6443 [::]:* users:((\"kube-apiserver\",pid=9,fd=3),(\"kube-apiserver\",pid=9,fd=4))\n";
        let h = holders(ss);
        assert_eq!(h[&10250], ["socat"]);
        assert_eq!(h[&6443], ["kube-apiserver"]);

        let (mut cx, _) = ready_ctx(Mode::Check);
        assert!(
            ports_free(&mut cx, firewall::sample::WORKER_PORTS, KUBERNETES_HOLDERS)
                .unwrap()
                .passed()
        );
        let (mut cx, rec) = ready_photon()
            .file(TCP6, TCP_WITH_10250, 0o444)
            .ctx(Mode::Check);
        rec.reply("ss -Hltnp", ok(ss));
        let c = ports_free(&mut cx, firewall::sample::WORKER_PORTS, KUBERNETES_HOLDERS).unwrap();
        assert_eq!(reason(&c), "in use: 10250 (by socat)");
        assert!(hint(&c).contains("TCP 10250, 30000-32767"), "{c:?}");
        // Held by kubelet itself: a node already in a cluster.
        let (mut cx, rec) = ready_photon()
            .file(TCP, TCP_WITH_10250, 0o444)
            .ctx(Mode::Check);
        rec.reply(
            "ss -Hltnp",
            ok("LISTEN 0 4096 *:10250 *:* users:((\"kubelet\",pid=7,fd=5))\n"),
        );
        assert!(
            ports_free(&mut cx, firewall::sample::WORKER_PORTS, KUBERNETES_HOLDERS)
                .unwrap()
                .passed()
        );
        // A load balancer: haproxy on 6443 is itself.
        let tcp_6443 =
            "  sl  local_address rem_address   st\n   0: 00000000:192B 00000000:0000 0A 0\n";
        let (mut cx, rec) = ready_photon().file(TCP, tcp_6443, 0o444).ctx(Mode::Check);
        rec.reply(
            "ss -Hltnp",
            ok("LISTEN 0 4096 0.0.0.0:6443 0.0.0.0:* users:((\"haproxy\",pid=70,fd=7))\n"),
        );
        assert!(
            ports_free(&mut cx, firewall::sample::BALANCER_PORTS, &["haproxy"])
                .unwrap()
                .passed()
        );
        // ss unavailable: the holder is unknown, the port is still taken.
        let (mut cx, rec) = ready_photon().file(TCP, tcp_6443, 0o444).ctx(Mode::Check);
        rec.reply(
            "ss -Hltnp",
            Output {
                status: Some(127),
                ..Default::default()
            },
        );
        let c = ports_free(&mut cx, firewall::sample::MASTER_PORTS, KUBERNETES_HOLDERS).unwrap();
        assert_eq!(reason(&c), "in use: 6443");
    }
}
