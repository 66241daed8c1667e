//! The hardened test image: the Debian image (same suite, packages and customization) with
//! the traits of a fresh Photon OS 5.0 minimal install that do not depend on tdnf, each taken
//! from a file of Photon's (copied under `tasks/tests/data/photon`, from `../shared/photon`):
//!
//! - **sshd** as Photon's `sshd_config` has it: `PermitRootLogin no`, passwords accepted
//!   (`PasswordAuthentication` left at OpenSSH's default there, yes), `MaxAuthTries 4`, no
//!   agent or TCP forwarding. The Debian image's drop-in (root by key) is replaced.
//! - **sudo** asking the member's own password: Debian's `/etc/sudoers` has
//!   `%sudo ALL=(ALL:ALL) ALL`, the rule Photon's has for `%wheel` (and `%sudo`); the build
//!   checks that no rule anywhere says NOPASSWD. No admin user: Photon's installer creates only
//!   root, the admin is made at the console (the tests do it with `docker exec`).
//! - **A firewall service loading default-DROP rules**: Debian's iptables-persistent
//!   (netfilter-persistent.service, enabled) with `/etc/iptables/rules.v4` and `rules.v6`
//!   byte for byte Photon's `ip4save` and `ip6save`: INPUT and FORWARD dropped, loopback,
//!   replies and ssh (TCP 22) accepted. The lab reaches port 22 through docker's published
//!   port, which the rules keep open, as they keep docker's DNS on loopback.
//! - **cloud-init installed** (Debian's package: `/etc/cloud/cloud.cfg`, its units), with the
//!   network configuration a datasource would give (DHCP on eth0, in `cloud.cfg.d`) and the
//!   file its networkd renderer writes from it, `/etc/systemd/network/10-cloud-init-eth0.network`
//!   (owned by systemd-network, as `cloudinit/net/networkd.py` makes it), which sorts before
//!   nodeprep's static file. cloud-init itself does not run in the containers
//!   (`/etc/cloud/cloud-init.disabled`): run, it would regenerate sshd's host keys under the
//!   lab's pinned ones and take the container's hostname and users as a first boot does.
//!   Neither does systemd-networkd (not enabled on Debian): the file is there to be found.
//!
//! - **`/etc/protocols` not netbase's**: Photon's comes from iana-etc, generated from IANA's
//!   registry (vmware/photon `SPECS/iana-etc/iana-etc.spec`; tasks/tests/data/photon/README.md),
//!   whose keyword for protocol 4 is IANA's `IPv4`, lowercased: `ipv4`, where Debian's netbase
//!   says `ipencap`. The image takes Debian's file with that one line replaced
//!   ([`PROTOCOL_4`]), so that `iptables -S` lists an IP-in-IP rule as `-p ipv4` as on Photon
//!   (Photon's exact file is built from a tarball outside vmware/photon and cannot be copied).
//!
//! Plus `socat`, which the tests use to listen and send across the lab's network.
//!
//! Its tag is `nodeprep-test:debian-hardened-<hash>`, the hash covering the Debian recipe and
//! this one.

use anyhow::Result;
use xshell::Shell;

/// Packages on top of the Debian image's.
pub const PACKAGES: &[&str] = &["iptables", "iptables-persistent", "cloud-init", "socat"];

/// Photon OS 5.0's IPv4 rules (`/etc/systemd/scripts/ip4save`, iptables 1.8.9-4).
pub const IP4SAVE: &str = include_str!("../../../../tasks/tests/data/photon/ip4save");
/// Photon OS 5.0's IPv6 rules (`/etc/systemd/scripts/ip6save`).
pub const IP6SAVE: &str = include_str!("../../../../tasks/tests/data/photon/ip6save");

/// Protocol 4's line in the image's `/etc/protocols`, as an IANA-generated file has it (in place
/// of netbase's `ipencap\t4\tIP-ENCAP\t# IP encapsulated in IP (officially ``IP'')`).
pub const PROTOCOL_4: &str = "ipv4\t4\tIPv4\t\t# IPv4 encapsulation";

/// The file cloud-init's networkd renderer writes for eth0 from `DATASOURCE_NETWORK`:
/// sections and keys sorted, as `CfgParser.get_final_conf` writes them.
pub const CLOUD_INIT_NETWORK_FILE: &str = "/etc/systemd/network/10-cloud-init-eth0.network";
const CLOUD_INIT_NETWORK: &str = "[Match]\nName=eth0\n\n[Network]\nDHCP=ipv4\n\n";

/// A datasource's network configuration (as VMware's guestinfo gives one), in `cloud.cfg.d`.
const DATASOURCE_NETWORK: &str = "# The network configuration a datasource gives: DHCP on eth0.
network:
  version: 2
  ethernets:
    eth0:
      dhcp4: true
";

/// Photon's sshd settings (`/etc/ssh/sshd_config`, openssh 9.3p2, its active lines but the
/// ones Debian's file already has), passwords explicitly on (Debian's file turns
/// keyboard-interactive off), and the lab's `UseDNS no`.
pub const SSHD_CONF: &str = "PermitRootLogin no
PasswordAuthentication yes
KbdInteractiveAuthentication yes
MaxAuthTries 4
AllowAgentForwarding no
AllowTcpForwarding no
TCPKeepAlive no
Compression no
ClientAliveCountMax 2
UseDNS no
";

/// Run by mmdebstrap before the packages other than the essential ones are installed:
/// iptables-persistent's postinst saves nothing (its question's default is to save the rules
/// of the machine that builds the image).
pub const ESSENTIAL: &str = r#"set -eu
printf '%s\n' \
    'iptables-persistent iptables-persistent/autosave_v4 boolean false' \
    'iptables-persistent iptables-persistent/autosave_v6 boolean false' \
    | chroot "$1" debconf-set-selections
"#;

/// Run by mmdebstrap after the Debian image's customization, with the rootfs as `$1`.
pub fn customize() -> String {
    format!(
        r#"set -eu
root="$1"

# sshd as Photon's: root refused, passwords accepted. Replaces the lab's root-by-key drop-in.
rm -f "$root/etc/ssh/sshd_config.d/10-nodeprep-test.conf"
cat > "$root/etc/ssh/sshd_config.d/10-photon.conf" <<'EOF'
{SSHD_CONF}EOF
chroot "$root" sh -c 'mkdir -p /run/sshd && /usr/sbin/sshd -t'

# sudo asks the member's own password: Debian's rule for the sudo group, and no NOPASSWD.
grep -Eq '^%sudo[[:space:]]+ALL=\(ALL:ALL\) ALL$' "$root/etc/sudoers"
if grep -rqs NOPASSWD "$root/etc/sudoers" "$root/etc/sudoers.d"; then
    echo "a sudoers rule says NOPASSWD" >&2
    exit 1
fi

# Photon's default-DROP rules, restored at boot by netfilter-persistent.
install -d -m 755 "$root/etc/iptables"
cat > "$root/etc/iptables/rules.v4" <<'EOF'
{IP4SAVE}EOF
cat > "$root/etc/iptables/rules.v6" <<'EOF'
{IP6SAVE}EOF
chmod 0640 "$root/etc/iptables/rules.v4" "$root/etc/iptables/rules.v6"
chroot "$root" systemctl enable netfilter-persistent.service

# /etc/protocols naming protocol 4 as IANA does (Photon's iana-etc), not as netbase does.
protocols="$root/etc/protocols"
grep -q '^ipencap[[:space:]]\+4[[:space:]]' "$protocols"
awk -v line='{PROTOCOL_4}' '$1 == "ipencap" && $2 == "4" {{ print line; next }} {{ print }}' \
    "$protocols" > "$protocols.new"
mv "$protocols.new" "$protocols"
chmod 0644 "$protocols"
grep -q '^ipv4[[:space:]]\+4[[:space:]]' "$protocols"
if grep -q '^ipencap[[:space:]]' "$protocols"; then
    echo "/etc/protocols still names protocol 4 ipencap" >&2
    exit 1
fi

# cloud-init: a datasource's network configuration and the file rendered from it, which sorts
# before nodeprep's static file; cloud-init kept from running in the containers.
test -f "$root/etc/cloud/cloud.cfg"
cat > "$root/etc/cloud/cloud.cfg.d/50-datasource-network.cfg" <<'EOF'
{DATASOURCE_NETWORK}EOF
install -d -m 755 "$root/etc/systemd/network"
cat > "$root{CLOUD_INIT_NETWORK_FILE}" <<'EOF'
{CLOUD_INIT_NETWORK}EOF
chroot "$root" chown systemd-network:systemd-network {CLOUD_INIT_NETWORK_FILE}
: > "$root/etc/cloud/cloud-init.disabled"
"#
    )
}

/// This recipe as text, after the Debian one in what the tag's hash covers.
pub fn recipe() -> String {
    format!(
        "hardened\npackages {}\nessential\n{ESSENTIAL}customize\n{}",
        PACKAGES.join(","),
        customize()
    )
}

/// `nodeprep-test:debian-hardened-<first 12 hex digits of the hash of both recipes>`.
pub fn tag() -> String {
    super::tag_of("debian-hardened", &super::debian_recipe(), &recipe())
}

/// The tag of the hardened image built from the current recipes: reused when docker has it,
/// otherwise built now with mmdebstrap (a few minutes).
pub fn ensure(sh: &Shell) -> Result<String> {
    let variant = super::Variant {
        packages: PACKAGES,
        essential_hook: Some(ESSENTIAL),
        customize: Some(customize()),
    };
    super::ensure_variant(sh, tag(), &variant)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tag_differs_from_the_plain_image_and_is_stable() {
        let tag = tag();
        let hex = tag.strip_prefix("nodeprep-test:debian-hardened-").unwrap();
        assert_eq!(hex.len(), 12);
        assert_ne!(tag, super::super::recipe_tag(super::super::Base::Debian));
        assert_eq!(tag, self::tag());
    }

    #[test]
    fn rules_are_photons_default_drop_with_ssh_open() {
        for rules in [IP4SAVE, IP6SAVE] {
            assert!(rules.contains(":INPUT DROP [0:0]\n:FORWARD DROP [0:0]\n"));
            assert!(rules.contains("-A INPUT -p tcp -m tcp --dport 22 -j ACCEPT\n"));
            assert!(
                rules.contains("-A INPUT -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT\n")
            );
        }
        let script = customize();
        assert!(script.contains(IP4SAVE) && script.contains(IP6SAVE));
        assert!(script.contains("PermitRootLogin no\n"));
        assert!(script.contains(&format!("-v line='{PROTOCOL_4}'")));
    }

    #[test]
    fn protocols_line_replaces_netbases_protocol_4() {
        // The image's edit, run on Debian's netbase file (tasks/tests/data/debian/protocols).
        let netbase = include_str!("../../../../tasks/tests/data/debian/protocols");
        assert!(netbase.lines().any(|l| l.starts_with("ipencap\t4\t")));
        let dir = std::env::temp_dir().join(format!("nodeprep-protocols-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("etc")).unwrap();
        std::fs::write(dir.join("etc/protocols"), netbase).unwrap();
        let script = customize();
        let start = script.find("protocols=").unwrap();
        let end = script[start..].find("\nfi\n").unwrap() + start + 4;
        let edit = format!("root=\"$1\"\n{}", &script[start..end]);
        let sh = Shell::new().unwrap();
        xshell::cmd!(sh, "sh -euc {edit} sh {dir}").run().unwrap();
        let edited = std::fs::read_to_string(dir.join("etc/protocols")).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(edited.lines().count(), netbase.lines().count());
        assert!(edited.lines().any(|l| l == PROTOCOL_4));
        assert!(!edited.contains("ipencap"));
    }
}
