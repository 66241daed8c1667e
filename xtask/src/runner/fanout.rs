//! Running a plan over hosts: for each host, in parallel (at most `forks` at once), connect,
//! read what the plan's steps read in one round trip, run the steps, close. A failure on one
//! host never stops the others.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use playbooks::{Inventory, Target};
use tasks::ctx::{LockHolder, Sink};
use tasks::host::{Local, Ssh, SshConfig};
use tasks::{Ctx, Event, Host, Mode, Options, Plan, Selection};

use super::access::Credentials;
use super::identity::{self, Book};
use super::report::HostReport;

/// How a run treats its hosts.
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub mode: Mode,
    /// Compute the diffs of changed files (always on in check mode).
    pub diff: bool,
    /// Keep a copy of every replaced file under /var/backups/nodeprep.
    pub backup: bool,
    /// Hosts prepared at once.
    pub forks: usize,
    pub selection: Selection,
    /// Log in anew on every host: close a connection kept from an earlier run first.
    pub fresh: bool,
    /// The ssh and sudo passwords of the run (none: keys and passwordless sudo).
    pub credentials: Credentials,
    /// Each host proves it is the inventory's host before any step ([`identity`]); `None`
    /// checks nothing (`verify`, whose own "hostname" check reports a wrong host, and which
    /// takes no password: nothing secret goes to a host it has not checked).
    pub identity: Option<Arc<Book>>,
    /// Connect to nothing: every host is simulated (`tasks::testing::simulated`, with the
    /// `simulate` feature, on by default), in the state the plan converges a recorded Debian
    /// host to, answering after this round trip. What `cargo xtask bench --simulated`
    /// measures the runner's own cost with.
    pub simulate: Option<Duration>,
}

impl Default for RunOptions {
    fn default() -> RunOptions {
        RunOptions {
            mode: Mode::Apply,
            diff: false,
            backup: true,
            forks: 16,
            selection: Selection::default(),
            fresh: false,
            credentials: Credentials::default(),
            identity: None,
            simulate: None,
        }
    }
}

/// Builds the plan of one host: a playbook's, or `verify`'s checks.
pub type Planner<'p> = dyn for<'a> Fn(Target<'a>, &mut Plan<'a>) -> tasks::Result<()> + Sync + 'p;

/// A closure as a [`Planner`] (it names the lifetimes the compiler cannot infer).
pub fn planner<F>(f: F) -> F
where
    F: for<'a> Fn(Target<'a>, &mut Plan<'a>) -> tasks::Result<()> + Sync,
{
    f
}

/// Runs each target's plan on it over ssh (or on simulated hosts, see
/// [`RunOptions::simulate`]), `forks` at a time, telling `sink` every event and `done` every
/// finished host. The plans are `made` already (one a target, in the targets' order: the run
/// checked every one before the fan-out), or `planner`'s, made as the fan-out reaches each
/// host. Reports come back in `targets`' order.
pub fn over_ssh<'i>(
    targets: &[Target<'i>],
    planner: &Planner,
    made: Option<Vec<Plan<'i>>>,
    opts: &RunOptions,
    sink: &Sink,
    done: &(dyn Fn(&HostReport) + Sync),
) -> Vec<HostReport> {
    let mut made = made.map(Vec::into_iter);
    let queue = Mutex::new(
        targets
            .iter()
            .copied()
            .enumerate()
            .map(move |(i, target)| (i, target, made.as_mut().and_then(Iterator::next))),
    );
    let results: Mutex<Vec<(usize, HostReport)>> = Mutex::new(Vec::new());
    let workers = opts.forks.min(targets.len()).max(1);
    let simulated = opts.simulate.map(|rtt| (rtt, converged(targets, planner)));
    // One holder for the whole run: the hosts' locks name this runner and when it started.
    let lock_holder = LockHolder::this_run();
    // Most hosts' plans read alike: their probe is gathered once.
    let probes = tasks::ProbeCache::default();
    std::thread::scope(|s| {
        for _ in 0..workers {
            s.spawn(|| {
                loop {
                    let next = queue.lock().unwrap().next();
                    let Some((i, target, plan)) = next else { break };
                    let plan = plan.map_or_else(|| plan_of(planner, target), Ok);
                    let host = match &simulated {
                        None => ssh_host(target.inventory, &target, &opts.credentials, opts.fresh),
                        Some((rtt, state)) => simulated_host(target.name, *rtt, state),
                    };
                    let report = run_one(host, target, plan, opts, sink, &lock_holder, &probes);
                    done(&report);
                    results.lock().unwrap().push((i, report));
                }
            });
        }
    });
    let mut out = results.into_inner().unwrap();
    out.sort_by_key(|(i, _)| *i);
    out.into_iter().map(|(_, r)| r).collect()
}

/// `planner`'s plan for `target`.
pub fn plan_of<'a>(planner: &Planner, target: Target<'a>) -> tasks::Result<Plan<'a>> {
    let mut plan = Plan::new();
    planner(target, &mut plan)?;
    Ok(plan)
}

/// The state `planner`'s plan for the first of `targets` leaves a recorded Debian host in
/// (systemd, not a container): what every simulated host answers with, under its own name.
#[cfg(feature = "simulate")]
fn converged(targets: &[Target], planner: &Planner) -> tasks::Result<Arc<tasks::state::State>> {
    let target = *targets
        .first()
        .ok_or_else(|| tasks::Error::other("no host to simulate"))?;
    let plan = plan_of(planner, target)?;
    let fixture = tasks::testing::Fixture::debian();
    tasks::testing::simulated::converged(plan, fixture).map(Arc::new)
}

/// Built without the simulated hosts (the `simulate` feature): every host fails, saying so.
#[cfg(not(feature = "simulate"))]
fn converged(
    _inv: &Inventory,
    _names: &[&str],
    _planner: &Planner,
) -> tasks::Result<Arc<tasks::state::State>> {
    Err(tasks::Error::other(
        "this runner was built without simulated hosts (the `simulate` feature)",
    ))
}

fn simulated_host(
    name: &str,
    rtt: Duration,
    state: &tasks::Result<Arc<tasks::state::State>>,
) -> tasks::Result<Box<dyn Host>> {
    match state {
        #[cfg(feature = "simulate")]
        Ok(state) => Ok(Box::new(tasks::testing::simulated::Simulated::new(
            name,
            rtt,
            state.clone(),
        ))),
        #[cfg(not(feature = "simulate"))]
        Ok(_) => {
            let _ = (name, rtt);
            Err(tasks::Error::other(
                "this runner was built without simulated hosts (the `simulate` feature)",
            ))
        }
        Err(e) => Err(tasks::Error::other(format!(
            "cannot simulate a converged host: {e}"
        ))),
    }
}

/// Runs `plan` on this machine, without ssh, as `target`.
pub fn local<'a>(
    target: Target<'a>,
    plan: tasks::Result<Plan<'a>>,
    opts: &RunOptions,
    sink: &Sink,
) -> HostReport {
    let local = Local::new(target.name);
    let local = match (&opts.credentials.sudo, is_root()) {
        (_, true) => local,
        (Some(password), false) => local.with_sudo_password(password.clone()),
        (None, false) => local.with_sudo(true),
    };
    let probes = tasks::ProbeCache::default();
    run_one(
        Ok(Box::new(local)),
        target,
        plan,
        opts,
        sink,
        &LockHolder::this_run(),
        &probes,
    )
}

/// This process runs as root.
pub fn is_root() -> bool {
    tasks::host::current_uid() == 0
}

/// This machine's host name.
pub fn this_hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .unwrap_or_default()
        .trim()
        .to_string()
}

/// The login user of an inventory host.
pub fn login_user<'i>(inv: &'i Inventory, t: &Target<'i>) -> &'i str {
    t.host.user.as_deref().unwrap_or(&inv.ssh.user)
}

fn ssh_host(
    inv: &Inventory,
    t: &Target,
    creds: &Credentials,
    fresh: bool,
) -> tasks::Result<Box<dyn Host>> {
    let mut cfg = SshConfig::new(t.name, &t.host.address);
    cfg.port = t.host.port.unwrap_or(inv.ssh.port);
    cfg.user = login_user(inv, t).to_string();
    cfg.password = creds.ssh.clone();
    cfg.sudo_password = creds.sudo.clone();
    cfg.identity_file = inv
        .ssh
        .identity_file
        .as_ref()
        .map(|p| inv.resolve(&expand_home(p)));
    cfg.known_hosts = inv
        .ssh
        .known_hosts
        .as_ref()
        .map(|p| inv.resolve(&expand_home(p)));
    cfg.accept_new_host_key = inv.ssh.accept_new_host_keys;
    cfg.prefer_fast_kex = inv.ssh.fast_kex;
    cfg.connect_timeout_secs = inv.ssh.connect_timeout;
    cfg.persist_secs = inv.ssh.persist;
    cfg.fresh = fresh;
    Ok(Box::new(Ssh::new(cfg)?))
}

fn expand_home(p: &Path) -> PathBuf {
    match (p.strip_prefix("~"), std::env::var_os("HOME")) {
        (Ok(rest), Some(home)) => PathBuf::from(home).join(rest),
        _ => p.to_path_buf(),
    }
}

/// Connects, runs the selected steps of `plan`, closes; never panics the caller.
fn run_one<'a>(
    host: tasks::Result<Box<dyn Host>>,
    target: Target<'a>,
    plan: tasks::Result<Plan<'a>>,
    opts: &RunOptions,
    sink: &Sink,
    lock_holder: &LockHolder,
    probes: &tasks::ProbeCache,
) -> HostReport {
    let start = Instant::now();
    let name = target.name;
    let plan = match plan {
        Ok(plan) => plan,
        Err(e) => return HostReport::early(name, e.kind(), e.to_string(), start.elapsed()),
    };
    let host = match host {
        Ok(h) => h,
        Err(e) => return HostReport::early(name, e.kind(), e.to_string(), start.elapsed()),
    };
    let check = opts.mode == Mode::Check;
    // The identity check, asked by the engine before anything changes and before any secret
    // goes to the host; a note (a new identity recorded) is told as progress.
    let identity = opts.identity.clone().map(|book| {
        let sink = sink.clone();
        let claim_host = target.host.clone();
        let name = name.to_string();
        let check: tasks::ctx::IdentityCheck = Arc::new(move |state: &tasks::state::State| {
            let seen = identity::Seen::from_state(state);
            let accepted = book.check(identity::Claim::of(&name, &claim_host), &seen)?;
            if let Some(note) = accepted.note {
                sink(&Event::Progress {
                    host: name.clone(),
                    message: note,
                });
            }
            Ok(())
        });
        check
    });
    let ctx_opts = Options {
        mode: opts.mode,
        diff: opts.diff,
        probe: plan.probe_reusing(&opts.selection, probes),
        sink: Some(sink.clone()),
        backup: opts.backup,
        // Apply runs take the host's lock; a check run reads only.
        lock: (!check).then(|| lock_holder.clone()),
        lock_is_stale: Some(LockHolder::is_gone),
        identity,
        timeouts: tasks::Timeouts {
            command: Duration::from_secs(target.inventory.ssh.command_timeout.into()),
            package: Duration::from_secs(target.inventory.ssh.package_timeout.into()),
        },
    };
    let mut cx = match Ctx::connect(host, ctx_opts) {
        Ok(cx) => cx,
        Err(e) => {
            let mut r = HostReport::early(name, e.kind(), e.to_string(), start.elapsed());
            r.commands = 1;
            r.remote = start.elapsed();
            return r;
        }
    };
    // Connected with the plan's probe of this selection (above).
    let ran = plan.run_connected(&mut cx, &opts.selection);
    cx.close();
    // Kept until the recap, with every other host's: no room to spare.
    let mut records = cx.take_records();
    records.shrink_to_fit();
    HostReport {
        host: name.to_string(),
        records,
        not_selected: ran.not_selected,
        error: ran.error.map(|e| (e.kind(), e.to_string())),
        duration: start.elapsed(),
        commands: cx.commands_sent(),
        remote: cx.remote_time(),
        misses: cx.misses().to_vec(),
        reboot_required: cx.reboot_required().map(str::to_string),
    }
}
