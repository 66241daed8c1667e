//! The shell sent to the host: the probe, the cache-miss file read, the run lock. Each
//! section of a reply starts on a line of its own with [`MARK`], then a kind and a name, which
//! is what `parse` splits on.

use super::Probe;
use crate::error::Error;
use crate::shell::{shell_join, shell_quote};

/// The host's run lock: a directory (mkdir is atomic) holding the holder's description.
pub const LOCK_DIR: &str = "/run/nodeprep.lock";

/// The holder of the last run that took the lock, written when it releases it: a run that
/// read the host before that release read it as it no longer is.
pub const LAST_RUN: &str = "/run/nodeprep.last";

/// A lock older than this is taken to be left by a runner that died (seconds).
pub const LOCK_STALE_SECS: u64 = 6 * 3600;

/// The error for a lock held by someone else (`busy`: the holder's lines).
pub fn busy_error(busy: &str) -> Error {
    let lines: Vec<&str> = busy.lines().filter(|l| !l.trim().is_empty()).collect();
    Error::new(
        crate::error::ErrorKind::Busy,
        format!(
            "busy: another nodeprep run holds {LOCK_DIR} ({}); if none is running, remove that directory",
            lines.join(", ")
        ),
    )
}

/// The error for a host another run changed after this one read it (`last`: that run).
pub fn moved_error(last: &str) -> Error {
    Error::new(
        crate::error::ErrorKind::Busy,
        format!(
            "busy: another nodeprep run ({}) changed this host after this run read it; nothing was changed: run again",
            last.trim()
        ),
    )
}

/// Takes the run lock before a run's first change (a run that changes nothing never takes
/// it): the lock of `break_holder` (a runner known to be gone) or one older than
/// [`LOCK_STALE_SECS`] is broken first. Taken, the lock is kept only when the last run to
/// release it is still `seen_last`, the one the probe saw: otherwise that run changed the
/// host after the probe read it, and the lock is let go at once (`lock moved`).
pub fn lock_script(holder: &str, break_holder: Option<&str>, seen_last: &str) -> String {
    format!(
        r#"L={LOCK_DIR}; H={h}; B={b}; S={seen}
if [ -n "$B" ] && [ "$(head -n1 "$L/holder" 2>/dev/null)" = "$B" ]; then rm -rf "$L"; fi
if [ -d "$L" ] && [ $(( $(date +%s) - $(stat -c %Y "$L" 2>/dev/null || date +%s) )) -gt {LOCK_STALE_SECS} ]; then rm -rf "$L"; fi
if mkdir "$L" 2>/dev/null; then
  printf '%s
' "$H" > "$L/holder"
  if [ "$(cat {LAST_RUN} 2>/dev/null)" = "$S" ]; then printf '
{MARK}lock ok
'
  else rm -rf "$L"; printf '
{MARK}lock moved
'; cat {LAST_RUN} 2>/dev/null; fi
else printf '
{MARK}lock busy
'; cat "$L/holder" 2>/dev/null; printf 'since %s
' "$(date -d @$(stat -c %Y "$L") '+%F %T %Z' 2>/dev/null)"
fi
printf '
{MARK}end -
'
"#,
        h = shell_quote(holder),
        b = shell_quote(break_holder.unwrap_or("")),
        seen = shell_quote(seen_last),
    )
}

/// Releases the lock if this holder has it, naming it the last run.
pub fn unlock_script(holder: &str) -> String {
    format!(
        "L={LOCK_DIR}; H={h}; if [ \"$(cat \"$L/holder\" 2>/dev/null)\" = \"$H\" ]; then printf '%s\\n' \"$H\" > {LAST_RUN}; rm -rf \"$L\"; fi; true",
        h = shell_quote(holder)
    )
}

/// `systemctl show` for some units, in the format [`parse_units_show`](super::parse_units_show)
/// reads.
pub fn units_show_command<S: AsRef<str>>(units: &[S]) -> String {
    let mut s = String::from(
        "systemctl show --no-pager -p Id -p LoadState -p UnitFileState -p ActiveState --",
    );
    for u in units {
        s.push(' ');
        s.push_str(&shell_quote(u.as_ref()));
    }
    s.push_str(" 2>/dev/null");
    s
}

/// Starts every section of a probe reply (`m` in [`PROBE_PRELUDE`] prints it).
pub(crate) const MARK: &str = "@@np:";

/// The functions every script starts with: `m` opens a section, `c` prints a small text file
/// without starting a process (the shell's own `read`), `NL` and `TAB` for names to leave out.
const PROBE_PRELUDE: &str = "export LC_ALL=C
m() { printf '\\n@@np:%s %s\\n' \"$1\" \"$2\"; }
c() { while IFS= read -r l || [ -n \"$l\" ]; do printf '%s\\n' \"$l\"; done < \"$1\"; }
NL='
'
TAB='\t'
";

/// What tells one machine from another (`hostname`, `machine-id`, `addresses` facts): none
/// needs root to read.
const IDENTITY_FACTS: &str = r#"m fact hostname; c /proc/sys/kernel/hostname
m fact machine-id; c /etc/machine-id 2>/dev/null
m fact addresses; ip -o addr show 2>/dev/null || { echo '# fib_trie'; c /proc/net/fib_trie 2>/dev/null; echo '# if_inet6'; c /proc/net/if_inet6 2>/dev/null; }
"#;

/// The identity facts alone, run as the login user before any secret goes to the host (see
/// [`crate::host::Host::sends_secret`]); parsed as a probe reply.
pub fn identity_script() -> String {
    format!("{PROBE_PRELUDE}{IDENTITY_FACTS}m end -\n")
}

/// A script that reads only files (a cache miss).
pub fn files_script<S: AsRef<str>>(paths: &[S]) -> String {
    let mut s = String::from(PROBE_PRELUDE);
    s.push_str("set --\n");
    push_files(&mut s, paths);
    s.push_str("m end -\n");
    s
}

/// The probe's read-only commands, by their index in [`Probe::queries`]: `ans I`, the
/// command's output, then `ansrc I:STATUS` (only an answer of status 0 is kept).
fn push_queries(s: &mut String, probe: &Probe) {
    for (i, q) in probe.queries.iter().enumerate() {
        s.push_str(&format!(
            "m ans {i}\n{} 2>/dev/null </dev/null\nm ansrc {i}:$?\n",
            shell_join(q)
        ));
    }
}

/// A script that lists directories and reads their files (a cache miss).
pub fn dirs_script<S: AsRef<str>>(dirs: &[S]) -> String {
    let mut s = String::from(PROBE_PRELUDE);
    push_dirs(&mut s, dirs);
    push_files::<&str>(&mut s, &[]);
    s.push_str("m end -\n");
    s
}

/// Each directory listed (name, TAB, the target of a symlink) with the shell's own globbing,
/// its regular files added to the positional parameters for [`push_files`] to read. Names
/// holding a newline or a tab are left out: no configuration file is named so.
fn push_dirs<S: AsRef<str>>(s: &mut String, dirs: &[S]) {
    s.push_str("set --\n");
    for dir in dirs {
        let q = shell_quote(dir.as_ref());
        s.push_str(&format!(
            "# dir {q}\nif [ -d {q} ]; then m dir {q}\n  for p in {q}/*; do n=${{p##*/}}; case $n in *\"$NL\"*|*\"$TAB\"*) continue;; esac\n    if [ -L \"$p\" ]; then printf '%s\\t%s\\n' \"$n\" \"$(readlink -f -- \"$p\" 2>/dev/null)\"; elif [ -e \"$p\" ]; then printf '%s\\t\\n' \"$n\"; fi\n    if [ -f \"$p\" ]; then set -- \"$@\" \"$p\"; fi\n  done\nelse m nodir {q}; fi\n"
        ));
    }
}

/// The most of one file the probe reads (4 MiB: CA bundles and /etc/protocols fit); a larger
/// one is reported with its size, unread ([`super::Unread::TooLarge`]).
pub const FILE_CAP: u64 = 4 << 20;

/// The `stat` format the probe reads (`parse::parse_stat_line`).
const STAT_FORMAT: &str = "'%s %a %U %G %F|%n'";

/// The shell that reads `paths` and the files in the positional parameters (a listed
/// directory's), in four processes whatever their number: one `stat` for mode, owner, kind
/// and size, one `cat` of the plain files piped to one `base64` (the sizes split it), one
/// `grep` for the files of /proc and /sys (whose size is not their content), each line
/// after its path and a NUL. Needs no `tar` (Photon's minimal install has none).
///
/// `stat` does not follow a link named in `paths` (lstat): a link, a device, a pipe or a
/// socket is reported as what it is, and only regular files of at most [`FILE_CAP`] bytes are
/// read (the shell picks them from `stat`'s own lines, with its builtins). A link is followed
/// only where its directory is root's and writable by root alone (Debian's
/// `/etc/sysctl.d/99-sysctl.conf -> ../sysctl.conf`): only root put it there, so it is the
/// system's own; one in a directory another user owns or may write to stays a link. The files of a
/// listed directory (system configuration directories, root's own) are its regular files,
/// links to them included, as the listing found them.
fn push_files<S: AsRef<str>>(s: &mut String, paths: &[S]) {
    let (kernel, plain): (Vec<&str>, Vec<&str>) = paths
        .iter()
        .map(|p| p.as_ref())
        .partition(|p| is_kernel_path(p));
    let join = |v: &[&str]| -> String {
        v.iter()
            .map(|p| format!(" {}", shell_quote(p)))
            .collect::<String>()
    };
    let (plain, kernel) = (join(&plain), join(&kernel));
    s.push_str(&format!(
        "m stat -\nS=$( {{ if [ $# -gt 0 ]; then stat -L -c {STAT_FORMAT} -- \"$@\"; fi; stat -c {STAT_FORMAT} --{plain} ; }} 2>/dev/null </dev/null)\n"
    ));
    // A link named in a directory of root's that only root may write: followed.
    s.push_str(&format!(
        "case $S in *' symbolic link|'*) T=\nwhile IFS= read -r l; do k=${{l%%|*}}; k=${{k#* }}; k=${{k#* }}; k=${{k#* }}; k=${{k#* }}\n  if [ \"$k\" = 'symbolic link' ]; then p=${{l#*|}}; d=${{p%/*}}; o=$(stat -c '%u %a' -- \"${{d:-/}}\" 2>/dev/null); a=${{o#* }}\n    if [ \"${{o%% *}}\" = 0 ] && [ $(( 0$a & 022 )) -eq 0 ]; then n=$(stat -L -c {STAT_FORMAT} -- \"$p\" 2>/dev/null </dev/null) && [ -n \"$n\" ] && l=$n; fi\n  fi\n  T=\"$T$l$NL\"\ndone <<NP_EOF\n$S\nNP_EOF\nS=${{T%\"$NL\"}};; esac\n[ -z \"$S\" ] || printf '%s\\n' \"$S\"\n"
    ));
    if !kernel.is_empty() {
        s.push_str(&format!(
            "stat -L -c {STAT_FORMAT} --{kernel} 2>/dev/null </dev/null\n"
        ));
    }
    s.push_str(&format!(
        "set --\nwhile IFS= read -r l; do k=${{l%%|*}}; k=${{k#* }}; k=${{k#* }}; k=${{k#* }}; k=${{k#* }}\n  case $k in regular*) if [ \"${{l%% *}}\" -le {FILE_CAP} ]; then set -- \"$@\" \"${{l#*|}}\"; fi;; esac\ndone <<NP_EOF\n$S\nNP_EOF\n"
    ));
    s.push_str("m data -\n");
    s.push_str(
        "if [ $# -gt 0 ]; then cat -- \"$@\" 2>/dev/null </dev/null | base64 -w0; fi; echo\n",
    );
    if !kernel.is_empty() {
        s.push_str(&format!(
            "m kdata -\ngrep -aHZ '' --{kernel} 2>/dev/null </dev/null\n"
        ));
    }
}

/// Files of /proc and /sys: their size is not their content, they are read as text.
pub(crate) fn is_kernel_path(p: &str) -> bool {
    p.starts_with("/proc/") || p.starts_with("/sys/")
}

/// The probe as a POSIX shell script (run as `sh -s` with the script on stdin). Apart from
/// the few commands that answer what no file holds (`ip`, `dpkg-query`/`rpm`, `systemctl
/// show`, `date` and `stat` for apt's lists, the steps' own questions), it starts no process
/// but the four that read files.
pub fn probe_script(probe: &Probe) -> String {
    let mut s = String::from(PROBE_PRELUDE);
    if let Some(holder) = &probe.lock {
        // The lock is only looked at here: a run takes it before its first change.
        s.push_str(&format!(
            r#"L={LOCK_DIR}; H={h}
if [ -d "$L" ] && [ $(( $(date +%s) - $(stat -c %Y "$L" 2>/dev/null || date +%s) )) -le {LOCK_STALE_SECS} ]; then
  m lock busy; c "$L/holder" 2>/dev/null; printf 'since %s\n' "$(date -d @$(stat -c %Y "$L") '+%F %T %Z' 2>/dev/null)"
fi
m last -; c {LAST_RUN} 2>/dev/null
"#,
            h = shell_quote(holder),
        ));
    }
    s.push_str(
        r#"m fact os-release; c /etc/os-release 2>/dev/null || c /usr/lib/os-release 2>/dev/null
m fact systemd; [ -d /run/systemd/system ] && echo yes
m fact container
if [ -f /run/systemd/container ]; then c /run/systemd/container
elif [ -f /.dockerenv ]; then echo docker
elif [ -f /run/.containerenv ]; then echo podman
elif [ -d /run/systemd/system ]; then echo none
else systemd-detect-virt --container 2>/dev/null || true
fi
"#,
    );
    s.push_str(IDENTITY_FACTS);
    s.push_str(
        r#"u=; n=; while read -r k v r; do case $k in Uid:) u=${r%%[ 	]*};; Cpus_allowed_list:) n=$v;; esac; done < /proc/self/status
o=$IFS; IFS=,; cpus=0; for x in $n; do case $x in *-*) cpus=$((cpus + ${x#*-} - ${x%-*} + 1));; ?*) cpus=$((cpus + 1));; esac; done; IFS=$o
m fact uid; if [ -n "$u" ]; then echo "$u"; else id -u; fi
m fact nproc; if [ "$cpus" -gt 0 ]; then echo "$cpus"; else nproc 2>/dev/null; fi
if command -v rpm >/dev/null 2>&1; then m pkgs -; rpm -qa --qf '%{NAME} %{VERSION}-%{RELEASE}\n' 2>/dev/null
elif command -v dpkg-query >/dev/null 2>&1; then m dpkg -; dpkg-query -W -f '${db:Status-Abbrev} ${Package} ${Version}\n' 2>/dev/null
else m pkgs -
fi
if [ -d /var/lib/apt/lists ]; then
  m lists -; date +%s; set -- /var/lib/apt/lists/*_Packages*; if [ -e "$1" ]; then echo $#; else echo 0; fi
  stat -c %Y /var/lib/apt/lists /var/lib/apt/lists/partial /var/lib/apt/periodic/update-success-stamp 2>/dev/null
fi
"#,
    );
    if !probe.units.is_empty() {
        s.push_str("m units -\n");
        s.push_str(&units_show_command(&probe.units.iter().collect::<Vec<_>>()));
        s.push('\n');
    }
    for prog in &probe.programs {
        s.push_str(&format!(
            "command -v {q} >/dev/null 2>&1 && m prog {q}\n",
            q = shell_quote(prog)
        ));
    }
    push_queries(&mut s, probe);
    if !probe.dirs.is_empty() || !probe.files.is_empty() {
        push_dirs(&mut s, &probe.dirs.iter().collect::<Vec<_>>());
        push_files(&mut s, &probe.files.iter().collect::<Vec<_>>());
    }
    s.push_str("m end -\n");
    s
}
