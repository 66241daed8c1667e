//! cloud-init beside a static network. Photon OS's minimal install carries cloud-init, and
//! Photon's ds-identify patch (0002-Change-default-policy) lets it run when no datasource is
//! found. Its networkd renderer writes `/etc/systemd/network/10-cloud-init-<link>.network`,
//! which sorts before nodeprep's `10-static-en.network`: systemd-networkd then configures the
//! link from cloud-init's file and the static address silently loses.
//!
//! Steps, where nodeprep manages the host's network (before "network file"):
//! - "cloud-init network off" ([`network_config_disabled`]): where cloud-init is installed,
//!   the drop-in [`DROP_IN`] (`network: {config: disabled}`) keeps it from writing network
//!   configuration at the next boots;
//! - "cloud-init network file removed" ([`network_file_removed`]): cloud-init's file for the
//!   managed interface is removed, backed up first like any replaced file, the removal shown
//!   in the step's actions, its diff and a progress line.
//!
//! cloud-init names its file after the link of its network configuration, which is the
//! interface its `[Match]` names: the file for another interface does not shadow this one.

use crate::ctx::{Change, Ctx};
use crate::error::{Error, Result};
use crate::file::{self, Perm};
use crate::network::NETWORK_FILE;
use crate::reads::Reads;

/// cloud-init's main configuration (present where it is installed).
pub const CLOUD_CFG: &str = "/etc/cloud/cloud.cfg";
/// The drop-in that turns cloud-init's network configuration off.
pub const DROP_IN: &str = "/etc/cloud/cloud.cfg.d/99-disable-network-config.cfg";
/// Its contents.
pub const DROP_IN_TEXT: &str = "# Managed by nodeprep: this host's network is nodeprep's static file.\nnetwork: {config: disabled}\n";

/// What these tasks read (see [`crate::plan::Reads`]); cloud-init's file for the interface is
/// named after it: [`network_file`].
pub const READS: Reads = Reads::files(&[CLOUD_CFG, DROP_IN]);

/// The file cloud-init's networkd renderer writes for `interface`.
pub fn network_file(interface: &str) -> String {
    format!("/etc/systemd/network/10-cloud-init-{interface}.network")
}

/// cloud-init is installed: its package, or its configuration (an install from source).
pub fn installed(cx: &mut Ctx) -> Result<bool> {
    Ok(cx.file(CLOUD_CFG)?.is_some() || cx.packages()?.contains_key("cloud-init"))
}

/// Step "cloud-init network off": [`DROP_IN`], 0644 root:root, where cloud-init is installed.
pub fn network_config_disabled(cx: &mut Ctx) -> Result<Change> {
    if !installed(cx)? {
        return Ok(Change::Skipped("cloud-init is not installed".into()));
    }
    file::content(cx, DROP_IN, DROP_IN_TEXT, Perm::CONFIG)
}

/// Step "cloud-init network file removed": cloud-init's file for `interface` (which would
/// shadow [`NETWORK_FILE`]) is removed, with a backup.
pub fn network_file_removed(cx: &mut Ctx, interface: &str) -> Result<Change> {
    if interface.is_empty() || interface.contains(['/', '\n']) {
        return Err(Error::invalid(format!(
            "invalid interface name {interface:?}"
        )));
    }
    let path = network_file(interface);
    let c = file::absent(cx, &path)?;
    if c.changed() {
        let why = format!(
            "{path}, written by cloud-init, sorts before {NETWORK_FILE} and would configure {interface} instead of it"
        );
        cx.progress_doing_or_would(
            format!("{why}: removed (backed up under /var/backups/nodeprep)"),
            format!("{why}: would be removed (backed up under /var/backups/nodeprep)"),
        );
    }
    Ok(c)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    use crate::ctx::{Mode, Options};
    use crate::network::{self, StaticNetwork};
    use crate::testing::Recorder;
    use crate::testing::{Fixture, actions as strings};

    /// Photon OS 5.0's /etc/cloud/cloud.cfg (cloud-init 25.1-1, x86_64).
    const PHOTON_CLOUD_CFG: &str = include_str!("../tests/data/photon/cloud.cfg");

    /// What cloud-init's networkd renderer leaves for eth0 on a DHCP datasource.
    const CLOUD_INIT_ETH0: &str = "[Match]\nName=eth0\n\n[Network]\nDHCP=ipv4\n";

    /// A Photon minimal install: cloud-init 25.1 is one of the `minimal` metapackage's
    /// Requires (minimal-packages.txt), its cloud.cfg in place.
    fn photon() -> Fixture {
        Fixture::photon()
            .packages(&[("cloud-init", "25.1-1.ph5")])
            .file(CLOUD_CFG, PHOTON_CLOUD_CFG, 0o644)
            .absent(DROP_IN)
            .absent(network::NETWORK_FILE)
    }

    fn net() -> StaticNetwork<'static> {
        StaticNetwork {
            interface: "eth0",
            address_cidr: "192.168.10.57/24",
            gateway: Some("192.168.10.1"),
            dns: &[],
        }
    }

    /// The drop-in is written, cloud-init's file removed, then the static file written; the
    /// second run changes nothing.
    #[test]
    fn photon_cloud_init_network_off_and_its_file_removed() {
        let f = photon().file(&network_file("eth0"), CLOUD_INIT_ETH0, 0o644);
        // Backups on, as the runner has them.
        let rec = Arc::new(Recorder::new("fixture"));
        let opts = Options {
            backup: true,
            ..Options::default()
        };
        let mut cx = Ctx::with_state(Box::new(rec.clone()), f.facts, f.state, opts);
        assert_eq!(network_config_disabled(&mut cx).unwrap(), Change::Changed);
        assert_eq!(
            network_file_removed(&mut cx, "eth0").unwrap(),
            Change::Changed
        );
        assert_eq!(
            network::network_file(&mut cx, &net()).unwrap(),
            Change::Changed
        );
        assert_eq!(
            strings(&cx),
            [
                "write /etc/cloud/cloud.cfg.d/99-disable-network-config.cfg 0644 root:root",
                "remove /etc/systemd/network/10-cloud-init-eth0.network",
                "write /etc/systemd/network/10-static-en.network 0644 root:root",
            ]
        );
        let drop_in = cx.file(DROP_IN).unwrap().unwrap();
        assert!(
            drop_in
                .text()
                .lines()
                .any(|l| l == "network: {config: disabled}"),
            "{}",
            drop_in.text()
        );
        // The removal kept a copy, as a replaced file's.
        let sent: Vec<String> = rec.commands().iter().map(|c| c.display()).collect();
        let sent = sent.join("\n");
        assert!(
            sent.contains("/var/backups/nodeprep/etc/systemd/network/10-cloud-init-eth0.network."),
            "{sent}"
        );
        let before = cx.actions().len();
        assert_eq!(network_config_disabled(&mut cx).unwrap(), Change::Unchanged);
        assert_eq!(
            network_file_removed(&mut cx, "eth0").unwrap(),
            Change::Unchanged
        );
        assert_eq!(cx.actions().len(), before);
    }

    /// Check mode: the removal is shown (action and diff), nothing is sent.
    #[test]
    fn check_mode_shows_the_removal() {
        let (mut cx, rec) = photon()
            .file(&network_file("eth0"), CLOUD_INIT_ETH0, 0o644)
            .ctx(Mode::Check);
        let c = cx
            .step("cloud-init network file removed", |cx| {
                network_file_removed(cx, "eth0")
            })
            .unwrap();
        assert_eq!(c, Change::Changed);
        let record = &cx.records()[0];
        assert_eq!(
            record.actions[0].to_string(),
            "remove /etc/systemd/network/10-cloud-init-eth0.network"
        );
        assert!(record.diffs[0].contains("-DHCP=ipv4"), "{:?}", record.diffs);
        assert!(rec.commands().is_empty(), "{:?}", rec.commands());
    }

    /// cloud-init's file for another interface is not this interface's: left alone.
    #[test]
    fn another_interfaces_file_is_left() {
        let (mut cx, _rec) = photon()
            .file(&network_file("eth1"), CLOUD_INIT_ETH0, 0o644)
            .absent(&network_file("eth0"))
            .ctx(Mode::Apply);
        assert_eq!(
            network_file_removed(&mut cx, "eth0").unwrap(),
            Change::Unchanged
        );
        assert!(cx.actions().is_empty());
    }

    #[test]
    fn without_cloud_init_nothing_is_written() {
        let (mut cx, _rec) = Fixture::photon()
            .without_packages(&["cloud-init"])
            .absent(CLOUD_CFG)
            .absent(DROP_IN)
            .ctx(Mode::Apply);
        assert!(matches!(
            network_config_disabled(&mut cx).unwrap(),
            Change::Skipped(r) if r.contains("not installed")
        ));
        assert!(cx.actions().is_empty());
    }
}
