//! The network services image for labs without a way out: the Debian image (same suite,
//! packages and customization) with a real HTTP proxy (tinyproxy) and a real caching mirror
//! (apt-cacher-ng) from Debian's packages, and `socat`, which forwards the lab's ssh port to a
//! host that has no other way in. One container of it runs both for
//! the hosts of an offline lab (`super::super::offline`).
//!
//! Its tag is `nodeprep-test:debian-netsvc-<hash>`, the hash covering the Debian recipe and
//! this one.

use anyhow::Result;
use xshell::Shell;

/// Packages on top of the Debian image's.
pub const PACKAGES: &[&str] = &["tinyproxy", "apt-cacher-ng", "socat"];

/// tinyproxy's port (Debian's tinyproxy.conf) and apt-cacher-ng's.
pub const PROXY_PORT: u16 = 8888;
pub const MIRROR_PORT: u16 = 3142;

/// tinyproxy's access log (Debian's tinyproxy.conf: `LogFile`).
pub const PROXY_LOG: &str = "/var/log/tinyproxy/tinyproxy.log";

/// Run by mmdebstrap after the Debian image's customization, with the rootfs as `$1`:
/// tinyproxy takes clients from any address (Debian's file allows only loopback) and logs each
/// request (its log directory its own: the package leaves it root's, so tinyproxy, which runs
/// as its own user, would log nothing); both services enabled (each container stops the one it does not run).
pub const CUSTOMIZE: &str = r#"set -eu
root="$1"
conf="$root/etc/tinyproxy/tinyproxy.conf"
sed -i -e '/^Allow /d' -e 's/^#\?LogLevel .*/LogLevel Info/' "$conf"
grep -q '^LogLevel Info' "$conf"
grep -q '^Port 8888' "$conf"
chroot "$root" chown tinyproxy:tinyproxy /var/log/tinyproxy
chroot "$root" systemctl enable tinyproxy.service apt-cacher-ng.service
"#;

/// This recipe as text, after the Debian one in what the tag's hash covers.
pub fn recipe() -> String {
    format!(
        "netsvc\npackages {}\ncustomize\n{CUSTOMIZE}",
        PACKAGES.join(",")
    )
}

/// `nodeprep-test:debian-netsvc-<first 12 hex digits of the hash of both recipes>`.
pub fn tag() -> String {
    super::tag_of("debian-netsvc", &super::debian_recipe(), &recipe())
}

/// The tag of the image built from the current recipes: reused when docker has it, otherwise
/// built now with mmdebstrap (a few minutes).
pub fn ensure(sh: &Shell) -> Result<String> {
    let variant = super::Variant {
        packages: PACKAGES,
        essential_hook: None,
        customize: Some(CUSTOMIZE.to_string()),
    };
    super::ensure_variant(sh, tag(), &variant)
}

#[cfg(test)]
mod tests {
    #[test]
    fn tag_is_its_own() {
        let tag = super::tag();
        assert!(tag.starts_with("nodeprep-test:debian-netsvc-"));
        assert_ne!(tag, super::super::hardened::tag());
    }
}
