//! Delta transfer with real processes: the real master publishes the segment map of each large
//! CVD, the real mirror that holds release N rebuilds N+1 from it plus the cdiff and pulls only
//! what it lacks.

use crate::harness::{Net, counter, http_get, spawn, version_at, wait_for};

/// Base version of the synthetic `daily` chain.
const BASE: u32 = 27000;

#[test]
fn a_mirror_holding_n_pulls_under_5_percent_of_n_plus_1() {
    let mut net = Net::new(1);
    net.synth_sized(BASE, 1, 3);
    let a = net.start_master(0, None, "");
    let master = a.ready().http_url();
    let keys = net.keys();
    let spec = net.mirror(0, std::slice::from_ref(&master));
    let _mirror = spawn("mirror", &spec.config, &spec.log);
    net.publish_ok(
        std::slice::from_ref(&master),
        &net.synth_release(BASE, BASE),
    );
    wait_for("the mirror to serve the base release", 60, || {
        (version_at(&spec.url, &keys, "daily") == BASE).then_some(())
    });
    let pulled = counter(&spec.url, "vdb_mirror_pulled_bytes_total");
    assert_eq!(
        counter(&spec.url, "vdb_mirror_delta_reused_bytes_total"),
        0.0
    );

    net.publish_ok(
        std::slice::from_ref(&master),
        &net.synth_release(BASE + 1, BASE),
    );
    wait_for("the mirror to serve the next release", 60, || {
        (version_at(&spec.url, &keys, "daily") == BASE + 1).then_some(())
    });
    let new = std::fs::read(net.path("synth").join(format!("daily-{}.cvd", BASE + 1))).unwrap();
    let update = counter(&spec.url, "vdb_mirror_pulled_bytes_total") - pulled;
    let reused = counter(&spec.url, "vdb_mirror_delta_reused_bytes_total");
    eprintln!(
        "one update of a {}-byte CVD: pulled {update} bytes ({:.2} %), re-created {reused}",
        new.len(),
        100.0 * update / new.len() as f64
    );
    assert!(
        update <= 0.05 * new.len() as f64,
        "pulled {update} bytes for a {}-byte CVD",
        new.len()
    );
    assert!(reused > 0.9 * new.len() as f64, "re-created {reused}");
    assert_eq!(
        http_get(&format!("{}/daily.cvd", spec.url)).as_deref(),
        Some(&new[..]),
        "the mirror serves the master's bytes"
    );
}
