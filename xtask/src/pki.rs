//! Certificates, keys, tokens and kubeconfigs for the Kubernetes API servers xtask runs (the
//! operator tests' API server and the single-node cluster), made with the openssl command line.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::Result;

use crate::install::run;

/// A directory holding a certificate authority (`ca.crt`, `ca.key`) and what it signed.
pub struct Pki {
    dir: PathBuf,
}

impl Pki {
    /// A new CA named `name` in `dir` (made if missing).
    pub fn create(dir: &Path, name: &str) -> Result<Pki> {
        std::fs::create_dir_all(dir)?;
        let pki = Pki::open(dir);
        pki.openssl(
            &[
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-days",
                "365",
                "-keyout",
                "ca.key",
                "-out",
                "ca.crt",
                "-subj",
                &format!("/CN={name}"),
                "-addext",
                "basicConstraints=critical,CA:TRUE",
                "-addext",
                "keyUsage=critical,keyCertSign,cRLSign",
            ],
            "make a CA",
        )?;
        Ok(pki)
    }

    /// The CA already in `dir`.
    pub fn open(dir: &Path) -> Pki {
        Pki {
            dir: dir.to_path_buf(),
        }
    }

    pub fn path(&self, file: &str) -> PathBuf {
        self.dir.join(file)
    }

    fn openssl(&self, args: &[&str], what: &str) -> Result<()> {
        run(
            Command::new("openssl").args(args).current_dir(&self.dir),
            what,
        )
    }

    /// `{name}.crt` and `{name}.key` for TLS servers at `alt_names` (`IP:…`, `DNS:…`).
    pub fn server_certificate(&self, name: &str, alt_names: &[&str]) -> Result<()> {
        self.certificate(
            name,
            name,
            None,
            &format!(
                "extendedKeyUsage=serverAuth\nsubjectAltName={}\n",
                alt_names.join(",")
            ),
        )
    }

    /// `{name}.crt` and `{name}.key` for a client that authenticates as `user` in `group`.
    pub fn client_certificate(&self, name: &str, user: &str, group: Option<&str>) -> Result<()> {
        self.certificate(name, user, group, "extendedKeyUsage=clientAuth\n")
    }

    fn certificate(
        &self,
        name: &str,
        common_name: &str,
        group: Option<&str>,
        extensions: &str,
    ) -> Result<()> {
        let subject = match group {
            Some(group) => format!("/CN={common_name}/O={group}"),
            None => format!("/CN={common_name}"),
        };
        let (key, csr, ext, crt) = (
            format!("{name}.key"),
            format!("{name}.csr"),
            format!("{name}.ext"),
            format!("{name}.crt"),
        );
        self.openssl(
            &[
                "req", "-newkey", "rsa:2048", "-nodes", "-keyout", &key, "-out", &csr, "-subj",
                &subject,
            ],
            &format!("make the key of {name}"),
        )?;
        std::fs::write(
            self.path(&ext),
            format!(
                "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n{extensions}"
            ),
        )?;
        self.openssl(
            &[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                "ca.crt",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-days",
                "365",
                "-out",
                &crt,
                "-extfile",
                &ext,
            ],
            &format!("sign the certificate of {name}"),
        )
    }

    /// An RSA private key `{name}` (the service-account token signing key).
    pub fn rsa_key(&self, name: &str) -> Result<()> {
        self.openssl(
            &["genrsa", "-out", name, "2048"],
            &format!("make the key {name}"),
        )
    }
}

/// A random bearer token for a static token file.
pub fn token() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// A kubeconfig for `user` with a bearer `token` against `server`, trusting `ca`.
pub fn kubeconfig(server: &str, ca: &Path, user: &str, token: &str) -> String {
    format!(
        "apiVersion: v1
kind: Config
clusters:
  - name: storefront
    cluster: {{ server: \"{server}\", certificate-authority: \"{}\" }}
users:
  - name: {user}
    user: {{ token: \"{token}\" }}
contexts:
  - name: storefront
    context: {{ cluster: storefront, user: {user}, namespace: default }}
current-context: storefront
",
        ca.display()
    )
}
