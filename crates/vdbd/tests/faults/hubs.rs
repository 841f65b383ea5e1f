//! Hub mirrors (issue 18): a hub relays the masters' pushes to its leaves and serves them the
//! objects; a leaf refuses a wrong object from a hub and falls back; a hub killed mid-release
//! leaves nothing half-served; a leaf that missed releases catches up from its hub in one
//! switch. Every process is a real `vdbd`, every release goes through the real `vdb publish`.

use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use serde_json::Value;
use vdb_proto::{MANIFEST_PATH, MirrorRecord};

use crate::harness::{
    ADMIN_TOKEN, Net, Watch, assert_disk_snapshot_is_whole,
    assert_serves_exactly_a_signed_manifest, block_on, counter, http_get, manifest_at,
    serve_requests, spawn, version_at, wait_for,
};

/// Base version of the synthetic `daily` chain.
const BASE: u32 = 31000;

/// The object bytes of the manifest `base` serves.
fn manifest_bytes(base: &str, net: &Net) -> u64 {
    manifest_at(base, &net.keys())
        .map(|m| m.files.iter().map(|f| f.size).sum())
        .unwrap_or(0)
}

fn pulled(url: &str) -> (f64, f64) {
    (
        counter(url, "vdb_mirror_pulled_bytes_total"),
        counter(url, "vdb_mirror_pulled_hub_bytes_total"),
    )
}

/// A hub and two leaves over one master: a publish reaches both leaves through the hub (their
/// objects all came from the hub, the master served each object once, to the hub); the
/// master's status shows the tree; the release timeline shows the hub's relay to each leaf
/// and each leaf's sync (bytes, source).
#[test]
fn a_publish_reaches_every_leaf_through_its_hub_and_the_master_serves_each_object_once() {
    let mut net = Net::new(1);
    net.synth(BASE, 1);
    let a = net.start_master(0, None, "");
    let master = a.ready().http_url();
    let keys = net.keys();
    let (hub, leaves) = net.hub_tree(std::slice::from_ref(&master), 2, 3600);
    // The master keeps the tree at two tiers and refuses unknown hubs.
    let admin = vdb_client::Admin::new(&master, Some(ADMIN_TOKEN.to_owned()));
    for (name, spec, hubs) in [
        ("mirror1", &hub, vec!["mirror2".to_owned()]),
        ("mirror2", &leaves[0], vec!["mirror3".to_owned()]),
        ("mirror2", &leaves[0], vec!["nosuch".to_owned()]),
        ("mirror2", &leaves[0], vec!["mirror2".to_owned()]),
    ] {
        let mut r = MirrorRecord::new(name, &spec.url);
        r.push_url = Some(format!("{}{}", spec.url, vdb_proto::paths::PUSH));
        r.hubs = hubs.clone();
        let e = block_on(admin.update(&r)).expect_err("refused");
        assert!(e.to_string().contains("hub"), "{name} {hubs:?}: {e}");
    }
    let status: Value =
        serde_json::from_slice(&http_get(&format!("{master}/api/v1/status")).unwrap()).unwrap();
    assert_eq!(
        status["hubs"],
        serde_json::json!({"mirror1": ["mirror2", "mirror3"]}),
        "the master's status shows the tree"
    );
    let _hub = spawn("mirror", &hub.config, &hub.log);
    // The hub's first sync (the master's manifest before any release) comes before the leaves
    // start: a leaf's first poll asks the master too, and takes from it what the hub lacks.
    wait_for("the hub's first sync", 30, || manifest_at(&hub.url, &keys));
    let _leaves: Vec<_> = leaves
        .iter()
        .map(|l| spawn("mirror", &l.config, &l.log))
        .collect();

    for v in [BASE, BASE + 1] {
        net.publish_ok(std::slice::from_ref(&master), &net.synth_release(v, BASE));
        for l in &leaves {
            wait_for(
                &format!("{} to serve {v} through the hub", l.url),
                60,
                || (version_at(&l.url, &keys, "daily") == v).then_some(()),
            );
            assert_serves_exactly_a_signed_manifest(&l.url, &keys);
            assert_disk_snapshot_is_whole(&l.data, &keys);
        }
    }
    // The hub serves its objects by hash, with ranges (as the masters do), and nothing else.
    let m = manifest_at(&hub.url, &keys).unwrap();
    let cvd = m.files.iter().find(|f| f.name == "daily.cvd").unwrap();
    let addr: std::net::SocketAddr = hub.url.trim_start_matches("http://").parse().unwrap();
    let path = format!("{}/{}", vdb_proto::paths::OBJECTS, cvd.sha256);
    let (st, _, whole) = vdb_testkit::http::get(addr, &path, &[]);
    assert_eq!((st, whole.len() as u64), (200, cvd.size));
    assert_eq!(vdb_proto::sha256_hex(&whole), cvd.sha256);
    let (st, head, part) = vdb_testkit::http::get(addr, &path, &[("Range", "bytes=512-1023")]);
    assert_eq!(st, 206, "{head}");
    assert_eq!(part, whole[512..1024]);
    let (st, _, _) = vdb_testkit::http::get(
        addr,
        &format!("{}/{}", vdb_proto::paths::OBJECTS, "0".repeat(64)),
        &[],
    );
    assert_eq!(st, 404);
    // The small files travel in the signed manifest: every file of at most INLINE_MAX bytes
    // (and no larger one) is carried, the leaves serve the carried bytes under its name without
    // having fetched it, and the hub still serves it by hash to a leaf older than the field.
    let small: Vec<_> = (m.files.iter())
        .filter(|f| f.size <= vdb_proto::INLINE_MAX)
        .collect();
    assert!(
        small.len() >= 4,
        "timestamp, dns.txt, MD5SUMS, SHA256SUMS: {small:?}"
    );
    assert_eq!(
        m.inline.len(),
        small.len(),
        "only the small files are carried"
    );
    for f in &small {
        let data = m
            .inline_content(f)
            .expect("carried, with its size and hash");
        let (st, _, by_hash) = vdb_testkit::http::get(
            addr,
            &format!("{}/{}", vdb_proto::paths::OBJECTS, f.sha256),
            &[],
        );
        assert_eq!(
            (st, &by_hash),
            (200, &data),
            "the hub serves {} by hash",
            f.name
        );
        for l in &leaves {
            let served = http_get(&format!("{}/{}", l.url, f.name));
            assert_eq!(served.as_ref(), Some(&data), "{} serves {}", l.url, f.name);
            let log = std::fs::read_to_string(&l.log).unwrap();
            assert!(
                log.contains("object downloaded file=daily.cvd")
                    && !log.contains(&format!("object downloaded file={} ", f.name)),
                "{} fetched {} (carried in the manifest) or never logged a download",
                l.url,
                f.name
            );
        }
    }
    // Every object byte of the leaves came from the hub; the master served the hub only.
    let hub_pulled = pulled(&hub.url);
    assert!(
        hub_pulled.0 > 0.0 && hub_pulled.1 == 0.0,
        "hub: {hub_pulled:?}"
    );
    for l in &leaves {
        let (all, from_hub) = pulled(&l.url);
        assert!(all > 0.0, "{}: pulled nothing", l.url);
        assert_eq!(all, from_hub, "{}: every object from the hub", l.url);
    }
    let served = counter(&master, "vdb_master_served_bytes_total");
    assert_eq!(
        served, hub_pulled.0,
        "the master served each object once (to the hub), not once per mirror"
    );
    eprintln!(
        "master served {served} bytes; hub pulled {}; each leaf pulled {} from the hub; one CVD is {} bytes",
        hub_pulled.0,
        pulled(&leaves[0].url).1,
        manifest_bytes(&leaves[0].url, &net)
    );
    // Only the hub relays: a leaf that got the relayed notice (which lists the leaves) does not
    // send it on to the other leaves.
    let relays = |url: &str| {
        counter(url, "vdb_mirror_pushes_total{result=\"relayed\"}")
            + counter(url, "vdb_mirror_pushes_total{result=\"relay_failed\"}")
    };
    assert_eq!(
        relays(&hub.url),
        4.0,
        "the hub relayed 2 releases to 2 leaves"
    );
    for l in &leaves {
        assert_eq!(relays(&l.url), 0.0, "{} relayed a notice", l.url);
    }

    // The release timeline: the hub's relay to each leaf, and each leaf's own sync report.
    let newest = block_on(admin.history(10))
        .unwrap()
        .into_iter()
        .find(|r| r.verdict == "accepted" && r.version == BASE + 1)
        .expect("the release in the history");
    let t = wait_for(
        "the timeline to show both leaves' relays and syncs",
        30,
        || {
            let t = block_on(admin.release(&newest.id)).ok()?;
            let ok = ["mirror2", "mirror3"].iter().all(|leaf| {
                t.pushes.iter().any(|p| {
                    p.mirror == *leaf && p.via.as_deref() == Some("mirror1") && p.acked_at.is_some()
                }) && t.syncs.iter().any(|s| {
                    s.mirror == *leaf
                        && s.serial >= newest.serial.unwrap_or(0)
                        && s.source.starts_with("hub:")
                        && s.hub_bytes > 0
                        && s.hub_bytes == s.bytes
                })
            }) && t
                .syncs
                .iter()
                .any(|s| s.mirror == "mirror1" && s.source == "master");
            ok.then_some(t)
        },
    );
    assert!(
        t.pushes
            .iter()
            .all(|p| p.mirror == "mirror1" || p.via.is_some()),
        "the master pushed to the hub only: {:?}",
        t.pushes
    );
}

/// A fake hub that serves the master's real manifest (or, `frozen`, always the same old one)
/// and a wrong copy of every object (its first byte flipped): it counts the object requests.
struct TamperingHub {
    url: String,
    objects_asked: Arc<AtomicUsize>,
}

impl TamperingHub {
    fn start(master: String, frozen: Option<Vec<u8>>) -> Self {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", l.local_addr().unwrap());
        let asked = Arc::new(AtomicUsize::new(0));
        let a = asked.clone();
        serve_requests(l, move |path, _| {
            if path == MANIFEST_PATH {
                frozen
                    .clone()
                    .or_else(|| http_get(&format!("{master}{path}")))
            } else if path.starts_with(vdb_proto::paths::OBJECTS) {
                a.fetch_add(1, Ordering::SeqCst);
                http_get(&format!("{master}{path}")).map(|mut b| {
                    if let Some(x) = b.first_mut() {
                        *x ^= 0xff;
                    }
                    b
                })
            } else {
                None
            }
        });
        Self {
            url,
            objects_asked: asked,
        }
    }
}

/// A leaf whose hub serves the real signed manifest but tampered objects: it refuses every
/// tampered object (nothing of it is stored or served), fetches it from the master, and serves
/// exactly the signed release.
#[test]
fn a_leaf_refuses_a_tampering_hubs_objects_and_falls_back_to_the_master() {
    let mut net = Net::new(1);
    net.synth(BASE, 1);
    let a = net.start_master(0, None, "");
    let master = a.ready().http_url();
    let keys = net.keys();
    let fake = TamperingHub::start(master.clone(), None);
    let leaf = net.mirror(0, std::slice::from_ref(&master));
    let text = std::fs::read_to_string(&leaf.config).unwrap();
    std::fs::write(&leaf.config, format!("{text}hubs = [{:?}]\n", fake.url)).unwrap();
    let _leaf = spawn("mirror", &leaf.config, &leaf.log);
    for v in [BASE, BASE + 1] {
        net.publish_ok(std::slice::from_ref(&master), &net.synth_release(v, BASE));
        wait_for(&format!("the leaf to serve {v}"), 60, || {
            (version_at(&leaf.url, &keys, "daily") == v).then_some(())
        });
        let served = assert_serves_exactly_a_signed_manifest(&leaf.url, &keys);
        let on_disk = assert_disk_snapshot_is_whole(&leaf.data, &keys);
        assert_eq!(served, on_disk);
    }
    assert!(
        fake.objects_asked.load(Ordering::SeqCst) >= 2,
        "the leaf asked the hub first"
    );
    let (all, from_hub) = pulled(&leaf.url);
    assert!(all > 0.0);
    assert_eq!(from_hub, 0.0, "no tampered byte was taken");
    let log = std::fs::read_to_string(&leaf.log).unwrap();
    assert!(
        log.contains("does not match the manifest"),
        "the refusal is logged"
    );
}

/// A hub SIGKILLed right after the master pushed a release to it: its two leaves (which poll)
/// fall back to the master for that release and the next; no served version ever goes down,
/// and every leaf serves exactly one signed release, whole, on the wire and on disk.
#[test]
fn a_hub_killed_mid_release_leaves_fall_back_and_nothing_is_half_served() {
    let mut net = Net::new(1);
    net.synth(BASE, 2);
    let a = net.start_master(0, None, "");
    let master = a.ready().http_url();
    let keys = net.keys();
    let (hub, leaves) = net.hub_tree(std::slice::from_ref(&master), 2, 1);
    let mut hub_p = spawn("mirror", &hub.config, &hub.log);
    let _leaves: Vec<_> = leaves
        .iter()
        .map(|l| spawn("mirror", &l.config, &l.log))
        .collect();
    net.publish_ok(
        std::slice::from_ref(&master),
        &net.synth_release(BASE, BASE),
    );
    for l in &leaves {
        wait_for("the leaves to serve the base release", 60, || {
            (version_at(&l.url, &keys, "daily") == BASE).then_some(())
        });
    }
    let watch = Watch::start(
        leaves.iter().map(|l| l.url.clone()).collect(),
        keys.clone(),
        None,
    );
    let accepted = counter(&hub.url, "vdb_mirror_pushes_total{result=\"accepted\"}");
    net.publish_ok(
        std::slice::from_ref(&master),
        &net.synth_release(BASE + 1, BASE),
    );
    wait_for("the hub to take the master's push", 30, || {
        (counter(&hub.url, "vdb_mirror_pushes_total{result=\"accepted\"}") > accepted).then_some(())
    });
    hub_p.sigkill();
    for v in [BASE + 1, BASE + 2] {
        if v > BASE + 1 {
            net.publish_ok(std::slice::from_ref(&master), &net.synth_release(v, BASE));
        }
        for l in &leaves {
            wait_for(
                &format!("{} to serve {v} without its hub", l.url),
                60,
                || (version_at(&l.url, &keys, "daily") == v).then_some(()),
            );
            assert_serves_exactly_a_signed_manifest(&l.url, &keys);
            assert_disk_snapshot_is_whole(&l.data, &keys);
        }
    }
    watch.assert_nothing_went_down();
}

/// A leaf stopped while three releases go out catches up from its hub to the newest in one
/// switch (one updating sync, every byte from the hub), never serving an older version or a
/// mix.
#[test]
fn a_leaf_that_missed_three_releases_catches_up_from_its_hub_in_one_switch() {
    let mut net = Net::new(1);
    net.synth(BASE, 3);
    let a = net.start_master(0, None, "");
    let master = a.ready().http_url();
    let keys = net.keys();
    let (hub, mut leaves) = net.hub_tree(std::slice::from_ref(&master), 1, 3600);
    let leaf = leaves.remove(0);
    let _hub = spawn("mirror", &hub.config, &hub.log);
    let mut leaf_p = spawn("mirror", &leaf.config, &leaf.log);
    net.publish_ok(
        std::slice::from_ref(&master),
        &net.synth_release(BASE, BASE),
    );
    wait_for("the leaf to serve the base release", 60, || {
        (version_at(&leaf.url, &keys, "daily") == BASE).then_some(())
    });
    leaf_p.stop();
    for v in BASE + 1..=BASE + 3 {
        net.publish_ok(std::slice::from_ref(&master), &net.synth_release(v, BASE));
    }
    wait_for("the hub to serve the newest release", 60, || {
        (version_at(&hub.url, &keys, "daily") == BASE + 3).then_some(())
    });
    let _leaf_p = spawn("mirror", &leaf.config, &leaf.log);
    let watch = Watch::start(vec![leaf.url.clone()], keys.clone(), None);
    wait_for("the leaf to catch up", 60, || {
        (version_at(&leaf.url, &keys, "daily") == BASE + 3).then_some(())
    });
    watch.assert_nothing_went_down();
    assert_serves_exactly_a_signed_manifest(&leaf.url, &keys);
    assert_disk_snapshot_is_whole(&leaf.data, &keys);
    assert_eq!(
        counter(&leaf.url, "vdb_mirror_syncs_total{outcome=\"updated\"}"),
        1.0,
        "one switch from the base to the newest release"
    );
    let (all, from_hub) = pulled(&leaf.url);
    assert!(
        all > 0.0 && all == from_hub,
        "all from the hub: {all} {from_hub}"
    );
}

/// A leaf that gets no pushes, behind a hub stuck on an old (still valid) release: its polls ask
/// a master too, so the hub delays it by one poll at most, never for good.
#[test]
fn a_hub_stuck_on_an_old_release_delays_a_polling_leaf_one_poll_at_most() {
    let mut net = Net::new(1);
    net.synth(BASE, 1);
    let a = net.start_master(0, None, "");
    let master = a.ready().http_url();
    let keys = net.keys();
    net.publish_ok(
        std::slice::from_ref(&master),
        &net.synth_release(BASE, BASE),
    );
    let old = http_get(&format!("{master}{MANIFEST_PATH}")).unwrap();
    net.publish_ok(
        std::slice::from_ref(&master),
        &net.synth_release(BASE + 1, BASE),
    );
    wait_for("the master to sign the second release", 30, || {
        (version_at(&master, &keys, "daily") == BASE + 1).then_some(())
    });
    let stuck = TamperingHub::start(master.clone(), Some(old));
    let leaf = net.mirror(0, std::slice::from_ref(&master));
    // No push URL: the leaf learns of releases by polling only.
    let mut r = MirrorRecord::new("mirror1", &leaf.url);
    r.addresses = vec![leaf.ip.parse().unwrap()];
    let admin = vdb_client::Admin::new(&master, Some(ADMIN_TOKEN.to_owned()));
    block_on(admin.update(&r)).unwrap();
    let text = std::fs::read_to_string(&leaf.config).unwrap();
    std::fs::write(&leaf.config, format!("{text}hubs = [{:?}]\n", stuck.url)).unwrap();
    let _leaf = spawn("mirror", &leaf.config, &leaf.log);
    wait_for(
        "the leaf to serve the newest release despite its stuck hub",
        30,
        || (version_at(&leaf.url, &keys, "daily") == BASE + 1).then_some(()),
    );
    assert_serves_exactly_a_signed_manifest(&leaf.url, &keys);
    assert_disk_snapshot_is_whole(&leaf.data, &keys);
}
