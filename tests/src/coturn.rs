//! A real coturn (`turnserver`) on loopback that checks TURN REST credentials (coturn's
//! `use-auth-secret`) against a shared secret; killed on drop. It reads an empty config file,
//! never the machine's `/etc/turnserver.conf`.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::free_port;

pub struct Coturn {
    child: Child,
    port: u16,
    dir: PathBuf,
}

impl Coturn {
    /// Starts coturn with `secret` as its `static-auth-secret` and 40 relay ports; returns
    /// once it accepts connections (it listens on TCP and UDP on one port).
    pub fn start(secret: &str) -> Coturn {
        let port = free_port();
        let relay = free_port();
        let dir = std::env::temp_dir().join(format!("switchboard-coturn-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("coturn dir");
        let conf = dir.join("turnserver.conf");
        std::fs::write(&conf, "").expect("empty config");
        let child = Command::new("turnserver")
            .arg("-c")
            .arg(&conf)
            .args(["--listening-ip=127.0.0.1", "--relay-ip=127.0.0.1", "--allow-loopback-peers"])
            .arg(format!("--listening-port={port}"))
            .args(["--use-auth-secret", &format!("--static-auth-secret={secret}"), "--realm=switchboard"])
            .args(["--no-tls", "--no-dtls", "--no-cli", "--simple-log", "--log-file=stdout"])
            .arg(format!("--min-port={relay}"))
            .arg(format!("--max-port={}", relay + 40))
            .arg(format!("--pidfile={}", dir.join("pid").display()))
            .arg(format!("--userdb={}", dir.join("db").display()))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("turnserver starts");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "turnserver did not start on port {port}");
            std::thread::sleep(Duration::from_millis(50));
        }
        Coturn { child, port, dir }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Its UDP TURN URL, as a gateway hands it out.
    pub fn url(&self) -> String {
        format!("turn:127.0.0.1:{}?transport=udp", self.port)
    }
}

impl Drop for Coturn {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
