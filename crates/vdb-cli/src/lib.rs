//! The command-line front ends of vdbnet.
//!
//! The library behind `vdb` (database tools, keys, publishing and registry administration; the
//! only binary that links signing code). The servers (`vdbd`) and the client (`vdb-update`)
//! do not link it. This crate picks the exit codes and prints; the work is done by the
//! libraries underneath.

pub mod db;
pub mod exit;
pub mod key;
pub mod mirror_admin;
pub mod publish;
pub mod samples;
pub mod synth;
