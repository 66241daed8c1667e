//! The Photon OS 5.0 test image: `docker build` of a generated Dockerfile on the public
//! `photon:5.0` image. tdnf installs what the lab needs from Photon's own repositories, then the
//! Debian image's customization is applied in Photon's layout: sshd takes root by key only,
//! units that make no sense in a container are masked, each container gets its own machine id,
//! and the container boots `/sbin/init` (systemd).
//!
//! Package names are Photon 5.0's (its specs): `systemd` (PID 1 as `/usr/sbin/init`; `/sbin` is
//! a link to `usr/sbin`), `openssh-server` and `openssh-clients` (the two halves of the
//! `openssh` metapackage; `ssh-keygen` is in the clients), `shadow` (useradd, usermod, chage,
//! chpasswd), `procps-ng`, `iproute2`, `util-linux`, `kmod`, `rpm` (the probe lists packages with
//! `rpm -qa`). `systemd-udev` is left out: its spec says containers do not need it. No firewall
//! is installed (Photon's minimal install has iptables; the Debian image has none either): the
//! container tests see "no host firewall" on both bases.

use std::time::Instant;

use anyhow::{Context, Result};
use xshell::{Shell, cmd};

use super::{SSHD_LAB_CONF, Unavailable};

/// The public base image, pulled from the registry docker is configured with.
pub const FROM: &str = "photon:5.0";

/// The vendor's retired repository host, as the repository files of `photon:5.0` (photon-repos
/// 5.0-5) name it in their `baseurl=` lines, and the host that replaced it: the rule later
/// photon-repos builds apply on upgrade (vmware/photon `SPECS/photon-repos/migrate-repo-url.inc`,
/// `migrate_vmw_repo_url`, at commit 5a69ce2b).
pub const RETIRED_REPO_HOST: &str = "https://packages.vmware.com/";
pub const REPO_HOST: &str = "https://packages-prod.broadcom.com/";

/// The shell command that rewrites every `baseurl=` of the retired host in
/// `/etc/yum.repos.d/*.repo` to the new one, as `migrate_vmw_repo_url` does (spaces around `=`
/// allowed), run before tdnf reads them.
pub fn migrate_repo_host() -> String {
    let old = RETIRED_REPO_HOST.replace('.', "\\.");
    format!(
        "sed -i 's|^baseurl[[:space:]]*=[[:space:]]*{old}|baseurl={REPO_HOST}|' /etc/yum.repos.d/*.repo"
    )
}

/// Installed with `tdnf install -y` on top of [`FROM`] (which has bash, toybox, tdnf, the
/// release and repository files). The Debian image's packages, in Photon's names, and the
/// programs Debian's minbase has that the tests use.
pub const PACKAGES: &[&str] = &[
    "systemd",
    "dbus",
    "openssh-server",
    "openssh-clients",
    "sudo",
    "shadow",
    "iproute2",
    "procps-ng",
    "util-linux",
    "kmod",
    "ca-certificates",
    "rpm",
    "coreutils",
    "findutils",
    "grep",
    "sed",
    "gawk",
    "diffutils",
    "tar",
    "gzip",
    "which",
];

/// Units masked in the image: the Debian image's (consoles, udev, kernel filesystems that
/// belong to the container's host) and two Photon enables by preset: systemd-networkd, whose
/// `99-dhcp-en.network` matches the container's eth0 (it would ask DHCP for the address docker
/// already gave and drop docker's routes), and systemd-resolved (docker provides DNS).
pub const MASKED: &[&str] = &[
    "getty.target",
    "getty@tty1.service",
    "console-getty.service",
    "serial-getty@.service",
    "systemd-udevd.service",
    "systemd-udevd-control.socket",
    "systemd-udevd-kernel.socket",
    "systemd-udev-trigger.service",
    "systemd-udev-settle.service",
    "systemd-remount-fs.service",
    "systemd-firstboot.service",
    "sys-kernel-config.mount",
    "sys-kernel-debug.mount",
    "sys-kernel-tracing.mount",
    "dev-hugepages.mount",
    "dev-mqueue.mount",
    "systemd-networkd.service",
    "systemd-networkd.socket",
    "systemd-networkd-wait-online.service",
    "systemd-resolved.service",
];

/// How the container boots: the Dockerfile's last lines. systemd wants `container=` to know it
/// runs in one, and SIGRTMIN+3 to shut down cleanly; the lab passes the same to `docker run`.
pub const BOOT: &[&str] = &[
    "ENV container=docker",
    "STOPSIGNAL SIGRTMIN+3",
    r#"CMD ["/sbin/init"]"#,
];

/// Run as root inside the image by `docker build`, after the packages are installed.
pub fn customize() -> String {
    let masked = MASKED.join(" \\\n    ");
    format!(
        r#"set -eu

# sshd: root by key only, as in the Debian image. Photon's /etc/ssh/sshd_config (PermitRootLogin
# no, MaxAuthTries 4, UsePAM yes) stays as shipped; it has no Include, so one is put first: sshd
# keeps the first value it reads for each keyword, the drop-in's.
mkdir -p /etc/ssh/sshd_config.d
cat > /etc/ssh/sshd_config.d/10-nodeprep-test.conf <<'EOF'
{SSHD_LAB_CONF}EOF
grep -q '^Include /etc/ssh/sshd_config.d/\*\.conf$' /etc/ssh/sshd_config \
    || sed -i '1i Include /etc/ssh/sshd_config.d/*.conf' /etc/ssh/sshd_config
# Host keys now (Debian's openssh-server makes them when installed), then the whole
# configuration checked, and sshd started at boot.
ssh-keygen -A
/usr/sbin/sshd -t
systemctl enable sshd.service
mkdir -p -m 700 /root/.ssh

# root's password ages out 90 days after shadow's pwconv made /etc/shadow (Photon's login.defs:
# PASS_MAX_DAYS 90), and from then on PAM's account check turns every key login away (sshd
# asks for a password change, which a batch session cannot do): the image outlives that. These
# are the values nodeprep's "password expiry off" step sets.
chage -I -1 -m 0 -M 99999 -E -1 root

# sudo as Photon ships it (root, and the wheel and sudo groups with their own password), with
# the drop-ins of /etc/sudoers.d, which the tests write: checked, not changed.
install -d -m 750 /etc/sudoers.d
grep -qx '@includedir /etc/sudoers.d' /etc/sudoers
visudo -c

# Units that make no sense in a container: masked, so that boot is quick and ends `running`.
for unit in \
    {masked}
do
    ln -sf /dev/null "/etc/systemd/system/$unit"
done

# Each container gets its own machine id at boot.
: > /etc/machine-id
mkdir -p /var/lib/dbus
rm -f /var/lib/dbus/machine-id
ln -s /etc/machine-id /var/lib/dbus/machine-id
"#
    )
}

/// The Dockerfile, built with `customize.sh` ([`customize`]) beside it.
pub fn dockerfile() -> String {
    format!(
        "# nodeprep's test image on Photon OS 5.0, generated by xtask/src/dev/image/photon.rs\n\
         FROM {FROM}\n\
         # The vendor moved its repositories: the retired host's baseurl lines rewritten first.\n\
         RUN {}\n\
         # Nothing cached in the image: containers fetch tdnf's metadata themselves.\n\
         RUN tdnf install -y {} \\\n    && tdnf clean all \\\n    && rm -rf /var/cache/tdnf/*\n\
         COPY customize.sh /tmp/nodeprep-customize.sh\n\
         RUN sh /tmp/nodeprep-customize.sh && rm -f /tmp/nodeprep-customize.sh\n\
         {}\n",
        migrate_repo_host(),
        PACKAGES.join(" "),
        BOOT.join("\n"),
    )
}

/// The whole recipe as text: what the image tag's hash covers.
pub fn recipe() -> String {
    format!(
        "Dockerfile\n{}\ncustomize.sh\n{}",
        dockerfile(),
        customize()
    )
}

/// Builds the image `tag`: [`FROM`] pulled first (when docker does not have it), so that a
/// machine without a registry stops there with an [`Unavailable`].
pub fn build(sh: &Shell, tag: &str) -> Result<()> {
    pull(sh)?;
    let started = Instant::now();
    eprintln!("test image {tag}: building on {FROM} with tdnf (takes a few minutes)");
    let tmp = tempfile::Builder::new()
        .prefix("nodeprep-image-")
        .tempdir()?;
    std::fs::write(tmp.path().join("Dockerfile"), dockerfile())?;
    std::fs::write(tmp.path().join("customize.sh"), customize())?;
    let dir = tmp.path();
    cmd!(sh, "docker build --tag {tag} {dir}")
        .run()
        .with_context(|| {
            format!(
                "docker build of {tag} failed (tdnf needs Photon's package repositories, \
                 {REPO_HOST}, from inside the build)"
            )
        })?;
    eprintln!("test image {tag}: built in {:.0?}", started.elapsed());
    Ok(())
}

/// `docker pull` of [`FROM`] unless docker has it already.
fn pull(sh: &Shell) -> Result<(), Unavailable> {
    if super::exists(sh, FROM) {
        return Ok(());
    }
    let why = match cmd!(sh, "docker pull --quiet {FROM}")
        .quiet()
        .ignore_status()
        .output()
    {
        Ok(out) if out.status.success() => return Ok(()),
        Ok(out) => last_line(&String::from_utf8_lossy(&out.stderr))
            .or_else(|| last_line(&String::from_utf8_lossy(&out.stdout)))
            .unwrap_or_else(|| format!("docker exited with {}", out.status)),
        Err(e) => e.to_string(),
    };
    Err(pull_failed(&why))
}

/// The one line for a pull that failed with `why`.
pub fn pull_failed(why: &str) -> Unavailable {
    Unavailable {
        tried: format!("pulling {FROM} (the base of the Photon OS test image) with `docker pull`"),
        why: why.to_string(),
        fix: format!(
            "make a registry serving {FROM} reachable (Docker Hub, or a mirror in \
             /etc/docker/daemon.json \"registry-mirrors\") or `docker load` the image, then run \
             again; --base debian needs no registry"
        ),
    }
}

/// The last non-empty line of `text`, trimmed.
fn last_line(text: &str) -> Option<String> {
    text.lines()
        .map(str::trim)
        .rfind(|l| !l.is_empty())
        .map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The commands of the Dockerfile's `RUN tdnf install` line, as words.
    fn installed() -> Vec<String> {
        let df = dockerfile();
        let run = df
            .split("\nRUN ")
            .find(|r| r.starts_with("tdnf "))
            .expect("a RUN tdnf line")
            .split("&&")
            .next()
            .unwrap()
            .replace("\\\n", " ");
        let words: Vec<String> = run.split_whitespace().map(str::to_string).collect();
        assert_eq!(&words[..3], ["tdnf", "install", "-y"], "{df}");
        words[3..].to_vec()
    }

    /// The repository files of `photon:5.0` (tasks/tests/data/photon), rewritten by the recipe's
    /// command: every baseurl on the retired host now names the new one, the rest of each file
    /// is kept, and the command runs before tdnf.
    #[test]
    fn photon_recipe_moves_the_repositories_to_the_vendors_new_host_before_tdnf() {
        let data =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tasks/tests/data/photon");
        let dir = tempfile::tempdir().unwrap();
        let mut before = Vec::new();
        for entry in std::fs::read_dir(&data).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "repo") {
                let text = std::fs::read_to_string(&path).unwrap();
                std::fs::write(dir.path().join(path.file_name().unwrap()), &text).unwrap();
                before.push((path.file_name().unwrap().to_owned(), text));
            }
        }
        assert!(before.len() >= 6, "{before:?}");
        assert!(before.iter().any(|(_, t)| t.contains(RETIRED_REPO_HOST)));
        let script =
            migrate_repo_host().replace("/etc/yum.repos.d/", &format!("{}/", dir.path().display()));
        let out = duct::cmd("sh", ["-c", &script])
            .stderr_to_stdout()
            .stdout_capture()
            .unchecked()
            .run()
            .unwrap();
        assert!(out.status.success(), "{script}: {out:?}");
        for (name, text) in &before {
            let after = std::fs::read_to_string(dir.path().join(name)).unwrap();
            assert!(!after.contains(RETIRED_REPO_HOST), "{name:?}:\n{after}");
            let expected: String = text
                .lines()
                .map(|l| match l.strip_prefix("baseurl=") {
                    Some(url) => format!(
                        "baseurl={}\n",
                        url.replacen(RETIRED_REPO_HOST, REPO_HOST, 1)
                    ),
                    None => format!("{l}\n"),
                })
                .collect();
            assert_eq!(after, expected, "{name:?}");
        }
        // Before tdnf reads the files.
        let df = dockerfile();
        let migrate = df
            .find(&format!("RUN {}", migrate_repo_host()))
            .unwrap_or_else(|| panic!("no migration in\n{df}"));
        let tdnf = df.find("RUN tdnf install").unwrap();
        assert!(migrate < tdnf, "{df}");
    }

    #[test]
    fn photon_recipe_installs_the_lab_packages_by_photon_names() {
        let packages = installed();
        assert_eq!(packages, PACKAGES, "{}", dockerfile());
        // What the lab and the runner need on a host: PID 1, sshd with host keys, sudo, the
        // user tools, the probe's rpm, ip/ss, modprobe, ps/sysctl, mount.
        for p in [
            "systemd",
            "dbus",
            "openssh-server",
            "openssh-clients",
            "sudo",
            "shadow",
            "rpm",
            "iproute2",
            "kmod",
            "procps-ng",
            "util-linux",
        ] {
            assert!(packages.iter().any(|x| x == p), "{p} missing: {packages:?}");
        }
        // Debian's names, which Photon does not have, and what the lab must not carry.
        for p in [
            "openssh",
            "procps",
            "systemd-sysv",
            "systemd-udev",
            "iptables",
            "nftables",
            "firewalld",
        ] {
            assert!(!packages.iter().any(|x| x == p), "{p} installed");
        }
        let df = dockerfile();
        assert!(
            df.starts_with("# nodeprep") && df.contains("\nFROM photon:5.0\n"),
            "{df}"
        );
        assert!(df.contains("&& tdnf clean all"), "{df}");
    }

    #[test]
    fn photon_recipe_sets_sshd_like_the_debian_image() {
        let script = customize();
        // The same drop-in as the Debian image's, read first.
        assert!(
            super::super::CUSTOMIZE.contains(SSHD_LAB_CONF),
            "the Debian image writes other sshd settings"
        );
        assert!(
            script.contains(&format!(
                "cat > /etc/ssh/sshd_config.d/10-nodeprep-test.conf <<'EOF'\n{SSHD_LAB_CONF}EOF\n"
            )),
            "{script}"
        );
        for line in [
            "PermitRootLogin prohibit-password",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
        ] {
            assert!(SSHD_LAB_CONF.lines().any(|l| l == line), "{line}");
        }
        assert!(
            script
                .contains("sed -i '1i Include /etc/ssh/sshd_config.d/*.conf' /etc/ssh/sshd_config"),
            "{script}"
        );
        // Host keys made, configuration checked, the unit enabled under Photon's name.
        for line in [
            "ssh-keygen -A",
            "/usr/sbin/sshd -t",
            "systemctl enable sshd.service",
            "mkdir -p -m 700 /root/.ssh",
            "chage -I -1 -m 0 -M 99999 -E -1 root",
        ] {
            assert!(script.lines().any(|l| l == line), "{line}: {script}");
        }
    }

    #[test]
    fn photon_recipe_keeps_sudo_as_photon_ships_it() {
        let script = customize();
        for line in [
            "install -d -m 750 /etc/sudoers.d",
            "grep -qx '@includedir /etc/sudoers.d' /etc/sudoers",
            "visudo -c",
        ] {
            assert!(script.lines().any(|l| l == line), "{line}: {script}");
        }
        // Nothing writes sudoers or a drop-in: the runner meets Photon's own rules.
        assert!(!script.contains("> /etc/sudoers"), "{script}");
        assert!(!script.contains("NOPASSWD"), "{script}");
    }

    #[test]
    fn photon_recipe_boots_systemd_with_the_container_flags() {
        let df = dockerfile();
        let tail: Vec<&str> = df.lines().rev().take(3).collect();
        assert_eq!(
            tail,
            [
                r#"CMD ["/sbin/init"]"#,
                "STOPSIGNAL SIGRTMIN+3",
                "ENV container=docker"
            ],
            "{df}"
        );
        let script = customize();
        for unit in [
            "getty.target",
            "systemd-udevd.service",
            "systemd-remount-fs.service",
            "systemd-networkd.service",
            "systemd-resolved.service",
        ] {
            assert!(script.contains(&format!("    {unit}")), "{unit} not masked");
        }
        // Every unit the Debian image masks, but Debian's own timers, is masked here too.
        let debian = super::super::CUSTOMIZE;
        let start = debian.find("for unit in").unwrap();
        let end = debian[start..].find("do\n").unwrap() + start;
        for unit in debian[start + "for unit in".len()..end]
            .split_whitespace()
            .filter(|w| *w != "\\")
        {
            let debian_only = unit.starts_with("apt-daily")
                || unit.starts_with("e2scrub")
                || matches!(unit, "fstrim.timer" | "man-db.timer");
            assert!(
                debian_only || MASKED.contains(&unit),
                "{unit} is masked on Debian only"
            );
        }
        assert!(script.contains(": > /etc/machine-id"), "{script}");
        assert!(script.contains("ln -sf /dev/null \"/etc/systemd/system/$unit\""));
    }

    #[test]
    fn the_hashed_recipe_is_the_dockerfile_and_the_script() {
        let recipe = recipe();
        assert!(recipe.contains(&dockerfile()) && recipe.contains(&customize()));
    }

    #[test]
    fn a_failed_pull_is_one_line_saying_what_to_do() {
        let line = pull_failed(
            "Error response from daemon: Get \"https://registry-1.docker.io/v2/\": dial tcp: \
             lookup registry-1.docker.io: no such host",
        )
        .to_string();
        assert!(!line.contains('\n'), "{line}");
        assert!(line.starts_with("pulling photon:5.0"), "{line}");
        assert!(
            line.contains("failed: Error response from daemon"),
            "{line}"
        );
        assert!(
            line.contains("registry-mirrors") && line.contains("docker load"),
            "{line}"
        );
        assert_eq!(
            last_line("Using default tag\n\nError: no such host\n  \n").as_deref(),
            Some("Error: no such host")
        );
    }
}
