//! Compiled modules on disk: `<sha256 of the component>-<engine hash>.cwasm`, so a restart
//! (or a second node on the same volume) loads machine code instead of compiling again.
//!
//! A file holds the SHA-256 of its payload and the payload (`Component::serialize`). It is
//! written to a temporary name and renamed, so a crash or a full disk leaves no partial
//! file under the final name; a file whose checksum does not match is ignored and
//! rewritten. Any cache failure only costs a compile.

use ring::digest::{digest, SHA256};
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use wasmtime::component::Component;
use wasmtime::Engine;

const MAGIC: &[u8; 8] = b"EDGECW01";

/// Where a loaded component came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Compiled {
    /// Compiled now (and written to the cache when it has a folder).
    Fresh,
    /// Loaded from the on-disk cache.
    FromCache,
}

pub struct CompileCache {
    dir: Option<PathBuf>,
}

impl CompileCache {
    /// The cache is used only if its folder is private to this user: the node runs the
    /// machine code it finds there, so a folder others can write to (or that belongs to
    /// someone else) is refused, and modules compile at every start instead.
    pub fn new(dir: Option<PathBuf>) -> Self {
        let dir = dir.and_then(|d| match ensure_private(&d) {
            Ok(()) => Some(d),
            Err(e) => {
                tracing::warn!(path = %d.display(), error = %e, "compiled-module cache disabled");
                None
            }
        });
        CompileCache { dir }
    }

    pub fn dir(&self) -> Option<&Path> {
        self.dir.as_deref()
    }

    /// The component for `bytes`, from the cache or compiled (and then cached).
    pub fn load_or_compile(
        &self,
        engine: &Engine,
        bytes: &[u8],
        sha256_hex: &str,
    ) -> wasmtime::Result<(Component, Compiled)> {
        let Some(dir) = &self.dir else {
            return Ok((Component::new(engine, bytes)?, Compiled::Fresh));
        };
        let path = dir.join(format!("{sha256_hex}-{:016x}.cwasm", engine_hash(engine)));
        if let Some(component) = read_cached(engine, &path) {
            return Ok((component, Compiled::FromCache));
        }
        let component = Component::new(engine, bytes)?;
        match component.serialize() {
            Ok(payload) => {
                if let Err(e) = write_atomically(dir, &path, &payload) {
                    tracing::warn!(path = %path.display(), error = %e, "cannot write the compiled-module cache; modules compile at every start");
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot serialize a compiled module"),
        }
        Ok((component, Compiled::Fresh))
    }
}

/// Creates `dir` (mode 0700) if needed and checks that it belongs to this process's user
/// and that no one else can write to it.
fn ensure_private(dir: &Path) -> std::io::Result<()> {
    use std::io::{Error, ErrorKind};
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::{DirBuilderExt, MetadataExt};
        builder.mode(0o700);
        builder.create(dir)?;
        let meta = std::fs::symlink_metadata(dir)?;
        if !meta.is_dir() {
            return Err(Error::new(ErrorKind::InvalidInput, "not a directory"));
        }
        if meta.mode() & 0o022 != 0 {
            return Err(Error::new(
                ErrorKind::PermissionDenied,
                "group or others can write to it",
            ));
        }
        match current_uid() {
            Some(uid) if uid == meta.uid() => Ok(()),
            Some(_) => Err(Error::new(
                ErrorKind::PermissionDenied,
                "it belongs to another user",
            )),
            None => Err(Error::other("cannot tell this process's user")),
        }
    }
    #[cfg(not(unix))]
    {
        builder.create(dir)
    }
}

/// The real user id, from `/proc/self/status` (Linux; the node's only target). Read by
/// hand to avoid unsafe libc calls. `None` elsewhere.
pub fn current_uid() -> Option<u32> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("Uid:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Changes with the wasmtime version and every setting that affects compiled code.
fn engine_hash(engine: &Engine) -> u64 {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut hasher);
    hasher.finish()
}

fn read_cached(engine: &Engine, path: &Path) -> Option<Component> {
    let file = std::fs::read(path).ok()?;
    let rest = file.strip_prefix(MAGIC.as_slice())?;
    if rest.len() < 32 {
        return None;
    }
    let (sum, payload) = rest.split_at(32);
    if digest(&SHA256, payload).as_ref() != sum {
        tracing::warn!(path = %path.display(), "compiled-module cache file is corrupt; compiling again");
        return None;
    }
    match deserialize(engine, payload) {
        Ok(component) => Some(component),
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "compiled-module cache file unusable; compiling again");
            None
        }
    }
}

#[allow(unsafe_code)]
fn deserialize(engine: &Engine, payload: &[u8]) -> wasmtime::Result<Component> {
    // SAFETY: wasmtime requires that the bytes come from `Component::serialize` of a
    // compatible engine and were not tampered with. This cache wrote them itself (same
    // engine settings: the file name carries the engine's compatibility hash), the SHA-256
    // stored beside them matched, and the folder is the node's own. wasmtime also checks
    // the header and the engine's settings before using the code.
    unsafe { Component::deserialize(engine, payload) }
}

fn write_atomically(dir: &Path, path: &Path, payload: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(
        ".tmp-{}-{}",
        std::process::id(),
        path.file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("module")
    ));
    let result = (|| {
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(MAGIC)?;
        file.write_all(digest(&SHA256, payload).as_ref())?;
        file.write_all(payload)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    /// The file is keyed by the component and the engine's settings: a second start with
    /// the same engine loads the machine code; an engine with other settings compiles its
    /// own; a damaged file is compiled again and replaced.
    #[test]
    fn compiled_code_is_keyed_by_engine_and_checked() {
        let dir = tempfile::tempdir().unwrap();
        let cache = CompileCache::new(Some(dir.path().join("cwasm")));
        let bytes = std::fs::read(edge_module_artifacts::testing::TEST_MODULE).unwrap();
        let sha = "0123abcd";
        let engine = |epochs: bool| {
            let mut config = wasmtime::Config::new();
            config.epoch_interruption(epochs);
            Engine::new(&config).unwrap()
        };
        let (a, b) = (engine(true), engine(false));
        let compiled = |e: &Engine| cache.load_or_compile(e, &bytes, sha).unwrap().1;
        assert_eq!(compiled(&a), Compiled::Fresh);
        assert_eq!(compiled(&a), Compiled::FromCache);
        assert_eq!(
            compiled(&b),
            Compiled::Fresh,
            "another engine's code was reused"
        );
        assert_eq!(compiled(&b), Compiled::FromCache);
        let files: Vec<PathBuf> = std::fs::read_dir(cache.dir().unwrap())
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        assert_eq!(files.len(), 2, "{files:?}");

        // One byte changed in the payload: the checksum refuses it, and it is rewritten.
        let file = files.iter().find(|f| {
            f.to_str()
                .unwrap()
                .ends_with(&format!("{:016x}.cwasm", engine_hash(&a)))
        });
        let file = file.unwrap();
        let mut damaged = std::fs::read(file).unwrap();
        let last = damaged.len() - 1;
        damaged[last] ^= 0xff;
        std::fs::write(file, &damaged).unwrap();
        assert_eq!(compiled(&a), Compiled::Fresh);
        assert_eq!(compiled(&a), Compiled::FromCache);
    }

    #[test]
    fn only_a_private_folder_is_used() {
        let base = tempfile::tempdir().unwrap();
        let private = base.path().join("cache");
        assert!(CompileCache::new(Some(private.clone())).dir().is_some());
        let mode = std::fs::metadata(&private).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);

        let shared = base.path().join("shared");
        std::fs::create_dir(&shared).unwrap();
        std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o777)).unwrap();
        assert!(CompileCache::new(Some(shared)).dir().is_none());

        let file = base.path().join("file");
        std::fs::write(&file, b"x").unwrap();
        assert!(CompileCache::new(Some(file)).dir().is_none());
        assert!(current_uid().is_some());
    }
}
