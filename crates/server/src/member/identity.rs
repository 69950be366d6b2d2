//! Which member a data directory belongs to.
//!
//! A data directory holds one member's Raft log. Starting a *different* member on it (a wrong
//! `--data-dir`, a copied directory, changed peer URLs or token) would make that member replay
//! another member's votes and entries, silently breaking Raft's safety. So on the first start we
//! stamp the directory with a small `member.id` file, and on every later start we refuse to run
//! unless the stamp matches this member.
//!
//! The file is TOML, written atomically (temporary file, fsync, rename, fsync of the directory),
//! so a crash leaves either no stamp or a complete one:
//!
//! ```toml
//! version = 1
//! name = "a"
//! member_id = "fce4ccdb9802da4a"
//! cluster_id = "5d3a4e1b0c2f7a86"
//! token = "etcd-cluster"
//! ```
//!
//! Call [`open_or_create`] before anything else writes into the data directory.

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::config::ServeConfig;

/// Name of the identity file inside the data directory.
pub const IDENTITY_FILE: &str = "member.id";
/// Temporary name used while writing [`IDENTITY_FILE`]; a leftover one is from a crash and ignored.
const TEMP_FILE: &str = "member.id.tmp";
/// Entries a fresh data directory may already contain (a filesystem's root has `lost+found`).
const IGNORED_ENTRIES: [&str; 3] = [IDENTITY_FILE, TEMP_FILE, "lost+found"];
/// Format version this build writes and reads.
const FORMAT_VERSION: u32 = 1;
/// Comment heading the file, for whoever finds it.
const HEADER: &str = "# raftkv member identity: the member this data directory belongs to.\n\
# Written on the first start; raftkv refuses to start any other member on this directory.\n";

/// Who a member is: what a data directory is stamped with and checked against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The member's `--name`.
    pub name: String,
    /// The member's id (see [`crate::config::member_id`]).
    pub member_id: u64,
    /// The cluster's id (see [`crate::config::cluster_id`]).
    pub cluster_id: u64,
    /// The `--initial-cluster-token`; recorded so a mismatch message can say which cluster the
    /// directory belongs to in the operator's own words.
    pub token: String,
}

impl From<&ServeConfig> for Identity {
    fn from(c: &ServeConfig) -> Identity {
        Identity {
            name: c.name.clone(),
            member_id: c.member_id(),
            cluster_id: c.cluster_id(),
            token: c.initial_cluster_token.clone(),
        }
    }
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "member '{}' (id {:x}) of cluster {:x} (token '{}')",
            self.name, self.member_id, self.cluster_id, self.token
        )
    }
}

/// What [`open_or_create`] found, so the server knows whether to bootstrap or to recover.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Opened {
    /// The directory had no identity (it was missing or empty); it is now stamped with ours.
    Fresh,
    /// The directory was already stamped with our identity: recover from its contents.
    Resumed,
}

/// Why a data directory cannot be used by this member, as one line that names the directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentityError(pub String);

impl fmt::Display for IdentityError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for IdentityError {}

/// The on-disk form (ids in hex, as etcdctl shows them).
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileV1 {
    version: u32,
    name: String,
    member_id: String,
    cluster_id: String,
    token: String,
}

/// Just the version, read first so a newer format is reported as such rather than as corrupt.
#[derive(Deserialize)]
struct VersionOnly {
    version: Option<i64>,
}

/// An I/O failure on `path`, as one line.
fn io_error(path: &Path, action: &str, e: &io::Error) -> IdentityError {
    IdentityError(format!("{}: cannot {action}: {e}", path.display()))
}

/// Makes sure `data_dir` is a usable directory and tells whether it holds our identity.
///
/// * No identity file and nothing else in the directory (or no directory): writes `expected`
///   and returns [`Opened::Fresh`].
/// * An identity file equal to `expected`: returns [`Opened::Resumed`].
/// * An identity file for another member, cluster or token: refuses, naming both sides.
/// * Other files but no identity file: refuses, because nobody can tell whose data it is.
/// * An unreadable, corrupt or newer-format identity file: refuses, naming the file.
///
/// A missing directory is created (mode 0700 on Unix, as etcd does, because it holds all the
/// data). Call this before anything else writes into the directory, or the "holds data"
/// check will refuse a directory this member just started filling.
pub fn open_or_create(data_dir: &Path, expected: &Identity) -> Result<Opened, IdentityError> {
    ensure_dir(data_dir)?;
    let path = data_dir.join(IDENTITY_FILE);
    match fs::read(&path) {
        Ok(bytes) => {
            let found = parse(&path, &bytes)?;
            if found == *expected {
                Ok(Opened::Resumed)
            } else {
                let mut msg = format!(
                    "data directory {} belongs to {found}; this member is {expected}: use another --data-dir",
                    data_dir.display()
                );
                if found.name == expected.name && found.token == expected.token {
                    msg.push_str(
                        " (or restore the --initial-advertise-peer-urls it was created with: they determine the member id)",
                    );
                }
                Err(IdentityError(msg))
            }
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            check_unclaimed(data_dir)?;
            write_identity(data_dir, expected)?;
            Ok(Opened::Fresh)
        }
        Err(e) => Err(io_error(&path, "read the member identity file", &e)),
    }
}

/// Creates `dir` if missing (and makes its entry durable); refuses a non-directory.
fn ensure_dir(dir: &Path) -> Result<(), IdentityError> {
    match fs::metadata(dir) {
        Ok(m) if m.is_dir() => Ok(()),
        Ok(_) => Err(IdentityError(format!(
            "data directory {} exists but is not a directory",
            dir.display()
        ))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let mut builder = fs::DirBuilder::new();
            builder.recursive(true);
            #[cfg(unix)]
            {
                use std::os::unix::fs::DirBuilderExt;
                builder.mode(0o700);
            }
            builder
                .create(dir)
                .map_err(|e| io_error(dir, "create the data directory", &e))?;
            let parent = match dir.parent() {
                Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
                _ => PathBuf::from("."),
            };
            sync_dir(&parent)
        }
        Err(e) => Err(io_error(dir, "access the data directory", &e)),
    }
}

/// Refuses a directory that holds anything besides what a fresh directory may contain.
fn check_unclaimed(dir: &Path) -> Result<(), IdentityError> {
    let entries = fs::read_dir(dir).map_err(|e| io_error(dir, "list the data directory", &e))?;
    let mut others: Vec<String> = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| io_error(dir, "list the data directory", &e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if !IGNORED_ENTRIES.contains(&name.as_str()) {
            others.push(name);
        }
    }
    if others.is_empty() {
        return Ok(());
    }
    others.sort();
    let shown = if others.len() > 3 {
        format!("{}, ... ({} entries)", others[..3].join(", "), others.len())
    } else {
        others.join(", ")
    };
    Err(IdentityError(format!(
        "data directory {} holds data ({shown}) but no {IDENTITY_FILE}, so it is unknown which member it belongs to: use an empty --data-dir or restore {IDENTITY_FILE}",
        dir.display()
    )))
}

/// Parses the identity file's bytes; every failure names the file.
fn parse(path: &Path, bytes: &[u8]) -> Result<Identity, IdentityError> {
    let corrupt = |detail: &str| {
        IdentityError(format!(
            "{}: corrupt member identity file ({detail}); it records which member this data directory belongs to: restore it or use another --data-dir",
            path.display()
        ))
    };
    let one_line = |e: toml::de::Error| e.message().trim().replace('\n', " ");
    let text = std::str::from_utf8(bytes).map_err(|_| corrupt("not UTF-8 text"))?;
    let version = toml::from_str::<VersionOnly>(text)
        .map_err(|e| corrupt(&one_line(e)))?
        .version;
    match version {
        Some(v) if v == i64::from(FORMAT_VERSION) => {}
        Some(v) if v > i64::from(FORMAT_VERSION) => {
            return Err(IdentityError(format!(
                "{}: written by a newer raftkv (format version {v}; this build reads {FORMAT_VERSION}): upgrade raftkv",
                path.display()
            )));
        }
        Some(v) => return Err(corrupt(&format!("unknown format version {v}"))),
        None => return Err(corrupt("no version")),
    }
    let file: FileV1 = toml::from_str(text).map_err(|e| corrupt(&one_line(e)))?;
    let hex = |field: &str, v: &str| {
        if v.is_empty() || v.len() > 16 {
            return Err(corrupt(&format!("{field} '{v}' is not a 64-bit hex id")));
        }
        u64::from_str_radix(v, 16)
            .map_err(|_| corrupt(&format!("{field} '{v}' is not a 64-bit hex id")))
    };
    Ok(Identity {
        member_id: hex("member_id", &file.member_id)?,
        cluster_id: hex("cluster_id", &file.cluster_id)?,
        name: file.name,
        token: file.token,
    })
}

/// Writes the identity file atomically: a crash leaves no file or the whole file, never part.
fn write_identity(dir: &Path, id: &Identity) -> Result<(), IdentityError> {
    let file = FileV1 {
        version: FORMAT_VERSION,
        name: id.name.clone(),
        member_id: format!("{:016x}", id.member_id),
        cluster_id: format!("{:016x}", id.cluster_id),
        token: id.token.clone(),
    };
    let body = toml::to_string(&file).map_err(|e| {
        IdentityError(format!(
            "{}: cannot encode the member identity: {e}",
            dir.display()
        ))
    })?;
    let temp = dir.join(TEMP_FILE);
    let path = dir.join(IDENTITY_FILE);
    let write = |f: &mut File| -> io::Result<()> {
        f.write_all(HEADER.as_bytes())?;
        f.write_all(body.as_bytes())?;
        f.sync_all()
    };
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&temp)
        .map_err(|e| io_error(&temp, "create", &e))?;
    write(&mut f).map_err(|e| io_error(&temp, "write", &e))?;
    drop(f);
    fs::rename(&temp, &path).map_err(|e| io_error(&path, "rename into place", &e))?;
    sync_dir(dir)
}

/// Makes a directory's entries durable (needed after create/rename on Unix; a no-op elsewhere,
/// where directories cannot be opened for syncing).
fn sync_dir(dir: &Path) -> Result<(), IdentityError> {
    #[cfg(unix)]
    {
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| io_error(dir, "sync directory", &e))?;
    }
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ident(name: &str, member_id: u64) -> Identity {
        Identity {
            name: name.to_owned(),
            member_id,
            cluster_id: 0x1a2b_3c4d_5e6f_7081,
            token: "etcd-cluster".to_owned(),
        }
    }

    fn tempdir() -> tempfile::TempDir {
        tempfile::tempdir().expect("tempdir")
    }

    fn open_err(dir: &Path, id: &Identity) -> String {
        match open_or_create(dir, id) {
            Ok(o) => panic!("expected an error, got {o:?}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn fresh_then_resumed() {
        let tmp = tempdir();
        let dir = tmp.path().join("nested").join("a.raftkv");
        let a = ident("a", 0xfce4ccdb9802da4a);
        assert_eq!(open_or_create(&dir, &a), Ok(Opened::Fresh));
        assert!(dir.join(IDENTITY_FILE).is_file());
        assert!(!dir.join(TEMP_FILE).exists());
        let text = fs::read_to_string(dir.join(IDENTITY_FILE)).expect("read");
        assert!(text.contains("member_id = \"fce4ccdb9802da4a\""), "{text}");
        assert!(text.contains("version = 1"), "{text}");
        assert_eq!(open_or_create(&dir, &a), Ok(Opened::Resumed));
        assert_eq!(open_or_create(&dir, &a), Ok(Opened::Resumed));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(&dir).expect("meta").permissions().mode();
            assert_eq!(mode & 0o777, 0o700);
        }
    }

    #[test]
    fn existing_empty_dir_is_fresh() {
        let tmp = tempdir();
        let a = ident("a", 1);
        assert_eq!(open_or_create(tmp.path(), &a), Ok(Opened::Fresh));
        assert_eq!(
            parse(
                &tmp.path().join(IDENTITY_FILE),
                &fs::read(tmp.path().join(IDENTITY_FILE)).expect("read")
            ),
            Ok(a)
        );
    }

    #[test]
    fn names_and_tokens_with_quotes_round_trip() {
        let tmp = tempdir();
        let odd = Identity {
            name: "n\"a\\me é".to_owned(),
            member_id: u64::MAX,
            cluster_id: 0x0f,
            token: "t'o\"k\n".to_owned(),
        };
        assert_eq!(open_or_create(tmp.path(), &odd), Ok(Opened::Fresh));
        assert_eq!(open_or_create(tmp.path(), &odd), Ok(Opened::Resumed));
    }

    #[test]
    fn another_member_is_refused() {
        let tmp = tempdir();
        let b = ident("b", 0x8e9e05c52164694d);
        open_or_create(tmp.path(), &b).expect("stamp");
        let a = ident("a", 0xfce4ccdb9802da4a);
        let e = open_err(tmp.path(), &a);
        assert_eq!(
            e,
            format!(
                "data directory {} belongs to member 'b' (id 8e9e05c52164694d) of cluster 1a2b3c4d5e6f7081 (token 'etcd-cluster'); this member is member 'a' (id fce4ccdb9802da4a) of cluster 1a2b3c4d5e6f7081 (token 'etcd-cluster'): use another --data-dir",
                tmp.path().display()
            )
        );
    }

    #[test]
    fn changed_peer_urls_get_a_hint() {
        let tmp = tempdir();
        open_or_create(tmp.path(), &ident("a", 1)).expect("stamp");
        let e = open_err(tmp.path(), &ident("a", 2));
        assert!(e.ends_with("they determine the member id)"), "{e}");
        assert!(!e.contains('\n'));
    }

    #[test]
    fn another_cluster_is_refused() {
        let tmp = tempdir();
        let a = ident("a", 1);
        open_or_create(tmp.path(), &a).expect("stamp");
        let other = Identity {
            cluster_id: 2,
            token: "other".to_owned(),
            ..a
        };
        let e = open_err(tmp.path(), &other);
        assert!(
            e.contains("of cluster 1a2b3c4d5e6f7081 (token 'etcd-cluster')"),
            "{e}"
        );
        assert!(
            e.contains("this member is member 'a' (id 1) of cluster 2 (token 'other')"),
            "{e}"
        );
    }

    #[test]
    fn data_without_identity_is_refused() {
        let tmp = tempdir();
        fs::create_dir(tmp.path().join("wal")).expect("mkdir");
        fs::write(tmp.path().join("0000.log"), b"x").expect("write");
        let e = open_err(tmp.path(), &ident("a", 1));
        assert_eq!(
            e,
            format!(
                "data directory {} holds data (0000.log, wal) but no member.id, so it is unknown which member it belongs to: use an empty --data-dir or restore member.id",
                tmp.path().display()
            )
        );
        assert!(!tmp.path().join(IDENTITY_FILE).exists());
    }

    #[test]
    fn leftover_temp_file_and_lost_found_are_ignored() {
        let tmp = tempdir();
        fs::write(tmp.path().join(TEMP_FILE), b"half").expect("write");
        fs::create_dir(tmp.path().join("lost+found")).expect("mkdir");
        let a = ident("a", 1);
        assert_eq!(open_or_create(tmp.path(), &a), Ok(Opened::Fresh));
        assert_eq!(open_or_create(tmp.path(), &a), Ok(Opened::Resumed));
    }

    #[test]
    fn corrupt_files_are_refused_with_the_path() {
        let cases: [(&[u8], &str); 7] = [
            (b"", "(no version)"),
            (b"\xff\xfe", "(not UTF-8 text)"),
            (b"version = 1\nname = \"a\"\n", "(missing field `member_id`)"),
            (
                b"version = 1\nname = \"a\"\nmember_id = \"xyz\"\ncluster_id = \"1\"\ntoken = \"t\"\n",
                "(member_id 'xyz' is not a 64-bit hex id)",
            ),
            (
                b"version = 1\nname = \"a\"\nmember_id = \"11112222333344445\"\ncluster_id = \"1\"\ntoken = \"t\"\n",
                "(member_id '11112222333344445' is not a 64-bit hex id)",
            ),
            (b"version = 0\n", "(unknown format version 0)"),
            (b"garbage ===", "(")
        ];
        for (bytes, want) in cases {
            let tmp = tempdir();
            let path = tmp.path().join(IDENTITY_FILE);
            fs::write(&path, bytes).expect("write");
            let e = open_err(tmp.path(), &ident("a", 1));
            assert!(
                e.starts_with(&format!(
                    "{}: corrupt member identity file {want}",
                    path.display()
                )),
                "{e}"
            );
            assert!(!e.contains('\n'), "{e}");
        }
    }

    #[test]
    fn newer_format_is_reported_as_such() {
        let tmp = tempdir();
        let path = tmp.path().join(IDENTITY_FILE);
        fs::write(&path, b"version = 2\nsomething_new = true\n").expect("write");
        let e = open_err(tmp.path(), &ident("a", 1));
        assert_eq!(
            e,
            format!(
                "{}: written by a newer raftkv (format version 2; this build reads 1): upgrade raftkv",
                path.display()
            )
        );
    }

    #[test]
    fn unreadable_identity_file_is_refused() {
        let tmp = tempdir();
        let path = tmp.path().join(IDENTITY_FILE);
        fs::create_dir(&path).expect("mkdir");
        let e = open_err(tmp.path(), &ident("a", 1));
        assert!(
            e.starts_with(&format!(
                "{}: cannot read the member identity file: ",
                path.display()
            )),
            "{e}"
        );
    }

    #[test]
    fn data_dir_that_is_a_file_is_refused() {
        let tmp = tempdir();
        let file = tmp.path().join("f");
        fs::write(&file, b"x").expect("write");
        assert_eq!(
            open_err(&file, &ident("a", 1)),
            format!(
                "data directory {} exists but is not a directory",
                file.display()
            )
        );
    }

    #[test]
    fn identity_from_config() {
        let c = crate::config::ServeArgs::default()
            .resolve_with(|_| None)
            .expect("config");
        let id = Identity::from(&c);
        assert_eq!(id.name, "default");
        assert_eq!(id.member_id, c.member_id());
        assert_eq!(id.cluster_id, c.cluster_id());
        assert_eq!(id.token, "etcd-cluster");
    }
}
