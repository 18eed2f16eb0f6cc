//! A throwaway certificate authority for TLS tests, made with `openssl`: a CA, a server
//! certificate for `127.0.0.1`/`localhost`, and a client certificate (mutual TLS), all P-256.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

pub struct TestCa {
    dir: PathBuf,
    pub ca_cert: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
}

impl TestCa {
    /// A fresh CA and its two certificates in a directory of their own (removed on drop).
    pub fn generate(name: &str) -> TestCa {
        let dir = std::env::temp_dir().join(format!("switchboard-ca-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("ca dir");
        let p = |f: &str| dir.join(f);
        openssl(
            &dir,
            &["req", "-x509", "-new", "-nodes", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"],
            &["-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=switchboard test CA"],
        );
        for (who, ext) in [
            (
                "server",
                "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n",
            ),
            ("client", "extendedKeyUsage=clientAuth\nbasicConstraints=CA:FALSE\n"),
        ] {
            std::fs::write(p(&format!("{who}.ext")), ext).expect("ext file");
            openssl(
                &dir,
                &["req", "-new", "-nodes", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"],
                &["-keyout", &format!("{who}.key"), "-out", &format!("{who}.csr"), "-subj", &format!("/CN={who}")],
            );
            openssl(
                &dir,
                &["x509", "-req", "-in", &format!("{who}.csr"), "-CA", "ca.pem", "-CAkey", "ca.key"],
                &["-CAcreateserial", "-out", &format!("{who}.pem"), "-days", "2", "-extfile", &format!("{who}.ext")],
            );
        }
        TestCa {
            ca_cert: p("ca.pem"),
            server_cert: p("server.pem"),
            server_key: p("server.key"),
            client_cert: p("client.pem"),
            client_key: p("client.key"),
            dir,
        }
    }
}

fn openssl(dir: &Path, a: &[&str], b: &[&str]) {
    let out = Command::new("openssl")
        .args(a)
        .args(b)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .expect("openssl is on PATH");
    assert!(out.status.success(), "openssl {a:?} {b:?}: {}", String::from_utf8_lossy(&out.stderr));
}

impl Drop for TestCa {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
