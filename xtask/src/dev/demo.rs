//! `cargo xtask demo`: the whole job on the example inventory with no VM at hand. Lab
//! containers named after the inventory's hosts are started, and each is prepared over ssh
//! with its role's playbook, all in parallel; then the recap.

use anyhow::{Context, Result};
use playbooks::Inventory;
use xshell::Shell;

use super::DemoArgs;
use super::test::project_root;
use super::testbed::Testbed as _;
use crate::runner::{HostReport, Printer, RunOptions, exit_code, fanout};

/// The example inventory, embedded: the demo works from any folder.
const EXAMPLE: &str = include_str!("../../../inventory.toml");

pub fn demo(args: &DemoArgs) -> Result<u8> {
    let example = Inventory::parse(EXAMPLE, &project_root().join("inventory.toml"))
        .map_err(|p| anyhow::anyhow!("{p}"))?;
    let hosts: Vec<(&str, &str)> = example
        .hosts
        .iter()
        .map(|(n, h)| (n.as_str(), h.role.name()))
        .collect();
    let sh = Shell::new()?;
    super::prereq::ensure(&sh, super::prereq::Need::Lab)?;
    let base = super::image::Base::or_env(args.base)?;
    eprintln!("demo: building (or reusing) the {base} lab image");
    let image = super::image::ensure_base(&sh, base)?;
    eprintln!(
        "demo: starting {} lab containers: {}",
        hosts.len(),
        hosts.iter().map(|h| h.0).collect::<Vec<_>>().join(", ")
    );
    let mut lab =
        super::lab::Lab::start(&sh, &image, "nodeprep-demo", &hosts).context("starting the lab")?;
    if args.keep {
        lab.keep();
    }
    // The lab's inventory: the example's settings, each host reached on its container's
    // loopback ssh port instead of its real address.
    super::lab::install_kube_standins(&lab)?;
    let path = lab.write_inventory(&lab_settings())?;
    let inv = Inventory::load(&path).map_err(|p| anyhow::anyhow!("{p}"))?;
    let mut code = 0;
    let rounds = if args.twice { 2 } else { 1 };
    for round in 1..=rounds {
        if round == 2 && !args.json {
            println!("\n== second run: nothing should change ==");
        }
        let printer = Printer::new(args.json, false);
        let registry = playbooks::Registry::default();
        let opts = RunOptions::default();
        // Every role at once: one fan-out per role's playbook, each over its hosts in parallel.
        let mut reports: Vec<HostReport> = std::thread::scope(|s| {
            let handles: Vec<_> = registry
                .all()
                .filter_map(|p| p.role().map(|r| (p, r)))
                .map(|(playbook, role)| {
                    let (inv, printer, opts) = (&inv, &printer, &opts);
                    s.spawn(move || {
                        let targets: Vec<_> =
                            inv.targets().filter(|t| t.host.role.is(role)).collect();
                        if targets.is_empty() {
                            return Vec::new();
                        }
                        let planner = fanout::planner(|t, p| playbook.plan(t, p));
                        let done = |r: &HostReport| printer.host_done(r);
                        fanout::over_ssh(&targets, &planner, None, opts, &printer.sink(), &done)
                    })
                })
                .collect();
            handles
                .into_iter()
                .flat_map(|h| h.join().expect("a fan-out thread panicked"))
                .collect()
        });
        reports.sort_by(|a, b| a.host.cmp(&b.host));
        printer.recap(&reports, false);
        code = code.max(exit_code(&reports, false));
    }
    if args.keep {
        eprintln!(
            "\nThe containers keep running; inventory: {}",
            path.display()
        );
    }
    Ok(code)
}

/// The example inventory's shared settings, without its [ssh] and [hosts] tables (the lab
/// writes its own) and with Kubernetes taken as present (see `KUBE_STANDINS`).
fn lab_settings() -> String {
    let mut out = String::new();
    let mut keep = true;
    for line in EXAMPLE.lines() {
        let t = line.trim();
        if t.starts_with('[') {
            keep =
                !(t.starts_with("[ssh") || t.starts_with("[hosts") || t.starts_with("[kubernetes"));
        }
        if keep {
            out.push_str(line);
            out.push('\n');
        }
    }
    out.push_str(super::lab::LAB_KUBERNETES);
    out
}
