//! The edge node: TLS (HTTP/1.1, HTTP/2) and QUIC (HTTP/3) listeners that feed one
//! request pipeline in front of HTTP origins.
//!
//! `listener` adapts each protocol into [`pipeline::Pipeline::handle`]; nothing past the
//! adapters knows the protocol except for logging. [`node`] wires config, listeners and
//! the drain on shutdown together; [`demo`] runs a node with the sample origin.

pub mod admin;
pub mod cache;
pub mod config;
pub mod demo;
pub mod listener;
pub mod node;
pub mod pipeline;
pub mod ratelimit;
pub mod reload;
pub mod telemetry;
pub mod token;
pub mod wasm;
