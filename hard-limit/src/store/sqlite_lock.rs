//! One process per SQLite file (two would both run the singleton chores):
//! the store locks `<file>.lock` first, and a second service refuses to
//! start, naming the holder. The lock is `flock`-style, dropped by the
//! kernel with the process (no stale lock after a crash), on a file of its
//! own (closing a descriptor of the database drops SQLite's POSIX locks).

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

/// The held lock; dropping it releases it.
#[derive(Debug)]
pub struct ProcessLock {
    _file: File,
}

/// Takes the lock of `database`, or says why not (the caller names the
/// database).
pub fn lock(database: &Path) -> Result<ProcessLock, String> {
    let mut path = database.as_os_str().to_owned();
    path.push(".lock");
    let path = PathBuf::from(path);
    // Read-only (not ours to write, or a read-only directory) still locks:
    // the store's write probe then reports what is not writable.
    let opened = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path);
    let (mut file, writable) = match opened {
        Ok(f) => (f, true),
        Err(e) => match File::open(&path) {
            Ok(f) => (f, false),
            Err(_) => {
                return Err(format!(
                    "cannot open it: cannot create its lock file {}: {e}",
                    path.display()
                ))
            }
        },
    };
    match file.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => {
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            let who = match holder.trim() {
                "" => "another process".to_owned(),
                holder => format!("another process ({holder})"),
            };
            return Err(format!(
                "{who} already runs a service on it (lock file {}): SQLite is a one-process store; run one service per file, or several replicas on PostgreSQL",
                path.display()
            ));
        }
        Err(TryLockError::Error(e)) => return Err(format!("cannot lock {}: {e}", path.display())),
    }
    if writable {
        // Who holds it, for the message of the next one to try.
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
        let _ = file.set_len(0);
        let _ = file.rewind();
        let _ = writeln!(file, "pid {} on {}", std::process::id(), host.trim());
    }
    Ok(ProcessLock { _file: file })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_on_one_file_is_refused_naming_the_holder() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("hard-limit.db");
        let first = lock(&db).unwrap();
        let err = lock(&db).unwrap_err();
        assert!(
            err.contains(&format!("pid {}", std::process::id())),
            "{err}"
        );
        assert!(err.contains("one-process store"), "{err}");
        drop(first);
        let again = lock(&db);
        assert!(again.is_ok(), "released on drop: {again:?}");
        assert!(lock(&dir.path().join("other.db")).is_ok(), "per file");
    }
}
