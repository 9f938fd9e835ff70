//! The genesys-router HTTP service's foundation: an accept loop that protects itself.
//!
//! [`Server::serve`] runs any hyper service on a `TcpListener` (HTTP/1.1 and HTTP/2)
//! within [`ConnectionLimits`]:
//!
//! - a **header-read timeout**, counted from a request's first byte to the end of its
//!   headers (a client sending headers a byte at a time is closed);
//! - an **idle timeout**: a connection with no request in flight and no bytes arriving
//!   is closed;
//! - a **body-read timeout**, which the service applies while it reads a body
//!   ([`read_body`]), answering 408;
//! - a **connection cap**: one more connection is answered 503 with `Retry-After` and
//!   closed at once, while established callers keep being served;
//! - a two-step shutdown: [`Server::stop_accepting`] (finish what is in flight, then
//!   close) and [`Server::close_all`].
//!
//! [`raise_for_connections`] lifts the process's open-file limit so the cap can be
//! reached at all.
//!
//! ```
//! use std::convert::Infallible;
//! use gateway_server::{ConnectionLimits, Server};
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! let service = hyper::service::service_fn(|_req| async {
//!     Ok::<_, Infallible>(http::Response::new(http_body_util::Full::new(bytes::Bytes::from("ok"))))
//! });
//! let server = Server::serve(listener, ConnectionLimits::default(), service)?;
//! server.stop_accepting();
//! server.drained().await;
//! # std::io::Result::Ok(()) }).unwrap();
//! ```

mod accept;
mod activity;
mod body;
mod fd_limit;
mod limits;
pub mod openapi;
pub mod sidecar;

pub use accept::Server;
pub use body::{BodyError, check_content_encoding, read_body};
pub use fd_limit::{RESERVED_DESCRIPTORS, raise_for_connections};
pub use limits::ConnectionLimits;
pub use sidecar::{ApiKeys, MIN_API_KEY_CHARS, Sidecar, SidecarOptions};
