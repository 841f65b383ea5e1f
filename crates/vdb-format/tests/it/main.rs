//! Integration tests of the format library against ClamAV's own signed fixtures.

mod clamsign;
mod fixtures;
mod segmented;
mod stream;
mod tamper;
