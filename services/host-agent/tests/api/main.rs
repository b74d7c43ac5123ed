#![allow(clippy::unwrap_used, clippy::expect_used)]

//! Integration tests of the host agent, in-process, against a fake
//! scheduler that answers the agent routes of instance-scheduling
//! (register, heartbeat, connected, JWKS) the way it does. Neither a
//! database nor a broker is needed.

mod helpers;

mod lifecycle;
