//! The combined fault suite (issue 8): every role as a real `vdbd` process on loopback, killed,
//! partitioned, restored from a backup or tampered with one at a time, with the invariants of
//! DESIGN.md §4 checked from the outside (HTTP, the mirrors' disks, the directory's DNS through
//! `dig`, the real `vdb publish` and `vdb-update` binaries).
//!
//! Every process is killed by a guard on drop; every wait is a bounded poll on something
//! observable (the only sleeps pick random kill points).

mod delta;
mod harness;
mod hubs;
mod masters;
mod mirrors;
