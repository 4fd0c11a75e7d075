//! End-to-end tests: the real `host` binary, real plugins, real storage, over HTTP and WebSocket.

mod api_contract;
mod batch;
mod celery;
mod cli;
mod dashboard;
mod docker;
mod lifecycle;
mod multihost;
mod plugin_adr;
mod plugin_cvd;
mod plugin_dft;
mod plugin_edna;
mod restart;
mod streaming;
mod tenants;
