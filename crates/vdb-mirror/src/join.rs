//! The mirror operator's side of joining a network (`vdbd mirror join`) and of managing the
//! mirror's own registry record afterwards (`vdbd mirror maintenance|update|rotate-key|leave`).
//!
//! Every request is a [`MirrorRequest`] signed by the mirror's identity key and sent to every
//! master given (by default the `masters` of the mirror's configuration): each master checks and
//! records it, and the masters replicate the registry (and pending join requests) between them,
//! so one master that answers is enough; sending to all makes the change visible on each at once.

use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context as _, bail};
use vdb_client::Admin;
use vdb_proto::{
    Clock, JoinState, MaintenanceWindow, MirrorAction, MirrorChanges, MirrorRecord, MirrorRequest,
    SecretKey, Signed, SystemClock,
};

use crate::Config;

/// Who the requests go to, and what to override of the configuration.
#[derive(Debug, Clone, Default)]
pub struct Target {
    /// Masters to send to (empty: the configuration's `masters`).
    pub masters: Vec<String>,
}

impl Target {
    fn masters(&self, config: &Config) -> Vec<String> {
        if self.masters.is_empty() {
            config.masters.clone()
        } else {
            self.masters.clone()
        }
    }
}

/// Fields given on the command line (they override the configuration's `[registration]`).
#[derive(Debug, Clone, Default)]
pub struct Fields {
    /// Public base URLs.
    pub base_urls: Vec<String>,
    /// Push URL.
    pub push_url: Option<String>,
    /// Host names.
    pub hosts: Vec<String>,
    /// Addresses.
    pub addresses: Vec<IpAddr>,
    /// Country code.
    pub country: Option<String>,
    /// Region.
    pub region: Option<String>,
    /// Bandwidth in Mbit/s.
    pub bandwidth_mbps: Option<u32>,
    /// Admin contact.
    pub admin_contact: Option<String>,
}

impl Fields {
    fn is_empty(&self) -> bool {
        self.base_urls.is_empty()
            && self.push_url.is_none()
            && self.hosts.is_empty()
            && self.addresses.is_empty()
            && self.country.is_none()
            && self.region.is_none()
            && self.bandwidth_mbps.is_none()
            && self.admin_contact.is_none()
    }
}

/// How `vdbd mirror join` waits.
#[derive(Debug, Clone)]
pub struct Wait {
    /// Return once the request is sent.
    pub no_wait: bool,
    /// Ask again after a rejection (otherwise a rejection is reported, not re-sent).
    pub resubmit: bool,
    /// Give up waiting after this long (the request stays pending on the masters).
    pub timeout: Duration,
    /// Ask the masters this often.
    pub every: Duration,
}

/// The record `config` (and `fields`) describe, with `key` pinned.
fn record(config: &Config, fields: &Fields, key: &SecretKey) -> anyhow::Result<MirrorRecord> {
    let reg = &config.registration;
    let base_urls = if fields.base_urls.is_empty() {
        reg.base_urls.clone()
    } else {
        fields.base_urls.clone()
    };
    let Some(first) = base_urls.first() else {
        bail!(
            "no public base URL: set `base_urls` in the [registration] section of the mirror's config, or pass --base-url"
        );
    };
    let mut r = MirrorRecord::new(config.name.clone(), first.clone());
    r.base_urls = base_urls.clone();
    r.push_url = Some(
        fields
            .push_url
            .clone()
            .or_else(|| reg.push_url.clone())
            .unwrap_or_else(|| {
                format!("{}{}", first.trim_end_matches('/'), vdb_proto::paths::PUSH)
            }),
    );
    r.hosts = if fields.hosts.is_empty() {
        config.hosts.clone()
    } else {
        fields.hosts.clone()
    };
    r.addresses = if fields.addresses.is_empty() {
        reg.addresses.clone()
    } else {
        fields.addresses.clone()
    };
    r.country = fields.country.clone().or_else(|| reg.country.clone());
    r.region = fields.region.clone().or_else(|| reg.region.clone());
    if let Some(b) = fields.bandwidth_mbps.or(reg.bandwidth_mbps) {
        r.bandwidth_mbps = b;
    }
    r.admin_contact = fields
        .admin_contact
        .clone()
        .or_else(|| reg.admin_contact.clone());
    r.identity_key = Some(key.public());
    Ok(r)
}

fn read_key(config: &Config) -> anyhow::Result<SecretKey> {
    let path = config.identity_key_file();
    let text = std::fs::read_to_string(&path).with_context(|| {
        format!(
            "the identity key {} (made by `vdbd mirror join`)",
            path.display()
        )
    })?;
    SecretKey::from_text(&text).with_context(|| format!("in {}", path.display()))
}

/// Sends `env` to every master with `send`; prints one line per master; fails only when no
/// master took it.
async fn to_every_master<T, F, Fut>(
    masters: &[String],
    what: &str,
    send: F,
) -> anyhow::Result<Vec<(String, T)>>
where
    F: Fn(Admin) -> Fut,
    Fut: std::future::Future<Output = Result<T, vdb_client::AdminError>>,
{
    let mut ok = Vec::new();
    let mut errors = Vec::new();
    for m in masters {
        match send(Admin::new(m, None)).await {
            Ok(v) => ok.push((m.clone(), v)),
            Err(e) => {
                println!("{m}: {what} refused or failed: {e}");
                errors.push(format!("{m}: {e}"));
            }
        }
    }
    if ok.is_empty() {
        bail!("no master took the {what}: {}", errors.join("; "));
    }
    Ok(ok)
}

/// `vdbd mirror join`: makes the identity key if there is none, sends the signed join request
/// to every master, and (unless `no_wait`) waits until the network's admin decides.
pub async fn join(
    config_path: &Path,
    target: &Target,
    fields: &Fields,
    wait: &Wait,
) -> anyhow::Result<()> {
    let config = Config::load(config_path)?;
    let path = config.identity_key_file();
    let (key, made) = SecretKey::load_or_create(&path)
        .with_context(|| format!("the identity key {}", path.display()))?;
    if made {
        println!(
            "made the identity key {} in {} (keep it: it is this mirror's identity)",
            key.public(),
            path.display()
        );
    } else {
        println!("identity key {} ({})", key.public(), path.display());
    }
    let r = record(&config, fields, &key)?;
    let masters = target.masters(&config);
    let name = config.name.clone();
    // A decision the masters hold already is the answer (a rejection is asked again only with
    // `resubmit`).
    let (held, reason) = decision(&masters, &name, &key).await;
    if held == Some(JoinState::Rejected) && !wait.resubmit {
        bail!(
            "the network's admin rejected {name}: {} (to ask again: vdbd mirror join --resubmit)",
            reason.unwrap_or_default()
        );
    }
    let mut state = JoinState::Pending;
    if held == Some(JoinState::Approved) {
        state = JoinState::Approved;
    } else if held == Some(JoinState::Pending) && !wait.resubmit {
        println!("{name} is {} (sent before)", state_word(JoinState::Pending));
    } else {
        let env = Signed::sign(
            &MirrorRequest::new(
                &config.network,
                &name,
                SystemClock.now(),
                MirrorAction::Join(r),
            ),
            &key,
        );
        let sent = to_every_master(&masters, "join request", |a| {
            let env = env.clone();
            async move { a.join(&env).await }
        })
        .await?;
        for (m, s) in &sent {
            println!("{m}: {name} is {}", state_word(s.state));
            state = merge(state, s.state);
        }
    }
    if state == JoinState::Pending && wait.no_wait {
        println!(
            "the request waits for the network's admin (`vdb mirror pending`, then `vdb mirror approve {name}`); run `vdbd mirror join --config {}` again to wait for the answer",
            config_path.display()
        );
        return Ok(());
    }
    let started = std::time::Instant::now();
    let mut last_line = started;
    while state == JoinState::Pending {
        if started.elapsed() >= wait.timeout {
            bail!(
                "still waiting for the network's admin after {} s; the request stays pending for 7 days: run `vdbd mirror join --config {}` again to keep waiting",
                wait.timeout.as_secs(),
                config_path.display()
            );
        }
        tokio::time::sleep(wait.every).await;
        let (s, reason) = decision(&masters, &name, &key).await;
        state = merge(state, s.unwrap_or(JoinState::Pending));
        if state == JoinState::Rejected {
            bail!(
                "the network's admin rejected {name}: {}",
                reason.unwrap_or_default()
            );
        }
        if state == JoinState::Pending && last_line.elapsed() >= Duration::from_secs(30) {
            last_line = std::time::Instant::now();
            println!(
                "still waiting for the network's admin ({} s so far)",
                started.elapsed().as_secs()
            );
        }
    }
    if state == JoinState::Rejected {
        bail!("the network's admin rejected {name}");
    }
    println!(
        "approved: {name} is registered with the identity key {}",
        key.public()
    );
    if config.pull_token.is_some() {
        println!(
            "next: remove `pull_token` from {} so that the mirror pulls with its key, then (re)start it: systemctl restart vdbd@mirror",
            config_path.display()
        );
    } else {
        println!(
            "next: (re)start the mirror (systemctl restart vdbd@mirror): it pulls with its key from now on"
        );
    }
    Ok(())
}

/// The state of this key's join request on the masters (the merge of their answers; `None`
/// when none holds one), and a rejection's reason.
async fn decision(
    masters: &[String],
    name: &str,
    key: &SecretKey,
) -> (Option<JoinState>, Option<String>) {
    let mut state = None;
    let mut reason = None;
    for m in masters {
        match Admin::new(m, None).join_status(name).await {
            Ok(s) if s.key == key.public() => {
                state = Some(merge(state.unwrap_or(JoinState::Pending), s.state));
                reason = reason.or(s.reason);
            }
            Ok(_) => {}
            Err(e) => tracing::debug!(master = %m, error = %e, "join status"),
        }
    }
    (state, reason)
}

fn state_word(s: JoinState) -> &'static str {
    match s {
        JoinState::Pending => "pending (waiting for the network's admin)",
        JoinState::Approved => "approved",
        JoinState::Rejected => "rejected",
    }
}

/// A decision on any master is the decision.
fn merge(a: JoinState, b: JoinState) -> JoinState {
    match (a, b) {
        (JoinState::Rejected, _) | (_, JoinState::Rejected) => JoinState::Rejected,
        (JoinState::Approved, _) | (_, JoinState::Approved) => JoinState::Approved,
        _ => JoinState::Pending,
    }
}

async fn send_change(
    config: &Config,
    target: &Target,
    key: &SecretKey,
    req: MirrorRequest,
) -> anyhow::Result<Option<MirrorRecord>> {
    let what = format!("{} request", req.action.label());
    let env = Signed::sign(&req, key);
    let name = config.name.clone();
    let ok = to_every_master(&target.masters(config), &what, |a| {
        let (env, name) = (env.clone(), name.clone());
        async move { a.mirror_request(&name, &env).await }
    })
    .await?;
    for (m, _) in &ok {
        println!("{m}: {what} recorded");
    }
    Ok(ok.into_iter().find_map(|(_, r)| r))
}

fn print_record(r: Option<MirrorRecord>) -> anyhow::Result<()> {
    if let Some(r) = r {
        println!("{}", serde_json::to_string(&r)?);
    }
    Ok(())
}

/// Reads a time: Unix seconds, `now`, or `+N` with a unit `s`, `m`, `h` or `d` from now.
pub fn parse_time(text: &str, now: i64) -> anyhow::Result<i64> {
    let t = text.trim();
    if t == "now" {
        return Ok(now);
    }
    if let Some(rel) = t.strip_prefix('+') {
        let (num, unit) = rel.split_at(rel.len().saturating_sub(1));
        let mult = match unit {
            "s" => 1,
            "m" => 60,
            "h" => 3600,
            "d" => 86_400,
            _ => bail!("time {text:?}: a relative time is +N followed by s, m, h or d"),
        };
        let n: i64 = num
            .parse()
            .with_context(|| format!("time {text:?}: +N followed by s, m, h or d"))?;
        return Ok(now.saturating_add(n.saturating_mul(mult)));
    }
    t.parse()
        .with_context(|| format!("time {text:?}: Unix seconds, `now`, or +N[smhd]"))
}

/// `vdbd mirror maintenance --from … --until …`: announces a planned downtime.
pub async fn maintenance(
    config_path: &Path,
    target: &Target,
    from: &str,
    until: &str,
    reason: &str,
) -> anyhow::Result<()> {
    let config = Config::load(config_path)?;
    let key = read_key(&config)?;
    let now = SystemClock.now();
    let window = MaintenanceWindow {
        start: parse_time(from, now)?,
        end: parse_time(until, now)?,
        reason: reason.to_owned(),
    };
    let req = MirrorRequest::new(
        &config.network,
        &config.name,
        now,
        MirrorAction::Maintenance(window),
    );
    print_record(send_change(&config, target, &key, req).await?)
}

/// `vdbd mirror update`: sends the fields given, or, with none, the configuration's
/// `[registration]` and `hosts`.
pub async fn update(config_path: &Path, target: &Target, fields: &Fields) -> anyhow::Result<()> {
    let config = Config::load(config_path)?;
    let key = read_key(&config)?;
    let changes = if fields.is_empty() {
        let r = record(&config, fields, &key)?;
        MirrorChanges {
            push_url: r.push_url,
            base_urls: Some(r.base_urls),
            hosts: Some(r.hosts),
            addresses: Some(r.addresses),
            bandwidth_mbps: Some(r.bandwidth_mbps),
            admin_contact: r.admin_contact,
        }
    } else {
        MirrorChanges {
            push_url: fields.push_url.clone(),
            base_urls: (!fields.base_urls.is_empty()).then(|| fields.base_urls.clone()),
            hosts: (!fields.hosts.is_empty()).then(|| fields.hosts.clone()),
            addresses: (!fields.addresses.is_empty()).then(|| fields.addresses.clone()),
            bandwidth_mbps: fields.bandwidth_mbps,
            admin_contact: fields.admin_contact.clone(),
        }
    };
    if fields.country.is_some() || fields.region.is_some() {
        bail!("the country and region are the network's to change: ask its admin");
    }
    let req = MirrorRequest::new(
        &config.network,
        &config.name,
        SystemClock.now(),
        MirrorAction::Update(changes),
    );
    print_record(send_change(&config, target, &key, req).await?)
}

/// `vdbd mirror rotate-key`: makes a new key (kept beside the old one as `<file>.new` until a
/// master took it, so an interrupted rotation is retried with the same key), sends the rotation
/// signed by the old key with the new key's proof, then puts the new key in place.
pub async fn rotate_key(config_path: &Path, target: &Target) -> anyhow::Result<()> {
    let config = Config::load(config_path)?;
    let path = config.identity_key_file();
    let old = read_key(&config)?;
    let mut new_path = path.clone().into_os_string();
    new_path.push(".new");
    let new_path = std::path::PathBuf::from(new_path);
    let (new, _) = SecretKey::load_or_create(&new_path)
        .with_context(|| format!("the new key {}", new_path.display()))?;
    let req = MirrorRequest::rotate(&config.network, &config.name, SystemClock.now(), &old, &new);
    let r = send_change(&config, target, &old, req).await?;
    std::fs::rename(&new_path, &path)
        .with_context(|| format!("moving {} to {}", new_path.display(), path.display()))?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::File::open(dir)?.sync_all()?;
    }
    println!(
        "rotated: {} replaces {} (the old key is refused from now on; a running mirror uses the new one at its next sync)",
        new.public(),
        old.public()
    );
    print_record(r)
}

/// `vdbd mirror leave`: removes the mirror from the registry (its history stays).
pub async fn leave(config_path: &Path, target: &Target, reason: &str) -> anyhow::Result<()> {
    let config = Config::load(config_path)?;
    let key = read_key(&config)?;
    let req = MirrorRequest::new(
        &config.network,
        &config.name,
        SystemClock.now(),
        MirrorAction::Leave {
            reason: reason.to_owned(),
        },
    );
    send_change(&config, target, &key, req).await?;
    println!(
        "left: {} is out of the registry; the masters refuse its pulls now. Stop it: systemctl disable --now vdbd@mirror",
        config.name
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::parse_time;

    #[test]
    fn times() {
        assert_eq!(parse_time("now", 100).unwrap(), 100);
        assert_eq!(parse_time("+2h", 100).unwrap(), 7300);
        assert_eq!(parse_time("+30m", 0).unwrap(), 1800);
        assert_eq!(parse_time("1700000000", 0).unwrap(), 1_700_000_000);
        for bad in ["+2y", "+h", "tomorrow", ""] {
            assert!(parse_time(bad, 0).is_err(), "{bad}");
        }
    }
}
