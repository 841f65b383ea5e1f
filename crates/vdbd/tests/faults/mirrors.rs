//! Faults of the mirrors: SIGKILLed during syncs, tampered with on disk, cut from the masters.

use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::harness::{
    Net, Proc, Proxy, Watch, ZONE, assert_disk_snapshot_is_whole,
    assert_serves_exactly_a_signed_manifest, http_get, manifest_at, spawn, text, vdb_update,
    version_at, wait_for,
};

/// Base version of the synthetic `daily` chain.
const BASE: u32 = 27000;

/// The A records of `database.<zone>`.
fn handed_out(dns: SocketAddr) -> Vec<String> {
    vdb_testkit::dig::query(dns, &format!("database.{ZONE}"), "A")
        .run()
        .data("A")
}

/// A mirror SIGKILLed 10 times at random points of a burst of 10 releases (about 1 MiB each):
/// after every kill its `current` snapshot on disk is one whole release signed by a master;
/// restarted, it serves exactly a signed manifest, never an older version than before, and its
/// `local_*` file is untouched; at the end it serves the newest release.
#[test]
fn a_mirror_killed_during_syncs_again_and_again_serves_only_whole_signed_releases() {
    const RELEASES: u32 = 10;
    let mut net = Net::new(1);
    net.synth(BASE, RELEASES);
    let a = net.start_master(0, None, "");
    let keys = net.keys();
    let spec = net.mirror(0, &[a.ready().http_url()]);
    let local = spec.data.join("local");
    std::fs::create_dir_all(&local).unwrap();
    let notes = b"operator's own file: sync must never touch it\n";
    std::fs::write(local.join("local_notes.txt"), notes).unwrap();
    let mut mirror = spawn("mirror", &spec.config, &spec.log);
    net.publish_ok(&[a.ready().http_url()], &net.synth_release(BASE, BASE));
    wait_for("the mirror to serve the base release", 30, || {
        (version_at(&spec.url, &keys, "daily") == BASE).then_some(())
    });

    let seed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .subsec_nanos() as u64;
    eprintln!("kill points seeded with {seed}");
    let mut rng = seed | 1;
    let mut next = move || {
        // xorshift64: kill points in 0..400 ms.
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng % 400
    };

    let master = a.ready().http_url();
    let releases: Vec<_> = (BASE + 1..=BASE + RELEASES)
        .map(|v| net.synth_release(v, BASE))
        .collect();
    let key = net.publisher_key.clone();
    let burst = std::thread::spawn(move || {
        for files in releases {
            let out = std::process::Command::new(crate::harness::exe("vdb"))
                .args(["publish", "--master", &master, "--key"])
                .arg(&key)
                .args(&files)
                .output()
                .unwrap();
            assert!(out.status.success(), "{}", text(&out));
        }
    });

    let mut floor = BASE;
    let mut kills = 0;
    let mut mid_sync = 0;
    let deadline = Instant::now() + Duration::from_secs(60);
    while kills < 10 {
        assert!(Instant::now() < deadline, "10 kills took over 60 s");
        // A random point of the burst (fault timing, not a readiness wait).
        std::thread::sleep(Duration::from_millis(next()));
        mirror.sigkill();
        kills += 1;
        // A sync was under way if its temporary directory holds something.
        if std::fs::read_dir(spec.data.join("tmp")).is_ok_and(|mut d| d.next().is_some()) {
            mid_sync += 1;
        }
        let on_disk = assert_disk_snapshot_is_whole(&spec.data, &keys);
        let v = on_disk.databases["daily"].version;
        assert!(
            v >= floor,
            "kill {kills}: the snapshot went back from {floor} to {v}"
        );
        assert_eq!(std::fs::read(local.join("local_notes.txt")).unwrap(), notes);
        mirror = spawn("mirror", &spec.config, &spec.log);
        let served = assert_serves_exactly_a_signed_manifest(&spec.url, &keys);
        let v = served.databases["daily"].version;
        assert!(
            v >= floor,
            "kill {kills}: served version went back from {floor} to {v}"
        );
        floor = v;
        assert_eq!(
            http_get(&format!("{}/local_notes.txt", spec.url)).as_deref(),
            Some(&notes[..])
        );
    }
    burst.join().expect("the publish burst");
    eprintln!("{kills} kills, {mid_sync} of them with a sync's temporary files on disk");
    wait_for("the mirror to serve the newest release", 30, || {
        (version_at(&spec.url, &keys, "daily") == BASE + RELEASES).then_some(())
    });
    assert_serves_exactly_a_signed_manifest(&spec.url, &keys);
    drop(mirror);
    assert_disk_snapshot_is_whole(&spec.data, &keys);
    assert_eq!(std::fs::read(local.join("local_notes.txt")).unwrap(), notes);
}

/// Three mirrors, a monitor and a directory over one master publishing the synthetic chain.
struct DnsNet {
    net: Net,
    _master: Proc,
    mirrors: Vec<Proc>,
    urls: Vec<String>,
    ips: Vec<String>,
    monitor: Proc,
    _directory: Proc,
    dns: SocketAddr,
}

/// `via[i]`: mirror `i` reaches the master at this URL instead of directly.
fn dns_net(via: impl Fn(usize, &str) -> Option<String>) -> DnsNet {
    let mut net = Net::new(1);
    net.synth(BASE, 1);
    let master = net.start_master(0, None, "");
    let specs: Vec<_> = (0..3)
        .map(|i| {
            net.mirror(
                i,
                &[via(i, &master.ready().http_url()).unwrap_or_else(|| master.ready().http_url())],
            )
        })
        .collect();
    let mirrors = specs
        .iter()
        .map(|s| spawn("mirror", &s.config, &s.log))
        .collect();
    let monitor = net.start_monitor();
    let (directory, dns) = net.start_directory(&monitor.ready().http_url());
    net.publish_ok(&[master.ready().http_url()], &net.synth_release(BASE, BASE));
    net.publish_ok_with(
        &[master.ready().http_url()],
        &net.extra_release(),
        &["--db", "extra", "--version", "1"],
    );
    let keys = net.keys();
    for s in &specs {
        wait_for("every mirror to serve the base release", 30, || {
            (version_at(&s.url, &keys, "daily") == BASE && version_at(&s.url, &keys, "extra") == 1)
                .then_some(())
        });
    }
    let ips: Vec<String> = specs.iter().map(|s| s.ip.clone()).collect();
    let want = ips.clone();
    wait_for("every mirror in DNS", 30, || {
        (handed_out(dns) == want).then_some(())
    });
    DnsNet {
        _master: master,
        mirrors,
        urls: specs.iter().map(|s| s.url.clone()).collect(),
        ips,
        monitor,
        _directory: directory,
        dns,
        net,
    }
}

/// Flips a byte in the middle of `name` in mirror1's current snapshot (past the head a mirror
/// keeps in memory, so the served body changes) and returns the signed SHA-256.
fn tamper(d: &DnsNet, name: &str) -> String {
    let keys = d.net.keys();
    let held = manifest_at(&d.urls[0], &keys).unwrap();
    let signed = held.file(name).unwrap().sha256.clone();
    let path = d.net.path(&format!("mirror1/current/{name}"));
    let mut bytes = std::fs::read(&path).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x20;
    std::fs::write(&path, &bytes).unwrap();
    let served = http_get(&format!("{}/{name}", d.urls[0])).unwrap();
    assert_ne!(
        vdb_proto::sha256_hex(&served),
        signed,
        "the tampering of {name} did not take"
    );
    signed
}

/// mirror1's verdict, for failure messages.
fn verdict(d: &DnsNet) -> String {
    let body =
        http_get(&format!("{}/api/v1/verdicts", d.monitor.ready().http_url())).unwrap_or_default();
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    v["mirrors"]
        .as_array()
        .and_then(|ms| ms.iter().find(|m| m["name"] == "mirror1"))
        .map(ToString::to_string)
        .unwrap_or_default()
}

/// Bytes changed on mirror1's disk in two served files (the body of `daily.cvd` and of the
/// plain `extra.ndb`): the monitor takes mirror1 out, the directory stops handing it out in DNS,
/// and `vdb-update` (manifest checks on) refuses its `daily.cvd` and installs the signed bytes
/// from the next mirror.
#[test]
fn a_tampered_mirror_leaves_dns_and_clients_refuse_its_file() {
    let d = dns_net(|_, _| None);
    let keys = d.net.keys();
    let signed = tamper(&d, "daily.cvd");
    tamper(&d, "extra.ndb");
    let want = d.ips[1..].to_vec();
    let t = Instant::now();
    wait_for("mirror1 out of DNS", 30, || {
        (handed_out(d.dns) == want).then_some(())
    });
    let why = verdict(&d);
    eprintln!(
        "mirror1 left DNS {:?} after the tampering: {why}",
        t.elapsed()
    );
    assert!(
        why.contains("\"out\"") && why.contains("does not match its signed manifest"),
        "mirror1 left DNS for another reason: {why}"
    );
    // A client of mirror1 alone refuses the file and installs nothing.
    let (vu, db) = d
        .net
        .vdb_update_config("only-mirror1", &d.urls[..1], "daily");
    let out = vdb_update(&vu);
    assert!(
        !out.status.success(),
        "vdb-update took a tampered file:\n{}",
        text(&out)
    );
    if let Ok(b) = std::fs::read(db.join("daily.cvd")) {
        assert_eq!(vdb_proto::sha256_hex(&b), signed, "{}", text(&out));
    }
    // With a good mirror after it, the client installs exactly the signed bytes.
    let (vu, db) = d.net.vdb_update_config("fallback", &d.urls[..2], "daily");
    let out = vdb_update(&vu);
    assert!(out.status.success(), "{}", text(&out));
    let got = std::fs::read(db.join("daily.cvd")).unwrap();
    assert_eq!(vdb_proto::sha256_hex(&got), signed, "{}", text(&out));
    // The other mirrors are unaffected.
    for m in &d.urls[1..] {
        assert_serves_exactly_a_signed_manifest(m, &keys);
    }
    drop(d.mirrors);
}

/// mirror3 reaches the master through a proxy that is cut: it keeps the old release, leaves
/// DNS once the monitor's threshold passes (the TXT record follows the in-service mirrors),
/// and comes back once the proxy heals and it has synced.
#[test]
fn a_mirror_that_stops_syncing_leaves_dns_and_returns_after_recovery() {
    let proxy = std::sync::OnceLock::new();
    let d = dns_net(|i, master| {
        (i == 2).then(|| {
            proxy
                .get_or_init(|| Proxy::start(master.trim_start_matches("http://").parse().unwrap()))
                .url
                .clone()
        })
    });
    let proxy = proxy.get().unwrap();
    let keys = d.net.keys();
    let watch = Watch::start(d.urls.clone(), keys.clone(), Some((d.dns, "daily".into())));
    proxy.cut();
    let cut_at = Instant::now();
    let master = d.net.master_url(0);
    d.net.publish_ok(
        std::slice::from_ref(&master),
        &d.net.synth_release(BASE + 1, BASE),
    );
    for m in &d.urls[..2] {
        wait_for("the connected mirrors to sync", 30, || {
            (version_at(m, &keys, "daily") == BASE + 1).then_some(())
        });
    }
    let want = d.ips[..2].to_vec();
    wait_for("mirror3 out of DNS", 30, || {
        (handed_out(d.dns) == want).then_some(())
    });
    eprintln!("mirror3 left DNS {:?} after the cut", cut_at.elapsed());
    assert_eq!(
        manifest_at(&d.urls[2], &keys).unwrap().databases["daily"].version,
        BASE,
        "mirror3 synced through a cut proxy"
    );
    wait_for("the TXT record to advertise the new release", 30, || {
        (crate::harness::txt_version(d.dns, "daily") == Some(BASE + 1)).then_some(())
    });

    proxy.heal();
    wait_for("mirror3 to sync after recovery", 30, || {
        (version_at(&d.urls[2], &keys, "daily") == BASE + 1).then_some(())
    });
    assert_serves_exactly_a_signed_manifest(&d.urls[2], &keys);
    let want = d.ips.clone();
    wait_for("mirror3 back in DNS", 30, || {
        (handed_out(d.dns) == want).then_some(())
    });
    watch.assert_nothing_went_down();
    drop(d.mirrors);
}

/// Bytes changed in the body of a CVD on a mirror's disk (past the 4 KiB head the mirror
/// serves from memory, with the header intact): the monitor's whole-file check
/// (`deep_check_secs`) finds them and the mirror leaves DNS.
#[test]
fn the_monitor_notices_a_tampered_cvd_body() {
    let d = dns_net(|_, _| None);
    tamper(&d, "daily.cvd");
    let want = d.ips[1..].to_vec();
    let last = std::cell::RefCell::new(String::new());
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        wait_for("mirror1 out of DNS", 15, || {
            *last.borrow_mut() = verdict(&d);
            (handed_out(d.dns) == want).then_some(())
        })
    }));
    assert!(
        r.is_ok(),
        "mirror1 is still handed out; its verdict: {}",
        last.borrow()
    );
}
