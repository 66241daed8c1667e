//! What the preparation promised and something else may undo: the runc shim containerd's
//! config names is on the host, the node's name resolves to its cluster address, kubelet's
//! node IP is an address of the host, the CA bundle holds the operator's CAs, the disks have
//! stable ids (`disk.EnableUUID` on VMware: only vCenter can fix it, and the host is not ready
//! until then, so the check fails).

use crate::ca;
use crate::containerd;
use crate::ctx::Ctx;
use crate::disks::{self, DiskIds};
use crate::error::Result;
use crate::facts::OsFamily;
use crate::hosts;
use crate::kubelet;

use super::Check;

/// Check names.
pub(super) mod name {
    pub const RUNC_SHIM: &str = "runc shim";
    pub const NAME_RESOLVES: &str = "node name resolves";
    pub const NODE_IP: &str = "kubelet node ip";
    pub const CA_BUNDLE: &str = "ca bundle";
    pub const DISK_IDS: &str = "disk ids";
}

// ---- parsers --------------------------------------------------------------------------------

/// The runtime types containerd's config gives its runtimes (`runtime_type = "..."`), in
/// order, each once; containerd's default (`io.containerd.runc.v2`) when none is named.
pub fn runtime_types(config: Option<&str>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for line in config.unwrap_or("").lines() {
        let line = line.split('#').next().unwrap_or("").trim();
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        if key.trim() != "runtime_type" {
            continue;
        }
        let value = value.trim().trim_matches(['"', '\'']).to_string();
        if !value.is_empty() && !out.contains(&value) {
            out.push(value);
        }
    }
    if out.is_empty() {
        out.push(containerd::RUNC_RUNTIME.to_string());
    }
    out
}

// ---- checks ---------------------------------------------------------------------------------

/// The shim binary of each runtime containerd's config names is on PATH (on Photon OS runc's
/// is in `containerd-extras`: vmware/photon `SPECS/containerd/containerd.spec`, `%files
/// extras`): without it containerd starts no pod.
pub fn runc_shim(cx: &mut Ctx) -> Result<Check> {
    const NAME: &str = name::RUNC_SHIM;
    let config = cx.file(containerd::CONFIG)?.map(|f| f.text());
    let shims: Vec<String> = runtime_types(config.as_deref())
        .iter()
        .filter_map(|t| containerd::shim_binary(t))
        .collect();
    if shims.is_empty() {
        return Ok(Check::skip(
            NAME,
            "containerd's config names no shim runtime",
        ));
    }
    let script = format!(
        "PATH=\"$PATH:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\"; for b in {}; do command -v \"$b\" >/dev/null 2>&1 || echo \"$b\"; done",
        shims.join(" ")
    );
    let out = cx.query(&["sh", "-c", &script])?;
    let missing: Vec<&str> = out
        .stdout_str()
        .split_whitespace()
        .filter_map(|b| shims.iter().find(|s| *s == b).map(String::as_str))
        .collect::<Vec<_>>();
    if missing.is_empty() {
        return Ok(Check::pass(NAME));
    }
    let install = match cx.facts().os {
        OsFamily::Photon => "`tdnf install -y containerd-extras`",
        OsFamily::Debian => "`apt-get install -y containerd` (or Docker's containerd.io)",
        OsFamily::Rhel => "`dnf install -y containerd.io`",
    };
    Ok(Check::fail(
        NAME,
        format!(
            "not on PATH: {} (the shim containerd's config names in {}): no pod would start",
            missing.join(", "),
            containerd::CONFIG
        ),
        install,
    ))
}

/// The node's name resolves to its cluster address: `/etc/hosts` first (glibc's `files`,
/// first on Photon OS's `hosts: files dns`, which has no `myhostname`), else `getent hosts`.
pub fn name_resolves(cx: &mut Ctx, name: &str, address: &str) -> Result<Check> {
    const NAME: &str = name::NAME_RESOLVES;
    let text = cx.file(hosts::HOSTS)?.map(|f| f.text()).unwrap_or_default();
    let got = match hosts::resolved(&text, name) {
        Some(a) => Some((a, hosts::HOSTS.to_string())),
        None => {
            let out = cx.query(&["getent", "hosts", name])?;
            out.stdout_str()
                .split_whitespace()
                .next()
                .map(|a| (a.to_string(), "getent hosts".to_string()))
        }
    };
    let hint = format!(
        "`{address}   {name}` in {} (step \"name resolves\")",
        hosts::HOSTS
    );
    match got {
        Some((a, _)) if a == address => Ok(Check::pass(NAME)),
        Some((a, how)) => Ok(Check::fail(
            NAME,
            format!("{name} resolves to {a} ({how}), not to its cluster address {address}"),
            hint,
        )),
        None => Ok(Check::fail(
            NAME,
            format!(
                "{name} resolves to nothing: kubeadm's preflight warns and kubelet guesses its node IP"
            ),
            hint,
        )),
    }
}

/// kubelet's `--node-ip` (its flags file's `KUBELET_EXTRA_ARGS`) names addresses of this host.
pub fn node_ip(cx: &mut Ctx) -> Result<Check> {
    const NAME: &str = name::NODE_IP;
    let path = kubelet::extra_args_file(cx.facts().os);
    let text = cx.file(path)?.map(|f| f.text()).unwrap_or_default();
    let hint =
        format!("--node-ip=<the host's cluster address> in {path} (step \"kubelet extra args\")");
    let Some(ip) = kubelet::node_ip_of(&text) else {
        return Ok(Check::fail(
            NAME,
            format!("{path} sets no --node-ip: kubelet guesses, and may pick another interface"),
            hint,
        ));
    };
    let addresses = kubelet::host_addresses(cx);
    if addresses.is_empty() {
        return Ok(Check::skip(NAME, "the host's addresses were not read"));
    }
    if kubelet::names_host_addresses(&ip, &addresses) {
        return Ok(Check::pass(NAME));
    }
    let have: Vec<String> = addresses.iter().map(|a| a.to_string()).collect();
    Ok(Check::fail(
        NAME,
        format!(
            "kubelet's --node-ip {ip} ({path}) is not an address of this host ({})",
            have.join(", ")
        ),
        hint,
    ))
}

/// The bundle applications read holds each of `certs` (name, PEM).
pub fn ca_bundle(cx: &mut Ctx, certs: &[(String, String)]) -> Result<Check> {
    const NAME: &str = name::CA_BUNDLE;
    if certs.is_empty() {
        return Ok(Check::skip(NAME, "no system.ca_files in the inventory"));
    }
    let l = ca::layout(cx.facts().os);
    let lacking = ca::bundle_lacks(cx, certs)?;
    if lacking.is_empty() {
        return Ok(Check::pass(NAME));
    }
    Ok(Check::fail(
        NAME,
        format!("{} lacks {}", l.bundle, lacking.join(", ")),
        format!(
            "`{}` (step \"ca certificates\" rebuilds it)",
            l.update.join(" ")
        ),
    ))
}

/// Every disk has a stable id ([`disks::disk_ids`]); a VMware VM without `disk.EnableUUID`
/// fails here although a run only warns about it: the host is not ready until vCenter sets it.
pub fn disk_ids(cx: &mut Ctx) -> Result<Check> {
    const NAME: &str = name::DISK_IDS;
    Ok(match disks::disk_ids(cx)? {
        DiskIds::Stable => Check::pass(NAME),
        DiskIds::Skipped(why) => Check::skip(NAME, why),
        DiskIds::Missing { disks, fix, .. } => Check::fail(NAME, DiskIds::reason(&disks), fix),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ctx::Mode;
    use crate::testing::{Fixture, photon_files};
    use crate::verify::fixtures::{hint, ok, ready_ctx, ready_photon, reason};

    #[test]
    fn runtime_types_read_from_the_config() {
        assert_eq!(runtime_types(None), ["io.containerd.runc.v2"]);
        assert_eq!(
            runtime_types(Some(photon_files::CONTAINERD_CONFIG)),
            ["io.containerd.runc.v2"]
        );
        let cfg = "[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.runc]\n  runtime_type = \"io.containerd.runc.v2\"\n[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.kata]\n  runtime_type = \"io.containerd.kata.v2\" # kata\n";
        assert_eq!(
            runtime_types(Some(cfg)),
            ["io.containerd.runc.v2", "io.containerd.kata.v2"]
        );
    }

    #[test]
    fn shim_on_path_or_not() {
        let (mut cx, _rec) = ready_ctx(Mode::Check);
        assert!(runc_shim(&mut cx).unwrap().passed());
        // Photon without docker-engine nor containerd-extras: the shim is missing.
        let (mut cx, rec) = ready_ctx(Mode::Check);
        rec.reply("sh -c 'PATH=", ok("containerd-shim-runc-v2\n"));
        let c = runc_shim(&mut cx).unwrap();
        assert!(reason(&c).contains("containerd-shim-runc-v2"), "{c:?}");
        assert_eq!(hint(&c), "`tdnf install -y containerd-extras`");
    }

    #[test]
    fn name_resolves_to_the_cluster_address() {
        let (mut cx, _rec) = ready_ctx(Mode::Check);
        assert!(
            name_resolves(&mut cx, "prdk8smst501", "10.1.2.11")
                .unwrap()
                .passed()
        );
        let c = name_resolves(&mut cx, "prdk8smst501", "10.1.2.12").unwrap();
        assert_eq!(
            reason(&c),
            "prdk8smst501 resolves to 10.1.2.11 (/etc/hosts), not to its cluster address 10.1.2.12"
        );
        // Photon as installed: the installer's line names the old host; nothing in DNS.
        let (mut cx, rec) = Fixture::photon().complete().ctx(Mode::Check);
        rec.reply(
            "getent hosts",
            crate::host::Output {
                status: Some(2),
                stdout: Vec::new(),
                stderr: Vec::new(),
            },
        );
        let c = name_resolves(&mut cx, "prdk8smst501", "10.1.2.11").unwrap();
        assert!(reason(&c).contains("resolves to nothing"), "{c:?}");
        // DNS answers when /etc/hosts does not name it.
        let (mut cx, rec) = Fixture::photon().complete().ctx(Mode::Check);
        rec.reply(
            "getent hosts",
            ok("10.1.2.11       prdk8smst501.corp.lan\n"),
        );
        assert!(
            name_resolves(&mut cx, "prdk8smst501", "10.1.2.11")
                .unwrap()
                .passed()
        );
    }

    #[test]
    fn node_ip_is_an_address_of_the_host() {
        let (mut cx, _rec) = ready_ctx(Mode::Check);
        assert!(node_ip(&mut cx).unwrap().passed());
        let (mut cx, _rec) = ready_photon()
            .file(
                kubelet::SYSCONFIG,
                "KUBELET_EXTRA_ARGS=--cgroup-driver=systemd --node-ip=10.9.9.9\n",
                0o644,
            )
            .ctx(Mode::Check);
        let c = node_ip(&mut cx).unwrap();
        assert!(reason(&c).contains("10.9.9.9"), "{c:?}");
        let (mut cx, _rec) = ready_photon()
            .file(
                kubelet::SYSCONFIG,
                "KUBELET_EXTRA_ARGS=--cgroup-driver=systemd\n",
                0o644,
            )
            .ctx(Mode::Check);
        let c = node_ip(&mut cx).unwrap();
        assert!(reason(&c).contains("sets no --node-ip"), "{c:?}");
    }

    #[test]
    fn ca_bundle_holds_each_ca() {
        const PEM: &str = "-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIUQ0FSb290\n-----END CERTIFICATE-----\n";
        let certs = vec![("corp-root.crt".to_string(), PEM.to_string())];
        let (mut cx, _rec) = ready_photon()
            .file(ca::PKI_BUNDLE, PEM, 0o644)
            .ctx(Mode::Check);
        assert!(ca_bundle(&mut cx, &certs).unwrap().passed());
        assert!(matches!(
            ca_bundle(&mut cx, &[]).unwrap().verdict,
            super::super::Verdict::Skip(_)
        ));
        let (mut cx, _rec) = ready_photon()
            .file(ca::PKI_BUNDLE, "", 0o644)
            .ctx(Mode::Check);
        let c = ca_bundle(&mut cx, &certs).unwrap();
        assert_eq!(
            reason(&c),
            "/etc/pki/tls/certs/ca-bundle.crt lacks corp-root.crt"
        );
        assert!(hint(&c).contains("rehash_ca_certificates.sh"));
    }

    #[test]
    fn disk_enable_uuid_fails_verify() {
        let (mut cx, _rec) = ready_ctx(Mode::Check);
        assert!(disk_ids(&mut cx).unwrap().passed());
        // A VMware VM without disk.EnableUUID: its SCSI disk has no scsi-36000c29… id.
        let mut f = ready_photon().file(disks::SYS_VENDOR, "VMware, Inc.\n", 0o444);
        f.state.answers.insert(
            disks::LIST.iter().map(|s| s.to_string()).collect(),
            "disk sda\nid wwn-0x5000c500a1b2c3d4 sda\n".into(),
        );
        let (mut cx, _rec) = f.ctx(Mode::Check);
        let c = disk_ids(&mut cx).unwrap();
        assert!(c.failed(), "{c:?}");
        assert!(reason(&c).contains("sda"), "{c:?}");
        assert!(hint(&c).contains("govc vm.change"), "{c:?}");
    }
}
