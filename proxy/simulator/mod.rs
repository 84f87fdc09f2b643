//! placeholder until the simulator lands
use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::time::Duration;
pub struct SimulatorOptions {
    pub workers: NonZeroUsize,
    pub service_time: Duration,
    pub manual_update_time: Duration,
}
impl Default for SimulatorOptions {
    fn default() -> Self {
        SimulatorOptions {
            workers: NonZeroUsize::MIN,
            service_time: Duration::ZERO,
            manual_update_time: Duration::ZERO,
        }
    }
}
pub fn run_blocking(_listen: SocketAddr, _options: SimulatorOptions) -> anyhow::Result<()> {
    Ok(())
}
