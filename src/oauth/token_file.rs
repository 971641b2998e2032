//! The refresh token on disk. A provider that rotates refresh tokens invalidates the old one the
//! moment it issues the new one, so the new one is made durable (temp file, fsync, rename, fsync
//! of the folder) before the access token that came with it is used: a crash at any point leaves
//! either the old token (still valid if the answer never arrived) or the new one, never none.
//! A crash in the moment between the provider's answer and the rename leaves the old token,
//! which a provider that revoked it at once would refuse; no client can close that moment, which
//! is why providers that rotate keep a used token valid for a short grace period (Okta 30 s by
//! default, Auth0's reuse interval; Microsoft does not revoke a rotated token), and so does the
//! lab's token server.
//!
//! The file is mode 0600 and a folder created for it 0700: the store's other users cannot read it.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::Path;

use super::OAuthError;
use crate::secret::Secret;

/// The stored refresh token, `None` if there is no file yet.
pub fn read(path: &Path) -> Result<Option<Secret>, OAuthError> {
    match fs::read_to_string(path) {
        Ok(text) => {
            let token = text.trim();
            Ok((!token.is_empty()).then(|| Secret::new(token)))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(OAuthError::TokenFile {
            path: path.to_owned(),
            source,
        }),
    }
}

/// Replaces the stored refresh token durably.
pub fn write(path: &Path, token: &Secret) -> Result<(), OAuthError> {
    let fail = |source| OAuthError::TokenFile {
        path: path.to_owned(),
        source,
    };
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    if !dir.exists() {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(fail)?;
    }
    let mut tmp_name = path.file_name().unwrap_or_default().to_owned();
    tmp_name.push(".tmp");
    let tmp = dir.join(tmp_name);
    // A temp file left by a crash may exist; it never holds the only valid token.
    let _ = fs::remove_file(&tmp);
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(fail)?;
    file.write_all(token.expose().as_bytes())
        .and_then(|()| file.write_all(b"\n"))
        .and_then(|()| file.sync_all())
        .map_err(fail)?;
    drop(file);
    fs::rename(&tmp, path).map_err(fail)?;
    File::open(dir).and_then(|d| d.sync_all()).map_err(fail)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn written_durably_private_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("oauth2").join("support.token");
        assert!(read(&path).unwrap().is_none());
        write(&path, &Secret::new("rt-1")).unwrap();
        write(&path, &Secret::new("rt-2")).unwrap();
        assert_eq!(read(&path).unwrap().unwrap().expose(), "rt-2");
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(path.parent().unwrap()), 0o700);
        assert_eq!(fs::read_dir(path.parent().unwrap()).unwrap().count(), 1);
    }
}
