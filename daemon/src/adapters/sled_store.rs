//! The event store on sled: the event log, the latest snapshot and the schema version.
//!
//! Layout: tree `events` maps the big-endian `seq` of a group's first event to the group: the
//! versioned JSON records of consecutive events, one per line (see [`GROUP_BYTES`]); tree `meta` holds
//! `schema_version` and the latest snapshot (`snapshot` → `{v, seq, state}`). sled's `flush()`
//! only calls `sync_file_range` (sled#1452), which is not a device flush, so [`SledStore::sync`]
//! follows it with `fdatasync` on sled's data file: an acknowledged event survives power loss,
//! not just a process crash. Knows nothing of the runtime or the wire.
//!
//! The store holds environment values in plain text, so its directories are 0700 and its files
//! 0600 (see [`make_private`]), without touching the process-wide umask.

use std::fs::File;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::core::event::StoredEvent;
use crate::core::state::State;
use crate::ports::{Compacted, EventStore, SnapshotWrite, StoreError};

mod records;

use records::{EventV1, StateV1};

/// sled's page cache. With sled's default, 1 GiB, the daemon grew with its log towards a
/// gigabyte (22 MiB more after 100,000 events than with this cap); orch reads the log only to
/// replay it and page through it, which the operating system's file cache serves as well.
/// How long opening waits for sled's file lock to be let go (see [`SledStore::open`]).
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

const CACHE_BYTES: u64 = 16 << 20;

/// zstd level of sled's compression (1 to 22). Each log message sled writes is compressed alone
/// (a group of events, a rewritten page, the snapshot); level 1 is the fastest and already keeps the store
/// at about half the JSON bytes of its events (level 3 gained a tenth more and cost more time).
const COMPRESSION_LEVEL: i32 = 1;

/// Schema version this build writes. Bump with a migration in [`SledStore::open`]. Version 2
/// keeps events in groups of several records; a version 1 store (one record per key) is a
/// version 2 store whose groups all hold one event, so it opens without a migration.
pub const SCHEMA_VERSION: u32 = 2;

/// A group of events is closed once its records reach this many bytes (a commit's events fill
/// as many groups as they need; a group holds at most this much plus one record). sled compresses
/// each message it writes on its own, so one message per group rather than per event costs one
/// compression per group (creating zstd's context each time cost about 15 us an event) and
/// compresses the records together; 4 KiB (about 16 events of the usual size) keeps sled's
/// pages (16 keys a leaf) well below the size at which it writes them as blob files.
const GROUP_BYTES: usize = 4 << 10;
/// Version of one event record.
const RECORD_VERSION: u32 = 1;

/// A versioned event record.
#[derive(Serialize, Deserialize)]
struct Record {
    /// Record version; readers accept every version up to [`RECORD_VERSION`].
    v: u32,
    /// The event.
    #[serde(flatten)]
    event: EventV1,
}

/// A versioned snapshot record.
#[derive(Serialize, Deserialize)]
struct Snapshot {
    /// Record version.
    v: u32,
    /// The state is as of this seq.
    seq: u64,
    /// The state.
    state: StateV1,
}

/// The sled-backed [`EventStore`].
pub struct SledStore {
    /// The database directory.
    path: PathBuf,
    /// The open database.
    db: sled::Db,
    /// First seq of a group -> the group's records, one per line.
    events: sled::Tree,
    /// Schema version, snapshot.
    meta: sled::Tree,
    /// sled's data file, kept open for `fdatasync`.
    data_file: Option<File>,
    /// Last appended seq.
    last_seq: u64,
    /// The blob files synced so far, with their length then: sled keeps a large message (a big
    /// record, a page holding one, the snapshot) in a file of its own and never fsyncs it, so
    /// `sync` does for every one it has not seen at that length (one another thread was still
    /// writing is synced again).
    synced_blobs: std::collections::HashMap<std::ffi::OsString, u64>,
    /// Bytes on disk as of the last refresh: measuring stats sled's files, too costly for every
    /// `orch/status`, so it is refreshed after a sync at most once a second.
    size: (u64, std::time::Instant),
}

fn io(e: impl std::fmt::Display) -> StoreError {
    StoreError::Io(e.to_string())
}

impl SledStore {
    /// The newest snapshot record read as `T`: the whole [`Snapshot`], or only part of it.
    fn read_snapshot<T: serde::de::DeserializeOwned>(&self) -> Result<Option<T>, StoreError> {
        let Some(bytes) = self.meta.get("snapshot").map_err(io)? else {
            return Ok(None);
        };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| StoreError::Corrupt {
                what: "snapshot".into(),
                detail: e.to_string(),
            })
    }

    /// The seq of the newest snapshot, without building its state.
    fn snapshot_seq(&self) -> Result<Option<u64>, StoreError> {
        /// A snapshot record's seq; the rest is skipped.
        #[derive(serde::Deserialize)]
        struct SeqOnly {
            seq: u64,
        }
        Ok(self.read_snapshot::<SeqOnly>()?.map(|s| s.seq))
    }

    /// Open (or create) the store in `dir`, refusing a store written by a newer orch.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        create_private_dir(dir)?;
        // Read the schema version before sled touches anything, via a marker file written beside
        // the database: a newer store must never be opened (opening may rewrite its files).
        let marker = dir.join("SCHEMA");
        let found = match std::fs::read_to_string(&marker) {
            Ok(s) => Some(s.trim().parse::<u32>().map_err(|_| StoreError::Corrupt {
                what: marker.display().to_string(),
                detail: format!("schema marker {:?} is not a number", s.trim()),
            })?),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(io(e)),
        };
        if let Some(found) = found {
            if found > SCHEMA_VERSION {
                return Err(StoreError::TooNew {
                    path: dir.display().to_string(),
                    found,
                    supported: SCHEMA_VERSION,
                });
            }
        }
        let db_path = dir.join("db");
        // sled would make these with the umask's modes; made first, they are private from the
        // start, and so is everything sled puts in them before `make_private` sees it.
        create_private_dir(&db_path.join("blobs"))?;
        let config = sled::Config::new()
            .path(&db_path)
            .mode(sled::Mode::HighThroughput)
            .cache_capacity(CACHE_BYTES)
            .use_compression(compresses(&db_path)?)
            .compression_factor(COMPRESSION_LEVEL);
        // The same process reopening a store it just closed may find sled's file lock still
        // held for a moment by the old handle's background flusher: wait for it (a lock another
        // process holds stays held, and is reported after the wait).
        let deadline = std::time::Instant::now() + LOCK_WAIT;
        let db = loop {
            match config.open() {
                Ok(db) => break db,
                // sled reports it as an `Other` error with the words below.
                Err(sled::Error::Io(e))
                    if e.to_string().contains("could not acquire lock")
                        && std::time::Instant::now() < deadline =>
                {
                    std::thread::sleep(std::time::Duration::from_millis(10));
                }
                Err(e) => {
                    return Err(StoreError::Io(format!(
                        "cannot open sled database at {}: {e}",
                        db_path.display()
                    )))
                }
            }
        };
        let events = db.open_tree("events").map_err(io)?;
        let meta = db.open_tree("meta").map_err(io)?;
        let stored = match meta.get("schema_version").map_err(io)? {
            None => None,
            Some(v) => Some(u32::from_be_bytes(v.as_ref().try_into().map_err(|_| {
                StoreError::Corrupt {
                    what: "schema_version".into(),
                    detail: format!("{} bytes, expected 4", v.len()),
                }
            })?)),
        };
        if let Some(v) = stored {
            if v > SCHEMA_VERSION {
                return Err(StoreError::TooNew {
                    path: dir.display().to_string(),
                    found: v,
                    supported: SCHEMA_VERSION,
                });
            }
            // Version 1 needs no migration (see SCHEMA_VERSION).
        }
        meta.insert("schema_version", &SCHEMA_VERSION.to_be_bytes())
            .map_err(io)?;
        db.flush().map_err(io)?;
        write_private(&marker, format!("{SCHEMA_VERSION}\n").as_bytes())?;
        // sled's own files (conf, db, snapshots) and those of an older orch that left them open.
        make_private(dir)?;
        let last_seq = match events.last().map_err(io)? {
            Some((k, v)) => decode_group(&k, &v)?.last().map_or(0, |e| e.seq),
            None => 0,
        };
        let data_file = File::open(db_path.join("db")).ok();
        let size = (db.size_on_disk().unwrap_or(0), std::time::Instant::now());
        let mut store = Self {
            path: dir.to_path_buf(),
            db,
            events,
            meta,
            data_file,
            last_seq,
            size,
            synced_blobs: Default::default(),
        };
        if last_seq == 0 {
            // Everything may have been compacted away: continue after the snapshot.
            if let Some((seq, _)) = store.load_snapshot()? {
                store.last_seq = seq;
            }
        }
        Ok(store)
    }
}

/// Whether the sled database at `db_path` compresses: a new one does; one an older orch made
/// without compression keeps its setting, which sled fixes for a database's life (it refuses to
/// open it with another). Read from sled's `conf` file, `use_compression: <bool>`.
fn compresses(db_path: &Path) -> Result<bool, StoreError> {
    let conf = db_path.join("conf");
    // Text lines, then sled's checksum. sled takes a file of 8 bytes or less (a crash while it
    // was first written: sled does not fsync it) for none and writes it again.
    let text = match std::fs::read(&conf) {
        Ok(bytes) if bytes.len() <= 8 => return Ok(true),
        Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(true),
        Err(e) => return Err(io(format!("cannot read {}: {e}", conf.display()))),
    };
    parse_compression(&text).ok_or_else(|| StoreError::Corrupt {
        what: conf.display().to_string(),
        detail: "no `use_compression: true|false` line".into(),
    })
}

/// The `use_compression` setting of sled's `conf` text.
fn parse_compression(conf: &str) -> Option<bool> {
    conf.lines()
        .find_map(|l| l.strip_prefix("use_compression:"))
        .and_then(|v| v.trim().parse().ok())
}

/// Mode of the store's directories.
const DIR_MODE: u32 = 0o700;
/// Mode of the store's files.
const FILE_MODE: u32 = 0o600;

/// fsync, and make private, every file in sled's blob directory `dir` not in `synced` at its
/// length, then the directory when there was one; `synced` is left naming the files present.
/// Blobs are few (a snapshot and the page holding it, large records), so the listing costs
/// little beside the sync it follows.
fn sync_new_blobs(
    dir: &Path,
    synced: &mut std::collections::HashMap<std::ffi::OsString, u64>,
) -> Result<(), StoreError> {
    use std::os::unix::fs::PermissionsExt;
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(());
    };
    let mut present = std::collections::HashMap::with_capacity(synced.len());
    let mut new = false;
    for e in entries.flatten() {
        let name = e.file_name();
        let len = match e.metadata() {
            Ok(m) => m.len(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(io(e)),
        };
        if synced.get(&name) != Some(&len) {
            let f = match File::open(e.path()) {
                Ok(f) => f,
                // sled removes blobs it no longer needs at any time.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(io(e)),
            };
            let meta = f.metadata().map_err(io)?;
            if !meta.is_file() {
                continue;
            }
            if meta.permissions().mode() & 0o7777 != FILE_MODE {
                f.set_permissions(std::fs::Permissions::from_mode(FILE_MODE))
                    .map_err(io)?;
            }
            f.sync_all().map_err(io)?;
            new = true;
        }
        present.insert(name, len);
    }
    if new {
        File::open(dir).and_then(|f| f.sync_all()).map_err(io)?;
    }
    *synced = present;
    Ok(())
}

/// Create `dir` and any missing parents with mode 0700.
fn create_private_dir(dir: &Path) -> Result<(), StoreError> {
    crate::paths::create_private_dirs(dir)
        .map_err(|e| StoreError::Io(format!("cannot create {}: {e}", dir.display())))
}

/// Write `bytes` to `path`, a 0600 file.
fn write_private(path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    use std::io::Write;
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(FILE_MODE)
        .open(path)
        .map_err(io)?;
    f.set_permissions(std::fs::Permissions::from_mode(FILE_MODE))
        .and_then(|_| f.write_all(bytes))
        .map_err(io)
}

/// Make `dir` and every directory under it 0700 and every file 0600. sled creates its files
/// itself, with the process umask (0644 under the usual 022), and the umask is process-wide
/// (other threads create files meanwhile), so modes are fixed after the fact: on open, for blob
/// files when they are synced, and at every snapshot. Until then a new file sits in a 0700
/// directory, where no one else can reach it.
fn make_private(dir: &Path) -> Result<(), StoreError> {
    use std::os::unix::fs::PermissionsExt;
    let mut todo = vec![dir.to_path_buf()];
    while let Some(path) = todo.pop() {
        let meta = match std::fs::symlink_metadata(&path) {
            Ok(m) => m,
            // sled removes old snapshots and blobs at any time.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(io(e)),
        };
        let want = if meta.is_dir() {
            DIR_MODE
        } else if meta.is_file() {
            FILE_MODE
        } else {
            continue;
        };
        if meta.permissions().mode() & 0o7777 != want {
            match std::fs::set_permissions(&path, std::fs::Permissions::from_mode(want)) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(StoreError::Io(format!(
                        "cannot make {} private: {e}",
                        path.display()
                    )))
                }
                _ => {}
            }
        }
        if meta.is_dir() {
            for e in std::fs::read_dir(&path).map_err(io)? {
                todo.push(e.map_err(io)?.path());
            }
        }
    }
    Ok(())
}

fn decode_seq(k: &[u8]) -> Result<u64, StoreError> {
    let b: [u8; 8] = k.try_into().map_err(|_| StoreError::Corrupt {
        what: "event key".into(),
        detail: format!("{} bytes, expected 8", k.len()),
    })?;
    Ok(u64::from_be_bytes(b))
}

/// An event as its versioned record's bytes.
#[cfg(test)]
fn encode_event(e: &StoredEvent) -> Result<Vec<u8>, StoreError> {
    let mut out = Vec::new();
    write_event(&mut out, e)?;
    Ok(out)
}

/// Append an event's versioned record to `out` (compact JSON: no newline in it).
fn write_event(out: &mut Vec<u8>, e: &StoredEvent) -> Result<(), StoreError> {
    let record = Record {
        v: RECORD_VERSION,
        event: EventV1::from(e),
    };
    serde_json::to_writer(out, &record).map_err(io)
}

/// A group's events: its records, one per line (one line in a version 1 store); each must carry
/// the seq that follows the one before, starting with the key's.
fn decode_group(k: &[u8], v: &[u8]) -> Result<Vec<StoredEvent>, StoreError> {
    let first = decode_seq(k)?;
    v.split(|&b| b == b'\n')
        .zip(first..)
        .map(|(line, seq)| {
            let e = decode_event(seq, line)?;
            if e.seq != seq {
                return Err(StoreError::Corrupt {
                    what: format!("event {seq}"),
                    detail: format!("its record says seq {}", e.seq),
                });
            }
            Ok(e)
        })
        .collect()
}

/// One record, the event `seq` (named in errors).
fn decode_event(seq: u64, v: &[u8]) -> Result<StoredEvent, StoreError> {
    let record: Record = serde_json::from_slice(v).map_err(|e| StoreError::Corrupt {
        what: format!("event {seq}"),
        detail: e.to_string(),
    })?;
    if record.v > RECORD_VERSION {
        return Err(StoreError::Corrupt {
            what: format!("event {seq}"),
            detail: format!("record version {} is newer than {RECORD_VERSION}", record.v),
        });
    }
    Ok(record.event.into())
}

impl EventStore for SledStore {
    fn last_seq(&self) -> u64 {
        self.last_seq
    }

    fn append(&mut self, events: &[StoredEvent]) -> Result<(), StoreError> {
        let mut batch = sled::Batch::default();
        let mut expect = self.last_seq + 1;
        let (mut first, mut group) = (expect, Vec::new());
        for e in events {
            if e.seq != expect {
                return Err(StoreError::Io(format!(
                    "event seq {} would leave a gap after {}",
                    e.seq,
                    expect - 1
                )));
            }
            expect += 1;
            if group.is_empty() {
                first = e.seq;
            } else {
                group.push(b'\n');
            }
            write_event(&mut group, e)?;
            if group.len() >= GROUP_BYTES {
                batch.insert(&first.to_be_bytes(), std::mem::take(&mut group));
            }
        }
        if !group.is_empty() {
            batch.insert(&first.to_be_bytes(), group);
        }
        self.events.apply_batch(batch).map_err(io)?;
        self.last_seq = expect - 1;
        Ok(())
    }

    fn sync(&mut self) -> Result<(), StoreError> {
        self.db.flush().map_err(io)?;
        if self.data_file.is_none() {
            self.data_file = File::open(self.path.join("db").join("db")).ok();
        }
        if let Some(f) = &self.data_file {
            f.sync_data().map_err(io)?;
        }
        sync_new_blobs(&self.path.join("db").join("blobs"), &mut self.synced_blobs)?;
        if self.size.1.elapsed() >= std::time::Duration::from_secs(1) {
            self.size = (
                self.db.size_on_disk().unwrap_or(self.size.0),
                std::time::Instant::now(),
            );
        }
        Ok(())
    }

    fn read_since(&self, since: u64, limit: usize) -> Result<Vec<StoredEvent>, StoreError> {
        let from = since.saturating_add(1);
        // The group holding `from` starts at or before it.
        let start = match self.events.range(..=from.to_be_bytes()).next_back() {
            Some(r) => r.map_err(io)?.0,
            None => sled::IVec::from(&from.to_be_bytes()),
        };
        let mut out: Vec<StoredEvent> = Vec::new();
        for r in self.events.range(start..) {
            if out.len() >= limit {
                break;
            }
            let (k, v) = r.map_err(io)?;
            let group = decode_group(&k, &v)?;
            // Groups follow one another without a gap or an overlap.
            if let (Some(last), Some(first)) = (out.last(), group.first()) {
                if first.seq != last.seq + 1 {
                    return Err(StoreError::Corrupt {
                        what: format!("event {}", first.seq),
                        detail: format!("its group follows event {}", last.seq),
                    });
                }
            }
            let skip = group.iter().take_while(|e| e.seq < from).count();
            let take = (limit - out.len()).min(group.len() - skip);
            out.extend(group.into_iter().skip(skip).take(take));
        }
        Ok(out)
    }

    fn load_snapshot(&self) -> Result<Option<(u64, State)>, StoreError> {
        Ok(self
            .read_snapshot::<Snapshot>()?
            .map(|snap| (snap.seq, snap.state.into())))
    }

    fn snapshot_writer(&self) -> Box<dyn SnapshotWrite> {
        Box::new(SledSnapshots {
            db: self.db.clone(),
            meta: self.meta.clone(),
            path: self.path.clone(),
        })
    }

    fn compact(&mut self, before: u64, at_most: usize) -> Result<Compacted, StoreError> {
        let covered = self.snapshot_seq()?.unwrap_or(0);
        let before = before.min(covered + 1);
        // Whole groups only: a group ends where the next one starts (the last one at the last
        // seq), and goes when that is at or before `before`. Each group holds an event at least,
        // so at most `at_most + 1` of them are looked at, and one more start gives their ends.
        let mut starts = Vec::new();
        let mut all = true;
        for k in self.events.range(..before.to_be_bytes()).keys() {
            starts.push(decode_seq(&k.map_err(io)?)?);
            if starts.len() > at_most + 1 {
                all = false;
                break;
            }
        }
        let mut ends: Vec<u64> = starts.iter().skip(1).copied().collect();
        if all {
            ends.push(
                match self.events.range(before.to_be_bytes()..).keys().next() {
                    Some(k) => decode_seq(&k.map_err(io)?)?,
                    None => self.last_seq + 1,
                },
            );
        }
        let mut done = Compacted::default();
        for (&start, &end) in starts.iter().zip(&ends) {
            if end > before {
                return Ok(done);
            }
            // The first group goes even when it alone is larger than asked, or nothing would.
            if done.removed > 0 && done.removed + (end - start) > at_most as u64 {
                done.more = true;
                return Ok(done);
            }
            self.events.remove(start.to_be_bytes()).map_err(io)?;
            done.removed += end - start;
        }
        done.more = !all;
        Ok(done)
    }

    fn size_bytes(&self) -> u64 {
        self.size.0
    }

    fn path(&self) -> PathBuf {
        self.path.clone()
    }
}

/// Writes snapshots into a [`SledStore`]'s `meta` tree from another thread.
struct SledSnapshots {
    /// The database, to flush.
    db: sled::Db,
    /// Where the snapshot goes.
    meta: sled::Tree,
    /// The store's directory.
    path: PathBuf,
}

impl SnapshotWrite for SledSnapshots {
    fn write(&self, seq: u64, state: &State) -> Result<(), StoreError> {
        let record = Snapshot {
            v: RECORD_VERSION,
            seq,
            state: StateV1::from(state),
        };
        let bytes = serde_json::to_vec(&record).map_err(io)?;
        self.meta.insert("snapshot", bytes).map_err(io)?;
        // Compaction trusts the snapshot: make it durable now, blob file included.
        self.db.flush().map_err(io)?;
        File::open(self.path.join("db").join("db"))
            .and_then(|f| f.sync_data())
            .map_err(io)?;
        // The snapshot, or the page holding it, may be a blob file (a few at most).
        // Every one: the loop's `sync` keeps its own account of what it synced.
        sync_new_blobs(&self.path.join("db").join("blobs"), &mut Default::default())?;
        // Whatever else sled created since the last look (it is rare and cheap to check).
        make_private(&self.path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::event::EventBody;

    fn ev(seq: u64) -> StoredEvent {
        StoredEvent {
            seq,
            time: "2026-11-21T00:00:00Z".into(),
            body: EventBody::ConfigReloaded {
                path: format!("p{seq}"),
            },
        }
    }

    #[test]
    fn append_reopen_continue() {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut s = SledStore::open(dir.path()).unwrap();
            s.append(&[ev(1), ev(2)]).unwrap();
            s.sync().unwrap();
            assert!(s.append(&[ev(4)]).is_err(), "a gap is refused");
        }
        let mut s = SledStore::open(dir.path()).unwrap();
        assert_eq!(s.last_seq(), 2);
        s.append(&[ev(3)]).unwrap();
        let seqs: Vec<u64> = s.read_since(1, 10).unwrap().iter().map(|e| e.seq).collect();
        assert_eq!(seqs, [2, 3]);
    }

    /// `n` dropped, and whether more could have gone.
    fn compacted(removed: u64, more: bool) -> Compacted {
        Compacted { removed, more }
    }

    #[test]
    fn snapshot_and_compaction() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = SledStore::open(dir.path()).unwrap();
        // One commit each: groups of one event.
        for seq in 1..=10 {
            s.append(&[ev(seq)]).unwrap();
        }
        let st = State {
            last_seq: 8,
            ..State::default()
        };
        s.save_snapshot(8, &st).unwrap();
        assert_eq!(
            s.compact(100, 3).unwrap(),
            compacted(3, true),
            "at most as many as asked"
        );
        assert_eq!(s.read_since(0, 100).unwrap()[0].seq, 4, "the oldest first");
        assert_eq!(
            s.compact(100, 1000).unwrap(),
            compacted(5, false),
            "only what the snapshot covers is dropped"
        );
        assert_eq!(s.compact(100, 1000).unwrap(), compacted(0, false));
        assert_eq!(s.read_since(0, 100).unwrap().len(), 2);
        assert_eq!(s.load_snapshot().unwrap().unwrap().0, 8);
    }

    /// A commit's events are kept in groups of about GROUP_BYTES; reads start inside a group,
    /// stop inside one, and go on after a reopen; compaction drops only whole groups.
    #[test]
    fn events_are_kept_in_groups() {
        let dir = tempfile::tempdir().unwrap();
        let sized = |seq| StoredEvent {
            body: EventBody::ConfigReloaded {
                path: format!("{seq:0>200}"),
            },
            ..ev(seq)
        };
        let record = encode_event(&sized(1)).unwrap().len();
        let per_group = GROUP_BYTES.div_ceil(record + 1) as u64;
        {
            let mut s = SledStore::open(dir.path()).unwrap();
            s.append(&(1..=100).map(sized).collect::<Vec<_>>()).unwrap();
            s.append(&[sized(101)]).unwrap();
            s.sync().unwrap();
            let keys: Vec<u64> = s
                .events
                .iter()
                .keys()
                .map(|k| decode_seq(&k.unwrap()).unwrap())
                .collect();
            let want: Vec<u64> = (0..100 / per_group + 1)
                .map(|i| 1 + i * per_group)
                .chain([101])
                .collect();
            assert_eq!(keys, want, "{per_group} records of {record} bytes a group");
        }
        let mut s = SledStore::open(dir.path()).unwrap();
        assert_eq!(s.last_seq(), 101, "the last group's last event");
        let seqs = |s: &SledStore, since, limit| -> Vec<u64> {
            s.read_since(since, limit)
                .unwrap()
                .iter()
                .map(|e| e.seq)
                .collect()
        };
        assert_eq!(seqs(&s, 0, 3), [1, 2, 3]);
        let mid = per_group + 2;
        assert_eq!(seqs(&s, mid, 4), (mid + 1..=mid + 4).collect::<Vec<_>>());
        assert_eq!(seqs(&s, 98, 100), [99, 100, 101]);
        assert_eq!(seqs(&s, 101, 10), Vec::<u64>::new());
        assert_eq!(
            s.read_since(41, 1).unwrap(),
            vec![sized(42)],
            "the event read back whole"
        );
        s.save_snapshot(101, &State::default()).unwrap();
        // Events before `per_group + 3`: only the first group is wholly before.
        assert_eq!(
            s.compact(per_group + 3, 1000).unwrap(),
            compacted(per_group, false)
        );
        assert_eq!(seqs(&s, 0, 1), [per_group + 1]);
        // A group larger than asked still goes when it is the first, and says more remain.
        assert_eq!(s.compact(100, 1).unwrap(), compacted(per_group, true));
        s.append(&[sized(102)]).unwrap();
        assert_eq!(seqs(&s, 100, 10), [101, 102]);
    }

    #[test]
    fn newer_schema_is_refused_and_untouched() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("SCHEMA"), "7\n").unwrap();
        let err = SledStore::open(dir.path()).err().unwrap();
        assert!(
            err.to_string()
                .contains("schema version 7, newer than this orch supports (2)"),
            "{err}"
        );
        assert!(
            !dir.path().join("db").exists(),
            "a newer store is never opened"
        );
    }

    /// Every file and directory under the store, with its permission bits.
    fn modes(dir: &Path) -> Vec<(PathBuf, u32)> {
        use std::os::unix::fs::PermissionsExt;
        let mut out = Vec::new();
        let mut todo = vec![dir.to_path_buf()];
        while let Some(p) = todo.pop() {
            let meta = std::fs::symlink_metadata(&p).unwrap();
            out.push((p.clone(), meta.permissions().mode() & 0o7777));
            if meta.is_dir() {
                todo.extend(std::fs::read_dir(&p).unwrap().map(|e| e.unwrap().path()));
            }
        }
        out
    }

    fn assert_private(dir: &Path) {
        let wrong: Vec<String> = modes(dir)
            .into_iter()
            .filter(|(p, mode)| *mode != if p.is_dir() { 0o700 } else { 0o600 })
            .map(|(p, mode)| format!("{} {mode:o}", p.display()))
            .collect();
        assert!(wrong.is_empty(), "not private: {wrong:#?}");
    }

    #[test]
    fn every_file_and_directory_of_the_store_is_private() {
        // The store holds env values in plain text: files 0600, directories 0700, whatever the
        // umask, including blob files and snapshots sled makes later, and the files of a store
        // made by an older orch that left them readable.
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("store");
        // Letters that do not compress much, so that the record stays a blob.
        let mut x = 1u64;
        let noise: String = (0..300 << 10)
            .map(|_| {
                x = x
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                char::from(b'a' + (x >> 59) as u8 % 26)
            })
            .collect();
        let big = |seq| StoredEvent {
            body: EventBody::ConfigReloaded {
                path: noise.clone(),
            },
            ..ev(seq)
        };
        {
            let mut s = SledStore::open(&dir).unwrap();
            s.append(&[ev(1), big(2)]).unwrap();
            s.sync().unwrap();
            s.save_snapshot(2, &State::default()).unwrap();
            s.append(&[big(3)]).unwrap();
            s.sync().unwrap();
            assert!(
                std::fs::read_dir(dir.join("db/blobs")).unwrap().count() > 0,
                "a blob file was written"
            );
            assert_private(&dir);
        }
        let mut s = SledStore::open(&dir).unwrap();
        assert_private(&dir);
        assert!(
            modes(&dir).iter().any(|(p, _)| p
                .file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("snap."))),
            "sled wrote a snapshot file"
        );
        s.append(&[ev(4)]).unwrap();
        s.sync().unwrap();
        drop(s);
        // A store left readable (an older orch's) is made private when opened.
        use std::os::unix::fs::PermissionsExt;
        for (p, _) in modes(&dir) {
            let mode = if p.is_dir() { 0o755 } else { 0o644 };
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
        }
        let _s = SledStore::open(&dir).unwrap();
        assert_private(&dir);
    }

    #[test]
    fn the_compression_setting_is_read_from_sleds_conf() {
        let conf = "segment_size: 524288\nuse_compression: false\nversion: 0.34\n";
        assert_eq!(parse_compression(conf), Some(false));
        assert_eq!(
            parse_compression(&conf.replace("false", "true")),
            Some(true)
        );
        assert_eq!(parse_compression("segment_size: 524288\n"), None);
        assert_eq!(parse_compression("use_compression: maybe\n"), None);
    }

    /// The compression setting sled's `conf` of the store in `dir` records.
    fn conf_compression(dir: &Path) -> Option<bool> {
        let conf = std::fs::read(dir.join("db/conf")).unwrap();
        parse_compression(&String::from_utf8_lossy(&conf))
    }

    /// A `conf` sled left short (it does not fsync it when it makes a store) is taken for
    /// none, as sled takes it, rather than refusing to open.
    #[test]
    fn a_short_sled_conf_is_taken_for_none() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("db")).unwrap();
        std::fs::write(dir.path().join("db/conf"), b"segm").unwrap();
        let mut s = SledStore::open(dir.path()).unwrap();
        s.append(&[ev(1)]).unwrap();
        s.sync().unwrap();
        assert_eq!(s.read_since(0, 10).unwrap(), vec![ev(1)]);
    }

    /// A new store compresses: its events take less room than their JSON.
    #[test]
    fn a_new_store_takes_less_room_than_its_events_json() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = SledStore::open(dir.path()).unwrap();
        // Records of a typical event's size (about 250 bytes).
        let events: Vec<StoredEvent> = (1..=20_000)
            .map(|seq| StoredEvent {
                body: EventBody::ConfigReloaded {
                    path: format!("/home/someone/projects/{seq}/{}", "orch.toml/".repeat(16)),
                },
                ..ev(seq)
            })
            .collect();
        let json: usize = events.iter().map(|e| encode_event(e).unwrap().len()).sum();
        for chunk in events.chunks(500) {
            s.append(chunk).unwrap();
            s.sync().unwrap();
        }
        let size = s.db.size_on_disk().unwrap();
        assert!(
            (size as usize) < json,
            "{size} bytes on disk for {json} bytes of records"
        );
        drop(s);
        assert_eq!(conf_compression(dir.path()), Some(true));
    }

    /// A store an older orch made without compression opens as it is (sled refuses to open a
    /// database with another setting than it was made with) and goes on without.
    #[test]
    fn an_uncompressed_store_keeps_its_setting() {
        let dir = tempfile::tempdir().unwrap();
        {
            let db = sled::Config::new()
                .path(dir.path().join("db"))
                .use_compression(false)
                .open()
                .unwrap();
            db.open_tree("events")
                .unwrap()
                .insert(1u64.to_be_bytes(), encode_event(&ev(1)).unwrap())
                .unwrap();
            db.flush().unwrap();
        }
        let mut s = SledStore::open(dir.path()).unwrap();
        assert_eq!(s.last_seq(), 1);
        s.append(&[ev(2)]).unwrap();
        s.sync().unwrap();
        assert_eq!(s.read_since(0, 10).unwrap(), vec![ev(1), ev(2)]);
        drop(s);
        assert_eq!(conf_compression(dir.path()), Some(false));
    }

    /// Records written by version 1 must stay readable by every later version.
    #[test]
    fn v1_record_compatibility() {
        let v1 = br#"{"v":1,"seq":5,"time":"2026-11-21T00:00:00Z","kind":"agent.state","data":{"id":"a-1","state":"idle","previous":"busy","evidence":"quiet 1500ms"}}"#;
        let e = decode_event(5, v1).unwrap();
        assert_eq!(e.body.kind(), "agent.state");
        assert_eq!(e.seq, 5);
    }

    /// A snapshot of a state holding every kind of record, as written: pinned like the events,
    /// and read back as the same state.
    #[test]
    fn snapshot_record_on_disk() {
        let mut state = State::default();
        for e in crate::core::event::samples() {
            state.apply(&e);
        }
        let dir = tempfile::tempdir().unwrap();
        let mut s = SledStore::open(dir.path()).unwrap();
        s.save_snapshot(state.last_seq, &state).unwrap();
        let bytes = s.meta.get("snapshot").unwrap().unwrap();
        let written: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        expect_test::expect![[r#"
            {
              "seq": 41,
              "state": {
                "agents": {
                  "a-2": {
                    "backend": "pty",
                    "cols": 120,
                    "command": [
                      "claude"
                    ],
                    "createdAt": "2026-11-28T00:00:00.000Z",
                    "cwd": "/w",
                    "env": {
                      "TOKEN": "s3cret"
                    },
                    "exitCode": null,
                    "host": "buildhost",
                    "id": "a-2",
                    "kind": "claude",
                    "name": "claude-1",
                    "pid": null,
                    "restarts": 1,
                    "rows": 40,
                    "sessionId": "s-1",
                    "state": "failed",
                    "taskId": null,
                    "terminalId": "t-8",
                    "updatedAt": "2026-11-28T00:00:00.000Z",
                    "watch": {
                      "busyPatterns": [
                        "esc to interrupt"
                      ],
                      "hooks": "claude",
                      "idleAfterMs": 1500,
                      "interruptKeys": "\u001b",
                      "lookBack": 14,
                      "maxRestarts": 5,
                      "menuEnter": false,
                      "readyPatterns": [
                        "> "
                      ],
                      "restart": "on-failure",
                      "waitingOptions": [
                        [
                          "Yes",
                          "1"
                        ]
                      ],
                      "waitingPatterns": [
                        "Proceed\\?"
                      ]
                    }
                  },
                  "a-9": {
                    "acpSession": "sess-1",
                    "backend": "acp",
                    "cols": 120,
                    "command": [
                      "gemini",
                      "--acp"
                    ],
                    "createdAt": "2026-11-28T00:00:00.000Z",
                    "cwd": "/state/worktrees/gemini-acp-1",
                    "env": {},
                    "exitCode": null,
                    "host": "buildhost",
                    "id": "a-9",
                    "kind": "gemini-acp",
                    "name": "gemini-acp-1",
                    "pid": 42,
                    "restarts": 0,
                    "rows": 40,
                    "sessionId": "s-1",
                    "state": "starting",
                    "taskId": null,
                    "terminalId": "t-10",
                    "updatedAt": "2026-11-28T00:00:00.000Z",
                    "watch": {
                      "acpAuthMethod": "gemini-api-key",
                      "acpMode": "default",
                      "busyPatterns": [],
                      "hooks": null,
                      "idleAfterMs": 1500,
                      "interruptKeys": "\u001b",
                      "lookBack": 3,
                      "maxRestarts": 5,
                      "menuEnter": false,
                      "protocol": "acp",
                      "readyPatterns": [],
                      "restart": "never",
                      "waitingOptions": [],
                      "waitingPatterns": []
                    },
                    "worktree": {
                      "base": "main",
                      "baseCommit": "0123abcd",
                      "branch": "orch/gemini-acp-1",
                      "changes": 3,
                      "path": "/state/worktrees/gemini-acp-1",
                      "paused": true
                    }
                  }
                },
                "decisions": {
                  "d-11": {
                    "choice": null,
                    "createdAt": "2026-11-28T00:00:00.000Z",
                    "detail": "touch x",
                    "id": "d-11",
                    "options": [
                      "Allow",
                      "Reject"
                    ],
                    "reason": null,
                    "resolved": false,
                    "resolvedAt": null,
                    "source": {
                      "id": "a-9",
                      "kind": "permission",
                      "options": [
                        [
                          "Allow",
                          "proceed_once"
                        ],
                        [
                          "Reject",
                          "cancel"
                        ]
                      ],
                      "request": 1
                    },
                    "title": "gemini-acp-1 asks permission"
                  },
                  "d-12": {
                    "choice": null,
                    "createdAt": "2026-11-28T00:00:00.000Z",
                    "detail": "2 commit(s) not in its base",
                    "id": "d-12",
                    "options": [
                      "discard",
                      "keep"
                    ],
                    "reason": null,
                    "resolved": false,
                    "resolvedAt": null,
                    "source": {
                      "id": "a-9",
                      "kind": "discard"
                    },
                    "title": "Discard gemini-acp-1's unmerged work on orch/gemini-acp-1?"
                  },
                  "d-5": {
                    "choice": "Yes",
                    "createdAt": "2026-11-28T00:00:00.000Z",
                    "detail": "Do you want to proceed?",
                    "id": "d-5",
                    "options": [
                      "Yes",
                      "No"
                    ],
                    "reason": null,
                    "resolved": true,
                    "resolvedAt": "2026-11-28T00:00:02.000Z",
                    "source": {
                      "id": "a-2",
                      "keys": [
                        [
                          "Yes",
                          "1"
                        ],
                        [
                          "No",
                          "3"
                        ]
                      ],
                      "kind": "agent"
                    },
                    "title": "claude-1 is waiting for an answer"
                  }
                },
                "lastSeq": 41,
                "nextId": 14,
                "sessions": {
                  "s-1": {
                    "closed": false,
                    "closedAt": null,
                    "createdAt": "2026-11-28T00:00:00.000Z",
                    "id": "s-1",
                    "name": "default"
                  }
                },
                "tasks": {
                  "k-13": {
                    "agentId": "a-9",
                    "attempts": 0,
                    "createdAt": "2026-11-28T00:00:00.000Z",
                    "decisionId": null,
                    "gateResults": [
                      {
                        "attempt": 2,
                        "durationMs": 5230,
                        "exitCode": 101,
                        "name": "test",
                        "ok": false,
                        "outputTail": "1 failed"
                      }
                    ],
                    "gates": [
                      {
                        "command": [
                          "cargo",
                          "test"
                        ],
                        "name": "test",
                        "timeoutS": 900
                      }
                    ],
                    "id": "k-13",
                    "maxAttempts": 3,
                    "merge": "squash",
                    "priority": "high",
                    "prompt": "make it pass",
                    "runningGate": [
                      "test",
                      1
                    ],
                    "runningGatePgid": 77,
                    "state": "pending",
                    "summary": null,
                    "title": "fix",
                    "updatedAt": "2026-11-28T00:00:00.000Z"
                  },
                  "k-4": {
                    "agentId": null,
                    "attempts": 1,
                    "createdAt": "2026-11-28T00:00:00.000Z",
                    "decisionId": null,
                    "gateResults": [
                      {
                        "attempt": 2,
                        "durationMs": 5230,
                        "exitCode": 101,
                        "name": "test",
                        "ok": false,
                        "outputTail": "1 failed"
                      },
                      {
                        "attempt": 2,
                        "durationMs": 5230,
                        "exitCode": 101,
                        "name": "test",
                        "ok": false,
                        "outputTail": "1 failed"
                      }
                    ],
                    "gates": [
                      {
                        "command": [
                          "cargo",
                          "test"
                        ],
                        "name": "test",
                        "timeoutS": 900
                      }
                    ],
                    "id": "k-4",
                    "maxAttempts": 3,
                    "priority": "high",
                    "prompt": "make it pass",
                    "runningGate": null,
                    "runningGatePgid": null,
                    "state": "running",
                    "summary": "done",
                    "title": "fix",
                    "updatedAt": "2026-11-28T00:00:00.000Z"
                  }
                },
                "terminals": {
                  "t-3": {
                    "agentId": "a-2",
                    "alive": false,
                    "backend": "tmux",
                    "closed": true,
                    "cols": 100,
                    "command": [
                      "claude"
                    ],
                    "cwd": "/w",
                    "exitCode": 0,
                    "handle": "%7",
                    "id": "t-3",
                    "pid": null,
                    "rows": 30
                  }
                }
              },
              "v": 1
            }"#]]
        .assert_eq(&serde_json::to_string_pretty(&written).unwrap());
        assert_eq!(s.load_snapshot().unwrap(), Some((state.last_seq, state)));
    }

    /// Every event kind's record as written: the disk format, pinned (a change here needs a
    /// new record version and a reader for the old one).
    #[test]
    fn every_event_kind_on_disk() {
        let lines: Vec<String> = crate::core::event::samples()
            .into_iter()
            .map(|e| String::from_utf8(encode_event(&e).unwrap()).unwrap())
            .collect();
        expect_test::expect![[r#"
            {"v":1,"seq":1,"time":"2026-11-28T00:00:00.000Z","kind":"daemon.started","data":{"pid":1,"version":"0.1.0","workspace":"/w"}}
            {"v":1,"seq":2,"time":"2026-11-28T00:00:00.000Z","kind":"daemon.stopping","data":{"pid":1}}
            {"v":1,"seq":3,"time":"2026-11-28T00:00:00.000Z","kind":"session.created","data":{"session":{"id":"s-1","name":"default","closed":false,"createdAt":"2026-11-28T00:00:00.000Z","closedAt":null}}}
            {"v":1,"seq":4,"time":"2026-11-28T00:00:00.000Z","kind":"session.closed","data":{"id":"s-6","at":"2026-11-28T00:00:01.000Z"}}
            {"v":1,"seq":5,"time":"2026-11-28T00:00:00.000Z","kind":"terminal.opened","data":{"terminal":{"id":"t-3","backend":"tmux","command":["claude"],"cwd":"/w","cols":120,"rows":40,"pid":42,"alive":true,"exitCode":null,"agentId":"a-2","handle":"%7","closed":false}}}
            {"v":1,"seq":6,"time":"2026-11-28T00:00:00.000Z","kind":"terminal.exited","data":{"id":"t-3","exitCode":0}}
            {"v":1,"seq":7,"time":"2026-11-28T00:00:00.000Z","kind":"terminal.closed","data":{"id":"t-3"}}
            {"v":1,"seq":8,"time":"2026-11-28T00:00:00.000Z","kind":"terminal.resized","data":{"id":"t-3","cols":100,"rows":30}}
            {"v":1,"seq":9,"time":"2026-11-28T00:00:00.000Z","kind":"agent.spawned","data":{"agent":{"id":"a-2","name":"claude-1","kind":"claude","command":["claude"],"cwd":"/w","env":{"TOKEN":"s3cret"},"sessionId":"s-1","terminalId":"t-3","backend":"pty","host":"buildhost","state":"starting","exitCode":null,"pid":42,"taskId":null,"restarts":0,"watch":{"idleAfterMs":1500,"waitingPatterns":["Proceed\\?"],"waitingOptions":[["Yes","1"]],"restart":"on-failure","maxRestarts":5,"readyPatterns":["> "],"busyPatterns":["esc to interrupt"],"hooks":"claude","interruptKeys":"\u001b","lookBack":14,"menuEnter":false},"cols":120,"rows":40,"createdAt":"2026-11-28T00:00:00.000Z","updatedAt":"2026-11-28T00:00:00.000Z"}}}
            {"v":1,"seq":10,"time":"2026-11-28T00:00:00.000Z","kind":"agent.state","data":{"id":"a-2","state":"waiting","previous":"busy","evidence":"hook: PermissionRequest Bash"}}
            {"v":1,"seq":11,"time":"2026-11-28T00:00:00.000Z","kind":"agent.state","data":{"id":"a-2","state":"failed","previous":"busy","evidence":"exit 2","exitCode":2}}
            {"v":1,"seq":12,"time":"2026-11-28T00:00:00.000Z","kind":"agent.exited","data":{"id":"a-2","exitCode":null}}
            {"v":1,"seq":13,"time":"2026-11-28T00:00:00.000Z","kind":"agent.restarting","data":{"id":"a-2","attempt":1,"delayMs":500,"reason":"exit 2"}}
            {"v":1,"seq":14,"time":"2026-11-28T00:00:00.000Z","kind":"agent.restarted","data":{"id":"a-2","terminalId":"t-8","pid":43,"restarts":1}}
            {"v":1,"seq":15,"time":"2026-11-28T00:00:00.000Z","kind":"agent.gaveUp","data":{"id":"a-2","restarts":5}}
            {"v":1,"seq":16,"time":"2026-11-28T00:00:00.000Z","kind":"agent.adopted","data":{"id":"a-2","pid":null}}
            {"v":1,"seq":17,"time":"2026-11-28T00:00:00.000Z","kind":"task.created","data":{"task":{"id":"k-4","title":"fix","prompt":"make it pass","priority":"high","agentId":"a-2","state":"pending","attempts":0,"maxAttempts":3,"gates":[{"name":"test","command":["cargo","test"],"timeoutS":900}],"gateResults":[{"name":"test","attempt":2,"ok":false,"exitCode":101,"durationMs":5230,"outputTail":"1 failed"}],"decisionId":null,"summary":null,"runningGate":["test",1],"runningGatePgid":77,"createdAt":"2026-11-28T00:00:00.000Z","updatedAt":"2026-11-28T00:00:00.000Z"}}}
            {"v":1,"seq":18,"time":"2026-11-28T00:00:00.000Z","kind":"task.assigned","data":{"id":"k-4","agentId":null}}
            {"v":1,"seq":19,"time":"2026-11-28T00:00:00.000Z","kind":"task.state","data":{"id":"k-4","state":"running","previous":"assigned","evidence":"prompt typed into claude-1 (attempt 1)"}}
            {"v":1,"seq":20,"time":"2026-11-28T00:00:00.000Z","kind":"task.attempt","data":{"id":"k-4","attempt":1}}
            {"v":1,"seq":21,"time":"2026-11-28T00:00:00.000Z","kind":"task.completed","data":{"id":"k-4","summary":"done"}}
            {"v":1,"seq":22,"time":"2026-11-28T00:00:00.000Z","kind":"task.gateStarted","data":{"id":"k-4","name":"test","attempt":1,"pgid":77}}
            {"v":1,"seq":23,"time":"2026-11-28T00:00:00.000Z","kind":"task.gateStarted","data":{"id":"k-4","name":"test","attempt":1}}
            {"v":1,"seq":24,"time":"2026-11-28T00:00:00.000Z","kind":"task.gate","data":{"id":"k-4","result":{"name":"test","attempt":2,"ok":false,"exitCode":101,"durationMs":5230,"outputTail":"1 failed"}}}
            {"v":1,"seq":25,"time":"2026-11-28T00:00:00.000Z","kind":"decision.requested","data":{"decision":{"id":"d-5","title":"claude-1 is waiting for an answer","detail":"Do you want to proceed?","options":["Yes","No"],"resolved":false,"choice":null,"reason":null,"source":{"kind":"agent","id":"a-2","keys":[["Yes","1"],["No","3"]]},"createdAt":"2026-11-28T00:00:00.000Z","resolvedAt":null}}}
            {"v":1,"seq":26,"time":"2026-11-28T00:00:00.000Z","kind":"decision.resolved","data":{"id":"d-5","choice":"Yes","reason":null,"at":"2026-11-28T00:00:02.000Z"}}
            {"v":1,"seq":27,"time":"2026-11-28T00:00:00.000Z","kind":"config.reloaded","data":{"path":"/w/orch.toml"}}
            {"v":1,"seq":28,"time":"2026-11-28T00:00:00.000Z","kind":"host.state","data":{"name":"buildhost","state":"unreachable","detail":"the connection ended"}}
            {"v":1,"seq":29,"time":"2026-11-28T00:00:00.000Z","kind":"job.failed","data":{"name":"retention","error":"disk full"}}
            {"v":1,"seq":30,"time":"2026-11-28T00:00:00.000Z","kind":"agent.spawned","data":{"agent":{"id":"a-9","name":"gemini-acp-1","kind":"gemini-acp","command":["gemini","--acp"],"cwd":"/w","env":{},"sessionId":"s-1","terminalId":"t-10","backend":"acp","host":"buildhost","acpSession":"sess-1","state":"starting","exitCode":null,"pid":42,"taskId":null,"restarts":0,"watch":{"idleAfterMs":1500,"waitingPatterns":[],"waitingOptions":[],"restart":"never","maxRestarts":5,"readyPatterns":[],"busyPatterns":[],"hooks":null,"interruptKeys":"\u001b","lookBack":3,"menuEnter":false,"protocol":"acp","acpMode":"default","acpAuthMethod":"gemini-api-key"},"cols":120,"rows":40,"createdAt":"2026-11-28T00:00:00.000Z","updatedAt":"2026-11-28T00:00:00.000Z"}}}
            {"v":1,"seq":31,"time":"2026-11-28T00:00:00.000Z","kind":"agent.acpSession","data":{"id":"a-9","acpSessionId":"sess-1","origin":"loaded"}}
            {"v":1,"seq":32,"time":"2026-11-28T00:00:00.000Z","kind":"agent.message","data":{"id":"a-9","role":"agent","text":"Done: all tests pass."}}
            {"v":1,"seq":33,"time":"2026-11-28T00:00:00.000Z","kind":"agent.toolCall","data":{"id":"a-9","toolCallId":"call-1","title":"touch x","toolKind":"execute","status":"pending"}}
            {"v":1,"seq":34,"time":"2026-11-28T00:00:00.000Z","kind":"agent.plan","data":{"id":"a-9","entries":[{"content":"write the test","priority":"high","status":"in_progress"}]}}
            {"v":1,"seq":35,"time":"2026-11-28T00:00:00.000Z","kind":"decision.requested","data":{"decision":{"id":"d-11","title":"gemini-acp-1 asks permission","detail":"touch x","options":["Allow","Reject"],"resolved":false,"choice":null,"reason":null,"source":{"kind":"permission","id":"a-9","request":1,"options":[["Allow","proceed_once"],["Reject","cancel"]]},"createdAt":"2026-11-28T00:00:00.000Z","resolvedAt":null}}}
            {"v":1,"seq":36,"time":"2026-11-28T00:00:00.000Z","kind":"worktree.created","data":{"id":"a-9","worktree":{"path":"/state/worktrees/gemini-acp-1","branch":"orch/gemini-acp-1","base":"main","baseCommit":"0123abcd","changes":0,"paused":false}}}
            {"v":1,"seq":37,"time":"2026-11-28T00:00:00.000Z","kind":"worktree.changed","data":{"id":"a-9","files":3}}
            {"v":1,"seq":38,"time":"2026-11-28T00:00:00.000Z","kind":"worktree.merged","data":{"id":"a-9","strategy":"squash","commit":"89abcdef","files":["src/lib.rs"]}}
            {"v":1,"seq":39,"time":"2026-11-28T00:00:00.000Z","kind":"worktree.removed","data":{"id":"a-9","branchKept":true}}
            {"v":1,"seq":40,"time":"2026-11-28T00:00:00.000Z","kind":"decision.requested","data":{"decision":{"id":"d-12","title":"Discard gemini-acp-1's unmerged work on orch/gemini-acp-1?","detail":"2 commit(s) not in its base","options":["discard","keep"],"resolved":false,"choice":null,"reason":null,"source":{"kind":"discard","id":"a-9"},"createdAt":"2026-11-28T00:00:00.000Z","resolvedAt":null}}}
            {"v":1,"seq":41,"time":"2026-11-28T00:00:00.000Z","kind":"task.created","data":{"task":{"id":"k-13","title":"fix","prompt":"make it pass","priority":"high","agentId":"a-9","state":"pending","attempts":0,"maxAttempts":3,"gates":[{"name":"test","command":["cargo","test"],"timeoutS":900}],"gateResults":[{"name":"test","attempt":2,"ok":false,"exitCode":101,"durationMs":5230,"outputTail":"1 failed"}],"decisionId":null,"summary":null,"runningGate":["test",1],"runningGatePgid":77,"merge":"squash","createdAt":"2026-11-28T00:00:00.000Z","updatedAt":"2026-11-28T00:00:00.000Z"}}}"#]].assert_eq(&lines.join("\n"));
        // And back: each record reads as the event it was.
        for e in crate::core::event::samples() {
            let bytes = encode_event(&e).unwrap();
            assert_eq!(decode_event(e.seq, &bytes).unwrap(), e);
        }
    }
}
