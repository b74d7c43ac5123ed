//! Tests across services live in `tests/`: each service's own suite runs
//! it alone, with testkit standing in for its neighbours (tokens and JWKS,
//! events on the bus); these run the real neighbours together, as a
//! deployment does.
