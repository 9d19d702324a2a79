//! One integration-test binary: everything here drives the real `boocoder` binary.

mod suite;
mod support;
