//! Renderers: typed spec in, text out. Pure functions, snapshot-tested, and checked by the
//! real tool in the tests (`systemd-analyze verify`, `nft -c -f`, `caddy validate`).

pub mod caddy;
pub mod files;
pub mod nft;
pub mod otel;
pub mod systemd;
