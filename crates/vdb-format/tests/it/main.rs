//! Integration tests of the format library against ClamAV's own signed fixtures.

mod fixtures;
mod stream;
mod tamper;
