//! `hkctl version`: client and server versions.

use super::{client, out};
use crate::Result;
use crate::config::Overrides;

pub async fn run(overrides: &Overrides) -> Result<u8> {
    out(&format!("Client Version: {}\n", env!("CARGO_PKG_VERSION")));
    let server = client(overrides)?.server_version().await?;
    out(&format!("Server Version: {server}\n"));
    Ok(0)
}
