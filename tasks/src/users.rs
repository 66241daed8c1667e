//! Accounts: the admin user for remote access (account, sudo group, password from a SHA-512
//! crypt hash, authorized ssh keys) and password expiry.
//!
//! State comes from /etc/passwd, /etc/group and /etc/shadow as the state probe read them. The
//! password is compared as a string with the hash in /etc/shadow and never re-hashed (a fresh
//! salt would report a change on every run); it reaches the host on the stdin of
//! `chpasswd -e`, never on argv, and /etc/shadow is never diffed or logged.
//!
//! After a command the engine is told what the host now has: the new contents where the
//! result is exactly known (usermod -aG, chpasswd, chage); after `useradd` (uid and gid chosen
//! by the host) the three files are read again, or, in check mode, the new account is
//! predicted so that the steps after it plan against it. Each change says what it did in one
//! line for `--diff`; the password line never shows the hash.

use crate::ctx::{Change, Ctx};
use crate::error::{Error, ErrorKind, Result};
use crate::facts::OsFamily;
use crate::file;
use crate::reads::Reads;
use crate::secret::Secret;
use crate::state::FileState;

pub const PASSWD: &str = "/etc/passwd";
pub const GROUP: &str = "/etc/group";
pub const SHADOW: &str = "/etc/shadow";

/// What these tasks read (see [`crate::plan::Reads`]).
pub const READS: Reads = Reads::files(&[PASSWD, GROUP, SHADOW]);

/// The admin account of the inventory.
#[derive(Debug, Clone, Copy)]
pub struct AdminUser<'a> {
    pub name: &'a str,
    /// A SHA-512 crypt hash (`$6$...`), as /etc/shadow holds it.
    pub password_hash: &'a Secret,
    /// Public keys for `~/.ssh/authorized_keys` (see [`authorized_keys`]).
    pub ssh_keys: &'a [String],
}

/// Step "admin user": the account exists ([`user_present`]), is in the sudo group
/// ([`sudo_group_member`]) and has the password ([`password`]). Keys are a step of their own:
/// [`authorized_keys`].
pub fn admin_user(cx: &mut Ctx, user: &AdminUser) -> Result<Change> {
    validate_name(user.name)?;
    validate_sha512_hash(user.password_hash)?;
    let mut c = user_present(cx, user.name)?;
    c |= sudo_group_member(cx, user.name)?;
    c |= password(cx, user.name, user.password_hash)?;
    Ok(c)
}

/// The account exists: `useradd -m -s /bin/bash` with its own primary group (`-U`, also on
/// Photon whose login.defs has `USERGROUPS_ENAB no` and would otherwise put it in `users`;
/// `-g NAME` when a group of that name is already there) and, when the sudo group exists, in it
/// (`-G wheel` / `-G sudo`). An existing account is left as it is.
pub fn user_present(cx: &mut Ctx, name: &str) -> Result<Change> {
    validate_name(name)?;
    let passwd = text(cx, PASSWD)?;
    if passwd_entry(&passwd, name).is_some() {
        return Ok(Change::Unchanged);
    }
    let group = text(cx, GROUP)?;
    let sudo = cx.facts().os.sudo_group();
    let own_group_exists = group_entry(&group, name).is_some();
    let mut argv = vec!["useradd", "-m", "-s", "/bin/bash"];
    if own_group_exists {
        argv.extend(["-g", name]);
    } else {
        argv.push("-U");
    }
    let sudo_exists = group_entry(&group, sudo).is_some();
    if sudo_exists {
        argv.extend(["-G", sudo]);
    }
    argv.push(name);
    cx.apply_touching(&argv, &[PASSWD, GROUP, SHADOW])?;
    if cx.check_mode() {
        predict_new_user(cx, name, own_group_exists, sudo_exists.then_some(sudo))?;
    }
    let groups = if sudo_exists {
        format!(", in group {sudo}")
    } else {
        String::new()
    };
    cx.note_done_or_would(
        format!("user {name}: created (useradd -m -s /bin/bash){groups}"),
        format!("user {name}: would be created (useradd -m -s /bin/bash){groups}"),
    );
    Ok(Change::Changed)
}

/// Check mode: the cache gets the account `useradd` would create, so that the next steps plan
/// against it (uid/gid as useradd picks them by default: the next free id from 1000; the
/// maximum password age as login.defs sets it: 90 on Photon, 99999 elsewhere).
fn predict_new_user(
    cx: &mut Ctx,
    name: &str,
    own_group_exists: bool,
    sudo: Option<&str>,
) -> Result<()> {
    let passwd = text(cx, PASSWD)?;
    let mut group = text(cx, GROUP)?;
    let shadow = text(cx, SHADOW)?;
    let uid = next_free_id(passwd.lines().filter_map(|l| l.split(':').nth(2)));
    let gid = if own_group_exists {
        group_entry(&group, name)
            .map(|g| g.gid.to_string())
            .unwrap_or_default()
    } else {
        let gids: Vec<&str> = group.lines().filter_map(|l| l.split(':').nth(2)).collect();
        let gid = if gids.iter().any(|g| g.parse() == Ok(uid)) {
            next_free_id(gids.into_iter())
        } else {
            uid
        };
        group = append_line(&group, &format!("{name}:x:{gid}:"));
        gid.to_string()
    };
    if let Some(sudo) = sudo {
        group = with_member(&group, sudo, name);
    }
    let max = match cx.facts().os {
        OsFamily::Photon => 90,
        OsFamily::Debian | OsFamily::Rhel => 99999,
    };
    cx.known(
        PASSWD,
        &append_line(
            &passwd,
            &format!("{name}:x:{uid}:{gid}::/home/{name}:/bin/bash"),
        ),
    );
    cx.known(GROUP, &group);
    cx.known(
        SHADOW,
        &append_line(&shadow, &format!("{name}:!::0:{max}:7:::")),
    );
    Ok(())
}

fn next_free_id<'a>(ids: impl Iterator<Item = &'a str>) -> u32 {
    ids.filter_map(|i| i.parse::<u32>().ok())
        .filter(|i| (1000..60000).contains(i))
        .max()
        .map_or(1000, |m| m + 1)
}

/// The user is a member of the sudo group (`wheel` on Photon and RHEL, `sudo` on Debian):
/// `usermod -aG` when not.
pub fn sudo_group_member(cx: &mut Ctx, name: &str) -> Result<Change> {
    let sudo = cx.facts().os.sudo_group();
    group_member(cx, name, sudo)
}

/// The user is a member of `group` (supplementary, or as primary group): `usermod -aG` when
/// not. Both the user and the group must exist.
pub fn group_member(cx: &mut Ctx, name: &str, group_name: &str) -> Result<Change> {
    validate_name(name)?;
    let passwd = text(cx, PASSWD)?;
    let group = text(cx, GROUP)?;
    let user = passwd_entry(&passwd, name).ok_or_else(|| no_user(name))?;
    let Some(g) = group_entry(&group, group_name) else {
        return Err(Error::invalid(format!(
            "group `{group_name}` does not exist on this host (it comes with the base system or the sudo package)"
        )));
    };
    if g.members.contains(&name) || g.gid == user.gid {
        return Ok(Change::Unchanged);
    }
    cx.apply(&["usermod", "-aG", group_name, name])?;
    cx.known(GROUP, &with_member(&group, group_name, name));
    cx.note_done_or_would(
        format!("user {name}: added to group {group_name}"),
        format!("user {name}: would be added to group {group_name}"),
    );
    Ok(Change::Changed)
}

/// The account's password is `hash`: `chpasswd -e` with `name:hash` on stdin when the hash in
/// /etc/shadow is another string.
pub fn password(cx: &mut Ctx, name: &str, hash: &Secret) -> Result<Change> {
    validate_name(name)?;
    validate_sha512_hash(hash)?;
    let shadow = text(cx, SHADOW)?;
    let Some(fields) = shadow_fields(&shadow, name) else {
        return Err(no_shadow(name));
    };
    if fields[1] == hash.expose() {
        return Ok(Change::Unchanged);
    }
    let line = format!("{name}:{}\n", hash.expose());
    cx.apply_cmd(crate::host::Cmd::new(&["chpasswd", "-e"]).stdin(line))?;
    cx.known(
        SHADOW,
        &with_shadow_fields(&shadow, name, &[(1, hash.expose())]),
    );
    cx.note_done_or_would(
        format!("user {name}: password set (hash not shown)"),
        format!("user {name}: password would be set (hash not shown)"),
    );
    Ok(Change::Changed)
}

/// The shadow fields `chage -I -1 -m 0 -M 99999 -E -1` leaves: minimum age 0, maximum 99999,
/// no inactivity period, no expiry date (the last two are empty fields).
const NO_EXPIRY: [(usize, &str); 4] = [(3, "0"), (4, "99999"), (6, ""), (7, "")];

/// Step "no password expiry" (call it for the admin user and for root): `chage -I -1 -m 0
/// -M 99999 -E -1 USER` unless /etc/shadow already says so.
pub fn no_password_expiry(cx: &mut Ctx, name: &str) -> Result<Change> {
    validate_name(name)?;
    let shadow = text(cx, SHADOW)?;
    let Some(fields) = shadow_fields(&shadow, name) else {
        return Err(no_shadow(name));
    };
    if NO_EXPIRY
        .iter()
        .all(|(i, v)| fields.get(*i).copied().unwrap_or("") == *v)
    {
        return Ok(Change::Unchanged);
    }
    cx.apply(&[
        "chage", "-I", "-1", "-m", "0", "-M", "99999", "-E", "-1", name,
    ])?;
    cx.known(SHADOW, &with_shadow_fields(&shadow, name, &NO_EXPIRY));
    cx.note_done_or_would(
        format!("user {name}: password never expires (chage -I -1 -m 0 -M 99999 -E -1)"),
        format!(
            "user {name}: password would be set never to expire (chage -I -1 -m 0 -M 99999 -E -1)"
        ),
    );
    Ok(Change::Changed)
}

/// Step "authorized keys": every key of `keys` is in `~NAME/.ssh/authorized_keys` (keys
/// already there are kept; a key counts as present when its type and blob are, whatever its
/// comment or options). `~/.ssh` is 0700 and the file 0600, both owned by the user and its
/// primary group (sshd's StrictModes refuses anything looser).
pub fn authorized_keys(cx: &mut Ctx, name: &str, keys: &[String]) -> Result<Change> {
    validate_name(name)?;
    for key in keys {
        validate_key(key)?;
    }
    let passwd = text(cx, PASSWD)?;
    let group = text(cx, GROUP)?;
    let user = passwd_entry(&passwd, name).ok_or_else(|| no_user(name))?;
    if user.home.is_empty() || !user.home.starts_with('/') || user.home == "/" {
        return Err(Error::invalid(format!(
            "user {name} has no usable home directory ({:?})",
            user.home
        )));
    }
    let group_name = group
        .lines()
        .find(|l| l.split(':').nth(2) == Some(user.gid))
        .and_then(|l| l.split(':').next())
        .unwrap_or(user.gid)
        .to_string();
    let home = user.home.trim_end_matches('/').to_string();
    let dir = format!("{home}/.ssh");
    let path = format!("{dir}/authorized_keys");
    // The user's own directory: read and written as the user (see `ctx/owned.rs`).
    cx.prefetch_as(name, &[&dir, &path])?;
    // Both looked at before anything is done: a link or a pipe in either is refused first.
    cx.file(&dir)?;
    let current = cx.file(&path)?.map(|f| f.text()).unwrap_or_default();
    let mut c = owned_dir(cx, &dir, 0o700, name, &group_name)?;
    let wanted = with_keys(&current, keys);
    c |= owned_file(cx, &path, &wanted, 0o600, name, &group_name)?;
    Ok(c)
}

/// `text` with each key of `keys` appended unless a line already holds it.
pub fn with_keys(text: &str, keys: &[String]) -> String {
    let mut out = text.to_string();
    for key in keys {
        let id = key_id(key);
        if id.is_some() && out.lines().any(|l| key_id(l) == id) {
            continue;
        }
        out = append_line(&out, key.trim());
    }
    out
}

/// The type and blob of a key line (`None` for comments, blank or unparsable lines).
fn key_id(line: &str) -> Option<(&str, &str)> {
    let line = line.trim();
    if line.starts_with('#') {
        return None;
    }
    if !line.is_ascii() {
        let mut words = line.split_whitespace();
        let kind = words.find(|w| is_key_type(w))?;
        return Some((kind, words.next()?));
    }
    // An ASCII line (every key line): its words split at the bytes `split_whitespace` splits
    // at, in one pass over the bytes, stopping at the blob.
    let b = line.as_bytes();
    let space = |c: u8| matches!(c, b' ' | b'\t'..=b'\r');
    let (mut i, mut kind) = (0, None);
    while i < b.len() {
        while i < b.len() && space(b[i]) {
            i += 1;
        }
        let start = i;
        while i < b.len() && !space(b[i]) {
            i += 1;
        }
        let word = &line[start..i];
        match kind {
            Some(kind) if !word.is_empty() => return Some((kind, word)),
            None if is_key_type(word) => kind = Some(word),
            _ => {}
        }
    }
    None
}

fn is_key_type(word: &str) -> bool {
    word.starts_with("ssh-")
        || word.starts_with("ecdsa-sha2-")
        || word.starts_with("sk-ssh-")
        || word.starts_with("sk-ecdsa-")
}

/// A public key line: one line, a key type followed by a base64 blob.
pub fn validate_key(key: &str) -> Result<()> {
    let ok = !key.trim().contains('\n')
        && key_id(key).is_some_and(|(_, blob)| {
            blob.len() >= 16
                && blob.bytes().all(
                    |b| matches!(b, b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'+' | b'/' | b'='),
                )
        });
    if ok {
        Ok(())
    } else {
        let shown: String = key.chars().take(24).collect();
        Err(Error::invalid(format!(
            "not an ssh public key line: {shown:?}…"
        )))
    }
}

/// A user or group name as shadow's tools accept it (and no more): `[a-z_][a-z0-9_-]*`, at most
/// 32 characters.
pub fn validate_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 32
        && name.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(format!(
            "invalid user name {name:?}: expected [a-z_][a-z0-9_-]*, at most 32 characters"
        )))
    }
}

/// A SHA-512 crypt hash as `mkpasswd -m sha-512` or `openssl passwd -6` print it:
/// `$6$[rounds=N$]SALT$HASH`, salt of 1 to 16 characters and hash of 86, both in crypt's
/// alphabet `[./0-9A-Za-z]`. A plaintext password fails here.
pub fn validate_sha512_hash(hash: &Secret) -> Result<()> {
    if is_sha512_crypt(hash.expose()) {
        Ok(())
    } else {
        Err(Error::invalid(
            "the password must be a SHA-512 crypt hash ($6$SALT$HASH, e.g. from `mkpasswd -m sha-512` or `openssl passwd -6`), not a plaintext password",
        ))
    }
}

pub fn is_sha512_crypt(s: &str) -> bool {
    let crypt_chars = |t: &str| {
        // A plain loop: the 86 characters of the hash, for every host.
        let b = t.as_bytes();
        let mut i = 0;
        while i < b.len() && matches!(b[i], b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'.' | b'/') {
            i += 1;
        }
        i == b.len()
    };
    let Some(rest) = s.strip_prefix("$6$") else {
        return false;
    };
    let mut parts: Vec<&str> = rest.split('$').collect();
    if let Some(rounds) = parts.first().and_then(|p| p.strip_prefix("rounds=")) {
        if !rounds
            .parse::<u32>()
            .is_ok_and(|r| (1000..=999_999_999).contains(&r))
        {
            return false;
        }
        parts.remove(0);
    }
    matches!(parts.as_slice(), [salt, hash]
        if (1..=16).contains(&salt.len()) && crypt_chars(salt) && hash.len() == 86 && crypt_chars(hash))
}

// ---- /etc/passwd, /etc/group, /etc/shadow ------------------------------------------------

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasswdEntry<'a> {
    pub uid: &'a str,
    pub gid: &'a str,
    pub home: &'a str,
    pub shell: &'a str,
}

pub fn passwd_entry<'a>(passwd: &'a str, name: &str) -> Option<PasswdEntry<'a>> {
    passwd.lines().filter(|l| names(l, name)).find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.len() >= 7 && f[0] == name).then(|| PasswdEntry {
            uid: f[2],
            gid: f[3],
            home: f[5],
            shell: f[6],
        })
    })
}

/// The line of `/etc/passwd`, `/etc/group` or `/etc/shadow` is `name`'s (its first field is
/// `name`): looked at before the line is split into its fields.
fn names(line: &str, name: &str) -> bool {
    line.len() > name.len() && line.as_bytes()[name.len()] == b':' && line.starts_with(name)
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupEntry<'a> {
    pub gid: &'a str,
    pub members: Vec<&'a str>,
}

pub fn group_entry<'a>(group: &'a str, name: &str) -> Option<GroupEntry<'a>> {
    group.lines().filter(|l| names(l, name)).find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.len() >= 4 && f[0] == name).then(|| GroupEntry {
            gid: f[2],
            members: f[3].split(',').filter(|m| !m.is_empty()).collect(),
        })
    })
}

/// The group file with `user` added to the members of `group_name`.
fn with_member(group: &str, group_name: &str, user: &str) -> String {
    map_lines(group, |l| {
        let f: Vec<&str> = l.split(':').collect();
        if f.len() >= 4 && f[0] == group_name {
            let sep = if f[3].is_empty() { "" } else { "," };
            Some(format!("{}:{}:{}:{}{sep}{user}", f[0], f[1], f[2], f[3]))
        } else {
            None
        }
    })
}

/// The nine fields of the user's shadow line (missing trailing fields read as empty).
fn shadow_fields<'a>(shadow: &'a str, name: &str) -> Option<Vec<&'a str>> {
    shadow.lines().filter(|l| names(l, name)).find_map(|l| {
        let mut f: Vec<&str> = l.split(':').collect();
        (f.len() >= 2 && f[0] == name).then(|| {
            f.resize(9.max(f.len()), "");
            f
        })
    })
}

fn with_shadow_fields(shadow: &str, name: &str, set: &[(usize, &str)]) -> String {
    map_lines(shadow, |l| {
        let mut f: Vec<&str> = l.split(':').collect();
        if f.len() < 2 || f[0] != name {
            return None;
        }
        f.resize(9.max(f.len()), "");
        for (i, v) in set {
            f[*i] = v;
        }
        Some(f.join(":"))
    })
}

fn map_lines(text: &str, mut f: impl FnMut(&str) -> Option<String>) -> String {
    let mut out = String::with_capacity(text.len() + 32);
    for line in text.split_inclusive('\n') {
        let bare = line.strip_suffix('\n').unwrap_or(line);
        match f(bare) {
            Some(new) => {
                out.push_str(&new);
                if line.ends_with('\n') {
                    out.push('\n');
                }
            }
            None => out.push_str(line),
        }
    }
    out
}

fn append_line(text: &str, line: &str) -> String {
    let mut out = text.to_string();
    if !out.is_empty() && !out.ends_with('\n') {
        out.push('\n');
    }
    out.push_str(line);
    out.push('\n');
    out
}

fn text(cx: &mut Ctx, path: &str) -> Result<String> {
    Ok(cx.file(path)?.map(|f| f.text()).unwrap_or_default())
}

fn no_user(name: &str) -> Error {
    Error::invalid(format!("user {name} does not exist on this host"))
}

fn no_shadow(name: &str) -> Error {
    Error::new(
        ErrorKind::Invalid,
        format!(
            "user {name} has no entry in /etc/shadow (or /etc/shadow could not be read: the run needs root)"
        ),
    )
}

// ---- files owned by a user ---------------------------------------------------------------

/// A directory of `owner`'s, with this mode, in a directory of theirs: created by the user
/// (`mkdir -m`) when absent; given to them with `chown -h` (which follows no link) when
/// another owns it, its mode then set by the user. A link there is refused (`cx.file`).
fn owned_dir(cx: &mut Ctx, path: &str, mode: u32, owner: &str, group: &str) -> Result<Change> {
    let mode_s = format!("{mode:04o}");
    match cx.file(path)? {
        None => {
            cx.apply_as(owner, &["mkdir", "-m", &mode_s, "--", path])?;
            cx.note_done_or_would(
                format!("{path}: directory created, {mode_s} {owner}:{group}"),
                format!("{path}: directory would be created, {mode_s} {owner}:{group}"),
            );
        }
        Some(d) if !d.is_dir => {
            return Err(Error::invalid(format!(
                "{path} exists and is not a directory"
            )));
        }
        Some(d) => {
            if d.mode == mode && d.owner == owner && d.group == group {
                return Ok(Change::Unchanged);
            }
            if d.owner != owner || d.group != group {
                cx.apply(&["chown", "-h", &format!("{owner}:{group}"), "--", path])?;
            }
            if d.mode != mode {
                cx.apply_as(owner, &["chmod", &mode_s, "--", path])?;
            }
            cx.note_change(format!(
                "{path}: mode/owner {:04o} {}:{} -> {mode_s} {owner}:{group}",
                d.mode, d.owner, d.group
            ));
        }
    }
    cx.known_dir(path, mode, owner, group);
    Ok(Change::Changed)
}

/// As [`file::content`], for a file of `owner`'s in a directory of theirs: written by the
/// user ([`Ctx::write_file_as`]); a file of the right content that another owns is given to
/// them with `chown -h`, its mode set by the user. A link, a device or a pipe there is
/// refused (`cx.file`).
fn owned_file(
    cx: &mut Ctx,
    path: &str,
    content: &str,
    mode: u32,
    owner: &str,
    group: &str,
) -> Result<Change> {
    let current = cx.file(path)?;
    match &current {
        Some(c) if c.is_dir => Err(Error::invalid(format!(
            "{path} is a directory, expected a file"
        ))),
        Some(c) if c.content == content.as_bytes() => {
            if c.mode == mode && c.owner == owner && c.group == group {
                return Ok(Change::Unchanged);
            }
            if c.owner != owner || c.group != group {
                cx.apply(&["chown", "-h", &format!("{owner}:{group}"), "--", path])?;
            }
            if c.mode != mode {
                cx.apply_as(owner, &["chmod", &format!("{mode:04o}"), "--", path])?;
            }
            cx.known_mode(path, mode, owner, group);
            cx.note_change(format!(
                "{path}: mode/owner {:04o} {}:{} -> {mode:04o} {owner}:{group}",
                c.mode, c.owner, c.group
            ));
            Ok(Change::Changed)
        }
        _ => {
            if cx.diff_wanted() {
                let old = current.as_ref().map(FileState::text);
                cx.record_diff(file::unified_diff(path, old.as_deref(), content));
            }
            cx.write_file_as(owner, path, content.as_bytes(), mode, group)?;
            Ok(Change::Changed)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ctx::Mode;
    use crate::host::Output;
    use crate::testing::{Fixture, actions as strings};
    use expect_test::expect;

    /// A real SHA-512 crypt hash of "secret" (random salt, as mkpasswd makes them).
    fn hash() -> Secret {
        let params = sha_crypt::Sha512Params::new(sha_crypt::ROUNDS_DEFAULT).unwrap();
        let h = sha_crypt::sha512_simple("secret", &params).unwrap();
        assert!(sha_crypt::sha512_check("secret", &h).is_ok(), "{h}");
        Secret::new(h)
    }

    const KEY: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGxJtH1l2d7ebWk3Vt6e2e0m3Jz1rQb8X2u6m7c8d9e0 ops@admin";
    const KEY2: &str = "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQC7 other@laptop";

    /// A key line's type and blob, as the words `split_whitespace` makes give them.
    #[test]
    fn key_ids_as_whitespace_splits_them() {
        let reference = |line: &str| -> Option<(String, String)> {
            let line = line.trim();
            if line.starts_with('#') {
                return None;
            }
            let words: Vec<&str> = line.split_whitespace().collect();
            let at = words.iter().position(|w| is_key_type(w))?;
            Some((words[at].to_string(), words.get(at + 1)?.to_string()))
        };
        for line in [
            KEY,
            KEY2,
            "",
            "   ",
            "# ssh-ed25519 AAAA",
            "ssh-ed25519",
            "ssh-ed25519   ",
            "from=\"10.0.0.1\",no-pty ssh-ed25519 AAAAC3 comment here",
            "ssh-ed25519\tAAAAC3\tc",
            "ssh-ed25519\u{b}AAAAC3\u{c}c",
            "ssh-ed25519\u{a0}AAAAC3 c",
            "ssh-ed25519 AAAAC3\u{2003}c d",
            "ecdsa-sha2-nistp256 AAAAE2 x",
            "sk-ssh-ed25519@openssh.com AAAAG y",
            "no key here at all",
            "  \t ssh-rsa   AAAAB3NzaC1yc2E   é  ",
        ] {
            let got = key_id(line).map(|(a, b)| (a.to_string(), b.to_string()));
            assert_eq!(got, reference(line), "{line:?}");
        }
    }

    /// An entry is found by its first field only.
    #[test]
    fn entries_by_their_first_field() {
        let passwd = "root:x:0:0:root:/root:/bin/bash\nadm:x:3:4::/var/adm:/sbin/nologin\nadmin:x:1000:1000::/home/admin:/bin/bash\nadmin2\n";
        assert_eq!(passwd_entry(passwd, "admin").unwrap().uid, "1000");
        assert_eq!(passwd_entry(passwd, "adm").unwrap().uid, "3");
        assert!(passwd_entry(passwd, "ad").is_none());
        assert!(passwd_entry(passwd, "admin2").is_none());
        assert!(passwd_entry(passwd, "root:x").is_none());
        let group = "sudo:x:27:admin,ops\nsudoers:x:28:\n";
        assert_eq!(
            group_entry(group, "sudo").unwrap().members,
            ["admin", "ops"]
        );
        assert!(group_entry(group, "sud").is_none());
        let shadow = "admin:$6$x:19000::::::\n";
        assert_eq!(shadow_fields(shadow, "admin").unwrap()[1], "$6$x");
        assert!(shadow_fields(shadow, "admi").is_none());
    }

    fn admin<'a>(h: &'a Secret, keys: &'a [String]) -> AdminUser<'a> {
        AdminUser {
            name: "admin",
            password_hash: h,
            ssh_keys: keys,
        }
    }

    /// A Photon host where the admin account is already as wanted.
    fn photon_done(h: &Secret) -> Fixture {
        Fixture::photon()
            .file(
                PASSWD,
                "root:x:0:0:root:/root:/bin/bash\nadmin:x:1000:1000::/home/admin:/bin/bash\n",
                0o644,
            )
            .file(GROUP, "root:x:0:\nwheel:x:10:admin\nadmin:x:1000:\n", 0o644)
            .file(
                SHADOW,
                &format!(
                    "root:*:19000:0:99999:7:::\nadmin:{}:19000:0:99999:7:::\n",
                    h.expose()
                ),
                0o600,
            )
    }

    /// A probe reply holding these files (what `sh -s` answers on a cache miss).
    fn files_reply(files: &[(&str, &str)]) -> Output {
        let out = crate::testing::files_reply(files);
        Output {
            status: Some(0),
            stdout: out.into_bytes(),
            stderr: Vec::new(),
        }
    }

    #[test]
    fn hash_format() {
        let h = hash();
        assert!(is_sha512_crypt(h.expose()));
        let with_rounds = h.expose().replace("$6$", "$6$rounds=656000$");
        assert!(is_sha512_crypt(&with_rounds));
        // One character of the hash outside the crypt alphabet.
        for c in ['*', '-', '$', 'é'] {
            let mut bad = h.expose().to_string();
            bad.pop();
            bad.push(c);
            assert!(!is_sha512_crypt(&bad), "{bad}");
        }
        for bad in [
            "secret",
            "$6$",
            "$6$salt$short",
            "$5$saltsalt$abc",
            "$6$rounds=1$saltsalt$x",
            "!",
        ] {
            assert!(!is_sha512_crypt(bad), "{bad}");
        }
        let err = validate_sha512_hash(&Secret::new("hunter2")).unwrap_err();
        assert!(!err.to_string().contains("hunter2"));
    }

    #[test]
    fn names_and_keys_validated() {
        assert!(validate_name("admin").is_ok());
        for bad in ["", "Admin", "a b", "-x", "x:y", "0abc"] {
            assert!(validate_name(bad).is_err(), "{bad}");
        }
        assert!(validate_key(KEY).is_ok());
        assert!(
            validate_key("from=\"10.0.0.0/8\" ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQC7").is_ok()
        );
        assert!(validate_key("hello world").is_err());
        assert!(validate_key(&format!("{KEY}\n{KEY2}")).is_err());
    }

    #[test]
    fn keys_merged() {
        let existing = "# keys\nssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQC7 renamed@comment\n";
        let out = with_keys(existing, &[KEY.to_string(), KEY2.to_string()]);
        expect![[r#"
            # keys
            ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQC7 renamed@comment
            ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGxJtH1l2d7ebWk3Vt6e2e0m3Jz1rQb8X2u6m7c8d9e0 ops@admin
        "#]]
        .assert_eq(&out);
        assert_eq!(with_keys(&out, &[KEY.to_string()]), out);
        assert_eq!(with_keys("", &[KEY2.to_string()]), format!("{KEY2}\n"));
    }

    #[test]
    fn files_parsed_and_edited() {
        let group = "root:x:0:\nwheel:x:10:\nsudo:x:27:bob\n";
        assert_eq!(
            with_member(group, "wheel", "admin"),
            "root:x:0:\nwheel:x:10:admin\nsudo:x:27:bob\n"
        );
        assert_eq!(
            with_member(group, "sudo", "admin"),
            "root:x:0:\nwheel:x:10:\nsudo:x:27:bob,admin\n"
        );
        assert_eq!(group_entry(group, "sudo").unwrap().members, vec!["bob"]);
        let shadow = "root:*:19000:0:90:7:::\nbob:!:19000\n";
        assert_eq!(
            with_shadow_fields(shadow, "bob", &NO_EXPIRY),
            "root:*:19000:0:90:7:::\nbob:!:19000:0:99999::::\n"
        );
        assert_eq!(shadow_fields(shadow, "root").unwrap()[4], "90");
        let p = passwd_entry("admin:x:1000:1000::/home/admin:/bin/bash\n", "admin").unwrap();
        assert_eq!((p.gid, p.home), ("1000", "/home/admin"));
    }

    #[test]
    fn new_admin_on_photon() {
        let h = hash();
        let keys = [KEY.to_string()];
        let (mut cx, rec) = Fixture::photon()
            .file(GROUP, "root:x:0:\nwheel:x:10:\nusers:x:100:\n", 0o644)
            .ctx(Mode::Apply);
        // After useradd the account files are read again: what the host then has.
        rec.reply(
            "sh -s",
            files_reply(&[
                (
                    PASSWD,
                    "root:x:0:0:root:/root:/bin/bash\nadmin:x:1000:1000::/home/admin:/bin/bash\n",
                ),
                (
                    GROUP,
                    "root:x:0:\nwheel:x:10:admin\nusers:x:100:\nadmin:x:1000:\n",
                ),
                (SHADOW, "root:*:19000:0:90:7:::\nadmin:!:20000:0:90:7:::\n"),
            ]),
        );
        // The admin's own files are read as the admin: none yet.
        rec.reply("runuser -u admin -- sh -s", files_reply(&[]));
        let c = admin_user(&mut cx, &admin(&h, &keys)).unwrap();
        assert_eq!(c, Change::Changed);
        let c = authorized_keys(&mut cx, "admin", &keys).unwrap();
        assert_eq!(c, Change::Changed);
        assert_eq!(
            no_password_expiry(&mut cx, "admin").unwrap(),
            Change::Changed
        );
        assert_eq!(
            no_password_expiry(&mut cx, "root").unwrap(),
            Change::Changed
        );
        expect![[r#"
            [
                "run useradd -m -s /bin/bash -U -G wheel admin",
                "run chpasswd -e",
                "run runuser -u admin -- mkdir -m 0700 -- /home/admin/.ssh",
                "write /home/admin/.ssh/authorized_keys 0600 admin:admin",
                "run chage -I -1 -m 0 -M 99999 -E -1 admin",
                "run chage -I -1 -m 0 -M 99999 -E -1 root",
            ]
        "#]]
        .assert_debug_eq(&strings(&cx));
        // The hash went on stdin, never on argv.
        let cmds = rec.commands();
        let chpasswd = cmds.iter().find(|c| c.argv[0] == "chpasswd").unwrap();
        assert_eq!(
            chpasswd.stdin.as_deref(),
            Some(format!("admin:{}\n", h.expose()).as_bytes())
        );
        assert!(
            cmds.iter()
                .all(|c| !c.argv.iter().any(|a| a.contains(h.expose())))
        );
        // The same run, asked again, sees nothing left to do.
        let before = cx.actions().len();
        assert_eq!(
            admin_user(&mut cx, &admin(&h, &keys)).unwrap(),
            Change::Unchanged
        );
        assert_eq!(
            authorized_keys(&mut cx, "admin", &keys).unwrap(),
            Change::Unchanged
        );
        assert_eq!(
            no_password_expiry(&mut cx, "admin").unwrap(),
            Change::Unchanged
        );
        assert_eq!(cx.actions().len(), before);
    }

    #[test]
    fn new_admin_on_debian_check_mode() {
        let h = hash();
        let keys = [KEY.to_string()];
        let (mut cx, rec) = Fixture::debian()
            .file(
                PASSWD,
                "root:x:0:0:root:/root:/bin/bash\nbob:x:1000:1000::/home/bob:/bin/bash\n",
                0o644,
            )
            .file(GROUP, "root:x:0:\nsudo:x:27:\nbob:x:1000:\n", 0o644)
            .absent("/home/admin/.ssh")
            .absent("/home/admin/.ssh/authorized_keys")
            .ctx(Mode::Check);
        assert_eq!(
            admin_user(&mut cx, &admin(&h, &keys)).unwrap(),
            Change::Changed
        );
        assert_eq!(
            authorized_keys(&mut cx, "admin", &keys).unwrap(),
            Change::Changed
        );
        assert_eq!(
            no_password_expiry(&mut cx, "admin").unwrap(),
            Change::Unchanged,
            "Debian's login.defs"
        );
        expect![[r#"
            [
                "run useradd -m -s /bin/bash -U -G sudo admin",
                "run chpasswd -e",
                "run runuser -u admin -- mkdir -m 0700 -- /home/admin/.ssh",
                "write /home/admin/.ssh/authorized_keys 0600 admin:admin",
            ]
        "#]]
        .assert_debug_eq(&strings(&cx));
        assert!(
            rec.commands().is_empty(),
            "check mode ran {:?}",
            rec.commands()
        );
        // The prediction: uid 1001 (after bob), its own group, in sudo.
        assert!(
            text(&mut cx, PASSWD)
                .unwrap()
                .contains("admin:x:1001:1001::/home/admin:/bin/bash\n")
        );
        assert!(text(&mut cx, GROUP).unwrap().contains("sudo:x:27:admin\n"));
    }

    /// A link (or a pipe, a device) the user left in their own `.ssh` is refused, naming the
    /// path, before anything is run; the keys are read and written as the user.
    #[test]
    fn links_in_the_users_directory_refused() {
        use crate::state::Unread;
        let keys = [KEY.to_string()];
        for (path, what) in [
            ("/home/admin/.ssh", "symbolic link"),
            ("/home/admin/.ssh/authorized_keys", "symbolic link"),
            ("/home/admin/.ssh/authorized_keys", "fifo"),
        ] {
            let h = hash();
            let (mut cx, rec) = photon_done(&h)
                .dir("/home/admin/.ssh")
                .absent("/home/admin/.ssh/authorized_keys")
                .ctx(Mode::Apply);
            cx.state_mut().files.remove(path);
            cx.state_mut()
                .unread
                .insert(path.into(), Unread::NotRegular(what.into()));
            let e = authorized_keys(&mut cx, "admin", &keys).unwrap_err();
            assert!(
                e.to_string().contains(&format!("{path} is a {what}")),
                "{e}"
            );
            assert!(rec.commands().is_empty(), "{:?}", rec.commands());
        }
        let h = hash();
        let (mut cx, rec) = photon_done(&h)
            .dir("/home/admin/.ssh")
            .absent("/home/admin/.ssh/authorized_keys")
            .ctx(Mode::Apply);
        let Some(Some(st)) = cx.state_mut().files.get_mut("/home/admin/.ssh") else {
            unreachable!()
        };
        (st.owner, st.group, st.mode) = ("admin".into(), "admin".into(), 0o700);
        assert_eq!(
            authorized_keys(&mut cx, "admin", &keys).unwrap(),
            Change::Changed
        );
        let cmds = rec.commands();
        assert_eq!(cmds.len(), 1, "{cmds:?}");
        assert_eq!(cmds[0].argv[..5], ["runuser", "-u", "admin", "--", "sh"]);
        assert!(
            cmds[0]
                .argv
                .contains(&"/home/admin/.ssh/authorized_keys".to_string())
                && !cmds[0].argv.iter().any(|a| a.starts_with("chown")),
            "{cmds:?}"
        );
    }

    #[test]
    fn no_change_when_done() {
        let h = hash();
        let keys = [KEY.to_string()];
        let (mut cx, rec) = photon_done(&h)
            .dir("/home/admin/.ssh")
            .file(
                "/home/admin/.ssh/authorized_keys",
                &format!("{KEY2}\n{KEY}\n"),
                0o600,
            )
            .ctx(Mode::Apply);
        for f in ["/home/admin/.ssh", "/home/admin/.ssh/authorized_keys"] {
            let Some(Some(st)) = cx.state_mut().files.get_mut(f) else {
                unreachable!()
            };
            st.owner = "admin".into();
            st.group = "admin".into();
            st.mode = if st.is_dir { 0o700 } else { 0o600 };
        }
        assert_eq!(
            admin_user(&mut cx, &admin(&h, &keys)).unwrap(),
            Change::Unchanged
        );
        assert_eq!(
            authorized_keys(&mut cx, "admin", &keys).unwrap(),
            Change::Unchanged
        );
        assert_eq!(
            no_password_expiry(&mut cx, "admin").unwrap(),
            Change::Unchanged
        );
        assert_eq!(
            no_password_expiry(&mut cx, "root").unwrap(),
            Change::Unchanged
        );
        assert!(cx.actions().is_empty(), "{:?}", cx.actions());
        assert!(rec.commands().is_empty());
    }

    #[test]
    fn existing_user_fixed_up() {
        let h = hash();
        let (mut cx, _rec) = Fixture::rhel()
            .file(
                PASSWD,
                "root:x:0:0:root:/root:/bin/bash\nadmin:x:1000:1000::/home/admin:/bin/bash\n",
                0o644,
            )
            .file(GROUP, "root:x:0:\nwheel:x:10:bob\nadmin:x:1000:\n", 0o644)
            .file(
                SHADOW,
                "root:*:19000:0:99999:7:::\nadmin:$6$other$x:19000:0:99999:7:::\n",
                0o600,
            )
            .dir("/home/admin/.ssh")
            .absent("/home/admin/.ssh/authorized_keys")
            .ctx(Mode::Apply);
        assert_eq!(
            admin_user(&mut cx, &admin(&h, &[])).unwrap(),
            Change::Changed
        );
        // ~/.ssh exists, root-owned 0755 (e.g. made by hand): fixed, the file created.
        assert_eq!(
            authorized_keys(&mut cx, "admin", &[KEY.to_string()]).unwrap(),
            Change::Changed
        );
        expect![[r#"
            [
                "run usermod -aG wheel admin",
                "run chpasswd -e",
                "run chown -h admin:admin -- /home/admin/.ssh",
                "run runuser -u admin -- chmod 0700 -- /home/admin/.ssh",
                "write /home/admin/.ssh/authorized_keys 0600 admin:admin",
            ]
        "#]]
        .assert_debug_eq(&strings(&cx));
        assert!(
            text(&mut cx, GROUP)
                .unwrap()
                .contains("wheel:x:10:bob,admin\n")
        );
        assert!(
            text(&mut cx, SHADOW)
                .unwrap()
                .contains(&format!("admin:{}:19000", h.expose()))
        );
    }

    /// The admin exists with the right password but is not in the sudo group: the only change
    /// is `usermod -aG`, and the step's diff names the group.
    #[test]
    fn group_only_change_has_a_diff() {
        let h = hash();
        let (mut cx, _rec) = photon_done(&h)
            .file(GROUP, "root:x:0:\nwheel:x:10:\nadmin:x:1000:\n", 0o644)
            .ctx(Mode::Apply);
        let c = cx
            .step("admin user", |cx| admin_user(cx, &admin(&h, &[])))
            .unwrap();
        assert_eq!(c, Change::Changed);
        let r = &cx.records()[0];
        assert_eq!(r.outcome, crate::ctx::Outcome::Changed);
        expect![[r#"
            [
                "run usermod -aG wheel admin",
            ]
        "#]]
        .assert_debug_eq(&strings(&cx));
        assert_eq!(r.diffs, ["user admin: added to group wheel\n"]);
    }

    #[test]
    fn shadow_never_in_diffs() {
        let h = hash();
        let (mut cx, _rec) = Fixture::photon()
            .file(GROUP, "root:x:0:\nwheel:x:10:\n", 0o644)
            .ctx(Mode::Check);
        let _ = cx
            .step("admin", |cx| admin_user(cx, &admin(&h, &[])))
            .unwrap();
        let r = &cx.records()[0];
        // The step says what it would do (check mode), in lines that hold nothing of the hash
        // or of /etc/shadow: no file diff at all.
        let diffs = r.diffs.concat();
        expect![[r#"
            user admin: would be created (useradd -m -s /bin/bash), in group wheel
            user admin: password would be set (hash not shown)
        "#]]
        .assert_eq(&diffs);
        assert!(
            !diffs.contains(h.expose()) && !diffs.contains("$6$"),
            "{diffs}"
        );
        assert!(!diffs.contains(SHADOW) && !diffs.contains("@@"), "{diffs}");
        assert!(!format!("{:?}", r.actions).contains(h.expose()));
    }

    #[test]
    fn bad_input_refused() {
        let (mut cx, _rec) = Fixture::photon().ctx(Mode::Apply);
        let plain = Secret::new("hunter2");
        assert!(admin_user(&mut cx, &admin(&plain, &[])).is_err());
        assert!(authorized_keys(&mut cx, "nobody", &[KEY.to_string()]).is_err());
        assert!(cx.actions().is_empty());
    }
}
