//! Integration tests of the real `rampart` binary over real TLS: one binary, a module per
//! user-facing capability.

mod accounts;
mod admin;
mod alerts;
mod audit;
mod cli;
mod cluster;
mod drain;
mod edge;
mod encryption;
mod files;
mod forward;
mod live_sessions;
mod load_balancer;
mod messaging;
mod metrics;
mod openapi;
mod postgres;
mod proxy;
mod search;
mod support;
mod tidy;
mod tls;
mod unauthenticated;
mod web;
