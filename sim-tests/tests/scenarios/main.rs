//! The simulations. Each test runs its scenario once per seed (see the
//! crate docs and README.md): `SIM_SEED=N` replays one seed, `SIM_SEEDS=N`
//! runs seeds 1..=N.

mod auto_reconnect;
mod determinism;
mod fanout;
mod global_caps;
mod hostile;
mod inbox_backlog;
mod model_check;
mod partition;
mod restart;
mod shutdown;
mod slow_consumer;
mod timeouts;
