//! Host identity: before anything changes on a host, the machine reached proves it is the
//! inventory's host. A mistyped address must not rename and re-address another VM, and
//! `--local --host X` must not prepare this machine as X by mistake.
//!
//! The machine is the inventory's host when, as the probe read it (before any step):
//! - its host name is the inventory name (or its first label is: an FQDN host name), or
//! - one of its addresses is the inventory's address for it: the address of its `network`
//!   table when it has one, else the ssh `address` (a DNS name is resolved on the controller;
//!   loopback addresses prove nothing: every machine has them, and lab hosts and forwarded
//!   ports are all reached on 127.0.0.1). The network address comes first because the ssh
//!   address alone proves little: whatever answers at an address has that address, so a
//!   mistyped `address` leads to a machine that "has" it; the network address is the
//!   inventory's own word on where the host lives, written apart from where ssh goes. Or
//! - its machine-id is the one recorded for that inventory name at an earlier contact.
//!
//! Otherwise it is refused with the reason, and nothing is changed on it (exit code
//! [`EXIT_IDENTITY`](super::report::EXIT_IDENTITY)). `--accept-new-identity` accepts the
//! machine once and records its machine-id, so later runs recognise it.
//!
//! The record is a small TOML file beside the inventory (`inventory.toml` →
//! `inventory.identities.toml`), one machine-id per host, written when an applying run first
//! reaches a host it accepts, and when an accepted host's machine-id changed (a reinstall that
//! kept its name or address). Check runs read it and write nothing. It is replaced atomically
//! (a temporary file in the same folder, renamed over it), under a lock shared by the run's
//! threads.

use std::collections::BTreeMap;
use std::net::{IpAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use anyhow::{Result, anyhow};
use serde::Deserialize;

/// What the probe saw of the machine reached.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Seen {
    /// The kernel's host name.
    pub hostname: String,
    pub addresses: Vec<IpAddr>,
    /// /etc/machine-id, when it holds one (32 hex digits).
    pub machine_id: Option<String>,
}

impl Seen {
    /// From the probe's facts (`hostname`, `addresses`, `machine-id`).
    pub fn from_state(state: &tasks::state::State) -> Seen {
        let facts = &state.facts;
        Seen {
            hostname: facts.hostname.clone().unwrap_or_default(),
            addresses: facts.addresses.clone(),
            machine_id: facts.machine_id.clone().filter(|id| is_machine_id(id)),
        }
    }
}

fn is_machine_id(s: &str) -> bool {
    s.len() == 32 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Why a machine is taken to be the inventory's host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Proof {
    /// Its host name is the inventory name.
    Name,
    /// One of its addresses is the inventory address.
    Address(IpAddr),
    /// Its machine-id is the one recorded for the inventory name.
    MachineId,
    /// None of these; accepted by `--accept-new-identity`.
    Accepted,
}

/// What the inventory says of one host.
#[derive(Debug, Clone, Copy)]
pub struct Claim<'a> {
    /// The inventory name.
    pub name: &'a str,
    /// Where ssh reached it (for messages).
    pub reached_at: &'a str,
    /// The address the inventory gives the host itself (see the module's documentation).
    pub address: &'a str,
}

impl<'a> Claim<'a> {
    /// The claim of an inventory host: its network address when it has a network table, else
    /// its ssh address.
    pub fn of(name: &'a str, host: &'a playbooks::HostEntry) -> Claim<'a> {
        Claim {
            name,
            reached_at: &host.address,
            address: host.cluster_address(),
        }
    }
}

/// The decision for one host: `claim`, the inventory's; `expected`: the claimed address as
/// addresses (parsed, or resolved from a DNS name); `recorded`: the machine-id on record for
/// the name.
pub fn decide(
    claim: Claim,
    expected: &[IpAddr],
    seen: &Seen,
    recorded: Option<&str>,
    accept_new: bool,
) -> Result<Proof, String> {
    let Claim {
        name,
        reached_at,
        address,
    } = claim;
    let short = seen.hostname.split('.').next().unwrap_or("");
    if seen.hostname == name || short == name {
        return Ok(Proof::Name);
    }
    if let Some(ip) = seen
        .addresses
        .iter()
        .find(|a| !a.is_loopback() && !a.is_unspecified() && expected.contains(a))
    {
        return Ok(Proof::Address(*ip));
    }
    if let (Some(r), Some(id)) = (recorded, &seen.machine_id)
        && r == id
    {
        return Ok(Proof::MachineId);
    }
    if accept_new {
        return Ok(Proof::Accepted);
    }
    let addresses: Vec<String> = seen
        .addresses
        .iter()
        .filter(|a| !a.is_loopback())
        .map(|a| a.to_string())
        .collect();
    let id = seen.machine_id.as_deref().unwrap_or("(none)");
    let record = match recorded {
        Some(r) => format!("not the one recorded for {name} ({r})"),
        None => format!("none is recorded for {name}"),
    };
    Err(format!(
        "refusing to touch the machine reached at {reached_at}: it is not {name} as the inventory knows it. \
         Its host name is {:?}, not {name:?}; none of its addresses ({}) is {address}; its machine-id is {id}, and {record}. \
         Nothing was changed on it. If the address is right and this is {name} (reinstalled, renamed, or reached \
         through a forwarded port), run again with --accept-new-identity to record it; otherwise fix {name}'s address \
         in the inventory",
        seen.hostname,
        if addresses.is_empty() {
            "none but loopback".to_string()
        } else {
            addresses.join(", ")
        }
    ))
}

/// The inventory address as addresses: itself when it is one, else what it resolves to on the
/// controller (nothing when it does not resolve: then it proves nothing).
pub fn expected_addresses(address: &str) -> Vec<IpAddr> {
    if let Ok(ip) = address.trim_matches(['[', ']']).parse::<IpAddr>() {
        return vec![ip];
    }
    (address, 22)
        .to_socket_addrs()
        .map(|it| it.map(|a| a.ip()).collect())
        .unwrap_or_default()
}

/// The identity record beside inventory `path`.
pub fn state_path(inventory: &Path) -> PathBuf {
    inventory.with_extension("identities.toml")
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct StateFile {
    #[serde(default)]
    hosts: BTreeMap<String, Entry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    machine_id: String,
}

/// Reads a record file: inventory name → machine-id. An absent file is an empty record.
pub fn load(path: &Path) -> Result<BTreeMap<String, String>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(BTreeMap::new()),
        Err(e) => return Err(anyhow!("{}: {e}", path.display())),
    };
    let file: StateFile = toml::from_str(&text).map_err(|e| {
        anyhow!(
            "{}: {} (nodeprep's record of host identities; fix or delete it)",
            path.display(),
            e.message()
        )
    })?;
    for (name, entry) in &file.hosts {
        if !is_machine_id(&entry.machine_id) {
            return Err(anyhow!(
                "{}: hosts.{name}.machine_id: `{}` is not a machine-id (32 hex digits)",
                path.display(),
                entry.machine_id.escape_debug()
            ));
        }
    }
    Ok(file
        .hosts
        .into_iter()
        .map(|(k, v)| (k, v.machine_id))
        .collect())
}

/// The text of a record file.
pub fn render(records: &BTreeMap<String, String>) -> String {
    let mut s = String::from(
        "# nodeprep's record of host identities: the machine-id of each inventory host, written when\n\
         # a run first reached it. A machine whose host name and addresses are not the inventory's is\n\
         # recognised by it. After a reinstall, delete the host's table or run once with\n\
         # --accept-new-identity.\n",
    );
    for (name, id) in records {
        s.push_str(&format!("\n[hosts.{name}]\nmachine_id = \"{id}\"\n"));
    }
    s
}

/// Writes a record file atomically: a temporary file in its folder, renamed over it.
pub fn save(path: &Path, records: &BTreeMap<String, String>) -> Result<()> {
    use std::io::Write;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let mut tmp = tempfile::Builder::new()
        .prefix(".nodeprep-identities.")
        .tempfile_in(dir)
        .map_err(|e| anyhow!("{}: {e}", dir.display()))?;
    tmp.write_all(render(records).as_bytes())?;
    tmp.as_file().sync_all()?;
    {
        use std::os::unix::fs::PermissionsExt;
        tmp.as_file()
            .set_permissions(std::fs::Permissions::from_mode(0o644))?;
    }
    tmp.persist(path)
        .map_err(|e| anyhow!("{}: {}", path.display(), e.error))?;
    Ok(())
}

/// The identity check of a run: the record, and what the run may do with it.
#[derive(Debug)]
pub struct Book {
    /// Where the record lives; `None` when there is no inventory file to keep it beside.
    path: Option<PathBuf>,
    records: Mutex<BTreeMap<String, String>>,
    /// `--accept-new-identity`.
    accept_new: bool,
    /// An applying run records; a check run only reads.
    write: bool,
}

/// What [`Book::check`] decided, for the run to tell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    pub proof: Proof,
    /// A note for the operator (a new identity recorded, a machine-id replaced).
    pub note: Option<String>,
}

impl Book {
    /// The book of inventory `inventory` (`exists`: the file is there; without one, nothing is
    /// recorded and only names and addresses prove anything).
    pub fn open(inventory: &Path, exists: bool, accept_new: bool, write: bool) -> Result<Book> {
        let path = exists.then(|| state_path(inventory));
        let records = match &path {
            Some(p) => load(p)?,
            None => BTreeMap::new(),
        };
        Ok(Book {
            path,
            records: Mutex::new(records),
            accept_new,
            write,
        })
    }

    /// Decides for `claim` what the probe saw, and records the machine-id of an accepted
    /// host (apply runs). `Err`: the refusal, worded for the operator.
    pub fn check(&self, claim: Claim, seen: &Seen) -> Result<Accepted, String> {
        let name = claim.name;
        let expected = expected_addresses(claim.address);
        let mut records = self.records.lock().unwrap();
        let recorded = records.get(name).cloned();
        let proof = decide(claim, &expected, seen, recorded.as_deref(), self.accept_new)?;
        let mut note = None;
        if proof == Proof::Accepted && seen.machine_id.is_none() {
            note = Some(
                "new identity accepted for this run (the host has no machine-id to record)".into(),
            );
        }
        if let Some(id) = &seen.machine_id
            && recorded.as_deref() != Some(id)
        {
            let file = self
                .path
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_default();
            match (&proof, &recorded) {
                (Proof::Accepted, _) => {
                    note = Some(if self.write && self.path.is_some() {
                        format!("new identity accepted: machine-id {id} recorded in {file}")
                    } else {
                        format!(
                            "new identity accepted for this run (machine-id {id}; not recorded)"
                        )
                    });
                }
                (_, Some(old)) => {
                    note = Some(format!(
                        "machine-id {id} is not the one recorded ({old}), but the {} matches: {}",
                        if proof == Proof::Name {
                            "host name"
                        } else {
                            "address"
                        },
                        if self.write && self.path.is_some() {
                            format!("recorded in {file}")
                        } else {
                            "record left as it is".into()
                        }
                    ));
                }
                (_, None) => {}
            }
            if self.write
                && let Some(path) = &self.path
            {
                records.insert(name.to_string(), id.clone());
                if let Err(e) = save(path, &records) {
                    // The host is the inventory's; only the record is lost. Said, not fatal.
                    tracing::warn!("{name}: cannot record its machine-id: {e:#}");
                } else {
                    tracing::info!("{name}: machine-id {id} recorded in {}", path.display());
                }
            }
        }
        Ok(Accepted { proof, note })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "0123456789abcdef0123456789abcdef";
    const OTHER: &str = "fedcba9876543210fedcba9876543210";

    fn seen(hostname: &str, addresses: &[&str], id: Option<&str>) -> Seen {
        Seen {
            hostname: hostname.into(),
            addresses: addresses.iter().map(|a| a.parse().unwrap()).collect(),
            machine_id: id.map(String::from),
        }
    }

    fn ip(a: &str) -> Vec<IpAddr> {
        vec![a.parse().unwrap()]
    }

    fn claim<'a>(name: &'a str, address: &'a str) -> Claim<'a> {
        Claim {
            name,
            reached_at: address,
            address,
        }
    }

    /// Every row of the decision: name, address, machine-id, the flag; loopback proves nothing.
    #[test]
    fn decision_table() {
        let w = "prdk8swok501";
        let addr = "192.168.10.57";
        let it = |s: &Seen, rec: Option<&str>, accept: bool| {
            decide(claim(w, addr), &ip(addr), s, rec, accept)
        };
        let lan = ["127.0.0.1", "192.168.10.57"];
        let elsewhere = ["127.0.0.1", "192.168.10.99"];
        assert_eq!(it(&seen(w, &elsewhere, None), None, false), Ok(Proof::Name));
        assert_eq!(
            it(
                &seen("prdk8swok501.example.lan", &elsewhere, None),
                None,
                false
            ),
            Ok(Proof::Name)
        );
        assert_eq!(
            it(&seen("photon-a1b2c3", &lan, None), None, false),
            Ok(Proof::Address(addr.parse().unwrap()))
        );
        assert_eq!(
            it(
                &seen("photon-a1b2c3", &elsewhere, Some(ID)),
                Some(ID),
                false
            ),
            Ok(Proof::MachineId)
        );
        // Nothing matches: refused, unless accepted.
        let stranger = seen("prdk8swok502", &elsewhere, Some(ID));
        assert!(it(&stranger, None, false).is_err());
        assert!(it(&stranger, Some(OTHER), false).is_err());
        assert_eq!(it(&stranger, Some(OTHER), true), Ok(Proof::Accepted));
        assert_eq!(it(&stranger, None, true), Ok(Proof::Accepted));
        // No machine-id on the host: a record cannot match.
        assert!(it(&seen("x", &elsewhere, None), Some(ID), false).is_err());
        // Loopback proves nothing, even when the inventory says 127.0.0.1 (lab, forwarded port).
        assert!(
            decide(
                claim(w, "127.0.0.1"),
                &ip("127.0.0.1"),
                &stranger,
                None,
                false
            )
            .is_err(),
            "every machine has 127.0.0.1"
        );
        // IPv6.
        assert_eq!(
            decide(
                claim(w, "fd00::57"),
                &ip("fd00::57"),
                &seen("x", &["::1", "fd00::57"], None),
                None,
                false
            ),
            Ok(Proof::Address("fd00::57".parse().unwrap()))
        );
    }

    /// The seed's typo: prdinfhap511's ssh address mistyped as prdk8swok511's. The machine
    /// reached has that address, of course; its network address is what tells. (Without
    /// `management_address` the inventory check itself refuses the two addresses differing.)
    #[test]
    fn a_mistyped_ssh_address_is_caught_by_the_network_address() {
        let inv = playbooks::Inventory::parse(
            "[hosts.prdinfhap511]\nrole = \"haproxy\"\naddress = \"192.168.5.57\"\n\
             management_address = true\n\
             network = { address = \"192.168.5.45/24\" }\n\n\
             [hosts.prdk8swok599]\nrole = \"k8s-worker\"\naddress = \"192.168.5.99\"\n",
            Path::new("inventory.toml"),
        )
        .unwrap();
        let c = Claim::of("prdinfhap511", &inv.hosts["prdinfhap511"]);
        assert_eq!((c.reached_at, c.address), ("192.168.5.57", "192.168.5.45"));
        let worker = seen("prdk8swok511", &["192.168.5.57"], Some(ID));
        let e = decide(c, &expected_addresses(c.address), &worker, None, false).unwrap_err();
        assert!(
            e.contains("reached at 192.168.5.57")
                && e.contains("none of its addresses (192.168.5.57) is 192.168.5.45"),
            "{e}"
        );
        // Without a network table the ssh address is all the inventory says.
        let c = Claim::of("prdk8swok599", &inv.hosts["prdk8swok599"]);
        assert_eq!(c.address, "192.168.5.99");
    }

    #[test]
    fn a_refusal_says_why_and_what_to_do() {
        let e = decide(
            claim("prdk8swok501", "192.168.10.57"),
            &ip("192.168.10.57"),
            &seen("prdk8swok502", &["127.0.0.1", "192.168.10.58"], Some(ID)),
            Some(OTHER),
            false,
        )
        .unwrap_err();
        for part in [
            "refusing to touch the machine reached at 192.168.10.57",
            "Its host name is \"prdk8swok502\", not \"prdk8swok501\"",
            "none of its addresses (192.168.10.58) is 192.168.10.57",
            &format!("its machine-id is {ID}, and not the one recorded for prdk8swok501 ({OTHER})"),
            "Nothing was changed on it",
            "--accept-new-identity",
        ] {
            assert!(e.contains(part), "{part:?} missing from: {e}");
        }
    }

    #[test]
    fn expected_addresses_parse_or_resolve() {
        assert_eq!(expected_addresses("10.1.2.3"), ip("10.1.2.3"));
        assert_eq!(expected_addresses("fd00::1"), ip("fd00::1"));
        assert!(
            expected_addresses("localhost")
                .iter()
                .all(|a| a.is_loopback())
        );
        assert!(expected_addresses("no-such-host.invalid").is_empty());
    }

    #[test]
    fn the_record_round_trips_and_is_replaced_whole() {
        let dir = tempfile::tempdir().unwrap();
        let inv = dir.path().join("inventory.toml");
        let path = state_path(&inv);
        assert_eq!(path, dir.path().join("inventory.identities.toml"));
        assert!(load(&path).unwrap().is_empty(), "absent: empty");
        let mut records = BTreeMap::new();
        records.insert("prdk8swok501".to_string(), ID.to_string());
        records.insert("prdinfhap501".to_string(), OTHER.to_string());
        save(&path, &records).unwrap();
        assert_eq!(load(&path).unwrap(), records);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            text.starts_with("# nodeprep's record of host identities"),
            "{text}"
        );
        assert!(text.contains(&format!("[hosts.prdk8swok501]\nmachine_id = \"{ID}\"\n")));
        records.remove("prdinfhap501");
        save(&path, &records).unwrap();
        assert_eq!(load(&path).unwrap(), records);
        let names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            names,
            ["inventory.identities.toml"],
            "no temporary file left"
        );
        std::fs::write(&path, "[hosts.x]\nmachine_id = \"nope\"\n").unwrap();
        let e = load(&path).unwrap_err().to_string();
        assert!(
            e.contains("hosts.x.machine_id") && e.contains("not a machine-id"),
            "{e}"
        );
        std::fs::write(&path, "hosts = 3\n").unwrap();
        assert!(
            load(&path)
                .unwrap_err()
                .to_string()
                .contains("fix or delete it")
        );
    }

    #[test]
    fn the_book_records_on_apply_only() {
        let dir = tempfile::tempdir().unwrap();
        let inv = dir.path().join("inventory.toml");
        let stranger = seen("other", &["127.0.0.1"], Some(ID));
        // Check run with the flag: accepted, nothing written.
        let book = Book::open(&inv, true, true, false).unwrap();
        let a = book.check(claim("w1", "127.0.0.1"), &stranger).unwrap();
        assert_eq!(a.proof, Proof::Accepted);
        assert!(a.note.unwrap().contains("not recorded"));
        assert!(!state_path(&inv).exists());
        // Apply run with the flag: recorded...
        let book = Book::open(&inv, true, true, true).unwrap();
        let a = book.check(claim("w1", "127.0.0.1"), &stranger).unwrap();
        assert!(a.note.unwrap().contains("recorded in"));
        assert_eq!(load(&state_path(&inv)).unwrap()["w1"], ID);
        // ...and recognised without it.
        let book = Book::open(&inv, true, false, true).unwrap();
        assert_eq!(
            book.check(claim("w1", "127.0.0.1"), &stranger)
                .unwrap()
                .proof,
            Proof::MachineId
        );
        assert!(book.check(claim("w2", "127.0.0.1"), &stranger).is_err());
        // First contact by name: recorded quietly.
        let a = book
            .check(claim("w3", "127.0.0.1"), &seen("w3", &[], Some(OTHER)))
            .unwrap();
        assert_eq!((a.proof, a.note), (Proof::Name, None));
        assert_eq!(load(&state_path(&inv)).unwrap()["w3"], OTHER);
        // No inventory file: nothing is written anywhere.
        let lone = dir.path().join("sub").join("inventory.toml");
        let book = Book::open(&lone, false, true, true).unwrap();
        book.check(claim("w1", "127.0.0.1"), &stranger).unwrap();
        assert!(!dir.path().join("sub").exists());
    }
}
