//! OCI images without Docker or a registry: `cargo xtask images` stages each image's files in a
//! directory per layer, tars each layer reproducibly (sorted, time 0, owner 0), writes the OCI
//! image layout (config, manifest, index) and imports the archive into the local cluster's
//! containerd.
//!
//! What a Storefront image is — the binary at [`APP_PATH`] as the entrypoint, user
//! [`APP_USER`], port [`APP_PORT`], nothing written outside `/tmp` (the pods' root file system
//! is read-only) — is also what the `Dockerfile`'s runtime stage builds for real registries; a test
//! below compares the two. The runtime layer here is what that stage's base image
//! (`gcr.io/distroless/cc-debian12:nonroot`) holds: glibc and libgcc as this machine has them,
//! the CA bundle, a `nonroot` user.
//!
//! The development backends of `manifests/dev-backends-local.yaml` get images the same way, from
//! the programs `cargo xtask install` put in the cache: SecantusDB and localstripe (a Python
//! runtime layer shared by both, then the virtualenv), tansu, Redis and s3s-fs.

use std::{
    collections::BTreeSet,
    io::Read,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::{install::run, step};

/// Where a Storefront image keeps its program (the Dockerfile's `ENTRYPOINT`).
pub const APP_PATH: &str = "/usr/local/bin/app";
/// The user every Storefront image runs as (the Dockerfile's `USER`; the pods' `runAsUser`).
pub const APP_USER: &str = "65532:65532";
/// The port every Storefront image serves on (the Dockerfile's `EXPOSE`).
pub const APP_PORT: u16 = 8080;
/// The registry the shop's images are named for: the same names `docker build` gives them for the
/// Tiltfile and `manifests/example-storefront.yaml`, so a Storefront finds them without a pull.
pub const DEFAULT_REGISTRY: &str = "ghcr.io/storefront";
pub const DEFAULT_TAG: &str = "dev";
/// The development backends' images exist only on this machine.
pub const DEV_REGISTRY: &str = "localhost/storefront-dev";
pub const DEV_TAG: &str = "local";

/// One image: its layers (directories staged on disk, bottom first) and its run settings.
pub struct Image {
    pub reference: String,
    layers: Vec<PathBuf>,
    entrypoint: Vec<String>,
    user: String,
    ports: Vec<u16>,
    env: Vec<String>,
}

impl Image {
    pub fn new(reference: String, layers: Vec<PathBuf>, entrypoint: &[&str]) -> Image {
        Image {
            reference,
            layers,
            entrypoint: entrypoint.iter().map(|s| (*s).to_owned()).collect(),
            user: APP_USER.to_owned(),
            ports: Vec::new(),
            env: vec!["PATH=/usr/local/bin:/usr/bin:/bin".to_owned()],
        }
    }

    pub fn user(mut self, user: &str) -> Image {
        self.user = user.to_owned();
        self
    }

    pub fn port(mut self, port: u16) -> Image {
        self.ports.push(port);
        self
    }

    /// The image configuration (the part `docker inspect` shows as `Config`).
    fn config(&self, diff_ids: &[String]) -> Value {
        let ports: serde_json::Map<String, Value> = self
            .ports
            .iter()
            .map(|p| (format!("{p}/tcp"), json!({})))
            .collect();
        json!({
            "architecture": "amd64",
            "os": "linux",
            "config": {
                "User": self.user,
                "Entrypoint": self.entrypoint,
                "Env": self.env,
                "ExposedPorts": ports,
                "WorkingDir": "/",
            },
            "rootfs": { "type": "layers", "diff_ids": diff_ids },
        })
    }

    /// Writes the image as an OCI archive (`oci-layout`, `index.json`, `blobs/sha256/…`) at
    /// `archive`, in `work` (a scratch directory).
    pub fn write_archive(&self, work: &Path, archive: &Path) -> Result<()> {
        let layout = work.join("layout");
        let _ = std::fs::remove_dir_all(&layout);
        let blobs = layout.join("blobs/sha256");
        std::fs::create_dir_all(&blobs)?;
        let mut layers = Vec::new();
        let mut diff_ids = Vec::new();
        for (index, tree) in self.layers.iter().enumerate() {
            let tar = work.join(format!("layer-{index}.tar"));
            tar_tree(tree, &tar)?;
            let (digest, size) = digest_file(&tar)?;
            std::fs::rename(&tar, blobs.join(&digest))?;
            diff_ids.push(format!("sha256:{digest}"));
            layers.push(json!({
                "mediaType": "application/vnd.oci.image.layer.v1.tar",
                "digest": format!("sha256:{digest}"),
                "size": size,
            }));
        }
        let config = blob(&blobs, &self.config(&diff_ids))?;
        let manifest = blob(
            &blobs,
            &json!({
                "schemaVersion": 2,
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": {
                    "mediaType": "application/vnd.oci.image.config.v1+json",
                    "digest": config.0,
                    "size": config.1,
                },
                "layers": layers,
            }),
        )?;
        std::fs::write(
            layout.join("index.json"),
            serde_json::to_vec(&json!({
                "schemaVersion": 2,
                "manifests": [{
                    "mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "digest": manifest.0,
                    "size": manifest.1,
                    "annotations": {
                        // containerd names the imported image after these.
                        "io.containerd.image.name": self.reference,
                        "org.opencontainers.image.ref.name": self.reference,
                    },
                }],
            }))?,
        )?;
        std::fs::write(
            layout.join("oci-layout"),
            r#"{"imageLayoutVersion":"1.0.0"}"#,
        )?;
        tar_tree(&layout, archive)
    }
}

/// Writes `value` as a blob; answers its digest (`sha256:…`) and size.
fn blob(blobs: &Path, value: &Value) -> Result<(String, u64)> {
    let bytes = serde_json::to_vec(value)?;
    let digest = format!("{:x}", Sha256::digest(&bytes));
    std::fs::write(blobs.join(&digest), &bytes)?;
    Ok((format!("sha256:{digest}"), bytes.len() as u64))
}

fn digest_file(path: &Path) -> Result<(String, u64)> {
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
fn tar_tree(dir: &Path, out: &Path) -> Result<()> {
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

    fn at(&self, image_path: &str) -> PathBuf {
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

fn chmod(path: &Path, mode: u32) -> Result<()> {
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

/// `ctr images import` into the cluster's containerd (the namespace the kubelet uses).
pub fn import(containerd: &Path, archive: &Path) -> Result<()> {
    run(
        Command::new("ctr")
            .arg("--address")
            .arg(containerd)
            .args(["--namespace", "k8s.io", "images", "import"])
            .arg(archive),
        "import an image into containerd",
    )
}

/// Gives the already imported `source` another name (a new tag: no new content).
pub fn tag(containerd: &Path, source: &str, target: &str) -> Result<()> {
    run(
        Command::new("ctr").arg("--address").arg(containerd).args([
            "--namespace",
            "k8s.io",
            "images",
            "tag",
            "--force",
            source,
            target,
        ]),
        "tag an image in containerd",
    )
}

/// Builds and imports `image` (work files under `work`).
pub fn build_and_import(image: &Image, work: &Path, containerd: &Path) -> Result<()> {
    let archive = work.join("image.tar");
    image.write_archive(work, &archive)?;
    import(containerd, &archive)?;
    let _ = std::fs::remove_file(&archive);
    step(format!("image {}", image.reference));
    Ok(())
}

/// `cargo xtask images [--release] [--registry R] [--tag T]`: builds the shop's programs and every
/// image (the shop's and the development backends'), and imports them into the running cluster.
pub fn main(args: &[String]) -> Result<()> {
    let mut release = false;
    let mut registry = DEFAULT_REGISTRY.to_owned();
    let mut tag = DEFAULT_TAG.to_owned();
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--release" => release = true,
            "--registry" => registry = args.next().context("--registry NAME")?.clone(),
            "--tag" => tag = args.next().context("--tag TAG")?.clone(),
            other => bail!(
                "unknown argument {other}: cargo xtask images [--release] [--registry R] [--tag T]"
            ),
        }
    }
    let tools = crate::install::Tools::ensure()?;
    let cluster = crate::cluster::Cluster::here();
    if !cluster.running() {
        bail!("the cluster is not running: cargo xtask cluster up");
    }
    let bin = build_programs(release)?;
    let _lock = cluster.lock()?;
    let work = crate::services::target_dir().join("images");
    let containerd = crate::cluster::Cluster::containerd_socket();
    let started = std::time::Instant::now();
    shop(&bin, &registry, &tag, &work, &containerd)?;
    dev_backends(&tools, &work.join("dev"), &containerd)?;
    step(format!(
        "images built and imported in {:.1} s (the shop's: {registry}/storefront-*:{tag})",
        started.elapsed().as_secs_f64()
    ));
    Ok(())
}

/// `cargo build` of every service and the operator.
pub fn build_programs(release: bool) -> Result<PathBuf> {
    crate::services::build_with(release, &["storefront-operator"])
}

/// The programs that become the shop's images: each service and the operator.
pub fn shop_programs() -> Vec<(&'static str, String)> {
    crate::services::built()
        .into_iter()
        .map(|s| (s.name, format!("storefront-{}", s.name)))
        .chain([("storefront-operator", "storefront-operator".to_owned())])
        .collect()
}

/// The shop's images from the binaries in `bin` (`{registry}/storefront-{service}:{tag}` and
/// `{registry}/storefront-operator:{tag}`), built under `work` and imported.
pub fn shop(bin: &Path, registry: &str, tag: &str, work: &Path, containerd: &Path) -> Result<()> {
    let programs = shop_programs();
    let binaries: Vec<PathBuf> = programs
        .iter()
        .map(|(bin_name, _)| bin.join(bin_name))
        .collect();
    for binary in &binaries {
        if !binary.exists() {
            bail!("{} is not built", binary.display());
        }
    }
    let runtime = Tree::new(work.join("runtime"))?;
    runtime_layer(&runtime, &binaries)?;
    for ((_, image_name), binary) in programs.iter().zip(&binaries) {
        let dir = work.join(image_name);
        let app = Tree::new(dir.join("app"))?;
        app.copy_program(binary, APP_PATH)?;
        let image = Image::new(
            format!("{registry}/{image_name}:{tag}"),
            vec![runtime.path(), app.path()],
            &[APP_PATH],
        )
        .port(APP_PORT);
        build_and_import(&image, &dir, containerd)?;
        let _ = std::fs::remove_dir_all(app.path());
    }
    Ok(())
}

/// The development backends' images (`manifests/dev-backends-local.yaml`), from the programs
/// `cargo xtask install` put in the cache.
pub fn dev_backends(tools: &crate::install::Tools, work: &Path, containerd: &Path) -> Result<()> {
    let name = |backend: &str| format!("{DEV_REGISTRY}/{backend}:{DEV_TAG}");
    // They change only with the cache's programs (or the launcher): skip them when those did not.
    let sources = [
        &tools.secantusd,
        &tools.localstripe_python,
        &tools.localstripe_launcher,
        &tools.tansu,
        &tools.redis_server,
        &tools.s3s_fs,
    ];
    // Bumped when this module builds them differently.
    const LAYOUT: u32 = 2;
    let mut stamp = format!("layout {LAYOUT}\n");
    for source in sources {
        let meta = std::fs::metadata(source)?;
        stamp.push_str(&format!(
            "{} {} {:?}\n",
            source.display(),
            meta.len(),
            meta.modified()?
        ));
    }
    let stamp_file = work.join("stamp");
    let present = imported(containerd)?;
    if std::fs::read_to_string(&stamp_file).is_ok_and(|s| s == stamp)
        && ["mongodb", "stripe", "kafka", "redis", "s3"]
            .iter()
            .all(|b| present.contains(&name(b)))
    {
        step("the development backends' images are current");
        return Ok(());
    }
    let _ = std::fs::remove_file(&stamp_file);
    let python = python_runtime(&tools.secantusd, &work.join("python"))?;

    let venv = venv_of(&tools.secantusd);
    let mongodb = Tree::new(work.join("mongodb/venv"))?;
    python_packages(&mongodb, &venv)?;
    let image = Image::new(
        name("mongodb"),
        vec![python.path(), mongodb.path()],
        &[&tools.secantusd.display().to_string()],
    )
    .port(27017);
    build_and_import(&image, &work.join("mongodb"), containerd)?;

    let venv = venv_of(&tools.localstripe_python);
    let stripe = Tree::new(work.join("stripe/venv"))?;
    python_packages(&stripe, &venv)?;
    stripe.copy(
        &tools.localstripe_launcher,
        "/app/localstripe_launcher.py",
        0o644,
    )?;
    let image = Image::new(
        name("stripe"),
        vec![python.path(), stripe.path()],
        &[
            &tools.localstripe_python.display().to_string(),
            "/app/localstripe_launcher.py",
        ],
    )
    .port(8420);
    build_and_import(&image, &work.join("stripe"), containerd)?;

    for (backend, program, path, port) in [
        ("kafka", &tools.tansu, "/usr/local/bin/tansu", 9092),
        ("redis", &tools.redis_server, "/usr/bin/redis-server", 6379),
        ("s3", &tools.s3s_fs, "/usr/local/bin/s3s-fs", 9000),
    ] {
        let tree = Tree::new(work.join(backend).join("tree"))?;
        tree.libraries(std::slice::from_ref(program))?;
        tree.copy_program(program, path)?;
        tree.dir("/data", 0o777)?;
        tree.dir("/tmp", 0o1777)?;
        let image = Image::new(name(backend), vec![tree.path()], &[path]).port(port);
        build_and_import(&image, &work.join(backend), containerd)?;
    }
    std::fs::write(stamp_file, stamp)?;
    Ok(())
}

/// The names of the images in the cluster's containerd.
pub fn imported(containerd: &Path) -> Result<BTreeSet<String>> {
    let output = Command::new("ctr")
        .arg("--address")
        .arg(containerd)
        .args(["--namespace", "k8s.io", "images", "list", "--quiet"])
        .output()
        .context("run ctr images list")?;
    if !output.status.success() {
        bail!(
            "ctr images list: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(str::to_owned)
        .collect())
}

/// The virtualenv a program of the cache runs from (`…/venv/bin/program`).
fn venv_of(program: &Path) -> PathBuf {
    program
        .parent()
        .and_then(Path::parent)
        .expect("a program inside a virtualenv")
        .to_path_buf()
}

/// The Python the cache's virtualenvs were made with, at its own path: the interpreter, its
/// standard library (without tests, IDLE, Tk and the installed packages: the virtualenvs have
/// their own), and the shared libraries they load.
fn python_runtime(program_in_venv: &Path, dir: &Path) -> Result<Tree> {
    let python = venv_of(program_in_venv).join("bin/python");
    let output = Command::new(&python)
        .args([
            "-c",
            "import sys, sysconfig; print(sys.base_prefix); print(sysconfig.get_python_version()); print(sysconfig.get_paths()['stdlib'])",
        ])
        .output()
        .context("ask the virtualenv's Python where it lives")?;
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    let mut lines = text.lines();
    let (Some(prefix), Some(version), Some(stdlib)) = (lines.next(), lines.next(), lines.next())
    else {
        bail!("{} did not say where it lives", python.display());
    };
    let tree = Tree::new(dir.join("tree"))?;
    let interpreter = Path::new(prefix).join(format!("bin/python{version}"));
    tree.copy(&interpreter, &interpreter.display().to_string(), 0o755)?;
    tree.symlink(
        &format!("{prefix}/bin/python3"),
        &format!("python{version}"),
    )?;
    tree.copy_dir(
        Path::new(stdlib),
        &[
            "site-packages",
            "test",
            "idlelib",
            "tkinter",
            "turtledemo",
            "ensurepip",
            "lib2to3",
            "config-*",
        ],
    )?;
    let mut programs = vec![interpreter];
    programs.extend(shared_objects(&tree.at(stdlib))?);
    tree.libraries(&programs)?;
    Ok(tree)
}

/// A virtualenv at its own path, and the system libraries its compiled modules load.
fn python_packages(tree: &Tree, venv: &Path) -> Result<()> {
    tree.copy_dir(venv, &[])?;
    let objects = shared_objects(venv)?;
    tree.libraries(&objects)
}

/// Every `*.so` file under `dir`.
fn shared_objects(dir: &Path) -> Result<Vec<PathBuf>> {
    let output = Command::new("find")
        .arg(dir)
        .args(["-name", "*.so*", "-type", "f"])
        .output()?;
    Ok(String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(PathBuf::from)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The `Dockerfile`'s runtime stage, for registries, describes the image xtask builds here.
    #[test]
    fn the_dockerfile_and_xtask_build_the_same_image() {
        let dockerfile =
            std::fs::read_to_string(crate::root().join("Dockerfile")).expect("the Dockerfile");
        let runtime = dockerfile.split("\nFROM ").last().expect("a runtime stage");
        assert!(
            runtime.starts_with("gcr.io/distroless/cc-debian12:nonroot"),
            "the runtime stage is the distroless cc base this module reproduces: {runtime}"
        );
        let line = |instruction: &str| {
            runtime
                .lines()
                .find_map(|l| l.strip_prefix(instruction))
                .unwrap_or_else(|| panic!("the runtime stage has {instruction}"))
                .trim()
                .to_owned()
        };
        assert_eq!(line("USER "), APP_USER);
        assert_eq!(line("EXPOSE "), APP_PORT.to_string());
        assert_eq!(line("ENTRYPOINT "), format!("[\"{APP_PATH}\"]"));
        assert!(
            line("COPY ").ends_with(APP_PATH),
            "the binary is copied to {APP_PATH}"
        );
    }

    #[test]
    fn an_archive_is_reproducible_and_names_its_image() {
        let dir = std::env::temp_dir().join(format!("xtask-image-{}", std::process::id()));
        let tree = Tree::new(dir.join("tree")).unwrap();
        tree.write("/usr/local/bin/app", b"#!/bin/true\n", 0o755)
            .unwrap();
        tree.dir("/tmp", 0o1777).unwrap();
        let image = Image::new(
            "example.test/storefront/app:1".into(),
            vec![tree.path()],
            &[APP_PATH],
        )
        .port(APP_PORT);
        let digest = |name: &str| {
            let archive = dir.join(name);
            image.write_archive(&dir.join("work"), &archive).unwrap();
            digest_file(&archive).unwrap().0
        };
        assert_eq!(digest("a.tar"), digest("b.tar"));
        let index: Value =
            serde_json::from_slice(&std::fs::read(dir.join("work/layout/index.json")).unwrap())
                .unwrap();
        assert_eq!(
            index["manifests"][0]["annotations"]["io.containerd.image.name"],
            "example.test/storefront/app:1"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
