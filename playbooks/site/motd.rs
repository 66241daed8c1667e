//! An example of an operator's own playbook: `/etc/motd` names the host, its role and its zone.
//! Every `.rs` file of this folder is a module registered by its `register` function; `cargo
//! xtask run motd --host NAME` then finds the playbook.

use tasks::file::{self, Perm};
use tasks::{Plan, Reads, Result};

use crate::{FnPlaybook, Registry, Target};

pub fn register(r: &mut Registry) {
    r.add(FnPlaybook {
        name: "motd",
        about: "example of a custom playbook: /etc/motd names the host, its role and zone",
        role: None,
        plan,
    });
}

const MOTD: &str = "/etc/motd";

fn plan<'a>(t: Target<'a>, p: &mut Plan<'a>) -> Result<()> {
    let text = format!(
        "{name}: {role} of zone {zone}, prepared by nodeprep.\n",
        name = t.name,
        role = t.host.role,
        zone = t.host.zone.as_deref().unwrap_or("-"),
    );
    p.step("motd", Reads::files(&[MOTD]), move |cx| {
        file::content(cx, MOTD, &text, Perm::CONFIG)
    });
    Ok(())
}
