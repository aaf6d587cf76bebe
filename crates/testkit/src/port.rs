//! Free TCP ports on loopback.

use std::net::{Ipv4Addr, TcpListener};

use crate::error::{Error, Result};

/// A port that was free a moment ago. Another process may take it before the
/// server binds it; servers retry with a new port when that happens.
pub(crate) fn free_port() -> Result<u16> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .map_err(|e| Error::io("cannot bind a port on 127.0.0.1", &e))?;
    listener
        .local_addr()
        .map(|addr| addr.port())
        .map_err(|e| Error::io("cannot read the bound port", &e))
}
