//! The fault suite's network: config writers, a cuttable TCP proxy, a webhook sink, and a
//! watcher that looks for any version going down while faults happen (processes, ready lines,
//! `dig` and the "serves exactly a signed manifest" checks come from `vdb_testkit`).

use std::collections::BTreeMap;
use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use serde_json::Value;
use vdb_proto::{Manifest, MirrorRecord, PublicKey, SecretKey};
pub(crate) use vdb_testkit::checks::{
    assert_serves_exactly_a_signed_manifest, disk_snapshot, manifest_at, version_at,
};
pub(crate) use vdb_testkit::http::{block_on, fetch as http_get, scrape as counter};
pub(crate) use vdb_testkit::{Guard, Proc, copy_dir, output_text as text, wait_for};
use vdb_testkit::{dig, exe_beside, fixtures, free_port, tail};

pub(crate) const NETWORK: &str = "faults";
pub(crate) const ZONE: &str = "faults.test.";
pub(crate) const ADMIN_TOKEN: &str = "faults-admin-token-0123456789";

/// Starts `vdbd <role> --config <config>` (stderr to `<log>`) and reads its ready line.
pub(crate) fn spawn(role: &str, config: &Path, log: &Path) -> Proc {
    Proc::start_role(env!("CARGO_BIN_EXE_vdbd"), role, config, log)
}

/// Whether the master at `base` says it is ready (caught up with its peers: it takes releases)
/// and holds version `v` of `db` (`GET /api/v1/status`).
pub(crate) fn master_ready_with(base: &str, db: &str, v: u32) -> bool {
    http_get(&format!("{base}/api/v1/status"))
        .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
        .is_some_and(|s| s["ready"] == true && s["databases"][db] == v)
}

/// Invariants 1 and 3 on disk ([`vdb_testkit::checks::disk_snapshot`]); panics if the mirror
/// has no current snapshot.
pub(crate) fn assert_disk_snapshot_is_whole(data: &Path, keys: &[PublicKey]) -> Manifest {
    disk_snapshot(data, keys).unwrap_or_else(|| panic!("{}: no current snapshot", data.display()))
}

/// The version a `<db>.cvd` TXT record advertises (`None` without a record).
pub(crate) fn txt_version(server: SocketAddr, db: &str) -> Option<u32> {
    dig::txt_version(&dig::query(server, &format!("{db}.cvd.{ZONE}"), "TXT").run())
}

/// A TCP proxy on 127.0.0.1 that can be cut (every connection closed, new ones refused) and
/// healed, and can fire a trigger on a byte pattern sent by a client.
pub(crate) struct Proxy {
    pub(crate) url: String,
    cut: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    live: Arc<Mutex<Vec<TcpStream>>>,
    trigger: Arc<Mutex<Option<Trigger>>>,
    fired: Arc<AtomicBool>,
    accept: Option<JoinHandle<()>>,
}

/// What the proxy does when a client sends `pattern`: run `action`, then forward the chunk
/// (`forward` true: the server sees the start of the request) or close the connection first.
pub(crate) struct Trigger {
    pub(crate) pattern: Vec<u8>,
    pub(crate) forward: bool,
    pub(crate) action: Box<dyn FnOnce() + Send>,
}

impl Proxy {
    pub(crate) fn start(target: SocketAddr) -> Self {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.set_nonblocking(true).unwrap();
        let url = format!("http://{}", l.local_addr().unwrap());
        let cut = Arc::new(AtomicBool::new(false));
        let stop = Arc::new(AtomicBool::new(false));
        let live = Arc::new(Mutex::new(Vec::new()));
        let trigger: Arc<Mutex<Option<Trigger>>> = Arc::new(Mutex::new(None));
        let fired = Arc::new(AtomicBool::new(false));
        let (c, s, lv, tr, fi) = (
            cut.clone(),
            stop.clone(),
            live.clone(),
            trigger.clone(),
            fired.clone(),
        );
        let accept = std::thread::spawn(move || {
            while !s.load(Ordering::SeqCst) {
                let Ok((client, _)) = l.accept() else {
                    std::thread::sleep(Duration::from_millis(5));
                    continue;
                };
                if c.load(Ordering::SeqCst) {
                    drop(client);
                    continue;
                }
                client.set_nonblocking(false).ok();
                let Ok(server) = TcpStream::connect_timeout(&target, Duration::from_secs(2)) else {
                    continue;
                };
                {
                    let mut v = lv.lock().unwrap();
                    v.push(client.try_clone().unwrap());
                    v.push(server.try_clone().unwrap());
                }
                let (c2, s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
                let (tr, fi) = (tr.clone(), fi.clone());
                std::thread::spawn(move || pump(client, server, Some((tr, fi))));
                std::thread::spawn(move || pump(s2, c2, None));
            }
        });
        Self {
            url,
            cut,
            stop,
            live,
            trigger,
            fired,
            accept: Some(accept),
        }
    }

    /// Closes every connection and refuses new ones until [`Proxy::heal`].
    pub(crate) fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
        for s in self.live.lock().unwrap().drain(..) {
            let _ = s.shutdown(std::net::Shutdown::Both);
        }
    }

    pub(crate) fn heal(&self) {
        self.cut.store(false, Ordering::SeqCst);
    }

    pub(crate) fn arm(&self, t: Trigger) {
        self.fired.store(false, Ordering::SeqCst);
        *self.trigger.lock().unwrap() = Some(t);
    }

    pub(crate) fn fired(&self) -> bool {
        self.fired.load(Ordering::SeqCst)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        self.cut();
        if let Some(h) = self.accept.take() {
            let _ = h.join();
        }
    }
}

type Armed = (Arc<Mutex<Option<Trigger>>>, Arc<AtomicBool>);

fn pump(mut from: TcpStream, mut to: TcpStream, trigger: Option<Armed>) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if let Some((t, fired)) = &trigger {
            let hit = {
                let mut g = t.lock().unwrap();
                match g.as_ref() {
                    Some(tr) if buf[..n].windows(tr.pattern.len()).any(|w| w == tr.pattern) => {
                        g.take()
                    }
                    _ => None,
                }
            };
            if let Some(tr) = hit {
                if tr.forward {
                    let _ = to.write_all(&buf[..n]);
                    let _ = to.flush();
                }
                (tr.action)();
                fired.store(true, Ordering::SeqCst);
                break;
            }
        }
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = to.shutdown(std::net::Shutdown::Both);
    let _ = from.shutdown(std::net::Shutdown::Both);
}

/// A webhook sink: records the JSON body of every POST.
pub(crate) struct Sink {
    pub(crate) url: String,
    pub(crate) bodies: Arc<Mutex<Vec<Value>>>,
}

/// A one-request-per-connection HTTP/1.1 server on `l`, on a thread that ends with the test
/// process: `handle(path, body)` answers a `200` with its body, or `None` for a `404`.
pub(crate) fn serve_requests(
    l: TcpListener,
    handle: impl Fn(&str, Vec<u8>) -> Option<Vec<u8>> + Send + 'static,
) {
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
            s.set_read_timeout(Some(Duration::from_secs(5))).ok();
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            let request = loop {
                match s.read(&mut chunk) {
                    Ok(0) | Err(_) => break None,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
                if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
                    let len: usize = head
                        .to_ascii_lowercase()
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:"))
                        .and_then(|v| v.trim().parse().ok())
                        .unwrap_or(0);
                    if buf.len() >= end + 4 + len {
                        let path = head.split_whitespace().nth(1).unwrap_or("/").to_owned();
                        break Some((path, buf[end + 4..end + 4 + len].to_vec()));
                    }
                }
            };
            let Some((path, body)) = request else {
                continue;
            };
            let reply = match handle(&path, body) {
                Some(b) => {
                    let mut r = format!(
                        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                        b.len()
                    )
                    .into_bytes();
                    r.extend_from_slice(&b);
                    r
                }
                None => b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                    .to_vec(),
            };
            let _ = s.write_all(&reply);
        }
    });
}

impl Sink {
    pub(crate) fn start() -> Self {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/hook", l.local_addr().unwrap());
        let bodies = Arc::new(Mutex::new(Vec::new()));
        let b = bodies.clone();
        serve_requests(l, move |_, body| {
            if let Ok(v) = serde_json::from_slice(&body) {
                b.lock().unwrap().push(v);
            }
            Some(Vec::new())
        });
        Self { url, bodies }
    }

    /// How many bodies arrived so far.
    pub(crate) fn len(&self) -> usize {
        self.bodies.lock().unwrap().len()
    }

    /// Whether a body that arrived after the first `skip` matches.
    pub(crate) fn has_since(&self, skip: usize, pred: impl Fn(&Value) -> bool) -> bool {
        self.bodies.lock().unwrap().iter().skip(skip).any(pred)
    }
}

/// Records the highest version of each database seen on each mirror and in the TXT records, and
/// every time one goes down (invariant 2, seen from outside, while faults happen).
pub(crate) struct Watch {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<Vec<String>>>,
}

impl Watch {
    pub(crate) fn start(
        mirrors: Vec<String>,
        keys: Vec<PublicKey>,
        dns: Option<(SocketAddr, String)>,
    ) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let handle = std::thread::spawn(move || {
            let mut max: BTreeMap<(String, String), u32> = BTreeMap::new();
            let mut bad = Vec::new();
            let mut see = |who: &str, db: &str, v: u32, bad: &mut Vec<String>| {
                let e = max.entry((who.to_owned(), db.to_owned())).or_insert(v);
                if v < *e {
                    bad.push(format!("{who}: {db} went down from {} to {v}", *e));
                }
                *e = (*e).max(v);
            };
            while !s.load(Ordering::SeqCst) {
                for m in &mirrors {
                    if let Some(man) = manifest_at(m, &keys) {
                        for (db, st) in &man.databases {
                            see(m, db, st.version, &mut bad);
                        }
                    }
                }
                if let Some((server, db)) = &dns
                    && let Some(v) = txt_version(*server, db)
                {
                    see("TXT", db, v, &mut bad);
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            bad
        });
        Self {
            stop,
            handle: Some(handle),
        }
    }

    /// Stops watching and fails on any version that went down.
    pub(crate) fn assert_nothing_went_down(mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let bad = self.handle.take().unwrap().join().unwrap();
        assert!(bad.is_empty(), "versions went down: {bad:#?}");
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// A mirror's fixed place in a test network (its port survives restarts).
pub(crate) struct MirrorSpec {
    pub(crate) ip: String,
    pub(crate) url: String,
    pub(crate) data: PathBuf,
    pub(crate) config: PathBuf,
    pub(crate) log: PathBuf,
}

/// The keys, ports and files of one test network.
pub(crate) struct Net {
    pub(crate) dir: tempfile::TempDir,
    pub(crate) masters: Vec<SecretKey>,
    pub(crate) ports: Vec<u16>,
    pub(crate) publisher_key: PathBuf,
    /// The synthetic chain's ClamAV key set, if the network publishes `daily`.
    pub(crate) keyset: Option<PathBuf>,
}

impl Net {
    pub(crate) fn new(n_masters: usize) -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("logs")).unwrap();
        let publisher = SecretKey::generate();
        let publisher_key = dir.path().join("publisher.key");
        vdb_format::write_private(&publisher_key, publisher.to_text().as_bytes()).unwrap();
        Self {
            masters: (0..n_masters).map(|_| SecretKey::generate()).collect(),
            ports: (0..n_masters).map(|_| free_port("127.0.0.1")).collect(),
            dir,
            publisher_key,
            keyset: None,
        }
    }

    pub(crate) fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    pub(crate) fn log(&self, name: &str) -> PathBuf {
        self.path(&format!("logs/{name}.log"))
    }

    pub(crate) fn name(i: usize) -> &'static str {
        ["a", "b"][i]
    }

    pub(crate) fn master_url(&self, i: usize) -> String {
        format!("http://127.0.0.1:{}", self.ports[i])
    }

    pub(crate) fn master_urls(&self) -> Vec<String> {
        (0..self.ports.len()).map(|i| self.master_url(i)).collect()
    }

    pub(crate) fn keys(&self) -> Vec<PublicKey> {
        self.masters.iter().map(SecretKey::public).collect()
    }

    pub(crate) fn master_data(&self, i: usize) -> PathBuf {
        self.path(&format!("master-{}", Self::name(i)))
    }

    /// Writes master `i`'s config: its peers reached at `peer_urls` (default: their real URLs),
    /// `extra` TOML appended to the top-level keys.
    pub(crate) fn master_config(
        &self,
        i: usize,
        peer_urls: Option<&[String]>,
        extra: &str,
    ) -> PathBuf {
        let name = Self::name(i);
        let key_file = self.path(&format!("master-{name}.key"));
        vdb_format::write_private(&key_file, self.masters[i].to_text().as_bytes()).unwrap();
        let publisher =
            SecretKey::from_text(&std::fs::read_to_string(&self.publisher_key).unwrap())
                .unwrap()
                .public();
        let mut text = format!(
            "name = {name:?}\nnetwork = {NETWORK:?}\nlisten = \"127.0.0.1:{port}\"\n\
             data_dir = {data:?}\nkey_file = {key:?}\nadmin_token = {ADMIN_TOKEN:?}\n\
             tick_ms = 100\nreplicate_secs = 1\ncatch_up_timeout_secs = 3\npush_backoff_ms = 100\n{extra}\n\
             [[publishers]]\nkey = \"{publisher}\"\ndatabases = [\"*\"]\n",
            port = self.ports[i],
            data = self.master_data(i).display().to_string(),
            key = key_file.display().to_string(),
        );
        // `extra`: plain signature files, published as-is.
        text.push_str("\n[databases.extra]\nallow_plain = true\n");
        if let Some(ks) = &self.keyset {
            text.push_str(&format!(
                "\n[databases.daily]\nkeyset_file = {:?}\n",
                ks.display().to_string()
            ));
        }
        let mut j = 0;
        for (k, key) in self.masters.iter().enumerate() {
            if k == i {
                continue;
            }
            let url = peer_urls.map_or_else(|| self.master_url(k), |p| p[j].clone());
            j += 1;
            text.push_str(&format!(
                "\n[[peers]]\nurl = {url:?}\nkey = \"{}\"\n",
                key.public()
            ));
        }
        let path = self.path(&format!("master-{name}.toml"));
        std::fs::write(&path, text).unwrap();
        path
    }

    pub(crate) fn start_master(&self, i: usize, peer_urls: Option<&[String]>, extra: &str) -> Proc {
        let config = self.master_config(i, peer_urls, extra);
        let p = spawn(
            "master",
            &config,
            &self.log(&format!("master-{}", Self::name(i))),
        );
        assert_eq!(p.ready().http_url(), self.master_url(i));
        p
    }

    /// Restarts master `i` from the config file written before.
    pub(crate) fn restart_master(&self, i: usize) -> Proc {
        let name = Self::name(i);
        let p = spawn(
            "master",
            &self.path(&format!("master-{name}.toml")),
            &self.log(&format!("master-{name}")),
        );
        assert_eq!(p.ready().http_url(), self.master_url(i));
        p
    }

    /// Writes mirror `i`'s config (on 127.0.0.1{i+1}, a port of its own, `poll_secs = 1`) and
    /// registers it with master A (push URL included).
    pub(crate) fn mirror(&self, i: usize, masters: &[String]) -> MirrorSpec {
        let name = format!("mirror{}", i + 1);
        let ip = format!("127.0.0.{}", 11 + i);
        let port = free_port(&ip);
        let url = format!("http://{ip}:{port}");
        let data = self.path(&name);
        let text = format!(
            "name = {name:?}\nnetwork = {NETWORK:?}\nmasters = {masters:?}\nmaster_keys = {keys:?}\n\
             data_dir = {data:?}\nlisten = \"{ip}:{port}\"\npoll_secs = 1\nfetch_timeout_secs = 5\n",
            keys = self
                .keys()
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>(),
            data = data.display().to_string(),
        );
        let config = self.path(&format!("{name}.toml"));
        std::fs::write(&config, text).unwrap();
        let mut r = MirrorRecord::new(&name, &url);
        r.push_url = Some(format!("{url}{}", vdb_proto::paths::PUSH));
        r.addresses = vec![ip.parse().unwrap()];
        let admin = vdb_client::Admin::new(&self.master_url(0), Some(ADMIN_TOKEN.to_owned()));
        wait_for(&format!("master a to register {name}"), 30, || {
            block_on(admin.add(&r)).ok()
        });
        MirrorSpec {
            log: self.log(&name),
            ip,
            url,
            data,
            config,
        }
    }

    /// Registers mirror `spec` (named `name`) with `hubs` (name, URL) at master A, and points
    /// its config at the hubs' URLs with `poll_secs` (a long poll: only pushes, relayed by the
    /// hub, make it sync).
    fn make_leaf(&self, name: &str, spec: &MirrorSpec, hubs: &[(&str, &str)], poll_secs: u64) {
        let mut r = MirrorRecord::new(name, &spec.url);
        r.push_url = Some(format!("{}{}", spec.url, vdb_proto::paths::PUSH));
        r.addresses = vec![spec.ip.parse().unwrap()];
        r.hubs = hubs.iter().map(|(n, _)| (*n).to_owned()).collect();
        let admin = vdb_client::Admin::new(&self.master_url(0), Some(ADMIN_TOKEN.to_owned()));
        block_on(admin.update(&r)).unwrap_or_else(|e| panic!("update {name}: {e}"));
        let urls: Vec<&str> = hubs.iter().map(|(_, u)| *u).collect();
        let text = std::fs::read_to_string(&spec.config).unwrap();
        let text = text.replace("poll_secs = 1\n", &format!("poll_secs = {poll_secs}\n"));
        std::fs::write(&spec.config, format!("{text}hubs = {urls:?}\n")).unwrap();
    }

    /// Mirror 1 as the hub of `leaves` leaves (mirror 2, 3, …: each registered with it at
    /// master A and pointed at its URL, polling every `poll_secs`), over `masters`; nothing is
    /// started. (The hub, the leaves.)
    pub(crate) fn hub_tree(
        &self,
        masters: &[String],
        leaves: usize,
        poll_secs: u64,
    ) -> (MirrorSpec, Vec<MirrorSpec>) {
        let hub = self.mirror(0, masters);
        let leaves: Vec<MirrorSpec> = (1..=leaves).map(|i| self.mirror(i, masters)).collect();
        for (i, l) in leaves.iter().enumerate() {
            self.make_leaf(
                &format!("mirror{}", i + 2),
                l,
                &[("mirror1", hub.url.as_str())],
                poll_secs,
            );
        }
        (hub, leaves)
    }

    /// A monitor checking every second with thresholds of seconds; every file hashed whole.
    pub(crate) fn start_monitor(&self) -> Proc {
        let path = self.path("monitor.toml");
        std::fs::write(
            &path,
            format!(
                "name = \"faults-monitor\"\nnetwork = {NETWORK:?}\nmasters = {masters:?}\nmaster_keys = {keys:?}\n\
                 listen = \"127.0.0.1:0\"\ndatabase = {db:?}\ncheck_interval_secs = 1\nrequest_timeout_secs = 3\n\
                 small_file_max_bytes = 16777216\ndeep_check_secs = 1\ndeep_checks_per_round = 3\n\
                 [thresholds]\nlagging_secs = 1\nold_secs = 2\nout_secs = 3\nunreachable_out_secs = 3\nrecover_checks = 2\n",
                masters = self.master_urls(),
                keys = self.keys().iter().map(ToString::to_string).collect::<Vec<_>>(),
                db = self.path("monitor.sqlite").display().to_string(),
            ),
        )
        .unwrap();
        spawn("monitor", &path, &self.log("monitor"))
    }

    /// A directory polling the masters and the monitor every second.
    pub(crate) fn start_directory(&self, monitor: &str) -> (Proc, SocketAddr) {
        let path = self.path("directory.toml");
        std::fs::write(
            &path,
            format!(
                "zone = {ZONE:?}\ndns_listen = \"127.0.0.1:0\"\nhttp_listen = \"127.0.0.1:0\"\n\
                 masters = {masters:?}\nmonitors = [{monitor:?}]\npoll_secs = 1\nmin_in_service = 1\n",
                masters = self.master_urls(),
            ),
        )
        .unwrap();
        let p = spawn("directory", &path, &self.log("directory"));
        let dns = p.ready().dns_addr();
        (p, dns)
    }

    /// `vdb publish --master … --key … FILES`, the real publisher binary.
    pub(crate) fn publish(&self, masters: &[String], files: &[PathBuf]) -> Output {
        self.publish_with(masters, files, &[])
    }

    /// `vdb publish` with extra options (`--db`, `--version`).
    pub(crate) fn publish_with(
        &self,
        masters: &[String],
        files: &[PathBuf],
        opts: &[&str],
    ) -> Output {
        let mut cmd = Command::new(exe("vdb"));
        cmd.arg("publish").args(opts);
        for m in masters {
            cmd.args(["--master", m]);
        }
        cmd.arg("--key").arg(&self.publisher_key).args(files);
        cmd.output().expect("vdb publish runs")
    }

    /// Publishes, retrying while the masters answer "unreachable" (a master still catching up
    /// answers 503); panics on a refusal.
    pub(crate) fn publish_ok(&self, masters: &[String], files: &[PathBuf]) -> String {
        self.publish_ok_with(masters, files, &[])
    }

    /// [`Net::publish_ok`] with extra options.
    pub(crate) fn publish_ok_with(
        &self,
        masters: &[String],
        files: &[PathBuf],
        opts: &[&str],
    ) -> String {
        wait_for("a publish to be accepted", 30, || {
            let out = self.publish_with(masters, files, opts);
            let t = text(&out);
            match out.status.code() {
                Some(0) => Some(t),
                Some(3) => None,
                _ => panic!("vdb publish {files:?} failed: {t}"),
            }
        })
    }

    /// Release `v` of ClamAV's test database as `vdb publish` takes it (`test.cvd` and, from 2,
    /// `test-<v>.cdiff`).
    pub(crate) fn fixture_release(&self, v: u32) -> Vec<PathBuf> {
        let dir = self.path(&format!("release-test-{v}"));
        std::fs::create_dir_all(&dir).unwrap();
        let mut out = vec![dir.join("test.cvd")];
        std::fs::copy(fixtures::path(&format!("test-{v}.cvd")), &out[0]).unwrap();
        if v > 1 {
            let cdiff = dir.join(format!("test-{v}.cdiff"));
            std::fs::copy(fixtures::path(&format!("test-{v}.cdiff")), &cdiff).unwrap();
            out.push(cdiff);
        }
        out
    }

    /// `extra.ndb`, a plain signature file of about 300 KiB (larger than what a mirror keeps in
    /// memory, so its body is served from disk; not a container, so the monitor hashes it).
    pub(crate) fn extra_release(&self) -> Vec<PathBuf> {
        let dir = self.path("release-extra");
        std::fs::create_dir_all(&dir).unwrap();
        let mut text = String::new();
        let mut i = 0u64;
        while text.len() < 300 * 1024 {
            text.push_str(&format!(
                "Faults.Test-{i}:0:*:{:032x}\n",
                u128::from(i) * 0x9e37_79b9_7f4a_7c15
            ));
            i += 1;
        }
        let path = dir.join("extra.ndb");
        std::fs::write(&path, text).unwrap();
        vec![path]
    }

    /// A synthetic `daily` chain (`base`..=`base+cdiffs`, about 1 MiB per CVD) signed with a key
    /// set of its own, which the masters are configured with. Call before writing master configs.
    pub(crate) fn synth(&mut self, base: u32, cdiffs: u32) {
        self.synth_sized(base, cdiffs, 1);
    }

    /// [`Net::synth`] with CVDs of about `size_mb` MiB.
    pub(crate) fn synth_sized(&mut self, base: u32, cdiffs: u32, size_mb: u32) {
        let out = self.path("synth");
        vdb_synth::write_chain(&vdb_synth::Spec {
            output: out.clone(),
            size_mb,
            cdiffs,
            version: base,
            seed: 7,
            keys: None,
            cud: false,
        })
        .unwrap();
        self.keyset = Some(out.join("synth.key.pub"));
    }

    /// Release `v` of the synthetic chain as `vdb publish` takes it.
    pub(crate) fn synth_release(&self, v: u32, base: u32) -> Vec<PathBuf> {
        let src = self.path("synth");
        let dir = self.path(&format!("release-daily-{v}"));
        std::fs::create_dir_all(&dir).unwrap();
        let mut out = vec![dir.join("daily.cvd")];
        std::fs::hard_link(src.join(format!("daily-{v}.cvd")), &out[0]).unwrap();
        if v > base {
            let c = dir.join(format!("daily-{v}.cdiff"));
            std::fs::hard_link(src.join(format!("daily-{v}.cdiff")), &c).unwrap();
            out.push(c);
        }
        out
    }

    /// A `vdb-update` config with manifest checks, for `db`, from `mirrors` (no DNS).
    pub(crate) fn vdb_update_config(
        &self,
        name: &str,
        mirrors: &[String],
        db: &str,
    ) -> (PathBuf, PathBuf) {
        let dbdir = self.path(&format!("{name}-db"));
        std::fs::create_dir_all(&dbdir).unwrap();
        let mut text = format!(
            "database_directory = {d:?}\nnetwork = {NETWORK:?}\nmirrors = {mirrors:?}\nmaster_keys = {keys:?}\n\
             databases = [{db:?}]\ndns = false\nretry_delay_secs = 1\nmax_attempts = 1\n",
            d = dbdir.display().to_string(),
            keys = self
                .keys()
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>(),
        );
        if let Some(ks) = &self.keyset {
            text.push_str(&format!("key_set = {:?}\n", ks.display().to_string()));
        }
        let path = self.path(&format!("{name}.toml"));
        std::fs::write(&path, text).unwrap();
        (path, dbdir)
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        // On failure, the end of every role's log (the temporary directory goes away).
        if std::thread::panicking() {
            let mut logs: Vec<PathBuf> = std::fs::read_dir(self.path("logs"))
                .map(|d| d.filter_map(|e| Some(e.ok()?.path())).collect())
                .unwrap_or_default();
            logs.sort();
            for l in logs {
                eprintln!("--- {}:\n{}", l.display(), tail(&l));
            }
        }
    }
}

/// A workspace binary beside `vdbd` (`cargo test --workspace` builds them all).
pub(crate) fn exe(name: &str) -> PathBuf {
    exe_beside(env!("CARGO_BIN_EXE_vdbd"), name)
}

/// `vdb-update --config <config>`.
pub(crate) fn vdb_update(config: &Path) -> Output {
    Command::new(exe("vdb-update"))
        .arg("--config")
        .arg(config)
        .arg("--verbose")
        .output()
        .expect("vdb-update runs")
}

/// The version in a CVD/CLD header on disk.
pub(crate) fn header_version(path: &Path) -> Option<u32> {
    let f = std::fs::File::open(path).ok()?;
    vdb_format::container::read_header(f)
        .ok()
        .map(|h| h.version)
}
