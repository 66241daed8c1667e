//! The container test image: a Debian bookworm rootfs with systemd and sshd, built with
//! `mmdebstrap` and `docker import`, tagged by a hash of its recipe so it is rebuilt only when
//! the recipe changes.

use std::time::Instant;

use anyhow::{Context, Result};
use xshell::{Shell, cmd};

/// Bumped whenever the build steps change in a way the recipe text below does not show.
const FORMAT_VERSION: &str = "1";

/// Debian suite the image is built from.
const SUITE: &str = "bookworm";

/// Packages on top of `--variant=minbase`. Kept to what a small server image has: the runner
/// installs everything else itself, as it would on a real host.
const PACKAGES: &[&str] = &[
    "systemd",
    "systemd-sysv",
    "dbus",
    "openssh-server",
    "sudo",
    "iproute2",
    "kmod",
    "procps",
    "util-linux",
    "ca-certificates",
];

/// dpkg options, also kept in the image: no docs, man pages or translations (faster installs).
const DPKG_OPTS: &[&str] = &[
    "path-exclude=/usr/share/man/*",
    "path-exclude=/usr/share/info/*",
    "path-exclude=/usr/share/locale/*",
    "path-exclude=/usr/share/doc/*",
    "path-include=/usr/share/doc/*/copyright",
];

/// `docker import --change` instructions (docker 20.10 takes no STOPSIGNAL here: the lab passes
/// `--stop-signal` to `docker run`).
const CHANGES: &[&str] = &["ENV container=docker", r#"CMD ["/sbin/init"]"#];

/// Run by mmdebstrap as a customize hook, with the rootfs directory as `$1`.
const CUSTOMIZE: &str = r#"set -eu
root="$1"

# sshd: root by key only; enabled at boot. Host keys are the ones openssh-server's postinst made.
mkdir -p "$root/etc/ssh/sshd_config.d"
cat > "$root/etc/ssh/sshd_config.d/10-nodeprep-test.conf" <<'EOF'
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UseDNS no
EOF
chroot "$root" systemctl enable ssh.service
mkdir -p -m 700 "$root/root/.ssh"

# Units that make no sense in a container: mask them so boot is quick and ends
# `running` (or `degraded` for reasons unrelated to these).
for unit in \
    getty.target getty@tty1.service console-getty.service serial-getty@.service \
    systemd-udevd.service systemd-udevd-control.socket systemd-udevd-kernel.socket \
    systemd-udev-trigger.service systemd-udev-settle.service \
    systemd-remount-fs.service systemd-firstboot.service \
    sys-kernel-config.mount sys-kernel-debug.mount sys-kernel-tracing.mount \
    dev-hugepages.mount dev-mqueue.mount \
    apt-daily.timer apt-daily-upgrade.timer e2scrub_all.timer e2scrub_reap.service \
    fstrim.timer man-db.timer
do
    ln -sf /dev/null "$root/etc/systemd/system/$unit"
done

# Each container gets its own machine id at boot.
: > "$root/etc/machine-id"
rm -f "$root/var/lib/dbus/machine-id"
ln -s /etc/machine-id "$root/var/lib/dbus/machine-id"

# Nothing cached in the image: containers run `apt-get update` themselves.
rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin
"#;

/// `nodeprep-test:<first 12 hex digits of the recipe's hash>`.
pub fn recipe_tag() -> String {
    let recipe = format!(
        "format {FORMAT_VERSION}\nsuite {SUITE}\npackages {}\ndpkg {}\nchanges {}\ncustomize\n{CUSTOMIZE}",
        PACKAGES.join(","),
        DPKG_OPTS.join(","),
        CHANGES.join("\n"),
    );
    let hash = format!("{:016x}", fnv1a64(recipe.as_bytes()));
    format!("nodeprep-test:{}", &hash[..12])
}

/// The tag of an image built from the current recipe: reused when docker already has it,
/// otherwise built now (a few minutes; progress goes to stderr).
pub fn ensure(sh: &Shell) -> Result<String> {
    let tag = recipe_tag();
    if exists(sh, &tag) {
        eprintln!("test image {tag}: up to date");
        return Ok(tag);
    }
    build(sh, &tag).with_context(|| format!("building test image {tag}"))?;
    Ok(tag)
}

fn exists(sh: &Shell, tag: &str) -> bool {
    cmd!(sh, "docker image inspect {tag}")
        .quiet()
        .ignore_stdout()
        .ignore_stderr()
        .run()
        .is_ok()
}

fn build(sh: &Shell, tag: &str) -> Result<()> {
    let started = Instant::now();
    eprintln!("test image {tag}: building with mmdebstrap (takes a few minutes)");
    let tmp = tempfile::Builder::new()
        .prefix("nodeprep-image-")
        .tempdir()?;
    let hook_path = tmp.path().join("customize.sh");
    std::fs::write(&hook_path, CUSTOMIZE)?;
    let rootfs = tmp.path().join("rootfs.tar");

    let include = format!("--include={}", PACKAGES.join(","));
    let dpkg: Vec<String> = DPKG_OPTS.iter().map(|o| format!("--dpkgopt={o}")).collect();
    let hook = format!("--customize-hook=sh {} \"$1\"", hook_path.display());
    cmd!(
        sh,
        "mmdebstrap --variant=minbase {include} {dpkg...} {hook} --quiet {SUITE} {rootfs}"
    )
    .run()
    .context("mmdebstrap failed (is it installed? it needs root or unshare)")?;
    eprintln!(
        "test image {tag}: rootfs ready after {:.0?}, importing",
        started.elapsed()
    );

    let changes: Vec<String> = CHANGES.iter().map(|c| format!("--change={c}")).collect();
    cmd!(sh, "docker import {changes...} {rootfs} {tag}")
        .quiet()
        .ignore_stdout()
        .run()
        .context("docker import failed")?;
    eprintln!("test image {tag}: built in {:.0?}", started.elapsed());
    Ok(())
}

/// FNV-1a, 64 bits: stable across Rust versions and platforms, unlike `DefaultHasher`.
pub(crate) fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv_known_values() {
        assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
    }

    #[test]
    fn tag_shape() {
        let tag = recipe_tag();
        let hex = tag.strip_prefix("nodeprep-test:").unwrap();
        assert_eq!(hex.len(), 12);
        assert!(hex.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_eq!(tag, recipe_tag());
    }
}
