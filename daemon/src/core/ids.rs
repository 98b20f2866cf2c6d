//! Object ids: `<prefix>-<n>` with one counter for the whole workspace, so an id is never reused,
//! and a sort order that follows creation.

/// Prefix of agent ids.
pub const AGENT: &str = "a";
/// Prefix of terminal ids.
pub const TERMINAL: &str = "t";
/// Prefix of session ids.
pub const SESSION: &str = "s";
/// Prefix of task ids.
pub const TASK: &str = "k";
/// Prefix of decision ids.
pub const DECISION: &str = "d";

/// Hands out ids from a starting counter; used by a command before its events are applied.
#[derive(Debug, Clone)]
pub struct IdGen {
    /// The next number to hand out.
    next: u64,
}

impl IdGen {
    /// Start at `next`.
    pub fn new(next: u64) -> Self {
        Self { next }
    }

    /// A new id with `prefix`.
    pub fn next(&mut self, prefix: &str) -> String {
        let id = format!("{prefix}-{}", self.next);
        self.next += 1;
        id
    }
}

/// The number of an id, if it has our shape.
pub fn number(id: &str) -> Option<u64> {
    id.rsplit_once('-').and_then(|(_, n)| n.parse().ok())
}

/// Sort key: creation order.
pub fn order_key(id: &str) -> (u64, &str) {
    (number(id).unwrap_or(u64::MAX), id)
}
