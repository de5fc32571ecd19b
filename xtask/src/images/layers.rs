//! An image's layers as reproducible tar archives: the files, their modes, the shared
//! libraries a program needs.

use std::{
    collections::BTreeSet,
    io::Read,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context, Result, bail};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::install::run;

/// Writes `value` as a blob; answers its digest (`sha256:…`) and size.
pub(super) fn blob(blobs: &Path, value: &Value) -> Result<(String, u64)> {
    let bytes = serde_json::to_vec(value)?;
    let digest = format!("{:x}", Sha256::digest(&bytes));
    std::fs::write(blobs.join(&digest), &bytes)?;
    Ok((format!("sha256:{digest}"), bytes.len() as u64))
}

pub(super) fn digest_file(path: &Path) -> Result<(String, u64)> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0; 1 << 20];
    let mut size = 0;
    loop {
        let read = file.read(&mut buffer)?;
        if read == 0 {
            break;
        }
        hasher.update(&buffer[..read]);
        size += read as u64;
    }
    Ok((format!("{:x}", hasher.finalize()), size))
}

/// A reproducible tar of `dir`'s contents: the same files give the same digest.
pub(super) fn tar_tree(dir: &Path, out: &Path) -> Result<()> {
    run(
        Command::new("tar")
            .args([
                "--sort=name",
                "--mtime=@0",
                "--owner=0",
                "--group=0",
                "--numeric-owner",
                // Readable (and directories enterable) by the image's non-root user whatever
                // the umask was when the files were staged.
                "--mode=a+rX",
                "--format=gnu",
            ])
            .arg("-C")
            .arg(dir)
            .arg("-cf")
            .arg(out)
            .arg("."),
        "tar a layer",
    )
}

/// A layer being staged: files copied under `root` at their path in the image.
pub struct Tree {
    root: PathBuf,
}

impl Tree {
    /// An empty tree at `root` (whatever was there is removed).
    pub fn new(root: PathBuf) -> Result<Tree> {
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root)?;
        Ok(Tree { root })
    }

    pub fn path(&self) -> PathBuf {
        self.root.clone()
    }

    pub(super) fn at(&self, image_path: &str) -> PathBuf {
        self.root.join(image_path.trim_start_matches('/'))
    }

    /// A directory with `mode` (and its parents, 0755).
    pub fn dir(&self, image_path: &str, mode: u32) -> Result<()> {
        let path = self.at(image_path);
        std::fs::create_dir_all(&path)?;
        chmod(&path, mode)
    }

    pub fn write(&self, image_path: &str, bytes: &[u8], mode: u32) -> Result<()> {
        let path = self.at(image_path);
        std::fs::create_dir_all(path.parent().expect("a file has a parent"))?;
        std::fs::write(&path, bytes)?;
        chmod(&path, mode)
    }

    /// `host` (a file; symbolic links followed) at `image_path`.
    pub fn copy(&self, host: &Path, image_path: &str, mode: u32) -> Result<()> {
        let path = self.at(image_path);
        std::fs::create_dir_all(path.parent().expect("a file has a parent"))?;
        std::fs::copy(host, &path).with_context(|| format!("copy {}", host.display()))?;
        chmod(&path, mode)
    }

    /// A symbolic link at `image_path` to `target`.
    pub fn symlink(&self, image_path: &str, target: &str) -> Result<()> {
        let path = self.at(image_path);
        std::fs::create_dir_all(path.parent().expect("a link has a parent"))?;
        let _ = std::fs::remove_file(&path);
        std::os::unix::fs::symlink(target, &path)?;
        Ok(())
    }

    /// A program without its debug information (smaller layers; symbols stay for backtraces).
    pub fn copy_program(&self, host: &Path, image_path: &str) -> Result<()> {
        let path = self.at(image_path);
        std::fs::create_dir_all(path.parent().expect("a file has a parent"))?;
        run(
            Command::new("objcopy")
                .arg("--strip-debug")
                .arg(host)
                .arg(&path),
            "strip a program",
        )?;
        chmod(&path, 0o755)
    }

    /// The shared libraries `programs` load (and the dynamic loader), at their own paths.
    pub fn libraries(&self, programs: &[PathBuf]) -> Result<()> {
        for library in shared_libraries(programs)? {
            let image_path = library.display().to_string();
            if !self.at(&image_path).exists() {
                self.copy(&library, &image_path, 0o755)?;
            }
        }
        Ok(())
    }

    /// A copy of the directory `host` at the same path in the image, without the entries of
    /// `skip` (names matched at any depth), world-readable.
    pub fn copy_dir(&self, host: &Path, skip: &[&str]) -> Result<()> {
        let target = self.at(&host.display().to_string());
        std::fs::create_dir_all(target.parent().expect("not the root"))?;
        run(
            Command::new("cp").arg("-a").arg(host).arg(&target),
            "copy a directory into an image",
        )?;
        for name in skip {
            run(
                Command::new("find")
                    .arg(&target)
                    .args(["-depth", "-name", name, "-exec", "rm", "-rf", "{}", ";"]),
                "prune a directory in an image",
            )?;
        }
        run(
            Command::new("chmod").arg("-R").arg("a+rX").arg(&target),
            "make an image's files readable",
        )?;
        // Its parents (e.g. /root) must be traversable by the image's non-root user.
        let mut parent = target.parent();
        while let Some(dir) = parent {
            if dir == self.root {
                break;
            }
            chmod(dir, 0o755)?;
            parent = dir.parent();
        }
        Ok(())
    }
}

pub(super) fn chmod(path: &Path, mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .with_context(|| format!("chmod {}", path.display()))
}

/// Every shared library `programs` need (by `ldd`), with the dynamic loader; none for static ones.
pub fn shared_libraries(programs: &[PathBuf]) -> Result<BTreeSet<PathBuf>> {
    let mut libraries = BTreeSet::new();
    for program in programs {
        let output = Command::new("ldd")
            .arg(program)
            .output()
            .context("run ldd")?;
        let text = String::from_utf8_lossy(&output.stdout);
        if !output.status.success() || text.contains("not a dynamic executable") {
            continue;
        }
        for line in text.lines() {
            if line.contains("not found") {
                bail!("{}: {}", program.display(), line.trim());
            }
            // "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x…)" or "/lib64/ld-linux-x86-64.so.2 (0x…)"
            let path = line
                .split_once("=>")
                .map_or(line, |(_, path)| path)
                .split_whitespace()
                .next()
                .unwrap_or("");
            if path.starts_with('/') {
                libraries.insert(PathBuf::from(path));
            }
        }
    }
    Ok(libraries)
}

/// The Storefront images' runtime layer: the libraries `programs` need, the CA bundle, the
/// `nonroot` user (65532, home `/tmp`) and a `/tmp` (the pods mount an emptyDir over it).
pub fn runtime_layer(tree: &Tree, programs: &[PathBuf]) -> Result<()> {
    tree.libraries(programs)?;
    tree.copy(
        Path::new("/etc/ssl/certs/ca-certificates.crt"),
        "/etc/ssl/certs/ca-certificates.crt",
        0o644,
    )?;
    tree.write(
        "/etc/passwd",
        b"root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/tmp:/sbin/nologin\n",
        0o644,
    )?;
    tree.write("/etc/group", b"root:x:0:\nnonroot:x:65532:\n", 0o644)?;
    tree.dir("/tmp", 0o1777)?;
    Ok(())
}
