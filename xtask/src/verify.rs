//! `cargo xtask verify`: the read-only checks of `tasks::verify` over the selected hosts, in
//! parallel like `run` (its fan-out, its printer: one line per check, `--json` events, the
//! recap), then the checks across those hosts. Each check is recorded as a step: `ok` passed,
//! `failed` (the reason, then `fix:` and the hint), `skipped` (why). Exit code 2 when a check
//! failed, 3 when a host was unreachable.

use std::sync::Mutex;
use std::time::Duration;

use anyhow::{Result, bail};
use playbooks::{Playbook, Target};
use tasks::firewall;
use tasks::verify::{self, Identity, Node, Resources, Spec};
use tasks::{Ctx, Event, Outcome, Record};

use crate::cli::{RunArgs, VerifyArgs};
use crate::output::Printer;
use crate::run;
use crate::select;

/// A Kubernetes node's kernel modules and sysctls (until the roles describe their own checks).
const MODULES: &[&str] = &["overlay", "br_netfilter"];
const SYSCTLS: &[(&str, &str)] = &[
    ("net.bridge.bridge-nf-call-iptables", "1"),
    ("net.ipv4.ip_forward", "1"),
    ("net.bridge.bridge-nf-call-ip6tables", "1"),
];

/// What is verified on host `name` of inventory role `role` (`ingress`: a load balancer with
/// ingress frontends): a load balancer's ports; any other role is a node, a master with
/// kubeadm's minimum resources.
fn role_spec<'a>(name: &'a str, role: &str, ingress: bool) -> Spec<'a> {
    let ports = firewall::role_ports(role, ingress);
    if role == "haproxy" {
        return Spec {
            name,
            node: None,
            ports,
            allowed_holders: &["haproxy"],
            resources: None,
        };
    }
    Spec {
        name,
        node: Some(Node {
            modules: MODULES,
            sysctls: SYSCTLS,
        }),
        ports,
        allowed_holders: verify::KUBERNETES_HOLDERS,
        resources: (role == "k8s-master").then_some(Resources {
            cpus: verify::MIN_CPUS,
            memory_mib: verify::MIN_MEMORY_MIB,
        }),
    }
}

/// Every check name, for `--only` / `--skip`: each role's, then the checks across hosts.
fn all_checks() -> Vec<String> {
    let mut v: Vec<String> = Vec::new();
    for role in ["k8s-worker", "k8s-master", "haproxy"] {
        for name in verify::check_names(&role_spec("", role, true)) {
            if !v.contains(&name) {
                v.push(name);
            }
        }
    }
    v.extend(verify::FLEET_CHECKS.map(String::from));
    v
}

/// The identities read on each host, for the checks across hosts. The host function is a plain
/// `fn` (what the fan-out runs), so it hands them over here.
static IDENTITIES: Mutex<Vec<Identity>> = Mutex::new(Vec::new());

/// The checks of one host, each recorded as a step, then its identity.
fn verify_host(cx: &mut Ctx, t: &Target) -> tasks::Result<()> {
    let inv = t.inventory;
    let ingress = inv.haproxy.ingress
        && inv
            .hosts
            .values()
            .any(|h| h.role == "k8s-worker" && h.zone == t.host.zone);
    let spec = role_spec(t.name, &t.host.role, ingress);
    for check in verify::host_checks(cx, &spec)? {
        let name = check.name.clone();
        // A failed check is recorded and the others go on.
        let _ = cx.step(&name, |_| check.into_result());
    }
    let id = verify::identity(cx, t.name)?;
    IDENTITIES.lock().unwrap().push(id);
    Ok(())
}

pub fn verify(args: &VerifyArgs) -> Result<u8> {
    let Some(base) = playbooks::find(&args.playbook) else {
        let names: Vec<&str> = playbooks::all().iter().map(|p| p.name).collect();
        bail!(
            "no playbook `{}` (known: {})",
            args.playbook,
            names.join(", ")
        );
    };
    let known = all_checks();
    for name in args.only.iter().chain(&args.skip) {
        if !known.contains(name) {
            bail!("no check `{name}` (known: {})", known.join(", "));
        }
    }
    if args.forks == 0 {
        bail!("--forks must be at least 1");
    }
    let inv = match select::load(&args.select.inv) {
        Ok(inv) => inv,
        Err(code) => return Ok(code),
    };
    let names = select::select(&inv, &args.select)?;
    if let Some(role) = base.role {
        let wrong: Vec<String> = names
            .iter()
            .filter(|n| inv.hosts[**n].role != role)
            .map(|n| format!("{n} ({})", inv.hosts[*n].role))
            .collect();
        if !wrong.is_empty() {
            bail!(
                "playbook {} is for role {role}; {} of another role (verify them with their own playbook)",
                base.name,
                wrong.join(", ")
            );
        }
    }
    // The role's playbook, running the checks instead of its steps, and reading the files
    // they need in its first round trip.
    let playbook = Playbook {
        name: "verify",
        about: "read-only checks",
        steps: &[],
        files: verify::FILES,
        run: verify_host,
        ..*base
    };
    let run_args = RunArgs {
        playbook: base.name.to_string(),
        select: args.select.clone(),
        local: false,
        check: true,
        diff: false,
        json: args.json,
        forks: args.forks,
        only: args.only.clone(),
        skip: args.skip.clone(),
        force: false,
        no_backup: true,
    };
    IDENTITIES.lock().unwrap().clear();
    let printer = Printer::new(args.json, false);
    let mut reports = run::fan_out(&inv, &names, &playbook, &run_args, &printer);

    // Across the hosts that answered, in inventory order.
    let mut ids = std::mem::take(&mut *IDENTITIES.lock().unwrap());
    ids.sort_by_key(|id| names.iter().position(|n| *n == id.host));
    let sink = printer.sink();
    for (host, check) in verify::fleet_checks(&ids) {
        let selected = (args.only.is_empty() || args.only.contains(&check.name))
            && !args.skip.contains(&check.name);
        let name = check.name.clone();
        let outcome = if !selected {
            Outcome::Skipped("not selected (--only/--skip)".into())
        } else {
            match check.into_result() {
                Ok(tasks::Change::Skipped(why)) => Outcome::Skipped(why),
                Ok(_) => Outcome::Ok,
                Err(e) => Outcome::Failed(e.to_string()),
            }
        };
        let record = Record {
            name,
            outcome,
            duration: Duration::ZERO,
            diffs: Vec::new(),
            actions: Vec::new(),
        };
        sink(&Event::StepFinished {
            host: host.clone(),
            record: record.clone(),
        });
        if let Some(r) = reports.iter_mut().find(|r| r.host == host) {
            r.records.push(record);
        }
    }
    printer.recap(&reports, false);
    Ok(run::exit_code(&reports))
}
