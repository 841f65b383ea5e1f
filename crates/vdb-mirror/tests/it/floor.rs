//! Anti-rollback across manifests: a database that a manifest drops cannot come back lower
//! than the highest version the mirror ever served, not even after a restart.

use vdb_mirror::SyncRequest;
use vdb_testkit::fixtures::served_set as test_release;
use vdb_testkit::keys::master_key;

use super::{NOW, setup, start, wait_serial};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_dropped_then_brought_back_lower_is_refused() {
    let s = setup();
    let key = master_key();
    s.master
        .publish(&key, 5, NOW, &[("test", 3)], &test_release(3));
    let m = start(&s, &[s.master.url()], "").await;
    wait_serial(&m, 5).await;
    // A manifest without the database is taken (a database may be retired)...
    s.master.publish::<&str>(&key, 6, NOW + 1, &[], &[]);
    m.sync_now(SyncRequest::default()).await.unwrap();
    assert_eq!(m.serial(), Some(6));
    // ...but it does not bring test back below 3.
    s.master
        .publish(&key, 7, NOW + 2, &[("test", 2)], &test_release(2));
    let e = m.sync_now(SyncRequest::default()).await.unwrap_err();
    assert!(e.to_string().contains("down to 2"), "{e}");
    assert_eq!(m.serial(), Some(6));
    m.shutdown().await;

    // The floor is on disk: a restarted mirror refuses it too, and takes test 3 or newer.
    let m = start(&s, &[s.master.url()], "").await;
    let e = m.sync_now(SyncRequest::default()).await.unwrap_err();
    assert!(e.to_string().contains("down to 2"), "{e}");
    s.master
        .publish(&key, 8, NOW + 3, &[("test", 4)], &test_release(4));
    m.sync_now(SyncRequest::default()).await.unwrap();
    assert_eq!(m.serial(), Some(8));
    m.shutdown().await;
}
