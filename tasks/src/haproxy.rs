//! HAProxy in front of the cluster: the package, `/etc/haproxy/haproxy.cfg` (the Kubernetes API
//! on :6443 balanced over the masters, optional ingress frontends :80/:443 over the workers,
//! all plain TCP with health checks), validated with `haproxy -c` before it replaces the live
//! file, and the service enabled, running, reloaded when the configuration changed.

use crate::ctx::{Change, Ctx};
use crate::error::{Error, ErrorKind, Result};
use crate::file::{self, Perm};
use crate::plan::Reads;
use crate::{pkg, systemd};

pub const CONFIG: &str = "/etc/haproxy/haproxy.cfg";
/// Where a new configuration is checked before it goes live (same directory: same relative
/// paths, same filesystem).
pub const CANDIDATE: &str = "/etc/haproxy/haproxy.cfg.nodeprep-candidate";
pub const SERVICE: &str = "haproxy.service";

/// What these tasks read (see [`crate::plan::Reads`]).
pub const READS: Reads = Reads::files(&[CONFIG]).units(&["haproxy.service"]);

/// The haproxy package is installed.
pub fn installed(cx: &mut Ctx) -> Result<Change> {
    pkg::installed(cx, &["haproxy"])
}

/// haproxy.service is enabled at boot.
pub fn enabled(cx: &mut Ctx) -> Result<Change> {
    systemd::enabled(cx, SERVICE)
}

/// haproxy is running; reloaded (no connection dropped) when `config_changed` and it already
/// runs.
pub fn running(cx: &mut Ctx, config_changed: bool) -> Result<Change> {
    if systemd::unit(cx, SERVICE)?.active != "active" {
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

/// A TCP frontend on `port` and its backend over `servers` (name, address) on the same port.
fn tcp_service(out: &mut String, name: &str, port: u16, balance: &str, servers: &[(&str, &str)]) {
    out.push_str(&format!(
        "\nfrontend {name}\n    bind :{port}\n    default_backend {name}\n"
    ));
    out.push_str(&format!(
        "\nbackend {name}\n    balance {balance}\n    option tcp-check\n"
    ));
    out.push_str("    default-server inter 5s fall 3 rise 2\n");
    for (server, ip) in servers {
        out.push_str(&format!(
            "    server {server} {} check\n",
            address(ip, port)
        ));
    }
}

/// `/etc/haproxy/haproxy.cfg` for a cluster: the API of `masters` (name, address) on :6443,
/// and, when `ingress` names workers, ports 80 and 443 passed through to them (the ingress
/// controller terminates TLS). Timeouts suit long-lived API watches and exec/log streams.
pub fn render_config(masters: &[(&str, &str)], ingress: Option<&[(&str, &str)]>) -> String {
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
    tcp_service(&mut s, "kube-apiserver", 6443, "leastconn", masters);
    if let Some(workers) = ingress {
        tcp_service(&mut s, "ingress-http", 80, "roundrobin", workers);
        tcp_service(&mut s, "ingress-https", 443, "roundrobin", workers);
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
    cx.write_scratch(CANDIDATE, text.as_bytes(), 0o600, "root", "root")?;
    let checked = cx.apply_unchecked(&["haproxy", "-c", "-f", CANDIDATE]);
    let rejected = match checked {
        Ok(Some(out)) if !out.success() => Some(out),
        Ok(_) => None,
        Err(e) => {
            discard_candidate(cx)?;
            return Err(e);
        }
    };
    if let Some(out) = rejected {
        discard_candidate(cx)?;
        let mut messages = out.stdout.clone();
        messages.extend_from_slice(&out.stderr);
        let msg = if out.status == Some(127) {
            format!(
                "haproxy is not installed, so the new {CONFIG} cannot be checked; install it first (haproxy::installed)"
            )
        } else {
            format!(
                "haproxy rejected the new configuration (`haproxy -c`); {CONFIG} was left as it was"
            )
        };
        return Err(Error::new(ErrorKind::Invalid, msg).with_stderr(&messages));
    }
    let change = file::content(cx, CONFIG, text, Perm::CONFIG)?;
    discard_candidate(cx)?;
    Ok(change)
}

fn discard_candidate(cx: &mut Ctx) -> Result<()> {
    cx.remove_file(CANDIDATE)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ctx::Mode;
    use crate::host::Output;
    use crate::testing::{Fixture, plan};
    use expect_test::expect;

    const MASTERS: &[(&str, &str)] = &[("prdk8smst501", "192.168.10.56")];
    const WORKERS: &[(&str, &str)] = &[
        ("prdk8swok501", "192.168.10.57"),
        ("prdk8swok502", "192.168.10.58"),
    ];

    #[test]
    fn rendered() {
        expect![[r#"
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
                option tcp-check
                default-server inter 5s fall 3 rise 2
                server prdk8smst501 192.168.10.56:6443 check

            frontend ingress-http
                bind :80
                default_backend ingress-http

            backend ingress-http
                balance roundrobin
                option tcp-check
                default-server inter 5s fall 3 rise 2
                server prdk8swok501 192.168.10.57:80 check
                server prdk8swok502 192.168.10.58:80 check

            frontend ingress-https
                bind :443
                default_backend ingress-https

            backend ingress-https
                balance roundrobin
                option tcp-check
                default-server inter 5s fall 3 rise 2
                server prdk8swok501 192.168.10.57:443 check
                server prdk8swok502 192.168.10.58:443 check
        "#]]
        .assert_eq(&render_config(MASTERS, Some(WORKERS)));
        let api_only = render_config(&[("m1", "10.0.0.1"), ("m2", "fd00::2")], None);
        assert!(!api_only.contains("frontend ingress"));
        assert!(
            api_only.contains("    server m2 [fd00::2]:6443 check\n"),
            "{api_only}"
        );
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
        let text = render_config(MASTERS, Some(WORKERS));
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
        assert!(
            rec.commands().is_empty(),
            "check mode touches nothing: {:?}",
            rec.commands()
        );
    }
}
