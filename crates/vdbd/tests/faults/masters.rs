//! Faults of the masters: killed during a publish, partitioned, restored from an old backup.

use std::net::SocketAddr;

use crate::harness::{
    Guard, Net, Proc, Proxy, Sink, Trigger, Watch, assert_serves_exactly_a_signed_manifest,
    copy_dir, counter, header_version, manifest_at, master_ready_with, spawn, text, txt_version,
    vdb_update, version_at, wait_for,
};

fn addr(url: &str) -> SocketAddr {
    url.trim_start_matches("http://").parse().unwrap()
}

fn start_mirrors(net: &Net, n: usize) -> (Vec<Proc>, Vec<String>) {
    let specs: Vec<_> = (0..n).map(|i| net.mirror(i, &net.master_urls())).collect();
    let procs = specs
        .iter()
        .map(|s| spawn("mirror", &s.config, &s.log))
        .collect();
    (procs, specs.into_iter().map(|s| s.url).collect())
}

fn wait_mirrors(mirrors: &[String], net: &Net, db: &str, v: u32) {
    let keys = net.keys();
    for m in mirrors {
        wait_for(&format!("{m} to serve {db} {v}"), 30, || {
            (version_at(m, &keys, db) == v).then_some(())
        });
        let held = assert_serves_exactly_a_signed_manifest(m, &keys);
        assert_eq!(held.databases[db].version, v, "{m}");
    }
}

/// Master A is SIGKILLed twice during a publish by `vdb publish --master A --master B`: once
/// while it receives an upload, once between the uploads and the commit. Each time the publisher
/// fails over to B, every mirror serves exactly a signed release (never a half-published one),
/// A catches up when restarted, and no version goes down on any mirror.
#[test]
fn master_a_killed_during_a_publish_fails_over_to_b_and_nothing_is_half_published() {
    let net = Net::new(2);
    let mut a = net.start_master(0, None, "");
    let _b = net.start_master(1, None, "");
    let keys = net.keys();
    let (_mirrors, urls) = start_mirrors(&net, 2);
    // The publisher reaches A through a proxy that kills A at a chosen byte.
    let proxy = Proxy::start(addr(&net.master_url(0)));
    let via = vec![proxy.url.clone(), net.master_url(1)];
    // (Either master may take the first release: a master still catching up answers 503.)
    net.publish_ok(&via, &net.fixture_release(1));
    wait_mirrors(&urls, &net, "test", 1);
    // The masters too: a master killed and restarted serves what it held, never less.
    let watch = Watch::start(
        urls.iter().cloned().chain(net.master_urls()).collect(),
        keys.clone(),
        None,
    );

    for (v, pattern, forward) in [
        // A receives the head (and maybe part) of an upload, then dies.
        (2, &b"PUT /api/v1/objects/"[..], true),
        // Every upload reached A; it dies before the commit reaches it.
        (3, &b"POST /api/v1/releases"[..], false),
    ] {
        wait_for("both masters ready with the previous release", 30, || {
            (master_ready_with(&net.master_url(0), "test", v - 1)
                && master_ready_with(&net.master_url(1), "test", v - 1))
            .then_some(())
        });
        let pid = a.pid();
        proxy.arm(Trigger {
            pattern: pattern.to_vec(),
            forward,
            action: Box::new(move || Guard::kill_pid(pid)),
        });
        let out = net.publish(&via, &net.fixture_release(v));
        assert!(proxy.fired(), "the proxy never saw {pattern:?}");
        a.wait_exit(10).expect("master a exits when killed");
        let log = text(&out);
        assert!(
            out.status.success(),
            "the publisher did not fail over: {log}"
        );
        vdb_testkit::assert_contains(&log, "accepted by master b");
        // ...and says so: a failover is never silent.
        vdb_testkit::assert_contains(&log, "failed (");
        vdb_testkit::assert_contains(&log, "trying the next master");
        // Nothing half-published: every mirror serves exactly the whole new release.
        wait_mirrors(&urls, &net, "test", v);
        // A, restarted, catches up from B.
        a = net.restart_master(0);
        wait_for("master a to catch up", 30, || {
            master_ready_with(&net.master_url(0), "test", v).then_some(())
        });
        // The same files for the release on both masters: nothing of the interrupted attempt.
        let files = |url: &str| {
            let m = manifest_at(url, &keys).unwrap();
            let mut f: Vec<_> = m
                .files
                .into_iter()
                .filter(|f| f.name.starts_with("test"))
                .collect();
            f.sort_by(|x, y| x.name.cmp(&y.name));
            f
        };
        assert_eq!(files(&net.master_url(0)), files(&net.master_url(1)));
    }
    // A takes the next release again (once it is ready), and it reaches every mirror.
    let out = net.publish_ok(&[net.master_url(0)], &net.fixture_release(4));
    vdb_testkit::assert_contains(&out, "accepted by master a");
    wait_mirrors(&urls, &net, "test", 4);
    watch.assert_nothing_went_down();
}

/// Masters that cannot reach each other (mirrors still reach both) skip the forced sync and say
/// so on their webhook; a release published meanwhile still reaches every mirror; once healed
/// the masters converge and forced syncs run again.
#[test]
fn partitioned_masters_skip_the_forced_sync_raise_an_alert_and_converge_after_healing() {
    let net = Net::new(2);
    let sink = Sink::start();
    // Each master reaches its peer only through a proxy the test can cut.
    let to_b = Proxy::start(addr(&net.master_url(1)));
    let to_a = Proxy::start(addr(&net.master_url(0)));
    let extra = format!("forced_sync_secs = 1\nwebhook_url = {:?}\n", sink.url);
    let a = net.start_master(0, Some(std::slice::from_ref(&to_b.url)), &extra);
    let b = net.start_master(1, Some(std::slice::from_ref(&to_a.url)), &extra);
    let keys = net.keys();
    let (_mirrors, urls) = start_mirrors(&net, 2);
    let watch = Watch::start(urls.clone(), keys.clone(), None);
    net.publish_ok(&[a.ready().http_url()], &net.fixture_release(1));
    wait_mirrors(&urls, &net, "test", 1);
    wait_for("b to replicate test 1", 30, || {
        (version_at(&b.ready().http_url(), &keys, "test") == 1).then_some(())
    });
    let run = "vdb_master_forced_sync_total{result=\"run\"}";
    let skipped = "vdb_master_forced_sync_total{result=\"skipped\"}";
    wait_for("a forced sync on both masters", 30, || {
        (counter(&a.ready().http_url(), run) > 0.0 && counter(&b.ready().http_url(), run) > 0.0)
            .then_some(())
    });

    let before = sink.len();
    to_b.cut();
    to_a.cut();
    for name in ["a", "b"] {
        wait_for(
            &format!("master {name}'s forced_sync_skipped alert"),
            30,
            || {
                sink.has_since(before, |v| {
                    v["event"] == "alert"
                        && v["kind"] == "forced_sync_skipped"
                        && v["master"] == name
                        && v["message"]
                            .as_str()
                            .is_some_and(|m| m.contains("unreachable"))
                })
                .then_some(())
            },
        );
    }
    let runs_a = counter(&a.ready().http_url(), run);
    let skipped_a = counter(&a.ready().http_url(), skipped);
    // A release during the partition reaches the mirrors (from A), not B.
    net.publish_ok(&[a.ready().http_url()], &net.fixture_release(2));
    wait_mirrors(&urls, &net, "test", 2);
    wait_for("two more skipped rounds on a", 30, || {
        (counter(&a.ready().http_url(), skipped) >= skipped_a + 2.0).then_some(())
    });
    assert_eq!(
        counter(&a.ready().http_url(), run),
        runs_a,
        "a forced sync ran while the peer was unreachable"
    );
    assert_eq!(
        version_at(&b.ready().http_url(), &keys, "test"),
        1,
        "b saw through the partition"
    );

    to_b.heal();
    to_a.heal();
    wait_for("b to converge on test 2", 30, || {
        (version_at(&b.ready().http_url(), &keys, "test") == 2).then_some(())
    });
    wait_for("forced syncs to run again on both", 30, || {
        (counter(&a.ready().http_url(), run) > runs_a && counter(&b.ready().http_url(), run) > 0.0)
            .then_some(())
    });
    for m in &urls {
        assert_serves_exactly_a_signed_manifest(m, &keys);
    }
    watch.assert_nothing_went_down();
}

/// Master A restored from a backup taken two releases ago: no mirror, no TXT record and no
/// client goes back; A catches up (and signs above B's serial) and takes the next release.
#[test]
fn a_master_restored_from_an_old_backup_rolls_nothing_back() {
    let net = Net::new(2);
    let mut a = net.start_master(0, None, "");
    let b = net.start_master(1, None, "");
    let keys = net.keys();
    let (_mirrors, urls) = start_mirrors(&net, 2);
    let monitor = net.start_monitor();
    let (_directory, dns) = net.start_directory(&monitor.ready().http_url());
    let both = net.master_urls();
    for v in 1..=2 {
        net.publish_ok(&both[..1], &net.fixture_release(v));
    }
    wait_mirrors(&urls, &net, "test", 2);
    // The backup: A's state directory, copied while A is stopped.
    a.stop();
    let backup = net.path("backup-a");
    copy_dir(&net.master_data(0), &backup);
    a = net.restart_master(0);
    for v in 3..=4 {
        net.publish_ok(&both, &net.fixture_release(v));
    }
    wait_mirrors(&urls, &net, "test", 4);
    wait_for("b to hold test 4", 30, || {
        (version_at(&b.ready().http_url(), &keys, "test") == 4).then_some(())
    });
    wait_for("the TXT record to say 4", 30, || {
        (txt_version(dns, "test") == Some(4)).then_some(())
    });
    let (vu, vu_db) = net.vdb_update_config("vdb-update", &urls, "test");
    let out = vdb_update(&vu);
    assert!(out.status.success(), "{}", text(&out));
    let installed = || {
        header_version(&vu_db.join("test.cld")).or_else(|| header_version(&vu_db.join("test.cvd")))
    };
    assert_eq!(installed(), Some(4));

    let watch = Watch::start(urls.clone(), keys.clone(), Some((dns, "test".into())));
    a.sigkill();
    std::fs::remove_dir_all(net.master_data(0)).unwrap();
    copy_dir(&backup, &net.master_data(0));
    let b_serial = manifest_at(&b.ready().http_url(), &keys).unwrap().serial;
    let _a = net.restart_master(0);
    wait_for("the restored a to catch up", 30, || {
        manifest_at(&net.master_url(0), &keys)
            .filter(|m| m.databases["test"].version == 4 && m.serial > b_serial)
    });
    // Meanwhile nothing moved back; clients stay on 4.
    for m in &urls {
        assert_eq!(
            assert_serves_exactly_a_signed_manifest(m, &keys).databases["test"].version,
            4
        );
    }
    assert_eq!(txt_version(dns, "test"), Some(4));
    let out = vdb_update(&vu);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(installed(), Some(4));
    // The restored A takes the next release.
    let out = net.publish_ok(&both[..1], &net.fixture_release(5));
    vdb_testkit::assert_contains(&out, "accepted by master a");
    wait_mirrors(&urls, &net, "test", 5);
    wait_for("the TXT record to say 5", 30, || {
        (txt_version(dns, "test") == Some(5)).then_some(())
    });
    let out = vdb_update(&vu);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(installed(), Some(5));
    watch.assert_nothing_went_down();
}
