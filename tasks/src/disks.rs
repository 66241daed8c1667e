//! Stable disk ids. Kubernetes storage (vSphere CSI, local volumes) finds disks through
//! `/dev/disk/by-id`; a VMware VM exposes SCSI serial numbers there only with the VM setting
//! `disk.EnableUUID = TRUE`, which lives outside the guest. From inside, check that every disk
//! has its id and, when one does not, fail with how to fix it. Nothing is ever modified.

use crate::ctx::{Change, Ctx};
use crate::error::{Error, ErrorKind, Result};
use crate::reads::Reads;

pub const SYS_VENDOR: &str = "/sys/class/dmi/id/sys_vendor";

/// What these tasks read (see [`crate::plan::Reads`]).
pub const READS: Reads = Reads::files(&[SYS_VENDOR]).queries(&[&LIST]);

/// The disk listing, asked in the probe (recorded hosts answer it in `State::answers`).
pub const LIST: [&str; 3] = ["sh", "-c", LIST_SCRIPT];

/// Lists the physical disks (`disk NAME`) and the by-id links (`id LINK TARGET`).
const LIST_SCRIPT: &str = r#"export LC_ALL=C
for d in /sys/block/*; do
  n=${d##*/}
  [ -e "$d/device" ] || continue
  case $n in loop*|ram*|zram*|sr*|fd*|dm-*|md*|nbd*) continue;; esac
  echo "disk $n"
done
for l in /dev/disk/by-id/*; do
  [ -L "$l" ] || continue
  t=$(readlink -f -- "$l")
  echo "id ${l##*/} ${t##*/}"
done
"#;

/// What the host said about its disks.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Disks {
    /// Whole physical disks (sda, vdb, nvme0n1).
    pub disks: Vec<String>,
    /// by-id link name → the device it points to.
    pub ids: Vec<(String, String)>,
}

pub fn parse_listing(text: &str) -> Disks {
    let mut d = Disks::default();
    for line in text.lines() {
        let w: Vec<&str> = line.split_whitespace().collect();
        match w.as_slice() {
            ["disk", name] => d.disks.push(name.to_string()),
            ["id", link, target] => d.ids.push((link.to_string(), target.to_string())),
            _ => {}
        }
    }
    d
}

/// The disks lacking a stable id: none in by-id at all, or, in a VMware VM, a SCSI disk
/// without the `scsi-36000c29…` (`wwn-0x6000c29…`) id that disk.EnableUUID gives it.
pub fn missing_ids(d: &Disks, vmware: bool) -> Vec<String> {
    d.disks
        .iter()
        .filter(|disk| {
            let mut ids = d
                .ids
                .iter()
                .filter(|(_, t)| t == *disk)
                .map(|(l, _)| l.as_str());
            if vmware && disk.starts_with("sd") {
                !ids.any(|l| l.starts_with("scsi-36000c29") || l.starts_with("wwn-0x6000c29"))
            } else {
                ids.next().is_none()
            }
        })
        .cloned()
        .collect()
}

/// What [`disk_ids`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DiskIds {
    /// Every disk has its id.
    Stable,
    /// Cannot be told here, and why.
    Skipped(String),
    /// Disks without an id: their names, the fix, and whether only someone outside the host
    /// can apply it (a VMware VM's `disk.EnableUUID`).
    Missing {
        disks: Vec<String>,
        fix: String,
        operator: bool,
    },
}

impl DiskIds {
    /// What is wrong, without the fix.
    pub fn reason(disks: &[String]) -> String {
        format!(
            "no stable id in /dev/disk/by-id for {} (Kubernetes storage needs them)",
            disks.join(", ")
        )
    }
}

/// Whether every disk has a stable id in `/dev/disk/by-id` (read-only; shared by the step
/// and `verify`). Skipped inside a container (its disks belong to the container's host).
pub fn disk_ids(cx: &mut Ctx) -> Result<DiskIds> {
    if let Some(c) = &cx.facts().container {
        return Ok(DiskIds::Skipped(format!(
            "inside a container ({c}) the disks belong to the container's host"
        )));
    }
    let vendor = cx
        .file(SYS_VENDOR)?
        .map(|f| f.text().trim().to_string())
        .unwrap_or_default();
    let vmware = vendor.starts_with("VMware");
    let disks = parse_listing(&cx.query_once(&LIST)?);
    if disks.disks.is_empty() {
        return Ok(DiskIds::Skipped("no physical disk under /sys/block".into()));
    }
    let missing = missing_ids(&disks, vmware);
    if missing.is_empty() {
        return Ok(DiskIds::Stable);
    }
    let fix = if vmware {
        format!(
            "this VMware VM needs disk.EnableUUID = TRUE: power the VM off, then in the vSphere Client: \
             VM > Edit Settings > VM Options > Advanced > Edit Configuration Parameters > Add parameter \
             `disk.EnableUUID` = `TRUE` (or `govc vm.change -vm {} -e disk.enableUUID=TRUE`), and power it on again",
            cx.host_name()
        )
    } else {
        "give each disk a serial number in the hypervisor (e.g. libvirt `<serial>` / QEMU `serial=` for virtio \
         disks) so that udev creates its /dev/disk/by-id link"
            .to_string()
    };
    Ok(DiskIds::Missing {
        disks: missing,
        fix,
        operator: vmware,
    })
}

/// Every disk has a stable id in `/dev/disk/by-id`. When one does not, fails with the fix:
/// in a VMware VM with kind [`ErrorKind::Operator`] (only vCenter can set `disk.EnableUUID`,
/// with the VM powered off: a warning the run goes on after, not a failure of the host),
/// elsewhere with kind Invalid. Skipped inside a container (its disks belong to the
/// container's host).
pub fn stable_disk_ids(cx: &mut Ctx) -> Result<Change> {
    match disk_ids(cx)? {
        DiskIds::Stable => Ok(Change::Unchanged),
        DiskIds::Skipped(why) => Ok(Change::Skipped(why)),
        DiskIds::Missing {
            disks,
            fix,
            operator,
        } => {
            let kind = if operator {
                ErrorKind::Operator
            } else {
                ErrorKind::Invalid
            };
            Err(Error::new(
                kind,
                format!("{}: {fix}", DiskIds::reason(&disks)),
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ctx::Mode;
    use crate::host::Output;
    use crate::testing::Fixture;

    const VMWARE_OK: &str = "disk sda\ndisk sdb\nid scsi-36000c2946e5d1c3b0b3e0e9f6a1b2c3d sda\nid scsi-36000c2946e5d1c3b0b3e0e9f6a1b2c3d-part1 sda1\nid wwn-0x6000c2946e5d1c3b0b3e0e9f6a1b2c3d sda\nid scsi-36000c29aaaabbbbccccddddeeeeffff0 sdb\nid ata-VMware_Virtual_SATA_CDRW_Drive_00000000000000000001 sr0\n";
    const VMWARE_NO_UUID: &str =
        "disk sda\ndisk sdb\nid ata-VMware_Virtual_SATA_CDRW_Drive_00000000000000000001 sr0\n";

    fn reply(stdout: &str) -> Output {
        Output {
            status: Some(0),
            stdout: stdout.as_bytes().to_vec(),
            stderr: Vec::new(),
        }
    }

    #[test]
    fn listing_parsed() {
        let d = parse_listing(VMWARE_OK);
        assert_eq!(d.disks, vec!["sda", "sdb"]);
        assert_eq!(d.ids.len(), 5);
        assert!(missing_ids(&d, true).is_empty());
        assert_eq!(
            missing_ids(&parse_listing(VMWARE_NO_UUID), true),
            vec!["sda", "sdb"]
        );
        // A VMware SCSI disk with some other id (e.g. a passthrough disk's serial) still lacks the UUID one.
        assert_eq!(
            missing_ids(&parse_listing("disk sda\nid scsi-SATA_Foo_123 sda\n"), true),
            vec!["sda"]
        );
        assert!(missing_ids(&parse_listing("disk vda\nid virtio-abc123 vda\n"), false).is_empty());
        assert_eq!(
            missing_ids(
                &parse_listing("disk vda\ndisk vdb\nid virtio-abc vda\n"),
                false
            ),
            vec!["vdb"]
        );
    }

    #[test]
    fn vmware_without_enable_uuid_fails_with_the_fix() {
        let (mut cx, rec) = Fixture::photon()
            .file(SYS_VENDOR, "VMware, Inc.\n", 0o444)
            .ctx(Mode::Apply);
        rec.reply("sh -c", reply(VMWARE_NO_UUID));
        let e = stable_disk_ids(&mut cx).unwrap_err();
        // Only vCenter can fix it: the operator's, not the host's failure.
        assert_eq!(e.kind(), ErrorKind::Operator);
        let msg = e.message();
        assert!(
            msg.starts_with("no stable id in /dev/disk/by-id for sda, sdb"),
            "{msg}"
        );
        assert!(msg.contains("power the VM off"), "{msg}");
        assert!(msg.contains("`disk.EnableUUID` = `TRUE`"), "{msg}");
        assert!(
            msg.contains("govc vm.change -vm fixture -e disk.enableUUID=TRUE"),
            "{msg}"
        );
        assert!(cx.actions().is_empty());
    }

    #[test]
    fn other_hypervisors() {
        let (mut cx, rec) = Fixture::debian()
            .file(SYS_VENDOR, "QEMU\n", 0o444)
            .ctx(Mode::Apply);
        rec.reply("sh -c", reply("disk vda\n"));
        let e = stable_disk_ids(&mut cx).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Invalid);
        assert!(
            e.message().contains("serial number in the hypervisor"),
            "{e}"
        );
        let (mut cx, rec) = Fixture::debian().absent(SYS_VENDOR).ctx(Mode::Apply);
        rec.reply("sh -c", reply(""));
        assert!(matches!(
            stable_disk_ids(&mut cx).unwrap(),
            Change::Skipped(_)
        ));
    }

    #[test]
    fn container_skipped() {
        let (mut cx, rec) = Fixture::debian().in_container().ctx(Mode::Apply);
        let c = stable_disk_ids(&mut cx).unwrap();
        assert!(
            matches!(&c, Change::Skipped(why) if why.contains("container (docker)")),
            "{c:?}"
        );
        assert!(rec.commands().is_empty());
    }

    #[test]
    fn no_change() {
        let (mut cx, rec) = Fixture::photon()
            .file(SYS_VENDOR, "VMware, Inc.\n", 0o444)
            .ctx(Mode::Apply);
        rec.reply("sh -c", reply(VMWARE_OK));
        assert_eq!(stable_disk_ids(&mut cx).unwrap(), Change::Unchanged);
        assert!(cx.actions().is_empty());
        assert_eq!(rec.commands().len(), 1, "one read-only listing");
    }

    #[test]
    fn check_mode_same_answer() {
        // A read-only check: check mode asks the same question and fails the same way.
        let (mut cx, rec) = Fixture::photon()
            .file(SYS_VENDOR, "VMware, Inc.\n", 0o444)
            .ctx(Mode::Check);
        rec.reply("sh -c", reply(VMWARE_NO_UUID));
        assert!(stable_disk_ids(&mut cx).is_err());
        assert!(cx.actions().is_empty());
    }
}
