//! Wasmbed's API server as a library: the resources ([`model`]), where
//! they are kept ([`store`]), the REST API ([`http`]) with bearer tokens
//! ([`http::auth`]) and its OpenAPI document ([`openapi`]), and the
//! [`controller`] that makes gateways deploy what applications ask for.

pub mod controller;
pub mod http;
pub mod model;
pub mod openapi;
pub mod server;
pub mod store;
