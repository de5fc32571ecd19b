//! The development backends' image (MongoDB, Kafka, Redis, S3, Stripe stand-ins) with their
//! Python runtime.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context, Result, bail};

use super::{DEV_REGISTRY, DEV_TAG, Image, build_and_import, imported, layers::Tree};
use crate::step;

/// The development backends' images (`manifests/dev-backends-local.yaml`), from the programs
/// `cargo xtask install` put in the cache.
pub fn dev_backends(tools: &crate::install::Tools, work: &Path, containerd: &Path) -> Result<()> {
    let name = |backend: &str| format!("{DEV_REGISTRY}/{backend}:{DEV_TAG}");
    // They change only with the cache's programs (or the launcher): skip them when those did not.
    let sources = [
        &tools.secantusd,
        &tools.secantusd_launcher,
        &tools.localstripe_python,
        &tools.localstripe_launcher,
        &tools.tansu,
        &tools.redis_server,
        &tools.s3s_fs,
    ];
    // Bumped when this module builds them differently.
    const LAYOUT: u32 = 3;
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

    // The Python backends: their virtualenv on the shared runtime, run through their launcher.
    for (backend, python_program, launcher, port) in [
        (
            "mongodb",
            &tools.secantusd_python,
            &tools.secantusd_launcher,
            27017,
        ),
        (
            "stripe",
            &tools.localstripe_python,
            &tools.localstripe_launcher,
            8420,
        ),
    ] {
        let venv = Tree::new(work.join(backend).join("venv"))?;
        python_packages(&venv, &venv_of(python_program))?;
        let file_name = launcher
            .file_name()
            .context("a launcher is a file")?
            .to_string_lossy();
        let in_image = format!("/app/{file_name}");
        venv.copy(launcher, &in_image, 0o644)?;
        let image = Image::new(
            name(backend),
            vec![python.path(), venv.path()],
            &[&python_program.display().to_string(), &in_image],
        )
        .port(port);
        build_and_import(&image, &work.join(backend), containerd)?;
    }

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

/// The virtualenv a program of the cache runs from (`…/venv/bin/program`).
pub(super) fn venv_of(program: &Path) -> PathBuf {
    program
        .parent()
        .and_then(Path::parent)
        .expect("a program inside a virtualenv")
        .to_path_buf()
}

/// The Python the cache's virtualenvs were made with, at its own path: the interpreter, its
/// standard library (without tests, IDLE, Tk and the installed packages: the virtualenvs have
/// their own), and the shared libraries they load.
pub(super) fn python_runtime(program_in_venv: &Path, dir: &Path) -> Result<Tree> {
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
pub(super) fn python_packages(tree: &Tree, venv: &Path) -> Result<()> {
    tree.copy_dir(venv, &[])?;
    let objects = shared_objects(venv)?;
    tree.libraries(&objects)
}

/// Every `*.so` file under `dir`.
pub(super) fn shared_objects(dir: &Path) -> Result<Vec<PathBuf>> {
    let output = Command::new("find")
        .arg(dir)
        .args(["-name", "*.so*", "-type", "f"])
        .output()?;
    Ok(String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(PathBuf::from)
        .collect())
}
