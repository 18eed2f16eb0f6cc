//! A real nginx on loopback in front of a set of nodes, configured like the project's Ingress
//! (`k8s/base/ingress.yaml`, ingress-nginx): room affinity by consistent hash of `?room=`,
//! WebSocket upgrades passed through, long proxy timeouts, and a failed or refused upgrade
//! (a node down, or draining and answering 503) retried on the next node. Its config, logs, pid
//! and temp files live in a directory of its own (never `/etc/nginx`); killed on drop.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::{external_tool_probed, free_port};

pub struct Nginx {
    child: Child,
    pub port: u16,
    dir: PathBuf,
}

impl Nginx {
    /// Whether nginx can run here (skips the test with a note, or fails it under `CI=true`).
    pub fn available() -> bool {
        // nginx takes `-v`, not `--version`.
        external_tool_probed(program(), &["-v"])
    }

    /// Starts nginx on a free port, balancing `/v1/ws`, `/ws` and everything else over
    /// `upstreams` (`127.0.0.1:PORT` each); returns once it accepts connections.
    pub fn start(upstreams: &[&str]) -> Nginx {
        let port = free_port();
        let dir = std::env::temp_dir().join(format!("switchboard-nginx-{}-{port}", std::process::id()));
        std::fs::create_dir_all(dir.join("temp")).expect("nginx dir");
        let conf = dir.join("nginx.conf");
        std::fs::write(&conf, config(port, upstreams, &dir)).expect("nginx config");
        let child = Command::new(program())
            .arg("-p")
            .arg(&dir)
            .arg("-c")
            .arg(&conf)
            // The log for the start-up, before the config's own error_log applies.
            .arg("-e")
            .arg(dir.join("error.log"))
            .args(["-g", "daemon off;"])
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("nginx starts");
        let mut n = Nginx { child, port, dir };
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(status)) = n.child.try_wait() {
                panic!("nginx exited ({status}) on port {port}:\n{}", n.error_log());
            }
            assert!(Instant::now() < deadline, "nginx did not start on port {port}:\n{}", n.error_log());
            std::thread::sleep(Duration::from_millis(20));
        }
        n
    }

    /// `ws://127.0.0.1:PORT{path}`
    pub fn ws_url(&self, path: &str) -> String {
        format!("ws://127.0.0.1:{}{path}", self.port)
    }

    /// What nginx logged (errors and warnings, including every upstream it gave up on).
    pub fn error_log(&self) -> String {
        std::fs::read_to_string(self.dir.join("error.log")).unwrap_or_default()
    }

    /// The access log: one line per request, with the upstream(s) tried and their statuses.
    pub fn access_log(&self) -> String {
        std::fs::read_to_string(self.dir.join("access.log")).unwrap_or_default()
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `nginx` from PATH, or Debian's `/usr/sbin/nginx` where `/usr/sbin` is not on it.
fn program() -> &'static str {
    let on_path =
        std::env::var_os("PATH").is_some_and(|p| std::env::split_paths(&p).any(|d| d.join("nginx").is_file()));
    if !on_path && std::path::Path::new("/usr/sbin/nginx").is_file() { "/usr/sbin/nginx" } else { "nginx" }
}

fn config(port: u16, upstreams: &[&str], dir: &std::path::Path) -> String {
    let dir = dir.display();
    // Workers run as root when the master does (the default would be `nobody`, who cannot
    // use the temp directory); as another user the directive would only draw a warning.
    // SAFETY: geteuid(2) has no preconditions.
    let user = if unsafe { libc::geteuid() } == 0 { "user root;" } else { "" };
    // `max_fails=0`: a node is never marked unavailable, so one restarted on its port takes
    // traffic again at once (a refused connection is still retried on the next node).
    let servers: String = upstreams.iter().map(|a| format!("        server {a} max_fails=0;\n")).collect();
    format!(
        r#"{user}
worker_processes 1;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;

events {{
    worker_connections 4096;
}}

http {{
    log_format upstreams '$remote_addr "$request" $status up=$upstream_addr up_status=$upstream_status t=$request_time';
    access_log {dir}/access.log upstreams;
    client_body_temp_path {dir}/temp/body;
    proxy_temp_path {dir}/temp/proxy;
    fastcgi_temp_path {dir}/temp/fastcgi;
    uwsgi_temp_path {dir}/temp/uwsgi;
    scgi_temp_path {dir}/temp/scgi;

    # What ingress-nginx sets for any WebSocket-capable location.
    map $http_upgrade $connection_upgrade {{
        default upgrade;
        ''      close;
    }}

    upstream switchboard_nodes {{
        # nginx.ingress.kubernetes.io/upstream-hash-by: "$arg_room" (ingress-nginx's hash
        # balancer is consistent: a node going away moves its share of rooms only).
        hash $arg_room consistent;
{servers}    }}

    server {{
        listen 127.0.0.1:{port};

        location / {{
            proxy_pass http://switchboard_nodes;
            # ingress-nginx proxies HTTP/1.1 and passes the upgrade through on every location.
            proxy_http_version 1.1;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection $connection_upgrade;
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $remote_addr;
            # nginx.ingress.kubernetes.io/proxy-read-timeout: "3600"
            proxy_read_timeout 3600s;
            # nginx.ingress.kubernetes.io/proxy-send-timeout: "3600"
            proxy_send_timeout 3600s;
            # nginx.ingress.kubernetes.io/proxy-body-size: "256k"
            client_max_body_size 256k;
            # nginx.ingress.kubernetes.io/proxy-buffering: "off"
            proxy_buffering off;
            # nginx.ingress.kubernetes.io/proxy-connect-timeout: "1" (ingress-nginx default 5)
            proxy_connect_timeout 1s;
            # nginx.ingress.kubernetes.io/proxy-next-upstream: "error timeout http_502 http_503"
            # (ingress-nginx default "error timeout"; a draining node answers upgrades 503)
            proxy_next_upstream error timeout http_502 http_503;
            # nginx.ingress.kubernetes.io/proxy-next-upstream-tries: "3" (the default)
            proxy_next_upstream_tries 3;
            # nginx.ingress.kubernetes.io/proxy-next-upstream-timeout: "5" (default 0: none)
            proxy_next_upstream_timeout 5s;
        }}
    }}
}}
"#
    )
}
