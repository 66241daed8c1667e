//! The container test image, on one of two bases ([`Base`]): a Debian bookworm rootfs built with
//! `mmdebstrap` and `docker import`, or Photon OS 5.0 built by `docker build` from the public
//! `photon:5.0` image. Both carry systemd as PID 1 and sshd taking root by key only, and boot with
//! the lab's flags (`super::lab`). The tag is `nodeprep-test:<base>-<hash>`, the hash covering
//! the base and its whole recipe, so an image is rebuilt only when its recipe changes.

use std::fmt;
use std::str::FromStr;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use xshell::{Shell, cmd};

pub mod hardened;
pub mod netsvc;
pub mod photon;

/// Bumped whenever the build steps change in a way the recipe text below does not show.
const FORMAT_VERSION: &str = "2";

/// Chooses the base when no `--base` is given: `debian` (the default) or `photon`.
pub const BASE_ENV: &str = "NODEPREP_BASE";

/// The OS the lab and test containers run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Base {
    /// Debian 12 (bookworm), built here with mmdebstrap: needs only Debian's package mirror.
    Debian,
    /// Photon OS 5.0, built from the `photon:5.0` image: needs a container registry serving it
    /// and Photon's package repositories.
    Photon,
}

impl Base {
    pub const ALL: [Base; 2] = [Base::Debian, Base::Photon];

    pub fn name(self) -> &'static str {
        match self {
            Base::Debian => "debian",
            Base::Photon => "photon",
        }
    }

    /// `NODEPREP_BASE`, or Debian when it is unset or empty.
    pub fn from_env() -> Result<Base> {
        match std::env::var(BASE_ENV) {
            Ok(v) if !v.trim().is_empty() => v.parse().with_context(|| format!("{BASE_ENV}={v}")),
            _ => Ok(Base::Debian),
        }
    }

    /// The given base, else [`Base::from_env`].
    pub fn or_env(given: Option<Base>) -> Result<Base> {
        given.map(Ok).unwrap_or_else(Base::from_env)
    }
}

impl fmt::Display for Base {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Base {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> Result<Base> {
        match s.trim() {
            "debian" => Ok(Base::Debian),
            "photon" => Ok(Base::Photon),
            other => bail!("unknown base {other:?}: use debian or photon"),
        }
    }
}

/// What an image is built from, and that the build cannot start: the one line a user gets
/// (what was tried, why it failed, what to do), with the exit code `super::EXIT_PREREQUISITE`.
#[derive(Debug)]
pub struct Unavailable {
    pub tried: String,
    pub why: String,
    pub fix: String,
}

impl fmt::Display for Unavailable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} failed: {}; {}", self.tried, self.why, self.fix)
    }
}

impl std::error::Error for Unavailable {}

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

/// sshd's settings in both images (`/etc/ssh/sshd_config.d/10-nodeprep-test.conf`): root by
/// key only.
pub(crate) const SSHD_LAB_CONF: &str = "PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UseDNS no
";

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

/// The Debian recipe as text: what the tag's hash covers.
pub(crate) fn debian_recipe() -> String {
    format!(
        "suite {SUITE}\npackages {}\ndpkg {}\nchanges {}\ncustomize\n{CUSTOMIZE}",
        PACKAGES.join(","),
        DPKG_OPTS.join(","),
        CHANGES.join("\n"),
    )
}

/// `nodeprep-test:<base>-<first 12 hex digits of the hash of the base and its recipe>`.
pub fn recipe_tag(base: Base) -> String {
    let recipe = match base {
        Base::Debian => debian_recipe(),
        Base::Photon => photon::recipe(),
    };
    tag_of(base.name(), &recipe, "")
}

/// `nodeprep-test:<name>-<first 12 hex digits of the hash of the name and the recipes>`.
pub(crate) fn tag_of(name: &str, recipe: &str, variant: &str) -> String {
    let mut text = format!("format {FORMAT_VERSION}\nbase {name}\n{recipe}");
    if !variant.is_empty() {
        text.push_str("\nvariant\n");
        text.push_str(variant);
    }
    let hash = format!("{:016x}", tasks::hash::fnv1a64(text.as_bytes()));
    format!("nodeprep-test:{name}-{}", &hash[..12])
}

/// The tag of an image built from the current recipe of the base `NODEPREP_BASE` names
/// (Debian by default): see [`ensure_base`].
pub fn ensure(sh: &Shell) -> Result<String> {
    ensure_base(sh, Base::from_env()?)
}

/// The tag of an image of `base` built from its current recipe: reused when docker already has
/// it, otherwise built now (a few minutes; progress goes to stderr). When the base cannot be
/// had (Photon's image not pullable) the error is an [`Unavailable`].
pub fn ensure_base(sh: &Shell, base: Base) -> Result<String> {
    let tag = recipe_tag(base);
    match base {
        Base::Debian => ensure_variant(sh, tag, &Variant::PLAIN),
        Base::Photon => {
            if exists(sh, &tag) {
                eprintln!("test image {tag}: up to date");
            } else {
                photon::build(sh, &tag)?;
            }
            Ok(tag)
        }
    }
}

/// The tag of the Debian image `variant` of the current recipes, tagged `tag`: reused when
/// docker has it, otherwise built now with mmdebstrap (a few minutes).
pub(crate) fn ensure_variant(sh: &Shell, tag: String, variant: &Variant) -> Result<String> {
    if exists(sh, &tag) {
        eprintln!("test image {tag}: up to date");
        return Ok(tag);
    }
    build(sh, &tag, variant).with_context(|| format!("building test image {tag}"))?;
    Ok(tag)
}

pub(crate) fn exists(sh: &Shell, tag: &str) -> bool {
    cmd!(sh, "docker image inspect {tag}")
        .quiet()
        .ignore_stdout()
        .ignore_stderr()
        .run()
        .is_ok()
}

/// What a Debian image adds to the recipe above: more packages, a hook run before they are
/// installed (after the essential ones) and a customization run after [`CUSTOMIZE`].
pub(crate) struct Variant<'a> {
    pub packages: &'a [&'a str],
    pub essential_hook: Option<&'a str>,
    pub customize: Option<String>,
}

impl Variant<'_> {
    /// The plain image: the recipe above as it is.
    const PLAIN: Variant<'static> = Variant {
        packages: &[],
        essential_hook: None,
        customize: None,
    };
}

/// Builds the Debian image `tag` with mmdebstrap, then `docker import`.
pub(crate) fn build(sh: &Shell, tag: &str, variant: &Variant<'_>) -> Result<()> {
    let started = Instant::now();
    eprintln!("test image {tag}: building with mmdebstrap (takes a few minutes)");
    let tmp = tempfile::Builder::new()
        .prefix("nodeprep-image-")
        .tempdir()?;
    let hook = |name: &str, flag: &str, script: &str| -> Result<String> {
        let path = tmp.path().join(name);
        std::fs::write(&path, script)?;
        Ok(format!("--{flag}-hook=sh {} \"$1\"", path.display()))
    };
    let mut hooks = vec![hook("customize.sh", "customize", CUSTOMIZE)?];
    if let Some(script) = variant.essential_hook {
        hooks.push(hook("essential.sh", "essential", script)?);
    }
    if let Some(script) = &variant.customize {
        hooks.push(hook("customize-variant.sh", "customize", script)?);
    }
    let rootfs = tmp.path().join("rootfs.tar");

    let packages: Vec<&str> = PACKAGES.iter().chain(variant.packages).copied().collect();
    let include = format!("--include={}", packages.join(","));
    let dpkg: Vec<String> = DPKG_OPTS.iter().map(|o| format!("--dpkgopt={o}")).collect();
    cmd!(
        sh,
        "mmdebstrap --variant=minbase {include} {dpkg...} {hooks...} --quiet {SUITE} {rootfs}"
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tag_shape() {
        for base in Base::ALL {
            let tag = recipe_tag(base);
            let hex = tag
                .strip_prefix(&format!("nodeprep-test:{base}-"))
                .unwrap_or_else(|| panic!("{tag}"));
            assert_eq!(hex.len(), 12);
            assert!(hex.bytes().all(|b| b.is_ascii_hexdigit()));
            assert_eq!(tag, recipe_tag(base));
        }
        assert_ne!(recipe_tag(Base::Debian), recipe_tag(Base::Photon));
    }

    #[test]
    fn bases_parse_by_name() {
        for base in Base::ALL {
            assert_eq!(base.name().parse::<Base>().unwrap(), base);
        }
        let e = "ubuntu".parse::<Base>().unwrap_err().to_string();
        assert!(e.contains("debian or photon"), "{e}");
    }
}
