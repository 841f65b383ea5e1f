//! The master in process: the verification gate through its HTTP API (`gate`), masters among
//! themselves and with mirror, upstream and mail doubles (`network`), and its bounds against
//! hostile peers, mirrors and configurations (`hostile`), and following ClamAV's CDN (`follow`).

mod follow;
mod gate;
mod harness;
mod hostile;
mod network;
