//! Room on the disk: openraft 0.9 takes an error of its log store for a fatal one (the node
//! stops), so a node checks the free space of its data directory before it takes new log
//! entries, and refuses them while it is below a floor (`Builder::min_free_disk`): a
//! leader refuses client writes with [`Error::DiskFull`](crate::Error::DiskFull) (never
//! proposed, so never applied), and a follower refuses appends that carry entries (the
//! leader takes the refusal for a transient failure and sends them again later), while
//! heartbeats, votes and reads go on. Nothing acknowledged is lost: an entry is
//! acknowledged only once a majority has it on disk.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A test's stand-in for the free bytes of a data directory.
pub(crate) type Probe = Arc<dyn Fn() -> u64 + Send + Sync>;

/// The floor, and how to measure the free space.
pub(crate) struct Space {
    dir: PathBuf,
    min_free: u64,
    probe: Option<Probe>,
    /// The last measurement of the file system, and when it was taken (nanoseconds after
    /// `epoch`; 0 before the first): reused for [`REMEASURE`], so that a node taking many
    /// writes a second does not ask the kernel for each.
    measured: AtomicU64,
    measured_at: AtomicU64,
    epoch: Instant,
}

/// How long a measurement of the file system is reused.
const REMEASURE: Duration = Duration::from_millis(10);

impl Space {
    pub(crate) fn new(dir: PathBuf, min_free: u64, probe: Option<Probe>) -> Space {
        Space {
            dir,
            min_free,
            probe,
            measured: AtomicU64::new(0),
            measured_at: AtomicU64::new(0),
            epoch: Instant::now(),
        }
    }

    /// The free bytes if they are below the floor (`None` while there is room, or if the
    /// free space cannot be measured: the writes themselves then report a full disk).
    pub(crate) fn short(&self) -> Option<u64> {
        if self.min_free == 0 {
            return None;
        }
        let free = match &self.probe {
            Some(probe) => probe(),
            None => self.file_system_free()?,
        };
        (free < self.min_free).then_some(free)
    }

    fn file_system_free(&self) -> Option<u64> {
        let now = (self.epoch.elapsed().as_nanos() as u64).max(1);
        // Relaxed: a cached number; a racing thread measures again, which is harmless.
        let at = self.measured_at.load(Ordering::Relaxed);
        if at != 0 && now - at.min(now) < REMEASURE.as_nanos() as u64 {
            return Some(self.measured.load(Ordering::Relaxed));
        }
        let free = free_bytes(&self.dir).ok()?;
        self.measured.store(free, Ordering::Relaxed);
        self.measured_at.store(now, Ordering::Relaxed);
        Some(free)
    }
}

/// The bytes an unprivileged process may still write in the file system of `dir`.
#[cfg(unix)]
fn free_bytes(dir: &Path) -> io::Result<u64> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(dir.as_os_str().as_bytes())?;
    // SAFETY: `statvfs` is plain old data, for which all zeroes is a valid value.
    let mut stat: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `path` is a NUL-terminated string that outlives the call, and `stat` is a
    // valid, writable `statvfs` for the call to fill.
    if unsafe { libc::statvfs(path.as_ptr(), &mut stat) } != 0 {
        return Err(io::Error::last_os_error());
    }
    #[allow(clippy::unnecessary_cast)] // the field types differ between platforms
    Ok(stat.f_bavail as u64 * stat.f_frsize as u64)
}

#[cfg(not(unix))]
fn free_bytes(_dir: &Path) -> io::Result<u64> {
    Err(io::Error::new(io::ErrorKind::Unsupported, "free space is measured on Unix only"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_free_space_of_a_real_directory_is_measured() {
        let dir = tempfile::tempdir().unwrap();
        let free = free_bytes(dir.path()).unwrap();
        assert!(free > 0);
        assert_eq!(Space::new(dir.path().into(), 0, None).short(), None);
        assert!(Space::new(dir.path().into(), u64::MAX, None).short().is_some());
        assert!(free_bytes(&dir.path().join("missing")).is_err());
    }
}
