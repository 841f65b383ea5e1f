//! The freshness suite's network: one real master, real mirrors, the real monitor and directory
//! with the default intervals of `docs/deploy.md` (monitor every 300 s, directory `poll_secs =
//! 5`, mirrors `poll_secs = 300` or, for a mirror that must not acknowledge, no push URL and an
//! hour between polls). Processes, ready lines, `dig` and waits come from `vdb_testkit`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;
use vdb_proto::{Manifest, MirrorRecord, PublicKey, SecretKey};
pub(crate) use vdb_testkit::checks::manifest_at;
pub(crate) use vdb_testkit::http::{block_on, fetch as http_get};
pub(crate) use vdb_testkit::{Proc, dig, output_text as text, wait_for};

pub(crate) const NETWORK: &str = "fresh";
pub(crate) const ADMIN_TOKEN: &str = "freshness-admin-token-0123456789";

/// Starts `vdbd <role> --config <config>` (stderr to `<log>`) and reads its ready line.
pub(crate) fn spawn(role: &str, config: &Path, log: &Path) -> Proc {
    Proc::start_role(env!("CARGO_BIN_EXE_vdbd"), role, config, log)
}

/// One test network's keys and files.
pub(crate) struct Net {
    pub(crate) dir: tempfile::TempDir,
    master: SecretKey,
    publisher: SecretKey,
    port: u16,
}

/// A mirror's config and where it serves.
pub(crate) struct MirrorSpec {
    pub(crate) name: String,
    pub(crate) url: String,
    pub(crate) data: PathBuf,
    pub(crate) config: PathBuf,
}

impl Net {
    pub(crate) fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("logs")).unwrap();
        Self {
            dir,
            master: SecretKey::generate(),
            publisher: SecretKey::generate(),
            port: vdb_testkit::free_port("127.0.0.1"),
        }
    }

    pub(crate) fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    pub(crate) fn log(&self, name: &str) -> PathBuf {
        self.path(&format!("logs/{name}.log"))
    }

    pub(crate) fn master_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub(crate) fn keys(&self) -> Vec<PublicKey> {
        vec![self.master.public()]
    }

    fn keys_toml(&self) -> Vec<String> {
        self.keys().iter().map(ToString::to_string).collect()
    }

    /// The master, with its defaults (push backoff, tick) and the version record's defaults.
    pub(crate) fn start_master(&self) -> Proc {
        let key_file = self.path("master.key");
        vdb_format::write_private(&key_file, self.master.to_text().as_bytes()).unwrap();
        let path = self.path("master.toml");
        std::fs::write(
            &path,
            format!(
                "name = \"a\"\nnetwork = {NETWORK:?}\nlisten = \"127.0.0.1:{port}\"\n\
                 data_dir = {data:?}\nkey_file = {key:?}\nadmin_token = {ADMIN_TOKEN:?}\n\n\
                 [[publishers]]\nkey = \"{publisher}\"\ndatabases = [\"*\"]\n",
                port = self.port,
                data = self.path("master").display().to_string(),
                key = key_file.display().to_string(),
                publisher = self.publisher.public(),
            ),
        )
        .unwrap();
        let p = spawn("master", &path, &self.log("master"));
        assert_eq!(p.ready().http_url(), self.master_url());
        p
    }

    /// Writes a mirror's config (`ip:port`; `push`: registered with its push URL and polling
    /// every 300 s, else without one and polling every hour, so it takes a release only when
    /// told to by [`sync_once`]) and registers it on the master.
    pub(crate) fn mirror(&self, name: &str, ip: &str, port: u16, push: bool) -> MirrorSpec {
        let url = format!("http://{ip}:{port}");
        let data = self.path(name);
        let text = format!(
            "name = {name:?}\nnetwork = {NETWORK:?}\nmasters = [{master:?}]\nmaster_keys = {keys:?}\n\
             data_dir = {data:?}\nlisten = \"{ip}:{port}\"\npoll_secs = {poll}\n",
            master = self.master_url(),
            keys = self.keys_toml(),
            data = data.display().to_string(),
            poll = if push { 300 } else { 3600 },
        );
        let config = self.path(&format!("{name}.toml"));
        std::fs::write(&config, text).unwrap();
        let mut r = MirrorRecord::new(name, &url);
        if push {
            r.push_url = Some(format!("{url}{}", vdb_proto::paths::PUSH));
        }
        r.addresses = vec![ip.parse().unwrap()];
        let admin = vdb_client::Admin::new(&self.master_url(), Some(ADMIN_TOKEN.to_owned()));
        wait_for(&format!("the master to register {name}"), 30, || {
            block_on(admin.add(&r)).ok()
        });
        MirrorSpec {
            name: name.to_owned(),
            url,
            data,
            config,
        }
    }

    pub(crate) fn start_mirror(&self, m: &MirrorSpec) -> Proc {
        spawn("mirror", &m.config, &self.log(&m.name))
    }

    /// The monitor with every default (`check_interval_secs = 300`, thresholds of a day and
    /// two) but its addresses.
    pub(crate) fn start_monitor(&self) -> Proc {
        let path = self.path("monitor.toml");
        std::fs::write(
            &path,
            format!(
                "name = \"monitor-1\"\nnetwork = {NETWORK:?}\nmasters = [{master:?}]\nmaster_keys = {keys:?}\n\
                 listen = \"127.0.0.1:0\"\ndatabase = {db:?}\ncheck_interval_secs = 300\n",
                master = self.master_url(),
                keys = self.keys_toml(),
                db = self.path("monitor.sqlite").display().to_string(),
            ),
        )
        .unwrap();
        spawn("monitor", &path, &self.log("monitor"))
    }

    /// The directory as `docs/deploy.md` configures it (`poll_secs = 5`, the default
    /// `rollout_poll_ms`), on `dns_listen`.
    pub(crate) fn start_directory(&self, zone: &str, dns_listen: &str, monitor: &str) -> Proc {
        let path = self.path("directory.toml");
        std::fs::write(
            &path,
            format!(
                "zone = {zone:?}\ndns_listen = {dns_listen:?}\nhttp_listen = \"127.0.0.1:0\"\n\
                 masters = [{master:?}]\nmonitors = [{monitor:?}]\npoll_secs = 5\n",
                master = self.master_url(),
            ),
        )
        .unwrap();
        spawn("directory", &path, &self.log("directory"))
    }

    /// Publishes release `v` of ClamAV's test database (the publisher library behind `vdb
    /// publish`); returns the manifest serial that carries it.
    pub(crate) fn publish(&self, v: u32) -> u64 {
        let files = vdb_testkit::publish::test_release(v);
        block_on(vdb_testkit::publish::publish(
            &[self.master_url()],
            &self.publisher,
            &files,
            30,
        ))
        .serial
    }
}

/// `vdbd mirror --config <config> sync --once`: the mirror takes the masters' newest release
/// now (the ssh forced-command way); the running server switches to it.
pub(crate) fn sync_once(m: &MirrorSpec) {
    let out = Command::new(env!("CARGO_BIN_EXE_vdbd"))
        .args(["mirror", "--config"])
        .arg(&m.config)
        .args(["sync", "--once"])
        .output()
        .expect("vdbd mirror sync --once runs");
    assert!(out.status.success(), "sync --once: {}", text(&out));
}

/// The manifest serial a mirror serves (0: none).
pub(crate) fn serial_at(url: &str, keys: &[PublicKey]) -> u64 {
    manifest_at(url, keys).map_or(0, |m: Manifest| m.serial)
}

/// Polls `f` every 10 ms for at most `secs` seconds and returns when it first held (for
/// timings finer than [`wait_for`]'s 100 ms); panics with `what` on time-out.
pub(crate) fn when(what: &str, secs: u64, mut f: impl FnMut() -> bool) -> Instant {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if f() {
            return Instant::now();
        }
        assert!(
            Instant::now() < deadline,
            "timed out ({secs} s) waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The `current.cvd` TXT string the directory answers (without the quotes), if any.
pub(crate) fn current_txt(dns: SocketAddr, zone: &str) -> Option<String> {
    let d = dig::query(dns, &format!("current.cvd.{zone}"), "TXT").run();
    d.data("TXT")
        .first()
        .map(|t| t.trim_matches('"').to_owned())
}

/// The version `<db>.cvd.<zone>` advertises.
pub(crate) fn txt_version(dns: SocketAddr, db: &str, zone: &str) -> Option<u32> {
    dig::txt_version(&dig::query(dns, &format!("{db}.cvd.{zone}"), "TXT").run())
}

/// The directory's `GET /api/v1/mirrors`.
pub(crate) fn directory_view(http: &str) -> Value {
    http_get(&format!("{http}/api/v1/mirrors"))
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or(Value::Null)
}

/// One mirror's row in [`directory_view`].
pub(crate) fn row<'a>(view: &'a Value, name: &str) -> &'a Value {
    view["mirrors"]
        .as_array()
        .and_then(|a| a.iter().find(|m| m["name"] == name))
        .unwrap_or(&Value::Null)
}

/// Makes the mirror serve bad data the way a broken disk or an intruder would: a copy of its
/// current snapshot in which `file` has other bytes of the same length (the last digit of its
/// first 512 bytes changed: a CVD's header), switched in under it (the running server takes a
/// switched snapshot without re-hashing it, as it takes one from `sync --once`). Returns once
/// the mirror serves the changed bytes. `file` must have a file of its own in the snapshot: the
/// small files the manifest carries live in its signed envelope.
pub(crate) fn tamper(m: &MirrorSpec, file: &str) {
    let link = m.data.join("current");
    let target = std::fs::read_link(&link).unwrap();
    let target = if target.is_absolute() {
        target
    } else {
        m.data.join(&target)
    };
    let id = target.file_name().unwrap().to_string_lossy().into_owned();
    let copy = target.with_file_name(format!("{id}-tampered"));
    std::fs::create_dir(&copy).unwrap();
    for e in std::fs::read_dir(&target).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), copy.join(e.file_name())).unwrap();
    }
    let path = copy.join(file);
    let mut bytes = std::fs::read(&path).unwrap();
    let i = bytes[..bytes.len().min(512)]
        .iter()
        .rposition(u8::is_ascii_digit)
        .expect("a digit to change");
    bytes[i] = if bytes[i] == b'0' { b'1' } else { b'0' };
    std::fs::remove_file(&path).unwrap();
    std::fs::write(&path, &bytes).unwrap();
    let tmp = m.data.join("current.tampered");
    std::os::unix::fs::symlink(&copy, &tmp).unwrap();
    std::fs::rename(&tmp, &link).unwrap();
    wait_for(
        &format!("{} to serve the changed {file}", m.name),
        10,
        || {
            (http_get(&format!("{}/{file}", m.url)).as_deref() == Some(bytes.as_slice()))
                .then_some(())
        },
    );
}

/// Seconds between two instants, for messages.
pub(crate) fn secs(from: Instant, to: Instant) -> f64 {
    to.saturating_duration_since(from).as_secs_f64()
}
