//! Named playbooks: one per built-in role, then the operator's own (`playbooks/site/`, or
//! added to a [`Registry`] by a crate of their own). `cargo xtask run NAME` looks NAME up
//! here; `cargo xtask playbooks`, `--only`/`--skip` and the plans tests read a playbook's
//! steps from its plan, the one place they are declared.

use serde::de::DeserializeOwned;
use tasks::{Plan, Result};

use crate::inventory::{HostEntry, Inventory, Target, VarsType};
use crate::roles::{self, Role};

/// A named playbook: for one host of the inventory, the plan of its steps.
pub trait Playbook: Send + Sync {
    fn name(&self) -> &str;
    /// One line for `cargo xtask playbooks`.
    fn about(&self) -> &str;
    /// The role it is meant for: the runner refuses hosts of another role unless forced, and
    /// `verify` runs the role's checks. `None`: any host.
    fn role(&self) -> Option<&'static dyn Role> {
        None
    }
    /// Declares the steps for `t`. An error here (a bad `[vars]` value, say) is bad input:
    /// the run stops before any host is touched.
    fn plan<'a>(&self, t: Target<'a>, p: &mut Plan<'a>) -> Result<()>;
    /// The type its plan reads the host's vars into ([`Target::vars`]): `inventory check`
    /// reads every host's vars into it, and counts its fields as used keys of `[vars]`.
    /// `None` (the default): the playbook's vars are not checked before a run.
    fn vars_type(&self) -> Option<VarsType> {
        None
    }
}

/// A playbook made of a plain function: what operators' playbooks usually are.
pub struct FnPlaybook {
    pub name: &'static str,
    pub about: &'static str,
    pub role: Option<&'static dyn Role>,
    pub plan: for<'a> fn(Target<'a>, &mut Plan<'a>) -> Result<()>,
}

impl Playbook for FnPlaybook {
    fn name(&self) -> &str {
        self.name
    }
    fn about(&self) -> &str {
        self.about
    }
    fn role(&self) -> Option<&'static dyn Role> {
        self.role
    }
    fn plan<'a>(&self, t: Target<'a>, p: &mut Plan<'a>) -> Result<()> {
        (self.plan)(t, p)
    }
}

impl FnPlaybook {
    /// This playbook, declaring that its plan reads the host's vars into `T`
    /// ([`Playbook::vars_type`]): `inventory check` then checks every host's vars against it.
    pub fn reads_vars<T: DeserializeOwned>(self) -> WithVars<FnPlaybook> {
        WithVars {
            playbook: self,
            vars: VarsType::of::<T>(),
        }
    }
}

/// A playbook with the type its plan reads the host's vars into ([`FnPlaybook::reads_vars`]).
pub struct WithVars<P> {
    pub playbook: P,
    pub vars: VarsType,
}

impl<P: Playbook> Playbook for WithVars<P> {
    fn name(&self) -> &str {
        self.playbook.name()
    }
    fn about(&self) -> &str {
        self.playbook.about()
    }
    fn role(&self) -> Option<&'static dyn Role> {
        self.playbook.role()
    }
    fn plan<'a>(&self, t: Target<'a>, p: &mut Plan<'a>) -> Result<()> {
        self.playbook.plan(t, p)
    }
    fn vars_type(&self) -> Option<VarsType> {
        Some(self.vars)
    }
}

/// The playbook of a built-in role, named after it.
struct RolePlaybook(&'static dyn Role);

impl Playbook for RolePlaybook {
    fn name(&self) -> &str {
        self.0.name()
    }
    fn about(&self) -> &str {
        self.0.about()
    }
    fn role(&self) -> Option<&'static dyn Role> {
        Some(self.0)
    }
    fn plan<'a>(&self, t: Target<'a>, p: &mut Plan<'a>) -> Result<()> {
        self.0.plan(t, p)
    }
}

/// The playbooks a runner knows, in listing order.
pub struct Registry {
    playbooks: Vec<Box<dyn Playbook>>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.playbooks.iter().map(|p| p.name()))
            .finish()
    }
}

impl Default for Registry {
    /// The built-in roles, then the playbooks of `playbooks/site/`.
    fn default() -> Registry {
        let mut r = Registry::empty();
        for role in roles::ALL {
            r.add(RolePlaybook(*role));
        }
        crate::site::register(&mut r);
        r
    }
}

impl Registry {
    pub fn empty() -> Registry {
        Registry {
            playbooks: Vec::new(),
        }
    }

    /// Adds a playbook. A name already taken is a programming error.
    pub fn add(&mut self, p: impl Playbook + 'static) -> &mut Registry {
        assert!(
            self.find(p.name()).is_none(),
            "two playbooks named `{}`",
            p.name()
        );
        self.playbooks.push(Box::new(p));
        self
    }

    pub fn all(&self) -> impl Iterator<Item = &dyn Playbook> {
        self.playbooks.iter().map(|p| p.as_ref())
    }

    pub fn find(&self, name: &str) -> Option<&dyn Playbook> {
        self.all().find(|p| p.name() == name)
    }

    pub fn names(&self) -> Vec<&str> {
        self.all().map(|p| p.name()).collect()
    }
}

/// The steps of `pb` for host `t`, as its plan declares them (a playbook declares the same
/// steps for every host; what a host does not need is skipped with the reason).
pub fn steps(pb: &dyn Playbook, t: Target) -> Result<Vec<String>> {
    let mut plan = Plan::new();
    pb.plan(t, &mut plan)?;
    Ok(plan.names())
}

/// A host of `pb`'s role with no settings of its own (this machine, `--local`, when the
/// inventory does not name it).
pub fn stand_in(pb: &dyn Playbook) -> HostEntry {
    HostEntry::stand_in(pb.role().unwrap_or(roles::STAND_IN).into())
}

/// The steps of `pb` for a listing: planned for the first host of its role in `inv` (any
/// host for a playbook of no role), else for a stand-in host with `inv`'s settings. A listing
/// writes nothing: the inventory's placeholders do not stop it.
pub fn listed_steps(pb: &dyn Playbook, inv: &Inventory) -> Result<Vec<String>> {
    let inv = &Inventory {
        placeholders: Vec::new(),
        ..inv.clone()
    };
    let host = inv
        .hosts
        .iter()
        .find(|(_, h)| pb.role().is_none_or(|r| h.role.is(r)));
    match host {
        Some((name, _)) => steps(pb, inv.target(name).expect("a host of the inventory")),
        None => {
            let host = stand_in(pb);
            steps(
                pb,
                Target {
                    name: "localhost",
                    host: &host,
                    inventory: inv,
                },
            )
        }
    }
}
