//! Controls for hand-written scenario tests: drive the simulated cluster step by step.
use crate::world::Sim;
impl Sim {
    /// x
    pub fn probe_private(&self) -> u64 { self.now }
}
