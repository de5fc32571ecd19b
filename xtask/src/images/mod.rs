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
//!
//! By concern: `layers.rs` (reproducible layers), `dev.rs` (the development backends' image);
//! this file assembles, imports and tags images.

use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

use crate::{install::run, step};

mod dev;
mod layers;

pub use dev::dev_backends;
pub use layers::{Tree, runtime_layer};
use layers::{blob, digest_file, tar_tree};

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
