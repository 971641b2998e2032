//! Reading the config file with a version the accounts page carries through its form, and
//! writing it back atomically, only when nobody changed it in between, with its mode and owner.
//!
//! Written with std rather than the `tempfile` crate (a dev-dependency only): the temporary file
//! must be created with the mode and owner of the file it replaces before any byte is written,
//! and each failure must say whether the place is read-only, which the crate's errors blur.

use std::fmt;
use std::fs::{File, OpenOptions, Permissions};
use std::io::{self, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use rand::Rng;
use sha2::{Digest, Sha256};
use thiserror::Error;

/// The config file as read.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigFile {
    pub path: PathBuf,
    pub text: String,
    pub version: FileVersion,
}

/// The SHA-256 of the file's bytes, as lowercase hex: the form carries it (a hidden input) so
/// a save can tell whether the file changed since the form was opened. A content hash rather
/// than a modification time: an editor that rewrites the same bytes changes nothing, and a
/// change within the same second is still seen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileVersion(String);

impl FileVersion {
    pub fn of(bytes: &[u8]) -> FileVersion {
        FileVersion(format!("{:x}", Sha256::digest(bytes)))
    }
}

impl fmt::Display for FileVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[derive(Debug, Error, PartialEq, Eq)]
#[error("not a config file version (64 hex digits expected); reload the page")]
pub struct BadVersion;

impl FromStr for FileVersion {
    type Err = BadVersion;
    fn from_str(s: &str) -> Result<Self, BadVersion> {
        let hex = |c: char| c.is_ascii_digit() || ('a'..='f').contains(&c);
        if s.len() == 64 && s.chars().all(hex) {
            Ok(FileVersion(s.to_string()))
        } else {
            Err(BadVersion)
        }
    }
}

#[derive(Debug, Error)]
#[error("cannot read the config file {}: {source}", path.display())]
pub struct ReadError {
    pub path: PathBuf,
    pub source: io::Error,
}

pub fn read(path: &Path) -> Result<ConfigFile, ReadError> {
    let text = std::fs::read_to_string(path).map_err(|source| ReadError {
        path: path.to_owned(),
        source,
    })?;
    Ok(ConfigFile {
        path: path.to_owned(),
        version: FileVersion::of(text.as_bytes()),
        text,
    })
}

#[derive(Debug, Error)]
pub enum SaveError {
    #[error(
        "the config file was changed on disk after this page was opened: nothing was saved; \
         reload the page to see the file as it is now and make the change again"
    )]
    Changed,
    /// The daemon cannot replace the file: show the TOML to paste instead.
    #[error("the daemon cannot write the config file: {reason}")]
    ReadOnly { reason: String },
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        source: io::Error,
    },
}

fn io_error<'p>(action: &'static str, path: &'p Path) -> impl FnOnce(io::Error) -> SaveError + 'p {
    move |source| SaveError::Io {
        action,
        path: path.to_owned(),
        source,
    }
}

/// Errors that mean "this place cannot be written" (a read-only mount such as Docker's `:ro`,
/// missing permissions) rather than a fault: the page then offers the TOML to paste.
fn read_only_or<'p>(
    action: &'static str,
    path: &'p Path,
) -> impl FnOnce(io::Error) -> SaveError + 'p {
    move |source| match source.raw_os_error() {
        Some(libc::EROFS | libc::EACCES | libc::EPERM) => SaveError::ReadOnly {
            reason: format!("cannot {action} {}: {source}", path.display()),
        },
        _ => io_error(action, path)(source),
    }
}

/// Fails with [`SaveError::Changed`] unless the file still has the version `expected`.
fn check_unchanged(path: &Path, expected: &FileVersion) -> Result<(), SaveError> {
    let now = std::fs::read(path).map_err(io_error("read", path))?;
    if FileVersion::of(&now) == *expected {
        Ok(())
    } else {
        Err(SaveError::Changed)
    }
}

/// Removes the temporary file unless it was renamed into place.
struct TempFile {
    path: PathBuf,
    renamed: bool,
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if !self.renamed {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Replaces the file at `path` by `new_text` if it still has the version `expected`: a
/// temporary file next to it with its mode and owner, written and fsynced, renamed over it, and
/// the directory fsynced, so a crash leaves the old file or the new one, never a mix. Returns
/// the new version. A symlink is followed: the file it points to is replaced, the link stays.
pub fn write_atomically(
    path: &Path,
    expected: &FileVersion,
    new_text: &str,
) -> Result<FileVersion, SaveError> {
    let real = std::fs::canonicalize(path).map_err(io_error("find", path))?;
    check_unchanged(&real, expected)?;
    let meta = std::fs::metadata(&real).map_err(io_error("read the metadata of", &real))?;
    let dir = real.parent().unwrap_or(Path::new("/"));
    let file_name = real
        .file_name()
        .map_or_else(|| "config".into(), |n| n.to_string_lossy());
    let mut temp = TempFile {
        path: dir.join(format!(
            ".{file_name}.{:016x}.tmp",
            rand::thread_rng().gen::<u64>()
        )),
        renamed: false,
    };
    // Created readable by its owner only: the final mode is set before any byte (and any
    // secret) is written, whatever the umask.
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&temp.path)
        .map_err(read_only_or("create a file in", dir))?;
    let created = file
        .metadata()
        .map_err(io_error("read the metadata of", &temp.path))?;
    if (meta.uid(), meta.gid()) != (created.uid(), created.gid()) {
        std::os::unix::fs::fchown(&file, Some(meta.uid()), Some(meta.gid())).map_err(|e| {
            SaveError::ReadOnly {
                reason: format!(
                    "cannot give the new file the owner of {} (uid {}, gid {}): {e}",
                    real.display(),
                    meta.uid(),
                    meta.gid()
                ),
            }
        })?;
    }
    file.set_permissions(Permissions::from_mode(meta.mode() & 0o7777))
        .map_err(read_only_or("set the mode of", &temp.path))?;
    file.write_all(new_text.as_bytes())
        .map_err(io_error("write", &temp.path))?;
    file.sync_all().map_err(io_error("fsync", &temp.path))?;
    drop(file);
    // Again, as late as possible: an admin may have saved while this was written.
    check_unchanged(&real, expected)?;
    rename(&temp, &real)?;
    temp.renamed = true;
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_error("fsync the directory", dir))?;
    Ok(FileVersion::of(new_text.as_bytes()))
}

fn rename(temp: &TempFile, real: &Path) -> Result<(), SaveError> {
    std::fs::rename(&temp.path, real).map_err(|e| match e.raw_os_error() {
        // A file mounted on its own (`docker run -v ./config.toml:/etc/...`) is a mount point:
        // it cannot be replaced, only overwritten in place, which is not atomic.
        Some(libc::EBUSY | libc::EXDEV) => SaveError::ReadOnly {
            reason: format!(
                "cannot replace {}: {e}; it is mounted on its own (mount its folder instead to \
                 let the daemon save it)",
                real.display()
            ),
        },
        _ => read_only_or("replace", real)(e),
    })
}

#[cfg(test)]
mod tests;
