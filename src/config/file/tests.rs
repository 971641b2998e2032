use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};
use std::path::Path;

use super::*;
use crate::config::edit::{self, AccountEdit, Change, Secrets, Value};

const CONFIG: &str = "[store]\npath = \"/tmp/t.db\"\n\n[[account]]\nname = \"support\"\n\
                      password = \"pw1\"\nhost = \"mail.example.com\"\n";

fn write(path: &Path, text: &str, mode: u32) {
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, Permissions::from_mode(mode)).unwrap();
}

/// The names in `dir`, to see that no temporary file is left behind.
fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

fn is_root() -> bool {
    // /proc/self belongs to the process's effective user (the crate forbids unsafe, so no
    // geteuid).
    std::fs::metadata("/proc/self").unwrap().uid() == 0
}

/// Set in a test run again by [`rerun_after_mount`]: the directory it is to work in.
const MOUNTED_DIR: &str = "MAIL2TICKET_TEST_MOUNTED_DIR";

/// Runs the test `name` again in a private mount namespace (the machine's mounts stay as they
/// are) after the shell command `mount`, with `$DIR` set to `dir`. The crate forbids unsafe
/// code, so the namespace is made by util-linux's `unshare` around this test binary.
fn rerun_after_mount(name: &str, dir: &Path, mount: &str) {
    let exe = std::env::current_exe().unwrap();
    let test = format!(
        "{}::{name}",
        module_path!().split_once("::").map_or("", |(_, m)| m)
    );
    let out = std::process::Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-euc"])
        .arg(format!(
            "{mount}; exec \"$0\" --exact {test} --nocapture --test-threads 1"
        ))
        .arg(&exe)
        .env("DIR", dir)
        .env(MOUNTED_DIR, dir)
        .output()
        .unwrap_or_else(|e| panic!("cannot run unshare ({e}): install util-linux"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.contains("1 passed"),
        "{test} in a mount namespace (needs root and util-linux's unshare and mount):\n\
         {stdout}\n{stderr}"
    );
}

#[test]
fn writes_the_new_text_and_returns_its_version() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.toml");
    write(&path, CONFIG, 0o600);
    let opened = read(&path).unwrap();
    assert_eq!(opened.text, CONFIG);
    let version: FileVersion = opened.version.to_string().parse().unwrap();
    assert_eq!(version, opened.version);
    assert_eq!("not-a-version".parse::<FileVersion>(), Err(BadVersion));

    let new_text = CONFIG.replace("mail.example.com", "imap.example.com");
    let saved = write_atomically(&path, &opened.version, &new_text).unwrap();
    let reread = read(&path).unwrap();
    assert_eq!(reread.text, new_text);
    assert_eq!(reread.version, saved);
    assert_eq!(names(dir.path()), ["config.toml"]);
}

#[test]
fn refuses_to_write_when_the_file_changed_since_it_was_read() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.toml");
    write(&path, CONFIG, 0o600);
    let opened = read(&path).unwrap();
    // An admin saves the file in an editor meanwhile.
    let by_hand = format!("{CONFIG}# checked by hand\n");
    std::fs::write(&path, &by_hand).unwrap();

    let refused = write_atomically(&path, &opened.version, "[store]\n");
    assert!(matches!(refused, Err(SaveError::Changed)), "{refused:?}");
    assert_eq!(std::fs::read_to_string(&path).unwrap(), by_hand);
    assert_eq!(names(dir.path()), ["config.toml"]);
}

#[test]
fn keeps_mode_and_owner() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.toml");
    write(&path, CONFIG, 0o640);
    // Root can give the file any owner, as an admin's `chown root:mail2ticket` does; anyone
    // else can only check that their own ids are kept.
    let (uid, gid) = if is_root() {
        (1234, 5678)
    } else {
        let meta = std::fs::metadata(&path).unwrap();
        (meta.uid(), meta.gid())
    };
    std::os::unix::fs::chown(&path, Some(uid), Some(gid)).unwrap();

    let opened = read(&path).unwrap();
    write_atomically(&path, &opened.version, "[store]\npath = \"/x\"\n").unwrap();
    let meta = std::fs::metadata(&path).unwrap();
    assert_eq!(meta.mode() & 0o7777, 0o640);
    assert_eq!((meta.uid(), meta.gid()), (uid, gid));

    // A symlink stays a symlink: the file it points to is replaced.
    let link = dir.path().join("link.toml");
    symlink(&path, &link).unwrap();
    let opened = read(&link).unwrap();
    write_atomically(&link, &opened.version, CONFIG).unwrap();
    assert!(std::fs::symlink_metadata(&link).unwrap().is_symlink());
    assert_eq!(std::fs::read_to_string(&path).unwrap(), CONFIG);
    assert_eq!(names(dir.path()), ["config.toml", "link.toml"]);
}

/// The page's whole path for a file it cannot write: the save is refused with the OS's reason,
/// nothing is left behind, and the edited account is there as TOML to paste.
fn refused_with_the_toml_to_paste(dir: &Path, expected_reason: &str) {
    let path = dir.join("config.toml");
    let opened = read(&path).unwrap();
    let change = AccountEdit {
        original_name: Some("support".into()),
        changes: vec![(
            "host".into(),
            Change::Set(Value::Str("imap.example.com".into())),
        )],
    };
    let edited = edit::apply(&opened.text, &change).unwrap();
    match write_atomically(&path, &opened.version, &edited.text) {
        Err(SaveError::ReadOnly { reason }) => {
            assert!(reason.contains(expected_reason), "{reason}")
        }
        other => panic!("expected ReadOnly, got {other:?}"),
    }
    assert_eq!(std::fs::read_to_string(&path).unwrap(), CONFIG);
    assert_eq!(names(dir), ["config.toml"]);

    let paste = edit::account_snippet(&edited.text, "support", Secrets::Blanked).unwrap();
    assert_eq!(
        paste,
        "[[account]]\nname = \"support\"\npassword = \"…\"\nhost = \"imap.example.com\"\n"
    );
}

#[test]
fn reports_a_read_only_place_with_the_toml_to_paste() {
    if let Some(dir) = std::env::var_os(MOUNTED_DIR) {
        return refused_with_the_toml_to_paste(Path::new(&dir), "Read-only file system");
    }
    let dir = tempfile::tempdir().unwrap();
    write(&dir.path().join("config.toml"), CONFIG, 0o600);
    if is_root() {
        // Root ignores permission bits: a read-only bind mount, as Docker's `:ro` makes.
        rerun_after_mount(
            "reports_a_read_only_place_with_the_toml_to_paste",
            dir.path(),
            "mount --bind -o ro \"$DIR\" \"$DIR\"",
        );
    } else {
        // Not root: the permission bits are the read-only place.
        std::fs::set_permissions(dir.path(), Permissions::from_mode(0o555)).unwrap();
        refused_with_the_toml_to_paste(dir.path(), "Permission denied");
        std::fs::set_permissions(dir.path(), Permissions::from_mode(0o755)).unwrap();
    }
}

#[test]
fn reports_a_file_mounted_on_its_own() {
    if let Some(dir) = std::env::var_os(MOUNTED_DIR) {
        return refused_with_the_toml_to_paste(Path::new(&dir), "mounted on its own");
    }
    // As `docker run -v ./config.toml:/etc/mail2ticket/config.toml` does.
    let host = tempfile::tempdir().unwrap();
    let container = tempfile::tempdir().unwrap();
    let source = host.path().join("config.toml");
    write(&source, CONFIG, 0o600);
    write(&container.path().join("config.toml"), "", 0o600);
    rerun_after_mount(
        "reports_a_file_mounted_on_its_own",
        container.path(),
        &format!("mount --bind '{}' \"$DIR/config.toml\"", source.display()),
    );
}
