//! What runs the containers: containerd and kubelet on the same cgroup driver, and the binaries
//! kubelet and kubeadm call.

use crate::containerd;
use crate::ctx::Ctx;
use crate::error::Result;
use crate::facts::OsFamily;
use crate::kubelet;

use super::Check;

/// Written by `kubeadm init/join`: kubelet's configuration, with its cgroup driver.
pub const KUBELET_CONFIG: &str = "/var/lib/kubelet/config.yaml";
/// What kubelet and kubeadm need on PATH (kubeadm's preflight list).
pub const BINARIES: [&str; 8] = [
    "conntrack",
    "socat",
    "ebtables",
    "ethtool",
    "ip",
    "iptables",
    "nsenter",
    "mount",
];

/// Check names.
pub(super) mod name {
    pub const CGROUP_DRIVER: &str = "cgroup driver";
    pub const BINARIES: &str = "binaries";
}

// ---- parsers --------------------------------------------------------------------------------

/// The cgroup driver containerd runs runc with: `systemd` when `SystemdCgroup = true` for runc
/// in the CRI plugin's table of the file's schema (`version = 2`: `io.containerd.grpc.v1.cri`;
/// `version = 3`: `io.containerd.cri.v1.runtime`; version 1, no `version` line: `cri`), else
/// `cgroupfs` (containerd's default). `Err`: unreadable, or read by containerd 1.x as version 1
/// while its settings are in version 2's tables, which version 1 ignores.
pub fn containerd_driver(config: Option<&str>) -> std::result::Result<&'static str, String> {
    let Some(text) = config else {
        return Ok("cgroupfs");
    };
    let doc: toml_edit::DocumentMut = text
        .parse()
        .map_err(|e| format!("{} is not valid TOML: {e}", containerd::CONFIG))?;
    let ignored = containerd::ignored_as_version_1(&doc);
    if !ignored.is_empty() {
        return Err(format!(
            "{} has no `version = 2`: containerd 1.x reads it as version 1 and ignores its {} (runc \
             keeps the cgroupfs driver)",
            containerd::CONFIG,
            ignored
                .iter()
                .map(|t| format!("[plugins.\"{t}\"]"))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    let plugin = match doc.get("version").map(|v| v.as_integer()) {
        None | Some(Some(1)) => "cri",
        Some(Some(2)) => "io.containerd.grpc.v1.cri",
        Some(Some(3)) => "io.containerd.cri.v1.runtime",
        Some(_) => {
            return Err(format!(
                "{} has an unknown `version` (containerd knows 1, 2 and 3)",
                containerd::CONFIG
            ));
        }
    };
    let value = doc
        .get("plugins")
        .and_then(|p| p.get(plugin))
        .and_then(|p| p.get("containerd"))
        .and_then(|p| p.get("runtimes"))
        .and_then(|p| p.get("runc"))
        .and_then(|p| p.get("options"))
        .and_then(|p| p.get("SystemdCgroup"))
        .and_then(|v| v.as_bool());
    Ok(if value == Some(true) {
        "systemd"
    } else {
        "cgroupfs"
    })
}

/// The `--cgroup-driver` of an active `KUBELET_EXTRA_ARGS=` line, if any.
pub fn extra_args_driver(text: &str) -> Option<String> {
    for line in text.lines() {
        let t = line.trim_start();
        let t = t.strip_prefix("export ").map(str::trim_start).unwrap_or(t);
        let Some(value) = t.strip_prefix("KUBELET_EXTRA_ARGS=") else {
            continue;
        };
        let words: Vec<&str> = value
            .trim()
            .trim_matches(['"', '\''])
            .split_whitespace()
            .collect();
        for (i, w) in words.iter().enumerate() {
            if let Some(v) = w.strip_prefix("--cgroup-driver=") {
                return Some(v.to_string());
            }
            if *w == "--cgroup-driver" {
                return words.get(i + 1).map(|v| v.to_string());
            }
        }
    }
    None
}

/// The `cgroupDriver:` of kubelet's config.yaml, if any.
pub fn kubelet_config_driver(text: &str) -> Option<String> {
    text.lines()
        .filter_map(|l| l.strip_prefix("cgroupDriver:"))
        .map(|v| v.trim().trim_matches(['"', '\'']).to_string())
        .next()
}

/// The package that provides `binary` on `os`.
pub fn package_of(os: OsFamily, binary: &str) -> &'static str {
    match binary {
        "conntrack" => match os {
            OsFamily::Debian => "conntrack",
            OsFamily::Photon | OsFamily::Rhel => "conntrack-tools",
        },
        "socat" => "socat",
        "ebtables" => match os {
            OsFamily::Rhel => "iptables-nft",
            OsFamily::Photon | OsFamily::Debian => "ebtables",
        },
        "ethtool" => "ethtool",
        "ip" => match os {
            OsFamily::Rhel => "iproute",
            OsFamily::Photon | OsFamily::Debian => "iproute2",
        },
        "iptables" => match os {
            OsFamily::Rhel => "iptables-nft",
            OsFamily::Photon | OsFamily::Debian => "iptables",
        },
        "mount" => match os {
            OsFamily::Debian => "mount",
            OsFamily::Photon | OsFamily::Rhel => "util-linux",
        },
        _ => "util-linux",
    }
}

// ---- checks ---------------------------------------------------------------------------------

/// containerd and kubelet use the same cgroup driver.
pub fn cgroup_driver(cx: &mut Ctx) -> Result<Check> {
    const NAME: &str = name::CGROUP_DRIVER;
    let config = cx.file(containerd::CONFIG)?.map(|f| f.text());
    let runtime = match containerd_driver(config.as_deref()) {
        Ok(d) => d,
        Err(why) if why.contains("`version = 2`") => {
            return Ok(Check::fail(
                NAME,
                why,
                "add `version = 2` at the top of /etc/containerd/config.toml and restart containerd \
                 (steps \"containerd config\", which adds it, and \"containerd running\")",
            ));
        }
        Err(why) => {
            return Ok(Check::fail(
                NAME,
                why,
                "fix the file (`containerd config default` shows a valid one), then step \"containerd config\"",
            ));
        }
    };
    let args_file = kubelet::extra_args_file(cx.facts().os);
    let from_args = cx
        .file(args_file)?
        .and_then(|f| extra_args_driver(&f.text()));
    let from_config = cx
        .file(KUBELET_CONFIG)?
        .and_then(|f| kubelet_config_driver(&f.text()));
    let (kubelet_driver, source) = match (from_args, from_config) {
        (Some(d), _) => (d, format!("KUBELET_EXTRA_ARGS in {args_file}")),
        (None, Some(d)) => (d, KUBELET_CONFIG.to_string()),
        (None, None) => ("systemd".to_string(), "kubeadm's default".to_string()),
    };
    if kubelet_driver == runtime {
        return Ok(Check::pass(NAME));
    }
    let containerd_source = if config.is_some() {
        containerd::CONFIG.to_string()
    } else {
        format!("no {}: containerd's default", containerd::CONFIG)
    };
    Ok(Check::fail(
        NAME,
        format!(
            "containerd uses {runtime} ({containerd_source}), kubelet {kubelet_driver} ({source})"
        ),
        "use systemd for both: `SystemdCgroup = true` for runc in /etc/containerd/config.toml and a restart \
         of containerd (steps \"containerd config\", \"containerd running\"), `--cgroup-driver=systemd` in \
         KUBELET_EXTRA_ARGS (step \"kubelet extra args\")",
    ))
}

/// What kubelet and kubeadm run is on PATH (sbin directories included).
pub fn binaries(cx: &mut Ctx) -> Result<Check> {
    const NAME: &str = name::BINARIES;
    let script = format!(
        "PATH=\"$PATH:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\"; for b in {}; do command -v \"$b\" >/dev/null 2>&1 || echo \"$b\"; done",
        BINARIES.join(" ")
    );
    let out = cx.query(&["sh", "-c", &script])?;
    let missing: Vec<String> = out
        .stdout_str()
        .split_whitespace()
        .filter(|b| BINARIES.contains(b))
        .map(str::to_string)
        .collect();
    if missing.is_empty() {
        return Ok(Check::pass(NAME));
    }
    let os = cx.facts().os;
    let mut packages: Vec<&str> = missing.iter().map(|b| package_of(os, b)).collect();
    packages.dedup();
    let install = match os {
        OsFamily::Photon => "tdnf install",
        OsFamily::Debian => "apt-get install",
        OsFamily::Rhel => "dnf install",
    };
    Ok(Check::fail(
        NAME,
        format!("not found: {}", missing.join(", ")),
        format!("`{install} -y {}`", packages.join(" ")),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ctx::Mode;
    use crate::testing::{Fixture, photon_files};
    use crate::verify::fixtures::{hint, ok, ready_ctx, ready_photon, reason};

    #[test]
    fn cgroup_drivers() {
        let (mut cx, _) = ready_ctx(Mode::Check);
        assert!(cgroup_driver(&mut cx).unwrap().passed());
        // Photon as installed: containerd's config has no SystemdCgroup.
        let (mut cx, _) = Fixture::photon()
            .file(containerd::CONFIG, photon_files::CONTAINERD_CONFIG, 0o644)
            .complete()
            .ctx(Mode::Check);
        let c = cgroup_driver(&mut cx).unwrap();
        assert_eq!(
            reason(&c),
            "containerd uses cgroupfs (/etc/containerd/config.toml), kubelet systemd (kubeadm's default)"
        );
        // No containerd config, kubelet told cgroupfs: consistent.
        let (mut cx, _) = Fixture::debian()
            .file(
                kubelet::DEFAULT,
                "KUBELET_EXTRA_ARGS=\"--cgroup-driver cgroupfs --v=2\"\n",
                0o644,
            )
            .complete()
            .ctx(Mode::Check);
        assert!(cgroup_driver(&mut cx).unwrap().passed());
        // kubeadm's config.yaml says cgroupfs, containerd systemd.
        let (mut cx, _) = ready_photon()
            .absent(kubelet::SYSCONFIG)
            .file(
                KUBELET_CONFIG,
                "kind: KubeletConfiguration\ncgroupDriver: cgroupfs\n",
                0o644,
            )
            .ctx(Mode::Check);
        let c = cgroup_driver(&mut cx).unwrap();
        assert!(
            reason(&c).ends_with("kubelet cgroupfs (/var/lib/kubelet/config.yaml)"),
            "{c:?}"
        );
        // containerd 2.x layout.
        let v3 = containerd::edited_config(None, Some(2)).unwrap();
        assert_eq!(containerd_driver(Some(&v3)), Ok("systemd"));
        assert!(containerd_driver(Some("[plugins")).is_err());
        // Version 1's own layout.
        let v1 = "[plugins.cri.containerd.runtimes.runc.options]\nSystemdCgroup = true\n";
        assert_eq!(containerd_driver(Some(v1)), Ok("systemd"));
        // The tables of one schema are not read under another.
        let v3_tables_in_v2 = v3.replace("version = 3", "version = 2");
        assert_eq!(containerd_driver(Some(&v3_tables_in_v2)), Ok("cgroupfs"));
    }

    /// The seed's own snippet: version 2's tables with no `version = 2`, which containerd 1.x
    /// reads as version 1, ignoring `SystemdCgroup = true`.
    #[test]
    fn config_read_as_version_1_fails() {
        const SEED: &str = "disabled_plugins = [\"\"]\n\n#root = \"/var/lib/containerd\"\n\n[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.runc]\n[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.runc.options]\nSystemdCgroup = true\n";
        let (mut cx, _) = ready_photon()
            .file(containerd::CONFIG, SEED, 0o644)
            .ctx(Mode::Check);
        let c = cgroup_driver(&mut cx).unwrap();
        assert_eq!(
            reason(&c),
            "/etc/containerd/config.toml has no `version = 2`: containerd 1.x reads it as version 1 and \
             ignores its [plugins.\"io.containerd.grpc.v1.cri\"] (runc keeps the cgroupfs driver)"
        );
        assert!(hint(&c).starts_with("add `version = 2`"), "{c:?}");
        // The step's fix: the same file with `version = 2`, which then passes.
        let fixed = containerd::edited_config(Some(SEED), Some(1)).unwrap();
        assert!(fixed.contains("\nversion = 2\n"), "{fixed}");
        assert_eq!(containerd_driver(Some(&fixed)), Ok("systemd"));
        let (mut cx, _) = ready_photon()
            .file(containerd::CONFIG, &fixed, 0o644)
            .ctx(Mode::Check);
        assert!(cgroup_driver(&mut cx).unwrap().passed());
        // `version = 1` said out loud: the same.
        let said = format!("version = 1\n{SEED}");
        assert!(containerd_driver(Some(&said)).is_err());
    }

    #[test]
    fn binaries_missing() {
        let (mut cx, rec) = Fixture::photon().complete().ctx(Mode::Check);
        rec.reply("sh -c", ok("conntrack\nsocat\nebtables\n"));
        let c = binaries(&mut cx).unwrap();
        assert_eq!(reason(&c), "not found: conntrack, socat, ebtables");
        assert_eq!(hint(&c), "`tdnf install -y conntrack-tools socat ebtables`");
        let (mut cx, rec) = Fixture::debian().complete().ctx(Mode::Check);
        rec.reply("sh -c", ok("conntrack\nnsenter\nmount\n"));
        let c = binaries(&mut cx).unwrap();
        assert_eq!(hint(&c), "`apt-get install -y conntrack util-linux mount`");
        let (mut cx, _) = Fixture::debian().complete().ctx(Mode::Check);
        assert!(binaries(&mut cx).unwrap().passed());
    }
}
