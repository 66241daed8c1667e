//! HAProxy in front of the cluster: the package, `/etc/haproxy/haproxy.cfg` (the Kubernetes API
//! on :6443 balanced over the masters and checked on `/healthz` as kubeadm's HA guide does,
//! optional ingress frontends :80/:443 over the ingress controller's NodePorts on the workers,
//! all passed through as TCP), validated with `haproxy -c` before it replaces the live file,
//! and the service enabled, running, reloaded when the configuration changed.

use crate::ctx::{Change, Ctx};
use crate::error::Result;
use crate::file::{self, Perm};
use crate::reads::Reads;
use crate::state::ActiveState;
use crate::{pkg, systemd};

pub const CONFIG: &str = "/etc/haproxy/haproxy.cfg";
/// Where a new configuration is checked before it goes live (same directory: same relative
/// paths, same filesystem).
pub const CANDIDATE: &str = "/etc/haproxy/haproxy.cfg.nodeprep-candidate";
pub const SERVICE: &str = "haproxy.service";

/// What these tasks read (see [`crate::plan::Reads`]).
pub const READS: Reads = Reads::files(&[CONFIG]).units(&["haproxy.service"]);

/// The package [`installed`] ensures, for the plan's one transaction.
pub const PACKAGE: &str = "haproxy";

/// The haproxy package is installed.
pub fn installed(cx: &mut Ctx) -> Result<Change> {
    pkg::installed(cx, &[PACKAGE])
}

/// haproxy.service is enabled at boot.
pub fn enabled(cx: &mut Ctx) -> Result<Change> {
    systemd::enabled(cx, SERVICE)
}

/// haproxy is running; reloaded (no connection dropped) when `config_changed` and it already
/// runs.
pub fn running(cx: &mut Ctx, config_changed: bool) -> Result<Change> {
    if systemd::unit(cx, SERVICE)?.active != ActiveState::Active {
        systemd::started(cx, SERVICE)
    } else if config_changed {
        systemd::reloaded(cx, SERVICE)
    } else {
        Ok(Change::Unchanged)
    }
}

/// `host:port` as haproxy reads it (IPv6 addresses bracketed).
fn address(ip: &str, port: u16) -> String {
    if ip.contains(':') {
        format!("[{ip}]:{port}")
    } else {
        format!("{ip}:{port}")
    }
}

/// How a backend checks its servers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Check {
    /// A TCP connection.
    Connect,
    /// The Kubernetes API's health as kubeadm's HA guide checks it: `GET /healthz` over HTTPS,
    /// the certificate not verified (haproxy has no cluster CA), status 200 expected. An
    /// apiserver that accepts connections but is not healthy leaves the rotation. (The
    /// guide's sample also sets `option ssl-hello-chk`, which would replace the HTTP check
    /// with a TLS hello: `check-ssl` runs the HTTP check over TLS instead.)
    ApiHealthz,
}

/// A TCP frontend on `port` and its backend over `servers` (name, address) on `server_port`.
fn tcp_service(
    out: &mut String,
    name: &str,
    (port, server_port): (u16, u16),
    balance: &str,
    check: Check,
    servers: &[(&str, &str)],
) {
    out.push_str(&format!(
        "\nfrontend {name}\n    bind :{port}\n    default_backend {name}\n"
    ));
    out.push_str(&format!("\nbackend {name}\n    balance {balance}\n"));
    let server_check = match check {
        Check::Connect => {
            out.push_str("    option tcp-check\n");
            "check"
        }
        Check::ApiHealthz => {
            out.push_str("    option httpchk GET /healthz\n    http-check expect status 200\n");
            "check check-ssl verify none"
        }
    };
    out.push_str("    default-server inter 5s fall 3 rise 2\n");
    for (server, ip) in servers {
        out.push_str(&format!(
            "    server {server} {} {server_check}\n",
            address(ip, server_port)
        ));
    }
}

/// Ingress through the balancer: its ports 80 and 443 passed through (TCP, the ingress
/// controller terminates TLS) to the ingress controller's NodePorts on `workers`.
#[derive(Debug, Clone, Copy)]
pub struct Ingress<'a> {
    /// (name, address) of each worker.
    pub workers: &'a [(&'a str, &'a str)],
    pub http_nodeport: u16,
    pub https_nodeport: u16,
}

/// `/etc/haproxy/haproxy.cfg` for a cluster: the API of `masters` (name, address) on :6443,
/// checked as kubeadm's HA guide does, and, with `ingress`, ports 80 and 443 balanced over
/// the workers' ingress NodePorts. Timeouts suit long-lived API watches and exec/log streams.
pub fn render_config(masters: &[(&str, &str)], ingress: Option<&Ingress>) -> String {
    let mut s = String::from(
        "# HAProxy for the Kubernetes API and ingress, written by nodeprep: edit the inventory, not this file.
global
    log /dev/log local0 info
    # No maxconn: haproxy sizes it to the open-files limit it is given. A fixed one needing more
    # descriptors than that limit allows makes every start and reload fail (\"Cannot raise FD limit\").
    # Workers drop root once the ports are bound (numeric: no user is assumed to exist).
    uid 65534
    gid 65534

defaults
    mode tcp
    log global
    option tcplog
    option dontlognull
    retries 3
    timeout connect 5s
    # kubectl watches, exec, logs -f: connections that stay open and quiet for long.
    timeout client 1h
    timeout server 1h
    timeout check 5s
",
    );
    tcp_service(
        &mut s,
        "kube-apiserver",
        (6443, 6443),
        "leastconn",
        Check::ApiHealthz,
        masters,
    );
    if let Some(i) = ingress {
        let http = (80, i.http_nodeport);
        let https = (443, i.https_nodeport);
        tcp_service(
            &mut s,
            "ingress-http",
            http,
            "roundrobin",
            Check::Connect,
            i.workers,
        );
        tcp_service(
            &mut s,
            "ingress-https",
            https,
            "roundrobin",
            Check::Connect,
            i.workers,
        );
    }
    s
}

/// The live configuration is `text`. A new one is first written beside the live file and
/// checked with `haproxy -c`; only a configuration haproxy accepts replaces the live one, so a
/// bad one never goes live (the error carries haproxy's messages). Changed means haproxy must
/// be reloaded (see [`running`]).
pub fn config(cx: &mut Ctx, text: &str) -> Result<Change> {
    if cx
        .file(CONFIG)?
        .is_some_and(|c| !c.is_dir && c.content == text.as_bytes())
    {
        // Same text: at most mode/owner to fix, nothing to validate.
        return file::content(cx, CONFIG, text, Perm::CONFIG);
    }
    let checker = file::Checker {
        argv: &["haproxy", "-c", "-f"],
        rejected: format!(
            "haproxy rejected the new configuration (`haproxy -c`); {CONFIG} was left as it was"
        ),
        missing: format!(
            "haproxy is not installed, so the new {CONFIG} cannot be checked; install it first (haproxy::installed)"
        ),
    };
    file::checked(cx, CANDIDATE, SCRATCH, text, checker, |cx| {
        file::content(cx, CONFIG, text, Perm::CONFIG)
    })
}

/// The candidate's mode: root's alone, as scratch.
const SCRATCH: Perm = Perm {
    mode: 0o600,
    owner: "root",
    group: "root",
};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ctx::Mode;
    use crate::error::ErrorKind;
    use crate::host::Output;
    use crate::testing::{Fixture, assert_sent_nothing, plan};
    use expect_test::expect;

    const MASTERS: &[(&str, &str)] = &[("prdk8smst501", "192.168.10.56")];
    const WORKERS: &[(&str, &str)] = &[
        ("prdk8swok501", "192.168.10.57"),
        ("prdk8swok502", "192.168.10.58"),
    ];
    const INGRESS: Ingress = Ingress {
        workers: WORKERS,
        http_nodeport: 30080,
        https_nodeport: 30443,
    };

    #[test]
    fn rendered() {
        expect![[r##"
            # HAProxy for the Kubernetes API and ingress, written by nodeprep: edit the inventory, not this file.
            global
                log /dev/log local0 info
                # No maxconn: haproxy sizes it to the open-files limit it is given. A fixed one needing more
                # descriptors than that limit allows makes every start and reload fail ("Cannot raise FD limit").
                # Workers drop root once the ports are bound (numeric: no user is assumed to exist).
                uid 65534
                gid 65534

            defaults
                mode tcp
                log global
                option tcplog
                option dontlognull
                retries 3
                timeout connect 5s
                # kubectl watches, exec, logs -f: connections that stay open and quiet for long.
                timeout client 1h
                timeout server 1h
                timeout check 5s

            frontend kube-apiserver
                bind :6443
                default_backend kube-apiserver

            backend kube-apiserver
                balance leastconn
                option httpchk GET /healthz
                http-check expect status 200
                default-server inter 5s fall 3 rise 2
                server prdk8smst501 192.168.10.56:6443 check check-ssl verify none

            frontend ingress-http
                bind :80
                default_backend ingress-http

            backend ingress-http
                balance roundrobin
                option tcp-check
                default-server inter 5s fall 3 rise 2
                server prdk8swok501 192.168.10.57:30080 check
                server prdk8swok502 192.168.10.58:30080 check

            frontend ingress-https
                bind :443
                default_backend ingress-https

            backend ingress-https
                balance roundrobin
                option tcp-check
                default-server inter 5s fall 3 rise 2
                server prdk8swok501 192.168.10.57:30443 check
                server prdk8swok502 192.168.10.58:30443 check
        "##]]
        .assert_eq(&render_config(MASTERS, Some(&INGRESS)));
        let api_only = render_config(&[("m1", "10.0.0.1"), ("m2", "fd00::2")], None);
        assert!(!api_only.contains("frontend ingress"));
        assert!(
            api_only.contains("    server m2 [fd00::2]:6443 check check-ssl verify none\n"),
            "{api_only}"
        );
    }

    /// The API backend checks `/healthz` over TLS and wants a 200 (kubeadm's HA guide), not a
    /// bare connect; the ingress backends go to the NodePorts, not to 80/443 on the workers.
    #[test]
    fn api_checked_on_healthz_and_ingress_on_nodeports() {
        let text = render_config(MASTERS, Some(&INGRESS));
        let backend = |name: &str| -> Vec<&str> {
            text.split("\nbackend ")
                .find(|b| b.starts_with(name))
                .unwrap()
                .lines()
                .map(str::trim)
                .collect()
        };
        let api = backend("kube-apiserver");
        assert!(api.contains(&"option httpchk GET /healthz"), "{api:?}");
        assert!(api.contains(&"http-check expect status 200"), "{api:?}");
        assert!(!api.contains(&"option tcp-check"), "{api:?}");
        assert!(!api.iter().any(|l| l.contains("ssl-hello-chk")), "{api:?}");
        assert!(
            api.iter()
                .filter(|l| l.starts_with("server "))
                .all(|l| l.ends_with(":6443 check check-ssl verify none")),
            "{api:?}"
        );
        for (name, port) in [("ingress-http", 30080), ("ingress-https", 30443)] {
            let servers: Vec<&str> = backend(name)
                .into_iter()
                .filter(|l| l.starts_with("server "))
                .collect();
            assert_eq!(servers.len(), WORKERS.len());
            assert!(
                servers
                    .iter()
                    .all(|l| l.ends_with(&format!(":{port} check"))),
                "{servers:?}"
            );
        }
    }

    /// The rendered configuration passes the real `haproxy -c` of this machine. Where haproxy
    /// is not installed the test says so and passes, except in CI (`CI=true`), where it fails:
    /// CI installs haproxy.
    #[test]
    fn real_haproxy_accepts_the_config() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("haproxy.cfg");
        let texts = [
            render_config(MASTERS, Some(&INGRESS)),
            render_config(&[("m1", "10.0.0.1"), ("m2", "fd00::2")], None),
        ];
        for text in texts {
            std::fs::write(&file, &text).unwrap();
            let path = file.display().to_string();
            let Some(out) = crate::testing::run_checker(
                &["haproxy", "-c", "-f", &path],
                "haproxy",
                "the rendered configuration",
            ) else {
                return;
            };
            assert!(
                out.success(),
                "haproxy -c refused the rendered configuration:\n{}{}\n{text}",
                out.stdout_str(),
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }

    #[test]
    fn validated_then_installed() {
        let (mut cx, _rec) = Fixture::photon()
            .packages(&[("haproxy", "2.8.2-2.ph5")])
            .file(CONFIG, "# example\n", 0o644)
            .unit(SERVICE, "disabled", "inactive")
            .ctx(Mode::Apply);
        let text = render_config(MASTERS, None);
        assert_eq!(installed(&mut cx).unwrap(), Change::Unchanged);
        let changed = config(&mut cx, &text).unwrap();
        assert!(changed.changed());
        assert!(enabled(&mut cx).unwrap().changed());
        assert!(running(&mut cx, changed.changed()).unwrap().changed());
        expect![[r#"
            write /etc/haproxy/haproxy.cfg.nodeprep-candidate 0600 root:root
            run haproxy -c -f /etc/haproxy/haproxy.cfg.nodeprep-candidate
            write /etc/haproxy/haproxy.cfg 0644 root:root
            run rm -f /etc/haproxy/haproxy.cfg.nodeprep-candidate
            run systemctl enable haproxy.service
            run systemctl start haproxy.service
        "#]]
        .assert_eq(&plan(&cx));
        assert_eq!(cx.state().files[CONFIG].as_ref().unwrap().text(), text);
    }

    #[test]
    fn rejected_config_never_goes_live() {
        let (mut cx, rec) = Fixture::debian()
            .packages(&[("haproxy", "2.6.12-1+deb12u4")])
            .file(CONFIG, "# the live one\n", 0o644)
            .ctx(Mode::Apply);
        rec.reply(
            "haproxy -c",
            Output {
                status: Some(1),
                stdout: Vec::new(),
                stderr: b"[ALERT]    (1) : config : parsing [/etc/haproxy/haproxy.cfg.nodeprep-candidate:3] : unknown keyword 'bogus' in 'global' section\n[ALERT]    (1) : config : Fatal errors found in configuration.\n".to_vec(),
            },
        );
        let e = config(&mut cx, "global\n    bogus\n").unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Invalid);
        assert!(
            e.to_string()
                .contains("haproxy rejected the new configuration"),
            "{e}"
        );
        assert!(e.stderr_tail().contains("unknown keyword 'bogus'"), "{e}");
        expect![[r#"
            write /etc/haproxy/haproxy.cfg.nodeprep-candidate 0600 root:root
            run haproxy -c -f /etc/haproxy/haproxy.cfg.nodeprep-candidate
            run rm -f /etc/haproxy/haproxy.cfg.nodeprep-candidate
        "#]]
        .assert_eq(&plan(&cx));
        assert_eq!(
            cx.state().files[CONFIG].as_ref().unwrap().text(),
            "# the live one\n"
        );
    }

    #[test]
    fn missing_haproxy_said_so() {
        let (mut cx, rec) = Fixture::rhel().absent(CONFIG).ctx(Mode::Apply);
        rec.reply(
            "haproxy -c",
            Output {
                status: Some(127),
                ..Default::default()
            },
        );
        let e = config(&mut cx, "global\n").unwrap_err();
        assert!(e.message().starts_with("haproxy is not installed"), "{e}");
    }

    #[test]
    fn no_change() {
        let text = render_config(MASTERS, Some(&INGRESS));
        let (mut cx, rec) = Fixture::debian()
            .packages(&[("haproxy", "2.6.12-1+deb12u4")])
            .file(CONFIG, &text, 0o644)
            .unit(SERVICE, "enabled", "active")
            .ctx(Mode::Apply);
        let changed = config(&mut cx, &text).unwrap();
        let all = installed(&mut cx).unwrap()
            | changed.clone()
            | enabled(&mut cx).unwrap()
            | running(&mut cx, changed.changed()).unwrap();
        assert_eq!(all, Change::Unchanged);
        assert!(
            cx.actions().is_empty() && rec.commands().is_empty(),
            "{:?}",
            cx.actions()
        );
    }

    #[test]
    fn reload_when_changed_and_check_mode() {
        let (mut cx, rec) = Fixture::photon()
            .packages(&[("haproxy", "2.8.2-2.ph5")])
            .file(CONFIG, "# old\n", 0o644)
            .unit(SERVICE, "enabled", "active")
            .ctx(Mode::Check);
        let changed = config(&mut cx, &render_config(MASTERS, None)).unwrap();
        assert!(running(&mut cx, changed.changed()).unwrap().changed());
        expect![[r#"
            write /etc/haproxy/haproxy.cfg.nodeprep-candidate 0600 root:root
            run haproxy -c -f /etc/haproxy/haproxy.cfg.nodeprep-candidate
            write /etc/haproxy/haproxy.cfg 0644 root:root
            run rm -f /etc/haproxy/haproxy.cfg.nodeprep-candidate
            run systemctl reload-or-restart haproxy.service
        "#]]
        .assert_eq(&plan(&cx));
        assert_sent_nothing(&rec);
    }
}
