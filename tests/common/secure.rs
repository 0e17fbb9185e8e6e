//! Kafka as production secures it, for tests: certificates made with openssl (a CA, a server
//! certificate for 127.0.0.1, a client certificate, and a rogue CA's server certificate), and
//! Debian's haproxy terminating TLS in front of Tansu (Tansu 0.6.0 does not serve TLS itself),
//! each TLS port with a Tansu of its own that advertises that port, so clients keep to TLS
//! after reading the metadata. SCRAM users are made with `tansu user create` through a broker
//! without `--authentication` on the same SQLite storage as the one that requires it.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::broker::{tansu_bin, Broker, Options};
use super::free_port;
use super::gateway::temp_dir;

/// What to install when a tool is missing.
const INSTALL: &str = "apt-get install -y haproxy openssl";

/// The certificates of a test, in its directory.
pub struct Certs {
    pub dir: PathBuf,
}

impl Certs {
    /// Makes them (EC P-256 keys: a few milliseconds each).
    pub fn make() -> Certs {
        let dir = temp_dir("certs");
        let run = |args: &[&str]| {
            let out = Command::new("openssl")
                .args(args)
                .current_dir(&dir)
                .output()
                .unwrap_or_else(|e| panic!("openssl is missing ({INSTALL}): {e}"));
            assert!(
                out.status.success(),
                "openssl {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        let key = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
        ];
        let ca = |name: &str, cn: &str| {
            let (key_file, pem) = (format!("{name}.key"), format!("{name}.pem"));
            let subject = format!("/CN={cn}");
            let mut args = vec!["req", "-x509", "-sha256", "-days", "3650"];
            args.extend(key);
            args.extend(["-keyout", &key_file, "-out", &pem, "-subj", &subject]);
            args.extend(["-addext", "basicConstraints=critical,CA:TRUE"]);
            args.extend(["-addext", "keyUsage=critical,keyCertSign,cRLSign"]);
            run(&args);
        };
        ca("ca", "inlet-test-ca");
        ca("rogue-ca", "rogue-ca");
        std::fs::write(
            dir.join("server.ext"),
            "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n",
        )
        .unwrap();
        std::fs::write(dir.join("client.ext"), "extendedKeyUsage=clientAuth\n").unwrap();
        for (name, cn) in [("server", "localhost"), ("client", "inlet-client")] {
            let (key_file, csr, subject) = (
                format!("{name}.key"),
                format!("{name}.csr"),
                format!("/CN={cn}"),
            );
            let mut args = vec!["req"];
            args.extend(key);
            args.extend(["-keyout", &key_file, "-out", &csr, "-subj", &subject]);
            run(&args);
        }
        let sign = |csr: &str, ca: &str, ext: &str, out: &str| {
            let (ca_pem, ca_key) = (format!("{ca}.pem"), format!("{ca}.key"));
            run(&[
                "x509",
                "-req",
                "-in",
                csr,
                "-CA",
                &ca_pem,
                "-CAkey",
                &ca_key,
                "-CAcreateserial",
                "-days",
                "3650",
                "-sha256",
                "-extfile",
                ext,
                "-out",
                out,
            ]);
        };
        sign("server.csr", "ca", "server.ext", "server.crt");
        sign("client.csr", "ca", "client.ext", "client.crt");
        sign("server.csr", "rogue-ca", "server.ext", "rogue-server.crt");
        // haproxy takes a certificate and its key in one file.
        let key = std::fs::read_to_string(dir.join("server.key")).unwrap();
        for (crt, pem) in [
            ("server.crt", "server.pem"),
            ("rogue-server.crt", "rogue-server.pem"),
        ] {
            let crt = std::fs::read_to_string(dir.join(crt)).unwrap();
            std::fs::write(dir.join(pem), crt + &key).unwrap();
        }
        Certs { dir }
    }

    pub fn path(&self, file: &str) -> String {
        self.dir.join(file).display().to_string()
    }
}

/// How a TLS port checks its clients.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Tls {
    /// Server-authenticated TLS.
    Server,
    /// A client certificate signed by the test CA is required.
    Mutual,
    /// Served with the rogue CA's certificate, which the test CA does not sign.
    Rogue,
}

/// haproxy in front of brokers: each TLS port forwards to one broker.
pub struct Haproxy {
    child: Child,
    log: PathBuf,
}

impl Haproxy {
    /// Starts haproxy with one frontend for each `(port, how, backend port)`, and waits until
    /// every port accepts connections.
    pub fn start(certs: &Certs, frontends: &[(u16, Tls, u16)]) -> Haproxy {
        let dir = temp_dir("haproxy");
        let mut config = String::from(
            "global\n    log stderr format short local0 info\n\ndefaults\n    mode tcp\n    log global\n    \
             timeout connect 5s\n    # Kafka connections idle between requests: long timeouts.\n    \
             timeout client 1h\n    timeout server 1h\n",
        );
        for (i, (port, how, backend)) in frontends.iter().enumerate() {
            let bind = match how {
                Tls::Server => format!("ssl crt {}", certs.path("server.pem")),
                Tls::Mutual => format!(
                    "ssl crt {} ca-file {} verify required",
                    certs.path("server.pem"),
                    certs.path("ca.pem")
                ),
                Tls::Rogue => format!("ssl crt {}", certs.path("rogue-server.pem")),
            };
            config += &format!(
                "\nfrontend f{i}\n    bind 127.0.0.1:{port} {bind}\n    default_backend b{i}\n\
                 backend b{i}\n    server s 127.0.0.1:{backend}\n"
            );
        }
        let file = dir.join("haproxy.cfg");
        std::fs::write(&file, config).unwrap();
        let log = dir.join("haproxy.log");
        let child = Command::new("haproxy")
            .args(["-db", "-f"])
            .arg(&file)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(std::fs::File::create(dir.join("haproxy.err")).unwrap())
            .spawn()
            .unwrap_or_else(|e| panic!("haproxy is missing ({INSTALL}): {e}"));
        let proxy = Haproxy { child, log };
        let deadline = Instant::now() + Duration::from_secs(10);
        for (port, _, _) in frontends {
            while std::net::TcpStream::connect(("127.0.0.1", *port)).is_err() {
                assert!(
                    Instant::now() < deadline,
                    "haproxy did not listen on {port}: {}",
                    proxy.log()
                );
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        proxy
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A broker behind a TLS port of its own: the port, then the broker (which advertises it).
pub fn behind_tls(sqlite: Option<&Path>, authentication: bool) -> (u16, Broker) {
    let port = free_port();
    let options = Options {
        advertised_port: Some(port),
        authentication,
    };
    (port, Broker::start_with(sqlite, options))
}

/// Makes SCRAM user `name` with `password` for `mechanism` (`scram256`, `scram512`) through
/// `broker`, which must not require authentication.
pub fn add_user(broker: &Broker, mechanism: &str, name: &str, password: &str) {
    let out = Command::new(tansu_bin())
        .args(["user", "create", "--broker"])
        .arg(format!("tcp://{}", broker.bootstrap()))
        .args(["--mechanism", mechanism, name, password])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "tansu user create: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
