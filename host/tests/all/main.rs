//! The host's integration tests, gathered in one test binary (one link, one compile cache),
//! one file per behaviour.

mod broker_conformance;
mod broker_redis;
mod sandbox_hostile;
mod sandbox_plugins;
mod support;
