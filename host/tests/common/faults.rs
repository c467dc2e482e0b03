//! Storage faults for tests: a disk that fills up (a small tmpfs and a filler file) and a
//! PostgreSQL that stops answering (a TCP proxy in front of it that can go dark).
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// A small tmpfs mounted on a temporary directory, unmounted when dropped.
///
/// Mounting needs root (CAP_SYS_ADMIN); CI and the development machines run as root. Without
/// it the test fails and says why: it is never skipped.
pub struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    /// Mounts a tmpfs of `mib` MiB.
    pub fn mount(mib: u32) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={mib}m"), "tmpfs"])
            .arg(dir.path())
            .status()
            .expect("run `mount`");
        assert!(
            status.success(),
            "mounting a tmpfs failed: this test fills a small file system and needs root"
        );
        Self { dir }
    }

    /// The mount point.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Writes a filler file until the file system is full; returns its path.
    pub fn fill(&self) -> PathBuf {
        let path = self.path().join("filler");
        let mut filler = std::fs::File::create(&path).unwrap();
        let chunk = vec![0u8; 64 * 1024];
        loop {
            if let Err(error) = filler.write_all(&chunk) {
                assert_eq!(error.raw_os_error(), Some(28), "expected ENOSPC: {error}");
                break;
            }
        }
        // Fill the last partial block too.
        while filler.write_all(&[0u8; 512]).is_ok() {}
        path
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        // Lazy: a connection the test leaked must not keep the mount (and the test) alive.
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

/// A TCP proxy to a PostgreSQL server that can go dark: when down it cuts every proxied
/// connection and holds new ones open without a byte in either direction, as an unreachable
/// host does, so a client waits until its own timeout.
pub struct PgProxy {
    addr: SocketAddr,
    up: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl PgProxy {
    /// Starts a proxy, up, to the server of the PostgreSQL URL `target`.
    pub async fn start(target: &str) -> Self {
        let url = url::Url::parse(target).unwrap();
        let server = format!("{}:{}", url.host_str().unwrap(), url.port().unwrap_or(5432));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (up, watching) = watch::channel(true);
        let task = tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    continue;
                };
                tokio::spawn(pipe(client, server.clone(), watching.clone()));
            }
        });
        Self { addr, up, task }
    }

    /// `url` (a PostgreSQL URL) pointed at this proxy instead of the server.
    pub fn url(&self, url: &str) -> String {
        let mut url = url::Url::parse(url).unwrap();
        url.set_host(Some("127.0.0.1")).unwrap();
        url.set_port(Some(self.addr.port())).unwrap();
        url.to_string()
    }

    /// Goes dark (`false`) or comes back (`true`).
    pub fn set_up(&self, up: bool) {
        self.up.send_replace(up);
    }
}

impl Drop for PgProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Proxies one client while the proxy is up; while it is down, holds the client silent.
async fn pipe(mut client: TcpStream, server: String, mut up: watch::Receiver<bool>) {
    if !*up.borrow_and_update() {
        let _ = up.wait_for(|up| *up).await;
        return;
    }
    let Ok(mut upstream) = TcpStream::connect(&server).await else {
        return;
    };
    tokio::select! {
        _ = tokio::io::copy_bidirectional(&mut client, &mut upstream) => {}
        _ = up.wait_for(|up| !*up) => {}
    }
}
