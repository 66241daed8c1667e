//! The tests' apt cache as the lab hosts see it: an apt-cacher-ng container (started by
//! [`super::offline::ensure_apt_cache`]) joined to a lab's network, and each host's apt
//! pointed at it.

use anyhow::{Context, Result, bail};
use xshell::{Shell, cmd};

use super::image::netsvc::MIRROR_PORT;

/// Names the running apt cache container ([`ensure_apt_cache`]) lab containers get their
/// Debian packages through; unset or empty: straight from Debian's archive.
pub const APT_CACHE_ENV: &str = "NODEPREP_LAB_APT_CACHE";

/// The apt cache container's name, and its volume's (the cache outlives the container).
pub const APT_CACHE: &str = "nodeprep-test-apt-cache";

/// Lab hosts' apt configuration for the cache (apt-cacher-ng as apt's HTTP proxy): a file of
/// the lab's, not nodeprep's (whose own proxy file, `90nodeprep-proxy`, comes later and wins).
pub const APT_CACHE_CONF: &str = "/etc/apt/apt.conf.d/00nodeprep-lab-cache";

/// The apt cache [`APT_CACHE_ENV`] names, if any, joined to the lab's `network`: its address
/// there (the caller disconnects it with [`leave_apt_cache`] before removing the network).
pub fn join_apt_cache(sh: &Shell, network: &str) -> Result<Option<(String, String)>> {
    let Some(cache) = std::env::var(APT_CACHE_ENV).ok().filter(|s| !s.is_empty()) else {
        return Ok(None);
    };
    cmd!(sh, "docker network connect {network} {cache}")
        .quiet()
        .run()
        .with_context(|| {
            format!("connecting the apt cache {cache} to {network} ({APT_CACHE_ENV})")
        })?;
    let ip = address_on(sh, &cache, network)?;
    Ok(Some((cache, ip)))
}

/// Disconnects the apt cache `cache` from the lab's `network`.
pub fn leave_apt_cache(sh: &Shell, network: &str, cache: &str) {
    let _ = cmd!(sh, "docker network disconnect -f {network} {cache}")
        .quiet()
        .ignore_stdout()
        .ignore_stderr()
        .run();
}

/// The shell that points a lab host's apt at the cache at `ip` (nothing on hosts without apt).
pub fn apt_cache_script(ip: &str) -> String {
    format!(
        "if [ -d /etc/apt/apt.conf.d ]; then printf 'Acquire::http::Proxy \"http://{ip}:{MIRROR_PORT}\";\\n' > {APT_CACHE_CONF}; fi"
    )
}

/// `container`'s address on `network`.
pub(super) fn address_on(sh: &Shell, container: &str, network: &str) -> Result<String> {
    let format = format!("{{{{(index .NetworkSettings.Networks \"{network}\").IPAddress}}}}");
    let ip = cmd!(sh, "docker inspect --format {format} {container}")
        .quiet()
        .read()?;
    let ip = ip.trim().to_owned();
    if ip.is_empty() {
        bail!("{container} has no address on {network}");
    }
    Ok(ip)
}
