//! The six stand-in services of the supd demo deployment, and the small kit
//! they share.
//!
//! The platform these services stand in for ran six NestJS services under
//! PM2. Each binary in `src/bin/` reproduces the one behaviour that decided
//! how its real counterpart must be deployed (ports allocated in memory,
//! payment callbacks applied once, WebSocket connections held in one process,
//! uploads through local temp files, stateless JWTs, a stateless gateway), so
//! supd's process model can be exercised against it.
//!
//! The kit is what every service gets from supd, and what every service
//! answers with:
//! - [`listener`]: the listening socket, inherited on fd 3 (systemd socket
//!   activation, as supd hands it) or bound from `HOST`/`PORT`;
//! - [`notify`]: `READY=1` on `NOTIFY_SOCKET` once the socket accepts;
//! - [`shutdown`]: SIGINT/SIGTERM stop accepting and drain, then exit 0;
//! - [`identity`]: `GET /health` with the service name, instance and pid;
//! - [`accept`]: the accept loop and the drain, which fails no request a
//!   client has sent, on a new or a kept-alive connection;
//! - [`server`]: [`server::run`] ties these together around an axum router.
//!
//! The domain logic that is worth testing without sockets lives in its own
//! modules: [`ports`] (device-service), [`orders`] (billing-service),
//! [`token`] (user-service), [`routes`] (api-gateway).

pub mod accept;
pub mod debug;
pub mod env;
pub mod error;
pub mod identity;
pub mod listener;
pub mod notify;
pub mod orders;
pub mod ports;
pub mod routes;
pub mod server;
pub mod shutdown;
pub mod token;

pub use error::{ApiError, ApiJson};
pub use server::{Ctx, Service, run};
