//! The command-line front ends of vdbnet.
//!
//! Three thin binaries share this library: `vdb` (database tools and publishing; the only one
//! that links signing code), `vdbd` (servers) and `vdb-update` (the client). This crate picks
//! the exit codes and prints; the work is done by the libraries underneath.

pub mod db;
pub mod exit;
pub mod key;
pub mod mirror_admin;
pub mod publish;
pub mod samples;
pub mod synth;
