//! The shell sent to the host: the probe, the cache-miss file read, the run lock. Each
//! section of a reply starts on a line of its own with [`MARK`], then a kind and a name, which
//! is what `parse` splits on.

use super::Probe;
use crate::error::Error;
use crate::host::{shell_join, shell_quote};

/// The host's run lock: a directory (mkdir is atomic) holding the holder's description.
pub const LOCK_DIR: &str = "/run/nodeprep.lock";

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

/// Releases the lock if this holder has it.
pub fn unlock_script(holder: &str) -> String {
    format!(
        "L={LOCK_DIR}; [ \"$(cat \"$L/holder\" 2>/dev/null)\" = {h} ] && rm -rf \"$L\"; true",
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
pub(super) const MARK: &str = "@@np:";

const PROBE_PRELUDE: &str = r#"export LC_ALL=C
m() { printf '\n@@np:%s %s\n' "$1" "$2"; }
f() {
  if [ -e "$1" ]; then
    m file "$1"
    if [ -d "$1" ]; then stat -L -c '%a %U %G dir' "$1"; echo; else stat -L -c '%a %U %G file' "$1"; base64 -w0 < "$1"; echo; fi
  else
    m none "$1"
  fi
}
NL='
'
TAB=$(printf '\t')
d() {
  if [ ! -d "$1" ]; then m nodir "$1"; return; fi
  m dir "$1"
  for p in "$1"/*; do
    n=${p##*/}
    case $n in *"$NL"*|*"$TAB"*) continue;; esac
    if [ -L "$p" ]; then printf '%s\t%s\n' "$n" "$(readlink -f -- "$p" 2>/dev/null)"
    elif [ -e "$p" ]; then printf '%s\t\n' "$n"; fi
  done
  for p in "$1"/*; do
    case ${p##*/} in *"$NL"*|*"$TAB"*) continue;; esac
    if [ -f "$p" ]; then f "$p"; fi
  done
}
"#;

/// A script that reads only files (a cache miss).
pub fn files_script<S: AsRef<str>>(paths: &[S]) -> String {
    let mut s = String::from(PROBE_PRELUDE);
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
    s.push_str("m end -\n");
    s
}

/// Each directory listed (name, TAB, the target of a symlink), then each regular file in it
/// read. Names holding a newline or a tab are left out: no configuration file is named so.
fn push_dirs<S: AsRef<str>>(s: &mut String, dirs: &[S]) {
    for dir in dirs {
        s.push_str(&format!("d {}\n", shell_quote(dir.as_ref())));
    }
}

/// The shell that reads `paths`: files of /proc and /sys one by one (their size is not their
/// content), everything else in one `tar` stream (two processes instead of two per file),
/// falling back to one by one where GNU tar is missing. A path absent from the archive is absent.
fn push_files<S: AsRef<str>>(s: &mut String, paths: &[S]) {
    let (kernel, plain): (Vec<&str>, Vec<&str>) = paths
        .iter()
        .map(|p| p.as_ref())
        .partition(|p| p.starts_with("/proc/") || p.starts_with("/sys/"));
    for path in kernel {
        s.push_str(&format!("f {}\n", shell_quote(path)));
    }
    if plain.is_empty() {
        return;
    }
    let quoted: Vec<String> = plain.iter().map(|p| shell_quote(p)).collect();
    let list = quoted.join(" ");
    s.push_str(&format!(
        "if tar --version 2>/dev/null | grep -q 'GNU tar'; then\n  m tar -\n  tar -c -P -h --hard-dereference --no-recursion -f - -- {list} 2>/dev/null | base64 -w0; echo\nelse\n  for p in {list}; do f \"$p\"; done\nfi\n"
    ));
    for p in &plain {
        s.push_str(&format!("m want {}\n", shell_quote(p)));
    }
}

/// The probe as a POSIX shell script (run as `sh -s` with the script on stdin).
pub fn probe_script(probe: &Probe) -> String {
    let mut s = String::from(PROBE_PRELUDE);
    if let Some(holder) = &probe.lock {
        s.push_str(&format!(
            r#"L={LOCK_DIR}; H={h}; B={b}
if [ -n "$B" ] && [ "$(head -n1 "$L/holder" 2>/dev/null)" = "$B" ]; then rm -rf "$L"; fi
if [ -d "$L" ] && [ $(( $(date +%s) - $(stat -c %Y "$L" 2>/dev/null || date +%s) )) -gt {LOCK_STALE_SECS} ]; then rm -rf "$L"; fi
if mkdir "$L" 2>/dev/null; then printf '%s\n' "$H" > "$L/holder"; m lock ok
else m lock busy; cat "$L/holder" 2>/dev/null; printf 'since %s\n' "$(date -d @$(stat -c %Y "$L") '+%F %T %Z' 2>/dev/null)"
fi
"#,
            h = shell_quote(holder),
            b = shell_quote(probe.break_lock.as_deref().unwrap_or(""))
        ));
    }
    s.push_str(
        r#"m fact os-release; cat /etc/os-release 2>/dev/null || cat /usr/lib/os-release 2>/dev/null
m fact systemd; [ -d /run/systemd/system ] && echo yes
m fact container; (systemd-detect-virt --container 2>/dev/null) || { [ -f /.dockerenv ] && echo docker; } || { [ -f /run/.containerenv ] && echo podman; } || true
m fact hostname; cat /proc/sys/kernel/hostname
m fact machine-id; cat /etc/machine-id 2>/dev/null
m fact addresses; ip -o addr show 2>/dev/null || { echo '# fib_trie'; cat /proc/net/fib_trie 2>/dev/null; echo '# if_inet6'; cat /proc/net/if_inet6 2>/dev/null; }
m fact uid; id -u
m fact nproc; nproc 2>/dev/null
m pkgs -
if command -v rpm >/dev/null 2>&1; then rpm -qa --qf '%{NAME} %{VERSION}-%{RELEASE}\n' 2>/dev/null
elif command -v dpkg-query >/dev/null 2>&1; then dpkg-query -W -f '${db:Status-Abbrev}|${Package}|${Version}\n' 2>/dev/null | sed -n 's/^ii *|//p' | tr '|' ' '
fi
if [ -d /var/lib/apt/lists ]; then
  m lists -; lt=0
  for lp in /var/lib/apt/lists /var/lib/apt/lists/partial /var/lib/apt/periodic/update-success-stamp; do
    lm=$(stat -c %Y "$lp" 2>/dev/null) && [ "$lm" -gt "$lt" ] && lt=$lm
  done
  echo "$(date +%s) $lt $(ls /var/lib/apt/lists 2>/dev/null | grep -c _Packages)"
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
    push_files(&mut s, &probe.files.iter().collect::<Vec<_>>());
    push_dirs(&mut s, &probe.dirs.iter().collect::<Vec<_>>());
    s.push_str("m end -\n");
    s
}
