//! An example of an operator's own playbook: `/etc/motd` names the host, its role and its zone,
//! then an optional notice from the inventory (`[vars.motd] notice = "..."`, per host under
//! `[hosts.NAME.vars.motd]`).
//!
//! Every `.rs` file of `playbooks/site/` is a module of `playbooks::site`, registered by its
//! `register` function: `cargo xtask run motd --host NAME` then finds the playbook.

use serde::Deserialize;
use tasks::file::{self, Perm};
use tasks::{Plan, Reads, Result};

use crate::{FnPlaybook, Registry, Target};

pub fn register(r: &mut Registry) {
    r.add(
        FnPlaybook {
            name: "motd",
            about: "example of a custom playbook: /etc/motd names the host, its role and zone",
            role: None,
            plan,
        }
        // `inventory check` reads every host's vars into `Vars`.
        .reads_vars::<Vars>(),
    );
}

const MOTD: &str = "/etc/motd";

/// This playbook's settings in the inventory's `[vars]`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Vars {
    motd: Motd,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct Motd {
    /// A line after the host's description.
    notice: Option<String>,
}

/// The text of `/etc/motd` for `t`.
fn text(t: &Target) -> Result<String> {
    let vars: Vars = t.vars()?;
    let mut text = format!(
        "{name}: {role} of zone {zone}, prepared by nodeprep.\n",
        name = t.name,
        role = t.host.role,
        zone = t.host.zone.as_deref().unwrap_or("-"),
    );
    if let Some(notice) = vars.motd.notice {
        text.push_str(notice.trim_end());
        text.push('\n');
    }
    Ok(text)
}

fn plan<'a>(t: Target<'a>, p: &mut Plan<'a>) -> Result<()> {
    let text = text(&t)?;
    p.step("motd", Reads::files(&[MOTD]), move |cx| {
        file::content(cx, MOTD, &text, Perm::CONFIG)
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use tasks::testing::Fixture;

    use crate::Inventory;
    use crate::testing::converge;

    fn inventory(extra: &str) -> Inventory {
        let text = include_str!("../../inventory.toml").to_string() + extra;
        Inventory::parse(&text, Path::new("inventory.toml")).unwrap()
    }

    fn motd() -> crate::FnPlaybook {
        crate::FnPlaybook {
            name: "motd",
            about: "",
            role: None,
            plan: super::plan,
        }
    }

    #[test]
    fn writes_the_motd_once() {
        let inv = inventory("");
        let t = inv.target("prdk8swok511").unwrap();
        let plan = converge(&motd(), t, Fixture::photon(), &[]);
        assert_eq!(plan, "write /etc/motd 0644 root:root\n");
        assert_eq!(
            super::text(&t).unwrap(),
            "prdk8swok511: k8s-worker of zone dmz, prepared by nodeprep.\nAuthorised use only.\n"
        );
    }

    #[test]
    fn a_host_notice_replaces_the_shared_one() {
        let inv = inventory("\n[hosts.prdk8swok511.vars.motd]\nnotice = \"DMZ node.\"\n");
        let t = inv.target("prdk8swok511").unwrap();
        assert!(super::text(&t).unwrap().ends_with("\nDMZ node.\n"));
    }

    #[test]
    fn a_bad_notice_names_file_host_and_field() {
        let inv = inventory("\n[hosts.prdk8swok511.vars.motd]\nnotice = 42\n");
        let t = inv.target("prdk8swok511").unwrap();
        let e = super::text(&t).unwrap_err().to_string();
        assert!(
            e.contains("inventory.toml")
                && e.contains("prdk8swok511")
                && e.contains("vars.motd.notice"),
            "{e}"
        );
    }
}
