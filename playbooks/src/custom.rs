//! The operator's own playbooks. A playbook is a plain function over the `tasks` API; add it
//! to [`PLAYBOOKS`] and `cargo xtask run NAME --host ...` finds it.
//!
//! The example below, `motd`, writes a message of the day naming the host, its role and its
//! zone: one step, idempotent like every task (a second run reports it `ok`).

use tasks::file::{self, Perm};
use tasks::{Ctx, Result};

use crate::inventory::Target;
use crate::registry::Playbook;

pub static PLAYBOOKS: &[Playbook] = &[Playbook {
    name: "motd",
    about: "example of a custom playbook: /etc/motd names the host, its role and zone",
    role: None,
    steps: &["motd"],
    files: &["/etc/motd"],
    probe: crate::registry::no_probe,
    run: motd,
}];

fn motd(cx: &mut Ctx, t: &Target) -> Result<()> {
    let text = format!(
        "{name}: {role} of zone {zone}, prepared by nodeprep.\n",
        name = t.name,
        role = t.host.role,
        zone = t.host.zone.as_deref().unwrap_or("-"),
    );
    let _ = cx.step("motd", |cx| {
        file::content(cx, "/etc/motd", &text, Perm::CONFIG)
    })?;
    Ok(())
}
