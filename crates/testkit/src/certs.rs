//! Test certificates, made with the `openssl` command: a CA, a server certificate for
//! `localhost`, and client certificates, all signed by the CA.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};

fn openssl(dir: &Path, args: &[&str]) -> anyhow::Result<()> {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .context("openssl is not installed")?;
    if !out.status.success() {
        bail!("openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(())
}

/// A test CA (`ca.pem`, `ca.key`) and a server certificate for `localhost` and 127.0.0.1
/// (`cert.pem`, `key.pem`) in `dir`. Returns (CA, certificate, key).
pub fn certificates(dir: &Path) -> anyhow::Result<(PathBuf, PathBuf, PathBuf)> {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=invoiceguard test CA",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
        ],
    )?;
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-subj",
            "/CN=localhost",
            "-keyout",
            "key.pem",
            "-out",
            "leaf.csr",
        ],
    )?;
    std::fs::write(
        dir.join("leaf.ext"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n",
    )?;
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "leaf.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "leaf.ext",
            "-out",
            "cert.pem",
        ],
    )?;
    Ok((
        dir.join("ca.pem"),
        dir.join("cert.pem"),
        dir.join("key.pem"),
    ))
}

/// A client certificate for `dns_name`, signed by the CA that [`certificates`] made in `dir`.
/// Returns (certificate, key).
pub fn client_certificate(dir: &Path, dns_name: &str) -> anyhow::Result<(PathBuf, PathBuf)> {
    let (cert, key) = (
        dir.join(format!("{dns_name}.pem")),
        dir.join(format!("{dns_name}.key")),
    );
    let (csr, ext) = (format!("{dns_name}.csr"), format!("{dns_name}.ext"));
    let key_path = key.to_string_lossy().into_owned();
    let cert_path = cert.to_string_lossy().into_owned();
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-subj",
            &format!("/CN={dns_name}"),
            "-keyout",
            &key_path,
            "-out",
            &csr,
        ],
    )?;
    std::fs::write(
        dir.join(&ext),
        format!("subjectAltName=DNS:{dns_name}\nextendedKeyUsage=clientAuth\n"),
    )?;
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            &ext,
            "-out",
            &cert_path,
        ],
    )?;
    Ok((cert, key))
}
