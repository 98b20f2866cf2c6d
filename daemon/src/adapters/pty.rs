//! TEMPORARY placeholder until the pty backend lands (being written in parallel).
use std::sync::Arc;
use crate::ports::*;
/// Placeholder.
pub struct PtyBackend;
impl PtyBackend {
    /// Placeholder.
    pub fn new() -> Self { PtyBackend }
}
impl TerminalBackend for PtyBackend {
    fn name(&self) -> &'static str { "pty" }
    fn probe(&self) -> BackendProbe { BackendProbe { available: false, detail: "placeholder".into() } }
    fn spawn(&self, _spec: TerminalSpec, _o: Arc<dyn TerminalObserver>) -> Result<Arc<dyn Terminal>, BackendError> {
        Err(BackendError::Other("placeholder".into()))
    }
}
