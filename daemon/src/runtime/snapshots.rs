//! Snapshots written from a shadow of the state, on a thread of their own.
//!
//! The state is the fold of the committed events: [`State::apply`] is the only thing that
//! changes it, and start-up rebuilds it that way from a snapshot and the log. So a thread that
//! folds the same committed batches into a state of its own holds, once it has taken in the
//! batch that ends at seq N, exactly the state a snapshot at N must save, and the runtime loop
//! need not copy anything to have it written. The loop hands the thread each committed batch
//! (the `Arc` the subscribers get, no copy) and, when a snapshot is due, the seq to write it at;
//! the thread writes it and says so. Only the first snapshot of a daemon's life copies the
//! state on the loop, to start the shadow. The price is a second copy of the state in memory.

use std::sync::mpsc::{self, Receiver, Sender, TryRecvError};
use std::sync::Arc;
use std::time::Instant;

use crate::core::event::StoredEvent;
use crate::core::state::State;
use crate::ports::{SnapshotWrite, StoreError};

/// What the loop hands the thread, in commit order.
enum Work {
    /// A committed batch, to fold in.
    Events(Arc<[StoredEvent]>),
    /// Write a snapshot: the shadow is then at this seq. `loop_ms`: what it cost the loop.
    Snapshot { seq: u64, loop_ms: f64 },
}

/// A snapshot written (or not).
pub(super) struct Landed {
    /// Its seq.
    pub seq: u64,
    /// The objects the state held: the spacing of the next one.
    pub objects: usize,
    /// How the write went.
    pub result: Result<(), StoreError>,
    /// The shadow was not at `seq` (nothing was written): it must not be used again.
    pub stale: bool,
}

/// The outcome of the snapshot asked for last.
pub(super) enum Landing {
    /// It is written, or failed.
    Landed(Landed),
    /// Still being written.
    Writing,
    /// The thread is gone (it panicked): the shadow must be started again.
    Gone,
}

/// The snapshot thread, fed by the loop.
pub(super) struct Shadow {
    /// Batches and snapshot requests.
    work: Sender<Work>,
    /// Snapshots written.
    landed: Receiver<Landed>,
}

impl Shadow {
    /// Start the thread (`orch-snapshot`) with `state`, the loop's as of its last commit, writing
    /// with `writer`; `wake` is called after each snapshot lands, so that the loop takes it in.
    pub fn start(
        state: State,
        writer: Box<dyn SnapshotWrite>,
        wake: impl Fn() + Send + 'static,
    ) -> std::io::Result<Self> {
        let (work, work_rx) = mpsc::channel();
        let (landed_tx, landed) = mpsc::channel();
        std::thread::Builder::new()
            .name("orch-snapshot".into())
            .spawn(move || run(state, writer.as_ref(), &work_rx, &landed_tx, &wake))?;
        Ok(Self { work, landed })
    }

    /// Fold a committed batch into the shadow. False when the thread is gone.
    pub fn events(&self, batch: &Arc<[StoredEvent]>) -> bool {
        self.work.send(Work::Events(Arc::clone(batch))).is_ok()
    }

    /// Write a snapshot as of `seq`, the last batch handed over. False when the thread is gone.
    pub fn snapshot(&self, seq: u64, loop_ms: f64) -> bool {
        self.work.send(Work::Snapshot { seq, loop_ms }).is_ok()
    }

    /// The outcome of the snapshot asked for, once there is one; with `wait`, waiting for it.
    pub fn landing(&self, wait: bool) -> Landing {
        let got = if wait {
            self.landed.recv().map_err(|_| TryRecvError::Disconnected)
        } else {
            self.landed.try_recv()
        };
        match got {
            Ok(landed) => Landing::Landed(landed),
            Err(TryRecvError::Empty) => Landing::Writing,
            Err(TryRecvError::Disconnected) => Landing::Gone,
        }
    }
}

/// The thread: fold batches, write snapshots, until the loop drops its [`Shadow`].
fn run(
    mut state: State,
    writer: &dyn SnapshotWrite,
    work: &Receiver<Work>,
    landed: &Sender<Landed>,
    wake: &dyn Fn(),
) {
    for w in work {
        match w {
            Work::Events(batch) => {
                for e in batch.iter() {
                    state.apply(e);
                }
            }
            Work::Snapshot { seq, loop_ms } => {
                let objects = state.objects();
                let writing = Instant::now();
                let at = at_seq(&state, seq);
                let stale = at.is_err();
                let result = at.and_then(|()| writer.write(seq, &state));
                tracing::info!(
                    seq,
                    objects,
                    loop_ms = format!("{loop_ms:.1}"),
                    write_ms = format!("{:.1}", writing.elapsed().as_secs_f64() * 1e3),
                    ok = result.is_ok(),
                    "snapshot written"
                );
                if landed
                    .send(Landed {
                        seq,
                        objects,
                        result,
                        stale,
                    })
                    .is_err()
                {
                    return;
                }
                wake();
            }
        }
    }
}

/// The shadow is at `seq`, as the loop says it must be: never write a snapshot that is not.
fn at_seq(state: &State, seq: u64) -> Result<(), StoreError> {
    if state.last_seq == seq {
        Ok(())
    } else {
        Err(StoreError::Io(format!(
            "the snapshot thread's state is at seq {}, not at {seq}: snapshot not written",
            state.last_seq
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// Keeps what it is given, as the store would write it.
    struct Keep(Arc<Mutex<Vec<(u64, State)>>>);

    impl SnapshotWrite for Keep {
        fn write(&self, seq: u64, state: &State) -> Result<(), StoreError> {
            self.0.lock().unwrap().push((seq, state.clone()));
            Ok(())
        }
    }

    /// The shadow, fed the batches the loop committed, writes the loop's state at each seq.
    #[test]
    fn the_shadow_writes_the_state_the_loop_had_at_that_seq() {
        let events = crate::core::event::samples();
        let (first, rest) = events.split_at(5);
        let mut live = State::default();
        for e in first {
            live.apply(e);
        }
        let kept = Arc::new(Mutex::new(Vec::new()));
        let (woke_tx, woke) = mpsc::channel();
        let shadow = Shadow::start(live.clone(), Box::new(Keep(kept.clone())), move || {
            let _ = woke_tx.send(());
        })
        .unwrap();
        let mut expected = Vec::new();
        for batch in rest.chunks(7) {
            for e in batch {
                live.apply(e);
            }
            assert!(shadow.events(&Arc::from(batch)));
            assert!(shadow.snapshot(live.last_seq, 0.0));
            expected.push((live.last_seq, live.clone()));
        }
        for (seq, _) in &expected {
            let Landing::Landed(l) = shadow.landing(true) else {
                panic!("no snapshot landed")
            };
            assert_eq!(l.seq, *seq);
            assert!(l.result.is_ok() && !l.stale);
            woke.recv().unwrap();
        }
        assert!(matches!(shadow.landing(false), Landing::Writing));
        assert_eq!(*kept.lock().unwrap(), expected);
    }

    /// A snapshot asked for at a seq the shadow is not at is refused, not written.
    #[test]
    fn a_shadow_behind_the_seq_asked_writes_nothing() {
        let kept = Arc::new(Mutex::new(Vec::new()));
        let shadow = Shadow::start(State::default(), Box::new(Keep(kept.clone())), || {}).unwrap();
        assert!(shadow.snapshot(3, 0.0));
        let Landing::Landed(l) = shadow.landing(true) else {
            panic!("no outcome")
        };
        assert!(l.stale);
        let err = l.result.unwrap_err().to_string();
        assert!(err.contains("at seq 0, not at 3"), "{err}");
        assert!(kept.lock().unwrap().is_empty());
    }
}
